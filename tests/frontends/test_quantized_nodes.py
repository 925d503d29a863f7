"""Hand-built quantised nodes (QLinearConv, QLinearMatMul, MatMulInteger, ConvInteger,
DynamicQuantizeLinear, QLinearAdd, Quantize/DequantizeLinear) against ONNX Runtime; bad scales,
zero points and axes are ModelErrors."""
import numpy as np
import pytest
from onnx import TensorProto as T
from onnx import helper, numpy_helper

import frontends
from frontends import ModelError
from frontends.passes import run_passes
from frontends.profile import onnxruntime_session

from .onnx_helpers import int8_weight_range, tiny, vi

U8, I8, I32 = T.UINT8, T.INT8, T.INT32
rng = np.random.default_rng(7)


def consts(**values):
    return [numpy_helper.from_array(np.asarray(v), k) for k, v in values.items()]


def run_both(m, feed):
    want = onnxruntime_session(m).run(None, feed)
    got = frontends.build(frontends.from_onnx(m)).run(**feed)
    return got, want


def int8_anchors(m) -> int:
    g = run_passes(frontends.from_onnx(m))
    return sum(1 for n in g.nodes if n.op in ("Conv", "MatMul", "Gemm") and g.info(n.outputs[0]).dtype == "int32")


def within_one_step(got, want):
    assert got.dtype == want.dtype
    assert np.abs(got.astype(np.int64) - want.astype(np.int64)).max() <= 1


@pytest.mark.parametrize("x_type,w_type,per_channel,group", [
    (U8, I8, True, 1), (I8, I8, False, 2), (U8, U8, False, 1)])
def test_qlinearconv(x_type, w_type, per_channel, group):
    # padding with a nonzero activation zero point: the compensation per output position
    x_np, w_np = {U8: np.uint8, I8: np.int8}[x_type], {U8: np.uint8, I8: np.int8}[w_type]
    K, C = 6, 4
    w = rng.integers(*((0, 256) if w_type == U8 else int8_weight_range(-100, 100)), (K, C // group, 3, 3))
    ws = (rng.uniform(0.01, 0.03, K) if per_channel else np.array(0.02)).astype(np.float32)
    wz = np.full(ws.shape, 128 if w_type == U8 else 0, w_np)
    inits = consts(xs=np.float32(0.05), xz=x_np(7), w=w.astype(w_np), ws=ws, wz=wz, ys=np.float32(0.3),
                   yz=x_np(3), b=rng.integers(-500, 500, K).astype(np.int32))
    node = helper.make_node("QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz", "b"], ["y"],
                            pads=[1, 1, 1, 1], strides=[2, 1], group=group)
    m = tiny([node], [vi("x", [1, C, 7, 6], x_type)], [vi("y", [1, K, 4, 6], x_type)], inits)
    assert int8_anchors(m) == 1
    lo, hi = (0, 256) if x_type == U8 else (-128, 128)
    x = rng.integers(lo, hi, (1, C, 7, 6)).astype(x_np)
    got, want = run_both(m, {"x": x})
    within_one_step(got[0], want[0])


def test_qlinearmatmul_per_column_and_batched_a():
    b = rng.integers(*int8_weight_range(), (16, 8)).astype(np.int8)
    inits = consts(as_=np.float32(0.04), az=np.uint8(120), b=b,
                   bs=rng.uniform(0.01, 0.02, 8).astype(np.float32), bz=np.zeros(8, np.int8),
                   ys=np.float32(0.2), yz=np.uint8(5))
    node = helper.make_node("QLinearMatMul", ["a", "as_", "az", "b", "bs", "bz", "ys", "yz"], ["y"])
    m = tiny([node], [vi("a", [2, 3, 16], U8)], [vi("y", [2, 3, 8], U8)], inits)
    assert int8_anchors(m) == 1
    got, want = run_both(m, {"a": rng.integers(0, 256, (2, 3, 16)).astype(np.uint8)})
    within_one_step(got[0], want[0])


@pytest.mark.parametrize("folds", [True, False])
def test_matmulinteger_and_convinteger_are_exact(folds):
    # b - bz and w - wz fit int8 when folds: both become int8 kernels; otherwise the MatMul's
    # weight (-128 - 2 does not fit) stays a float MatMul, which is exact for these sums too
    r = np.random.default_rng(11)
    b = r.integers(-125, 126, (16, 12)).astype(np.int8)
    bz = r.integers(-2, 3, 12).astype(np.int8)
    if not folds:
        b[0, 0], bz[0] = -128, 2
    inits = consts(b=b, az=np.uint8(3), bz=bz, w=r.integers(2, 256, (5, 3, 3, 3)).astype(np.uint8),
                   xz=np.uint8(9), wz=np.uint8(130))
    nodes = [helper.make_node("MatMulInteger", ["a", "b", "az", "bz"], ["y"]),
             helper.make_node("ConvInteger", ["x", "w", "xz", "wz"], ["c"], pads=[1, 0, 1, 0])]
    m = tiny(nodes, [vi("a", [2, 4, 16], U8), vi("x", [1, 3, 6, 6], U8)],
             [vi("y", [2, 4, 12], I32), vi("c", [1, 5, 6, 4], I32)], inits, opset=13)
    assert int8_anchors(m) == (2 if folds else 1)
    feed = {"a": r.integers(0, 256, (2, 4, 16)).astype(np.uint8), "x": r.integers(0, 256, (1, 3, 6, 6)).astype(np.uint8)}
    got, want = run_both(m, feed)
    # u8 x s8 against the int64 product: ONNX Runtime's sums saturate in int16 pairs without VNNI
    np.testing.assert_array_equal(got[0], (feed["a"].astype(np.int64) - 3) @ (b.astype(np.int64) - bz))
    np.testing.assert_array_equal(got[1], want[1])


def test_dynamic_quantize_linear():
    m = tiny([helper.make_node("DynamicQuantizeLinear", ["x"], ["y", "s", "z"])], [vi("x", [3, 7])],
             [vi("y", [3, 7], U8), vi("s", []), vi("z", [], U8)], opset=13)
    x = (rng.standard_normal((3, 7)) * 2 + 0.5).astype(np.float32)
    got, want = run_both(m, {"x": x})
    np.testing.assert_allclose(got[1], want[1], rtol=1e-7)
    assert got[2] == want[2]
    within_one_step(got[0], want[0])


def test_qlinearadd_broadcasts():
    inits = consts(as_=np.float32(0.05), az=np.uint8(100), bs=np.float32(0.02), bz=np.uint8(7),
                   cs=np.float32(0.08), cz=np.uint8(60))
    node = helper.make_node("QLinearAdd", ["a", "as_", "az", "b", "bs", "bz", "cs", "cz"], ["c"], domain="com.microsoft")
    m = tiny([node], [vi("a", [1, 4, 3, 3], U8), vi("b", [1, 4, 1, 1], U8)], [vi("c", [1, 4, 3, 3], U8)], inits)
    m.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    feed = {"a": rng.integers(0, 256, (1, 4, 3, 3)).astype(np.uint8), "b": rng.integers(0, 256, (1, 4, 1, 1)).astype(np.uint8)}
    got, want = run_both(m, feed)
    within_one_step(got[0], want[0])


def test_quantize_per_axis_rounds_half_to_even_and_saturates():
    s = np.array([0.5, 1.0, 2.0], np.float32)
    inits = consts(s=s, z=np.array([0, 1, -2], np.int8))
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], axis=1),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"], axis=1)]
    m = tiny(nodes, [vi("x", [2, 3, 4])], [vi("q", [2, 3, 4], I8), vi("y", [2, 3, 4])], inits)
    x = np.array([0.25, 0.75, 1.5, 2.5, 3.0, -0.5, -1.5, 500.0], np.float32)
    x = np.resize(x, (2, 3, 4)).astype(np.float32)
    got, want = run_both(m, {"x": x})
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])


