"""frontends.quantize: BatchNorm folding, calibration by tilewise's fp32 build, the QDQ model ONNX Runtime runs."""
from __future__ import annotations

import os

import numpy as np
import onnx
import pytest

pytest.importorskip("onnxruntime")

from frontends import ModelError                                    # noqa: E402
from frontends.quantize import (calibrate, fold_batchnorm, load_samples, name_nodes, prepare,  # noqa: E402
                                quantize, random_samples)
from frontends.onnx import from_onnx                                # noqa: E402
from frontends.quant_auto import tiny_qdq_conv                      # noqa: E402

from ..quant_models import conv_bn_gemm, matmul_mlp, ort_run, with_outputs   # noqa: E402
from .onnx_helpers import ort_qdq_run                               # noqa: E402


def _x(seed: int, shape=(1, 3, 12, 12)) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def test_batchnorm_folded_into_conv_keeps_the_outputs():
    m = conv_bn_gemm()
    name_nodes(m)
    folded = fold_batchnorm(m)
    assert [n.op_type for n in folded.graph.node].count("BatchNormalization") == 0
    assert len(folded.graph.node) == len(m.graph.node) - 1
    assert not {"s", "bb", "m", "v", "w1"} & {t.name for t in folded.graph.initializer}   # unused ones dropped
    x = _x(1)
    np.testing.assert_allclose(ort_run(folded, {"x": x})[0], ort_run(m, {"x": x})[0], rtol=1e-4, atol=1e-5)


def test_batchnorm_after_a_shared_conv_is_not_folded():
    m = conv_bn_gemm()
    m.graph.output.extend([onnx.helper.make_tensor_value_info("c1", onnx.TensorProto.FLOAT, None)])
    name_nodes(m)
    assert "BatchNormalization" in [n.op_type for n in fold_batchnorm(m).graph.node]


def test_every_node_gets_a_unique_name():
    m = conv_bn_gemm()
    m.graph.node[3].name = "relu1"          # a repeated name
    name_nodes(m)
    names = [n.name for n in m.graph.node]
    assert all(names) and len(set(names)) == len(names)


def test_a_quantised_model_is_refused():
    with pytest.raises(ModelError, match="quantised already.*fp32 model"):
        prepare(tiny_qdq_conv())
    with pytest.raises(ModelError, match="no Conv, Gemm or MatMul"):
        prepare(_only_relu())


def _only_relu() -> onnx.ModelProto:
    from onnx import helper
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "r",
                          [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2])],
                          [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [2])])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])


def test_minmax_ranges_are_those_of_the_fp32_tensors():
    m = prepare(conv_bn_gemm())
    samples = [{"x": _x(k)} for k in range(3)]
    cal = calibrate(m, samples, "minmax")
    names = [v for v in cal.ranges if v != "x"]
    assert {"n1", "r1", "c2", "r2", "p", "f", "y"} <= set(cal.ranges)     # the folded Conv writes n1
    runs = [ort_run(with_outputs(m, names), s, names) for s in samples]
    for j, v in enumerate(names):
        lo, hi = cal.ranges[v].range_value
        want = np.concatenate([r[j].reshape(-1) for r in runs])
        np.testing.assert_allclose([lo, hi], [want.min(), want.max()], rtol=1e-4, atol=1e-5, err_msg=v)
    assert cal.ranges["x"].range_value[0] == min(s["x"].min() for s in samples)
    np.testing.assert_allclose(cal.outputs[0][0], ort_run(m, samples[0])[0], rtol=1e-4, atol=1e-5)
    assert cal.shapes["r2"] == (1, 16, 12, 12)


@pytest.mark.parametrize("method", ["minmax", "percentile", "entropy"])
def test_qdq_model_runs_in_onnxruntime_close_to_fp32(tmp_path, method):
    out = str(tmp_path / "q.onnx")
    res = quantize(conv_bn_gemm(), out, samples=8, method=method, per_channel=method == "minmax")
    q = onnx.load(out)
    ops = [n.op_type for n in q.graph.node]
    assert "BatchNormalization" not in ops and "QuantizeLinear" in ops and "DequantizeLinear" in ops
    assert {"conv2", "fc", "pool"} <= set(res.quantised_nodes) and res.folded_batchnorms == 1
    assert not any(n.endswith(("_QuantizeLinear", "_DequantizeLinear")) for n in res.quantised_nodes)
    inits = {t.name: list(t.dims) for t in q.graph.initializer}
    for n in q.graph.node:                  # a zero point has its scale's shape (ONNX; strict importers)
        if n.op_type in ("QuantizeLinear", "DequantizeLinear"):
            assert inits[n.input[1]] == inits[n.input[2]], n.name
    x = random_samples(from_onnx(conv_bn_gemm()), 1, seed=0)[0]      # the first calibration sample
    ref = res.calibration.outputs[0][0]
    got = ort_run(out, x)[0]
    assert np.linalg.norm(got - ref) / np.linalg.norm(ref) < 0.25     # entropy clips the most
    [o] = res.report.outputs
    assert res.report.engine in ("ONNX Runtime", "tilewise") and o.samples == 8
    assert o.top1 >= 0.75 and o.rel < 0.25 and 0 < o.mean_abs <= o.max_abs


