"""Models quantised by onnxruntime.quantization (QDQ and QOperator, static and dynamic) run as int8
anchors and equal ONNX Runtime's int8 results within one quantisation step."""
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import frontends
import te
from frontends.compile import plan_model
from frontends.passes import run_passes
from frontends.profile import onnxruntime_session

from .onnx_helpers import ort_int8_exact, tiny, vi

ort_quant = pytest.importorskip("onnxruntime.quantization")


def _conv_net(residual: str = "Add"):
    """Conv -> Relu -> MaxPool -> Conv -> Relu -> Conv + residual (Add, or Sum as older ResNets) ->
    Relu -> GlobalAveragePool -> Flatten -> Gemm, with seeded weights: every pattern the QDQ pass folds."""
    rng = np.random.default_rng(0)

    def init(name, shape, scale=0.3):
        return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)
    n = helper.make_node
    nodes = [n("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]), n("Relu", ["c1"], ["r1"]),
             n("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
             n("Conv", ["p1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1]), n("Relu", ["c2"], ["r2"]),
             n("Conv", ["r2", "w3", "b3"], ["c3"], pads=[1, 1, 1, 1]), n(residual, ["c3", "p1"], ["a3"]),
             n("Relu", ["a3"], ["r3"]), n("GlobalAveragePool", ["r3"], ["g"]), n("Flatten", ["g"], ["f"]),
             n("Gemm", ["f", "wf", "bf"], ["y"], transB=1)]
    inits = [init("w1", (8, 3, 3, 3)), init("b1", (8,), 0.1), init("w2", (8, 8, 3, 3)), init("b2", (8,), 0.1),
             init("w3", (8, 8, 3, 3)), init("b3", (8,), 0.1), init("wf", (10, 8)), init("bf", (10,), 0.1)]
    return tiny(nodes, [vi("x", [1, 3, 12, 12])], [vi("y", [1, 10])], inits)


def _reader(shape, n=3):
    feeds = iter([{"x": np.random.default_rng(100 + k).standard_normal(shape).astype(np.float32)}
                  for k in range(n)])

    class Reader(ort_quant.CalibrationDataReader):
        def get_next(self):
            return next(feeds, None)
    return Reader()


def _quantize_static(tmp_path, model, fmt, act, per_channel):
    """quantize_static with int8 weights: 7-bit ones (reduce_range) where ONNX Runtime's int8 sums saturate."""
    src, out = tmp_path / "f.onnx", tmp_path / "q.onnx"
    onnx.save(model, src)
    shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    ort_quant.quantize_static(str(src), str(out), _reader(shape), quant_format=fmt, per_channel=per_channel,
                              activation_type=act, weight_type=ort_quant.QuantType.QInt8,
                              reduce_range=not ort_int8_exact())
    return onnx.load(out)


def _output_step(m) -> float:
    """The scale of the DequantizeLinear that makes the model's output (one quantisation step)."""
    out = m.graph.output[0].name
    node = next(n for n in m.graph.node if out in n.output)
    inits = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    assert node.op_type == "DequantizeLinear", node.op_type
    return float(inits[node.input[1]].reshape(-1)[0])


def _compare(m, feeds, step, target=None):
    lib = frontends.build(frontends.from_onnx(m), target=target)
    sess = onnxruntime_session(m)
    for feed in feeds:
        want, got = sess.run(None, feed)[0], lib.run(**feed)[0]
        assert np.abs(got - want).max() <= step * 1.001 + 1e-6, (np.abs(got - want).max(), step)
    return lib


def _int8_anchors(m) -> int:
    g = run_passes(frontends.from_onnx(m))
    return sum(1 for n in g.nodes if n.op in ("Conv", "MatMul", "Gemm") and g.info(n.outputs[0]).dtype == "int32")


QF, QT = (ort_quant.QuantFormat, ort_quant.QuantType)


@pytest.mark.parametrize("fmt,act,per_channel", [
    (QF.QDQ, QT.QUInt8, True), (QF.QDQ, QT.QInt8, False), (QF.QOperator, QT.QUInt8, False),
    (QF.QOperator, QT.QInt8, True)])
def test_static_quantized_conv_net_equals_onnxruntime(tmp_path, fmt, act, per_channel):
    m = _quantize_static(tmp_path, _conv_net(), fmt, act, per_channel)
    assert _int8_anchors(m) == 4                 # three convs and the Gemm run in int8
    feeds = [{"x": np.random.default_rng(s).standard_normal((1, 3, 12, 12)).astype(np.float32)} for s in range(3)]
    _compare(m, feeds, _output_step(m))


@pytest.mark.skipif("avx2" not in te.target.host().feature_set, reason="this CPU lacks AVX2")
def test_static_quantized_conv_net_built_for_avx2_equals_onnxruntime(tmp_path):
    # no VNNI: the convs and the Gemm on vpmaddwd, their weights packed as int16 at build time
    m = _quantize_static(tmp_path, _conv_net(), QF.QDQ, QT.QUInt8, True)
    haswell = te.target.parse("llvm -mcpu=haswell")
    _, planned, _ = plan_model(frontends.from_onnx(m), haswell, 13)
    packed = {k: v.dtype for k, v in planned.constants.items() if "::" in k}
    assert len(packed) == 4 and all("pmaddwd" in k for k in packed)
    assert set(packed.values()) == {np.dtype(np.int16)}
    feeds = [{"x": np.random.default_rng(s).standard_normal((1, 3, 12, 12)).astype(np.float32)} for s in range(3)]
    _compare(m, feeds, _output_step(m), target=haswell)


def test_a_residual_sum_reads_its_inputs_quantised(tmp_path):
    # a QAdd of the two uint8 values: no DequantizeLinear of either input left as a kernel
    m = _quantize_static(tmp_path, _conv_net("Sum"), QF.QDQ, QT.QUInt8, True)
    g = run_passes(frontends.from_onnx(m))
    (add,) = [n for n in g.nodes if n.op in ("Sum", "tilewise.QAdd")]
    assert add.op == "tilewise.QAdd" and [g.info(x).dtype for x in add.inputs] == ["uint8", "uint8"]
    feeds = [{"x": np.random.default_rng(s).standard_normal((1, 3, 12, 12)).astype(np.float32)} for s in range(2)]
    _compare(m, feeds, _output_step(m))


def test_dynamic_quantized_encoder_equals_onnxruntime(tmp_path):
    from frontends import zoo
    src, out = tmp_path / "f.onnx", tmp_path / "q.onnx"
    onnx.save(zoo.encoder_layer(0, seq=8, hidden=32, heads=2, ffn=64), src)
    ort_quant.quantize_dynamic(str(src), str(out), weight_type=QT.QInt8)
    m = onnx.load(out)
    assert any(n.op_type == "MatMulInteger" for n in m.graph.node)
    assert _int8_anchors(m) == 6                 # q, k, v, o and the two feed-forward layers
    x = np.random.default_rng(0).standard_normal((8, 32)).astype(np.float32)
    want = onnxruntime_session(m).run(None, {"x": x})[0]
    got = frontends.build(frontends.from_onnx(m)).run(x=x)[0]
    # the same integer products and float scales: float rounding apart, the same numbers
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_a_float_model_is_left_as_it_is():
    from frontends.qdq import quantize_int8
    g = frontends.from_onnx(_conv_net())
    assert quantize_int8(g) is g


def test_a_weight_whose_zero_point_does_not_fit_int8_runs_in_float():
    # uint8 weights with zero point 0: w - 0 reaches 255, outside int8, so this conv stays float
    x_s, w_s = np.float32(0.05), np.float32(0.02)
    w = np.random.default_rng(1).integers(0, 256, (4, 3, 3, 3)).astype(np.uint8)
    inits = [numpy_helper.from_array(v, k) for k, v in dict(
        xs=x_s, xz=np.uint8(10), w=w, ws=w_s, wz=np.uint8(0), ys=np.float32(0.5), yz=np.uint8(3)).items()]
    n = helper.make_node
    m = tiny([n("QuantizeLinear", ["x", "xs", "xz"], ["xq"]), n("DequantizeLinear", ["xq", "xs", "xz"], ["xf"]),
              n("DequantizeLinear", ["w", "ws", "wz"], ["wf"]), n("Conv", ["xf", "wf"], ["c"], pads=[1, 1, 1, 1]),
              n("QuantizeLinear", ["c", "ys", "yz"], ["y"])],
             [vi("x", [1, 3, 6, 6])], [vi("y", [1, 4, 6, 6], TensorProto.UINT8)], inits)
    assert _int8_anchors(m) == 0
    x = np.random.default_rng(2).standard_normal((1, 3, 6, 6)).astype(np.float32)
    want = onnxruntime_session(m).run(None, {"x": x})[0]
    got = frontends.build(frontends.from_onnx(m)).run(x=x)[0]
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1


def test_int8_anchors_are_uint8_workloads(tmp_path):
    # what tasks.workload_of reads for the model compiler, the task extractor and `tilewise tune`
    from te.ops import registry
    from te.target import parse

    from frontends.tasks import workload_of
    m = _quantize_static(tmp_path, _conv_net(), QF.QDQ, QT.QInt8, True)
    g = run_passes(frontends.from_onnx(m))
    anchors = [n for n in g.nodes if n.op in ("Conv", "Gemm")]
    wls = [workload_of(n, g) for n in anchors]
    assert [w.dtype for w in wls] == ["uint8"] * 4
    assert {w.op for w in wls} == {"conv2d", "matmul"} and wls[-1].transpose_b
    for n, w in zip(anchors, wls):
        assert g.constants[n.inputs[1]].dtype == np.int8
        assert "int8" in registry.select(w, parse(None)).name      # never an fp32 implementation


def _fire_net():
    """A SqueezeNet fire module: a 1x1 squeeze, then a 1x1 and a 3x3 expand concatenated (their
    calibrated scales differ from the Concat's), then a 1x1 conv and a classifier."""
    rng = np.random.default_rng(3)

    def init(name, shape, scale=0.4):
        return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)
    n = helper.make_node
    nodes = [n("Conv", ["x", "ws", "bs"], ["s"]), n("Relu", ["s"], ["sr"]),
             n("Conv", ["sr", "we1", "be1"], ["e1"]), n("Relu", ["e1"], ["e1r"]),
             n("Conv", ["sr", "we3", "be3"], ["e3"], pads=[1, 1, 1, 1]), n("Relu", ["e3"], ["e3r"]),
             n("Concat", ["e1r", "e3r"], ["cat"], axis=1), n("Conv", ["cat", "wc", "bc"], ["c"]),
             n("GlobalAveragePool", ["c"], ["g"]), n("Flatten", ["g"], ["y"])]
    inits = [init("ws", (8, 6, 1, 1)), init("bs", (8,), 0.1), init("we1", (8, 8, 1, 1)), init("be1", (8,), 0.1),
             init("we3", (8, 8, 3, 3), 0.2), init("be3", (8,), 0.3), init("wc", (10, 16, 1, 1)), init("bc", (10,), 0.1)]
    return tiny(nodes, [vi("x", [1, 6, 9, 9])], [vi("y", [1, 10])], inits)


@pytest.mark.parametrize("act", [QT.QUInt8, QT.QInt8])
def test_a_concat_of_other_scales_requantises_in_its_producers(tmp_path, act):
    # each expand conv requantises to the Concat's scale in its epilogue; the Concat is on uint8
    m = _quantize_static(tmp_path, _fire_net(), QF.QDQ, act, True)
    g = run_passes(frontends.from_onnx(m))
    ops = [n.op for n in g.nodes]
    assert "tilewise.QConcat" not in ops and ops.count("tilewise.Requantize") >= 1
    (cat,) = [n for n in g.nodes if n.op == "Concat"]
    # (int8 activations too: each reaches only DequantizeLinear, so it is quantised to uint8 + 128)
    assert [g.info(x).dtype for x in cat.inputs] == ["uint8", "uint8"]
    feeds = [{"x": np.random.default_rng(s).standard_normal((1, 6, 9, 9)).astype(np.float32)} for s in range(3)]
    _compare(m, feeds, _output_step(m))


def test_an_int8_epilogue_takes_no_scalar_arguments(tmp_path):
    # the output QuantizeLinear after the folded multiplier has scale 1 and a constant zero point:
    # folded into the kernel (no division by a run-time scale per element), as elementwise
    # kernels fold theirs; the conv's weight and the per-channel constants stay arguments
    from te.target import parse
    m = _quantize_static(tmp_path, _conv_net(), QF.QDQ, QT.QUInt8, True)
    mp, _, _ = plan_model(frontends.from_onnx(m), parse(None), 13)
    convs = [f for f in mp.funcs if "conv" in f.name]
    assert convs and all(len(b.shape) > 0 for f in convs for b in f.args), \
        [(f.name, [b.shape for b in f.args]) for f in convs]
    # the first conv's epilogue (multiplier, Relu, QuantizeLinear) has no float division (" // "
    # indexes); the residual conv's QAdd does divide by its output scale, as ONNX Runtime does
    assert " / " not in str(convs[0])