def test_opset_10_qlinearconv_per_tensor():
    inits = consts(xs=np.float32(0.1), xz=np.uint8(128), w=rng.integers(-128, 128, (4, 2, 1, 1)).astype(np.int8),
                   ws=np.float32(0.05), wz=np.int8(0), ys=np.float32(0.2), yz=np.uint8(128))
    node = helper.make_node("QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz"], ["y"])
    m = tiny([node], [vi("x", [1, 2, 5, 5], U8)], [vi("y", [1, 4, 5, 5], U8)], inits, opset=10)
    got, want = run_both(m, {"x": rng.integers(0, 256, (1, 2, 5, 5)).astype(np.uint8)})
    within_one_step(got[0], want[0])


# ---------------------------------------------------------------- bad inputs

def _dq(x_type, scale, zero, shape=(2, 3), axis=None):
    inits = consts(s=scale) + ([] if zero is None else consts(z=zero))
    attrs = {} if axis is None else {"axis": axis}
    node = helper.make_node("DequantizeLinear", ["x", "s"] + ([] if zero is None else ["z"]), ["y"], name="dq", **attrs)
    return tiny([node], [vi("x", list(shape), x_type)], [vi("y", list(shape))], inits)


def refused(m, *parts):
    with pytest.raises(ModelError) as e:
        frontends.from_onnx(m)
    line = next(ln for ln in str(e.value).splitlines() if "node dq" in ln or "node conv" in ln)
    for p in parts:
        assert p in line, line
    return line


def test_a_zero_scale_is_refused():
    refused(_dq(U8, np.float32(0), np.uint8(3)), "node dq (DequantizeLinear)", "scale 's' holds 0", "positive")


def test_a_zero_point_of_another_type_is_refused():
    refused(_dq(U8, np.float32(0.1), np.int8(3)), "node dq", "'z'")


def test_a_zero_point_of_another_shape_is_refused():
    refused(_dq(U8, np.full(3, 0.1, np.float32), np.zeros(2, np.uint8), axis=1), "zero point 'z' has shape (2,)",
            "one shape")


