"""frontends.quant_auto (`--auto`) and frontends.quant_report (the accuracy report)."""
from __future__ import annotations

import numpy as np
import onnx
import pytest

pytest.importorskip("onnxruntime")

from frontends import ModelError                                        # noqa: E402
from frontends.quant_auto import choose_layers, int8_import_missing, layer_models, time_layer   # noqa: E402
from frontends.quant_report import accuracy_report, class_rows, compare  # noqa: E402
from frontends.quantize import calibrate, prepare, quantised_nodes, quantize, random_samples   # noqa: E402
from frontends.onnx import from_onnx                                    # noqa: E402

from ..quant_models import conv_bn_gemm, near_tie, ort_run, two_same_convs, with_outputs   # noqa: E402
from .onnx_helpers import ort_qdq_run                                   # noqa: E402


def first_conv_slow(layer) -> tuple[float, float]:
    """A fake timing: int8 is slower for the 3-channel first conv, faster (by FLOPs) elsewhere."""
    w = next(t for t in layer.fp32.graph.initializer if t.name == layer.fp32.graph.node[0].input[1])
    size = float(np.prod(w.dims))
    if layer.op == "Conv" and w.dims[1] == 3:
        return 1e-3, 2e-3
    return size * 1e-6, size * 0.4e-6


def test_layers_alone_fp32_and_qdq():
    m = prepare(conv_bn_gemm())
    samples = random_samples(from_onnx(m), 2)
    cal = calibrate(m, samples, "minmax")
    layers = layer_models(m, cal, per_channel=False, activation_type="u8")
    assert [(lay.node, lay.op) for lay in layers] == [("Conv_0", "Conv"), ("conv2", "Conv"), ("fc", "Gemm")]
    names = [lay.fp32.graph.input[0].name for lay in layers]
    values = ort_run(with_outputs(m, names), samples[0], names)       # each layer's input in the model
    for lay, name, x in zip(layers, names, values):
        assert [n.op_type for n in lay.fp32.graph.node] == [lay.op]
        assert quantised_nodes(lay.int8) == [lay.node]
        ref, got = ort_run(lay.fp32, {name: x})[0], ort_qdq_run(lay.int8, {name: x})[0]
        assert ref.shape == got.shape and np.abs(got - ref).max() < 0.05 * np.abs(ref).max(), lay.node


def test_auto_keeps_fp32_where_int8_is_not_faster(tmp_path):
    out = str(tmp_path / "auto.onnx")
    res = quantize(conv_bn_gemm(), out, samples=4, auto=True, timer=first_conv_slow)
    runs = {d.node: (d.int8, d.reason) for d in res.auto.layers}
    assert runs == {"Conv_0": (False, "int8 not faster"), "conv2": (True, "faster in int8"),
                    "fc": (True, "faster in int8")}
    q = onnx.load(out)
    assert set(quantised_nodes(q)) == {"conv2", "fc"}           # only the chosen layers read a DequantizeLinear
    assert res.auto.top1_drop is not None and res.auto.top1_drop <= 0.01 and res.auto.evaluations == 1
    assert "2 of 3 layer(s) int8" in res.auto.summary()
    x = random_samples(from_onnx(conv_bn_gemm()), 1)[0]
    assert ort_run(out, x)[0].shape == (1, 10)


def test_auto_writes_the_fp32_model_when_no_layer_pays(tmp_path):
    def timer(layer):                   # int8 never faster; the Gemm's int8 form cannot be built
        if layer.op == "Gemm":
            raise ModelError("cannot import fc: node fc (Gemm): something int8 refuses")
        return 1.0, 1.0
    out = str(tmp_path / "auto.onnx")
    res = quantize(conv_bn_gemm(), out, samples=2, auto=True, timer=timer)
    ops = [n.op_type for n in onnx.load(out).graph.node]
    assert "QuantizeLinear" not in ops and "BatchNormalization" not in ops
    assert res.auto.int8_nodes == [] and res.report.outputs[0].max_abs < 1e-4
    fc = res.auto.layers[-1]
    assert fc.reason == "int8 failed: cannot import fc: node fc (Gemm): something int8 refuses" and not fc.int8


def test_auto_gives_layers_back_for_the_accuracy_budget():
    m = prepare(near_tie())
    inputs = random_samples(from_onnx(m), 16)
    cal = calibrate(m, inputs, "minmax")

    def timer(layer):                     # both faster in int8; the Gemm saves the least time
        return (1.0, 0.5) if layer.op == "Conv" else (1.0, 0.9)
    loose = choose_layers(m, cal, inputs, False, "u8", budget=1.0, timer=timer)
    assert loose.int8_nodes == ["conv", "fc"] and loose.top1_drop > 0.1       # int8 flips the near-tied classes
    strict = choose_layers(m, cal, inputs, False, "u8", budget=0.0, timer=timer)
    assert strict.top1_drop == 0.0 and strict.evaluations >= 2
    back = [d for d in strict.layers if not d.int8]
    assert back[0].node == "fc" and all(d.reason == "fp32 for the accuracy budget" for d in back)
    # the model it answers with is the one its decisions describe (none when every layer went back)
    kept = quantised_nodes(strict.model) if strict.model is not None else []
    assert kept == strict.int8_nodes and (strict.model is None) == (strict.report is None)
    assert quantised_nodes(loose.model) == ["conv", "fc"] and loose.report.top1 < 0.9
    # the conv saves the least now: it goes back first, then the Gemm, which alone flips the classes
    none = choose_layers(m, cal, inputs, False, "u8", budget=0.0,
                         timer=lambda layer: (1.0, 0.9) if layer.op == "Conv" else (1.0, 0.5))
    assert none.int8_nodes == [] and none.model is None and none.evaluations == 2 and none.top1_drop == 0.0