@pytest.mark.parametrize("method", ["minmax", "percentile", "entropy"])
def test_ranges_match_onnxruntime_own_calibration(tmp_path, method):
    """The scales tilewise's calibration gives the QDQ writer are those of ONNX Runtime's own
    calibration by the same method on the same inputs."""
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantType, quantize_static
    m = prepare(conv_bn_gemm())
    samples = [{"x": _x(k)} for k in range(4)]
    npz = tmp_path / "cal.npz"
    np.savez(npz, x=np.concatenate([s["x"] for s in samples]))
    ours = str(tmp_path / "ours.onnx")
    quantize(m, ours, calibration=str(npz), method=method)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(samples)

        def get_next(self):
            return next(self.it, None)
    theirs = str(tmp_path / "theirs.onnx")
    quantize_static(m, theirs, Reader(), activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    calibrate_method={"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
                                      "entropy": CalibrationMethod.Entropy}[method])
    scales = [{t.name: onnx.numpy_helper.to_array(t) for t in onnx.load(p).graph.initializer
               if t.name.endswith("_scale")} for p in (ours, theirs)]
    assert scales[0].keys() == scales[1].keys() and len(scales[0]) >= 6
    for k in scales[0]:
        np.testing.assert_allclose(scales[0][k], scales[1][k], rtol=1e-5, err_msg=k)


def test_an_old_opset_is_converted_for_per_channel_weights(tmp_path):
    """onnxruntime's writer keeps opset 11 and writes DequantizeLinear's axis, which needs 13."""
    out = str(tmp_path / "q.onnx")
    res = quantize(conv_bn_gemm(opset=9), out, samples=2, per_channel=True)
    q = onnx.load(out)
    assert [o.version for o in q.opset_import if o.domain in ("", "ai.onnx")] == [13]
    assert res.folded_batchnorms == 1 and ort_run(out, {"x": _x(0)})[0].shape == (1, 10)


def test_matmul_model_with_s8_activations(tmp_path):
    import logging
    out = str(tmp_path / "mlp.onnx")
    logging.disable(logging.INFO)           # the caller's setting survives the writer's silencing
    try:
        res = quantize(matmul_mlp(), out, samples=4, activation_type="s8")
        assert logging.root.manager.disable == logging.INFO
    finally:
        logging.disable(logging.NOTSET)
    q = onnx.load(out)
    zps = [t for t in q.graph.initializer if t.name.endswith("zero_point") and t.name.startswith(("x", "h", "r"))]
    assert zps and all(t.data_type == onnx.TensorProto.INT8 for t in zps)
    assert {"mm1", "mm2"} <= set(res.quantised_nodes)
    assert res.report.outputs[0].top1 is not None and res.report.outputs[0].rel < 0.1


def test_calibration_npz_layouts(tmp_path):
    m = conv_bn_gemm()
    x = np.stack([_x(k) for k in range(3)])                 # (3, 1, 3, 12, 12): samples on a new axis
    for arr, n in [(x, 3), (x[:, 0], 3), (x[0], 1)]:        # a batch of batch-1 inputs; one sample
        np.savez(tmp_path / "a.npz", x=arr)
        samples, shapes = load_samples(str(tmp_path / "a.npz"), m)
        assert len(samples) == n and samples[0]["x"].shape == (1, 3, 12, 12) and shapes == {"x": [1, 3, 12, 12]}
        np.testing.assert_array_equal(samples[0]["x"], x[0])


@pytest.mark.parametrize("arrays, message", [
    ({"data": np.zeros((1, 3, 12, 12), np.float32)}, r"holds arrays \['data'\], the model's inputs are \['x'\]"),
    ({"x": np.zeros((1, 4, 12, 12), np.float32)}, r"array x has shape \[1, 4, 12, 12\]"),
    ({"x": np.zeros((2, 1, 3, 12, 12), np.int32)}, "array x is int32, the input is float32"),
])
def test_calibration_npz_that_does_not_fit(tmp_path, arrays, message):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ModelError, match=message):
        load_samples(str(tmp_path / "bad.npz"), conv_bn_gemm())


def test_unreadable_npz_is_one_line(tmp_path):
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ModelError, match="not a readable .npz") as e:
        load_samples(str(tmp_path / "junk.npz"), conv_bn_gemm())
    assert "\n" not in str(e.value)


def test_a_failed_quantisation_leaves_the_output_alone(tmp_path):
    out = tmp_path / "q.onnx"
    out.write_bytes(b"keep me")
    np.savez(tmp_path / "bad.npz", y=np.zeros(3, np.float32))
    with pytest.raises(ModelError):
        quantize(conv_bn_gemm(), str(out), calibration=str(tmp_path / "bad.npz"))
    assert out.read_bytes() == b"keep me"
    assert set(os.listdir(tmp_path)) == {"q.onnx", "bad.npz"}          # no temporary file left
    quantize(conv_bn_gemm(), str(out), samples=1)
    assert out.stat().st_mode & 0o777 == 0o644                        # not the temporary file's 0600


def test_a_scale_computed_from_an_initializer_gets_its_range(tmp_path):
    # DenseNet-121's light model scales a conv by Unsqueeze(an initializer): tilewise's import
    # folds it into a constant, onnxruntime's QDQ writer quantises it as an activation and
    # needed its range ("Quantization parameters are not specified for param r2")
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32), "w"),
             numpy_helper.from_array(rng.uniform(0.5, 2.0, 8).astype(np.float32), "scale"),
             numpy_helper.from_array(np.array([1, 2], np.int64), "axes")]
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Unsqueeze", ["scale", "axes"], ["s"]),
             helper.make_node("Mul", ["c", "s"], ["y"])]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 12, 12])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 12, 12])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    out = str(tmp_path / "q.onnx")
    res = quantize(m, out, samples=2)
    scale = numpy_helper.to_array(inits[1])
    assert tuple(res.calibration.ranges["s"].range_value) == (scale.min(), scale.max())
    assert res.calibration.shapes["s"] == (8, 1, 1)
    x = _x(0)
    want = ort_run(m, {"x": x})[0]
    assert np.linalg.norm(ort_qdq_run(out, {"x": x})[0] - want) / np.linalg.norm(want) < 0.05