def test_an_axis_outside_the_input_is_refused():
    refused(_dq(U8, np.full(3, 0.1, np.float32), np.zeros(3, np.uint8), axis=4), "axis 4 is outside the 2-D input")


def test_a_per_channel_qlinearconv_before_opset_13_runs_in_float():
    # DequantizeLinear has no axis before opset 13: the per-channel weight scale is float math
    w = rng.integers(*int8_weight_range(), (4, 2, 3, 3)).astype(np.int8)
    inits = consts(xs=np.float32(0.1), xz=np.uint8(128), w=w,
                   ws=rng.uniform(0.01, 0.05, 4).astype(np.float32), wz=np.zeros(4, np.int8), ys=np.float32(0.2),
                   yz=np.uint8(128))
    node = helper.make_node("QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz"], ["y"], pads=[1, 1, 1, 1])
    m = tiny([node], [vi("x", [1, 2, 5, 5], U8)], [vi("y", [1, 4, 5, 5], U8)], inits, opset=12)
    assert int8_anchors(m) == 0
    got, want = run_both(m, {"x": rng.integers(0, 256, (1, 2, 5, 5)).astype(np.uint8)})
    within_one_step(got[0], want[0])



@pytest.mark.parametrize("opset", [13, 21])
def test_qdq_conv_with_int8_activations_and_per_channel_weights(opset):
    # QDQ as quantize_static writes it: int8 activations (shifted to uint8 inside), per-channel weights,
    # an int32 bias of scale sx * sw, a Relu folded into the output's range, then a float output
    K = 5
    ws = rng.uniform(0.01, 0.03, K).astype(np.float32)
    w = rng.integers(*int8_weight_range(-127), (K, 3, 3, 3)).astype(np.int8)
    inits = consts(xs=np.float32(0.04), xz=np.int8(-3), w=w,
                   ws=ws, wz=np.zeros(K, np.int8), b=rng.integers(-300, 300, K).astype(np.int32),
                   bs=(np.float32(0.04) * ws).astype(np.float32), ys=np.float32(0.1), yz=np.int8(-128))
    n = helper.make_node
    nodes = [n("QuantizeLinear", ["x", "xs", "xz"], ["xq"]), n("DequantizeLinear", ["xq", "xs", "xz"], ["xf"]),
             n("DequantizeLinear", ["w", "ws", "wz"], ["wf"], axis=0), n("DequantizeLinear", ["b", "bs"], ["bf"], axis=0),
             n("Conv", ["xf", "wf", "bf"], ["c"], pads=[1, 1, 1, 1], strides=[2, 2]), n("Relu", ["c"], ["r"]),
             n("QuantizeLinear", ["r", "ys", "yz"], ["yq"]), n("DequantizeLinear", ["yq", "ys", "yz"], ["y"])]
    m = tiny(nodes, [vi("x", [1, 3, 9, 9])], [vi("y", [1, K, 5, 5])], inits, opset=opset)
    assert int8_anchors(m) == 1
    got, want = run_both(m, {"x": rng.standard_normal((1, 3, 9, 9)).astype(np.float32)})
    assert np.abs(got[0] - want[0]).max() <= 0.1 * 1.001


@pytest.mark.parametrize("C, K, R", [(128, 64, 3), (1024, 40, 1)])
def test_qdq_conv_on_a_one_pixel_map(C, K, R):
    # DenseNet-121's classifier is a 1x1 conv on a 1x1 map: its requantising epilogue read the
    # conv at the constant pixel 0 (numpy broadcasting of size-1 dimensions), which bounded the
    # int8 accumulator to one column, and the AMX / VNNI tile store refused to build
    ws = rng.uniform(0.001, 0.003, K).astype(np.float32)
    w = rng.integers(*int8_weight_range(-127), (K, C, R, R)).astype(np.int8)
    inits = consts(xs=np.float32(0.02), xz=np.uint8(128), w=w,
                   ws=ws, wz=np.zeros(K, np.int8), b=rng.integers(-300, 300, K).astype(np.int32),
                   bs=(np.float32(0.02) * ws).astype(np.float32), ys=np.float32(0.05), yz=np.uint8(128))
    n = helper.make_node
    nodes = [n("QuantizeLinear", ["x", "xs", "xz"], ["xq"]), n("DequantizeLinear", ["xq", "xs", "xz"], ["xf"]),
             n("DequantizeLinear", ["w", "ws", "wz"], ["wf"], axis=0), n("DequantizeLinear", ["b", "bs"], ["bf"], axis=0),
             n("Conv", ["xf", "wf", "bf"], ["c"], pads=[R // 2] * 4),
             n("QuantizeLinear", ["c", "ys", "yz"], ["yq"]), n("DequantizeLinear", ["yq", "ys", "yz"], ["y"])]
    m = tiny(nodes, [vi("x", [1, C, 1, 1])], [vi("y", [1, K, 1, 1])], inits)
    assert int8_anchors(m) == 1
    got, want = run_both(m, {"x": rng.standard_normal((1, C, 1, 1)).astype(np.float32)})
    assert np.abs(got[0] - want[0]).max() <= 0.05 * 1.001