def test_layers_of_one_shape_are_timed_once():
    m = prepare(two_same_convs())
    inputs = random_samples(from_onnx(m), 2)
    cal = calibrate(m, inputs, "minmax")
    timed, seen = [], []

    def timer(layer):
        timed.append(layer.node)
        return 2.0, 1.0
    res = choose_layers(m, cal, inputs, False, "u8", budget=1.0, timer=timer,
                        progress=lambda k, n, node: seen.append((k, n, node)))
    assert timed == ["conv1"] and seen == [(0, 2, "conv1"), (1, 2, "conv2")]
    assert res.int8_nodes == ["conv1", "conv2"] and res.top1_drop is None      # no class scores: not measured
    assert "top-1 drop against fp32 not measured" in res.summary()


def test_auto_budget_out_of_range():
    m = prepare(conv_bn_gemm())
    cal = calibrate(m, random_samples(from_onnx(m), 1), "minmax")
    with pytest.raises(ModelError, match="--max-top1-drop 2.0: give a fraction between 0 and 1"):
        choose_layers(m, cal, [], False, "u8", budget=2.0, timer=first_conv_slow)


def test_auto_with_tilewise_int8_kernels():
    """The real timing: each layer built alone by frontends.build, fp32 and int8 (the registry's kernel)."""
    missing = int8_import_missing()
    if missing:
        pytest.skip(f"needs tilewise's int8 import and kernels: {missing}")
    m = prepare(conv_bn_gemm())
    cal = calibrate(m, random_samples(from_onnx(m), 2), "minmax")
    for layer in layer_models(m, cal, False, "u8"):
        t32, t8 = time_layer(layer, repeat=2)
        assert t32 > 0 and t8 > 0


def test_quantize_auto_says_what_is_missing(tmp_path, monkeypatch):
    """A build whose int8 import or kernels are missing (none on this code: made so here) refuses
    --auto in one line and writes nothing."""
    import frontends.quant_auto
    monkeypatch.setattr(frontends.quant_auto, "int8_import_missing", lambda target=None: "no int8 conv here")
    with pytest.raises(ModelError, match="--auto times each layer with tilewise's int8 kernels, which this build"):
        quantize(conv_bn_gemm(), str(tmp_path / "a.onnx"), samples=1, auto=True)
    assert not (tmp_path / "a.onnx").exists()


# ---------------------------------------------------------------- the accuracy report

def test_compare_statistics():
    ref = [np.array([[0.0, 1.0, 2.0, 3.0, 4.0, 5.0]]), np.array([[5.0, 4.0, 3.0, 2.0, 1.0, 0.0]])]
    got = [np.array([[0.0, 1.0, 2.0, 3.0, 4.0, 5.5]]), np.array([[3.0, 4.5, 3.0, 2.0, 1.0, 0.0]])]
    o = compare("y", got, ref)
    assert (o.samples, o.top1, o.top5) == (2, 0.5, 1.0)
    assert o.max_abs == pytest.approx(2.0) and o.mean_abs == pytest.approx(3.0 / 12)
    assert o.rel == pytest.approx(np.sqrt(0.25 + 4 + 0.25) / np.sqrt(2 * 55))


def test_class_rows_only_for_class_scores():
    assert class_rows(np.zeros((2, 1000, 1, 1))).shape == (2, 1000)
    assert class_rows(np.zeros((1, 16, 4, 4))) is None and class_rows(np.zeros(5)) is None
    o = compare("fmap", [np.ones((1, 2, 3, 3))], [np.ones((1, 2, 3, 3))])
    assert o.top1 is None and o.max_abs == 0 and o.rel == 0


def test_accuracy_report_from_the_fp32_model(tmp_path):
    """Callable on its own: the fp32 model built by tilewise, the quantised one run by ONNX Runtime
    (or tilewise); a quantised model equal to fp32 reports no error."""
    out = str(tmp_path / "q.onnx")
    quantize(conv_bn_gemm(), out, samples=2)
    inputs = random_samples(from_onnx(conv_bn_gemm()), 4, seed=3)
    rep = accuracy_report(out, inputs, fp32=conv_bn_gemm())
    [o] = rep.outputs
    assert o.samples == 4 and o.top1 is not None and 0 < o.rel < 0.25
    same = accuracy_report(conv_bn_gemm(), inputs, fp32=conv_bn_gemm(), engine="onnxruntime")
    assert same.engine == "ONNX Runtime" and same.outputs[0].max_abs < 1e-4 and same.outputs[0].top1 == 1.0
    assert rep.lines()[0].startswith("accuracy against fp32 on 4 calibration input(s)")


def test_report_falls_back_to_onnxruntime_when_tilewise_fails(tmp_path, monkeypatch):
    """engine auto: a tilewise build that fails after its import reads the model is named in the
    note and ONNX Runtime answers; engine tilewise: the error stands."""
    from frontends import quant_report

    def broken(*args, **kwargs):
        raise KeyError("lanes")
    monkeypatch.setattr(quant_report, "tilewise_int8_build", broken)
    out = str(tmp_path / "q.onnx")
    quantize(conv_bn_gemm(), out, samples=2)
    inputs = random_samples(from_onnx(conv_bn_gemm()), 2)
    rep = accuracy_report(out, inputs, fp32=conv_bn_gemm())
    assert rep.engine == "ONNX Runtime" and "could not run it (KeyError: 'lanes')" in rep.note
    assert "note: tilewise imports this model" in "\n".join(rep.lines())
    with pytest.raises(KeyError):
        accuracy_report(out, inputs, fp32=conv_bn_gemm(), engine="tilewise")
