"""DequantizeLinear -> Add -> QuantizeLinear of uint8 values as one tilewise.QAdd that rounds as
ONNX Runtime's QLinearAdd, without a divide; int8 values as the float ops ONNX Runtime runs there:
both bit-exact on every pair of 8-bit values for seeded scales and zero points; broadcast adds (a
constant bias row, a value per row on either side, one value) bit-exact on seeded codes."""
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import frontends
from frontends.compile import plan_model
from frontends.lower_qnn import QADD, qladd_terms
from frontends.passes import run_passes
from frontends.profile import onnxruntime_session
from te.target import parse

N = 256 * 256          # every (a, b) pair of 8-bit codes


def _add_model(sa, za, sb, zb, sc, zc, dtype: str, b_len: int = N) -> onnx.ModelProto:
    """a, b (8-bit codes) -> DequantizeLinear -> Add -> QuantizeLinear -> DequantizeLinear -> y: the
    sum's int8 codes reach only a DequantizeLinear, so the QDQ pass holds them as uint8 + 128."""
    npdt, et = (np.uint8, TensorProto.UINT8) if dtype == "uint8" else (np.int8, TensorProto.INT8)
    inits = [numpy_helper.from_array(np.array(v, np.float32), n) for n, v in (("sa", sa), ("sb", sb), ("sc", sc))]
    inits += [numpy_helper.from_array(np.array(v, npdt), n) for n, v in (("za", za), ("zb", zb), ("zc", zc))]
    n = helper.make_node
    nodes = [n("DequantizeLinear", ["a", "sa", "za"], ["da"]), n("DequantizeLinear", ["b", "sb", "zb"], ["db"]),
             n("Add", ["da", "db"], ["s"]), n("QuantizeLinear", ["s", "sc", "zc"], ["qc"]),
             n("DequantizeLinear", ["qc", "sc", "zc"], ["y"])]
    f = TensorProto.FLOAT
    g = helper.make_graph(nodes, "qadd", [helper.make_tensor_value_info("a", et, [N]),
                                          helper.make_tensor_value_info("b", et, [b_len])],
                          [helper.make_tensor_value_info("y", f, [N])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])


def _every_pair(dtype):
    """Every pair of 8-bit codes of dtype."""
    codes = np.arange(256) - (0 if dtype == "uint8" else 128)
    return {"a": np.repeat(codes, 256).astype(dtype), "b": np.tile(codes, 256).astype(dtype)}


def _params(rng, dtype):
    lo = 0 if dtype == "uint8" else -128
    scales = [np.float32(rng.uniform(0.005, 0.1)) for _ in range(3)]
    zeros = [int(rng.integers(lo, lo + 256)) for _ in range(3)]
    return scales, zeros


@pytest.mark.parametrize("dtype", ["uint8", "int8"])
def test_requantised_add_is_bit_exact_with_onnxruntime_qlinearadd(dtype):
    rng = np.random.default_rng(7)
    for _ in range(4):
        (sa, sb, sc), (za, zb, zc) = _params(rng, dtype)
        m = _add_model(sa, za, sb, zb, sc, zc, dtype)
        g = run_passes(frontends.from_onnx(m))
        (add,) = [n for n in g.nodes if n.op == QADD]
        # uint8: QLinearAdd (ONNX Runtime fuses it); int8: ONNX Runtime keeps DQ -> Add -> Q here
        assert ("c_scale" in add.attrs) == (dtype == "uint8")
        assert any(n.op == "QuantizeLinear" for n in g.nodes) == (dtype == "int8")
        feed = _every_pair(dtype)
        want = onnxruntime_session(m).run(None, feed)[0]
        got = frontends.build(frontends.from_onnx(m)).run(**feed)[0]
        # equal everywhere: dividing by sc instead moves ~1 in 10^5 sums across a rounding boundary
        np.testing.assert_array_equal(got, want, err_msg=f"{dtype} {sa} {za} {sb} {zb} {sc} {zc}")


def test_requantised_add_kernel_does_not_divide():
    m = _add_model(np.float32(0.02), 3, np.float32(0.03), 100, np.float32(0.05), 120, "uint8")
    mp, _, _ = plan_model(frontends.from_onnx(m), parse(None), 13)
    (k,) = [f for f in mp.funcs if "add" in f.name.lower()]
    assert " / " not in str(k), str(k)


def test_qlinearadd_terms_are_float32_as_onnxruntime_forms_them():
    # zc - fma(ra, za, rb * zb): the inner sum of products rounded once, as a compiled FMA rounds it
    attrs = {"a_scale": 0.07, "a_zero_point": 200, "a_shift": 0, "b_scale": 0.011, "b_zero_point": 37,
             "b_shift": 0, "c_scale": 0.013, "c_zero_point": 5, "c_shift": 0}
    ra, rb, k = qladd_terms(attrs)
    f32 = np.float32
    assert ra == f32(f32(0.07) / f32(0.013)) and rb == f32(f32(0.011) / f32(0.013))
    assert k == f32(5 - f32(np.float64(f32(ra)) * 200 + np.float64(f32(f32(rb) * 37))))
    # int8 zero points (-56, 37, 5) held as uint8 + 128: the same terms
    signed = dict(attrs, a_zero_point=-56)
    shifted = dict(attrs, a_zero_point=72, a_shift=128, b_zero_point=165, b_shift=128, c_zero_point=133, c_shift=128)
    assert qladd_terms(shifted) == qladd_terms(signed) != (ra, rb, k)


def _broadcast_model(a_shape, b_shape, b_const=None) -> onnx.ModelProto:
    """a, b (uint8 codes; b maybe a constant, a bias) -> DequantizeLinear -> Add -> QuantizeLinear -> y."""
    inits = [numpy_helper.from_array(np.array(v, np.float32), n) for n, v in (("sa", 0.037), ("sb", 0.0123),
                                                                             ("sc", 0.041))]
    inits += [numpy_helper.from_array(np.array(v, np.uint8), n) for n, v in (("za", 120), ("zb", 131), ("zc", 125))]
    ins = [helper.make_tensor_value_info("a", TensorProto.UINT8, list(a_shape))]
    if b_const is None:
        ins.append(helper.make_tensor_value_info("b", TensorProto.UINT8, list(b_shape)))
    else:
        inits.append(numpy_helper.from_array(b_const, "b"))
    n = helper.make_node
    nodes = [n("DequantizeLinear", ["a", "sa", "za"], ["da"]), n("DequantizeLinear", ["b", "sb", "zb"], ["db"]),
             n("Add", ["da", "db"], ["s"]), n("QuantizeLinear", ["s", "sc", "zc"], ["y"])]
    g = helper.make_graph(nodes, "qadd_broadcast", ins, [helper.make_tensor_value_info("y", TensorProto.UINT8, None)],
                          inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])


# a bias (a constant row), a value per row on either side (QLinearAdd then swaps the operands'
# places in its sum), one value
BROADCASTS = [((96, 768), (768,), True), ((96, 768), (96, 1), False), ((96, 1), (96, 768), False),
              ((96, 768), (1,), False)]


@pytest.mark.parametrize("a_shape,b_shape,const", BROADCASTS, ids=lambda v: str(v))
def test_a_broadcast_requantised_add_is_bit_exact_with_onnxruntime(a_shape, b_shape, const):
    rng = np.random.default_rng(8)
    a, b = (rng.integers(0, 256, s).astype(np.uint8) for s in (a_shape, b_shape))
    m = _broadcast_model(a_shape, b_shape, b if const else None)
    g = run_passes(frontends.from_onnx(m))
    (add,) = [n for n in g.nodes if n.op == QADD]
    assert "c_scale" in add.attrs and not any(n.op == "QuantizeLinear" for n in g.nodes)
    feed = {"a": a} if const else {"a": a, "b": b}
    np.testing.assert_array_equal(frontends.build(frontends.from_onnx(m)).run(**feed)[0],
                                  onnxruntime_session(m).run(None, feed)[0])
