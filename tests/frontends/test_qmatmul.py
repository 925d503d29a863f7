"""A MatMul of two quantised activations (QDQ attention: Q.K^T, scores.V, and QLinearMatMul with two
activations) runs as tilewise.QLinearMatMul, the int8 batched matmul, within one quantisation step
of ONNX Runtime (uint8/int8, batch dims 1..3, odd sizes), and dequantized to float where no
QuantizeLinear follows."""
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import frontends
from frontends.lower_qnn import QMATMUL
from frontends.passes import run_passes
from frontends.profile import onnxruntime_session

from .onnx_helpers import int8_weight_range

ET = {"uint8": TensorProto.UINT8, "int8": TensorProto.INT8}


def _codes(rng, dtype, shape):
    lo = 0 if dtype == "uint8" else -128
    return rng.integers(lo, lo + 256, shape).astype(dtype)


def _qdq_matmul(a_shape, b_shape, y_shape, da, db, dy, rng) -> onnx.ModelProto:
    """a, b float -> QuantizeLinear -> DequantizeLinear (each) -> MatMul [-> Q -> DQ when dy] -> y."""
    sa, sb, sy = (np.float32(rng.uniform(0.01, 0.05)) for _ in range(3))
    inits = [numpy_helper.from_array(np.array(v, np.float32), n) for n, v in (("sa", sa), ("sb", sb), ("sy", sy))]
    for name, dt in (("za", da), ("zb", db), ("zy", dy or "uint8")):
        inits.append(numpy_helper.from_array(_codes(rng, dt, ()) // 2, name))
    n = helper.make_node
    nodes = [n("QuantizeLinear", ["a", "sa", "za"], ["qa"]), n("DequantizeLinear", ["qa", "sa", "za"], ["fa"]),
             n("QuantizeLinear", ["b", "sb", "zb"], ["qb"]), n("DequantizeLinear", ["qb", "sb", "zb"], ["fb"]),
             n("MatMul", ["fa", "fb"], ["mm" if dy else "y"])]
    if dy:
        nodes += [n("QuantizeLinear", ["mm", "sy", "zy"], ["qy"]), n("DequantizeLinear", ["qy", "sy", "zy"], ["y"])]
    f = TensorProto.FLOAT
    g = helper.make_graph(nodes, "qdq_mm", [helper.make_tensor_value_info("a", f, list(a_shape)),
                                            helper.make_tensor_value_info("b", f, list(b_shape))],
                          [helper.make_tensor_value_info("y", f, list(y_shape))], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])


CASES = [((5, 13), (13, 7), (5, 7)),                               # no batch, odd sizes
         ((3, 9, 17), (3, 17, 21), (3, 9, 21)),                     # one batch dim
         ((2, 3, 6, 10), (2, 3, 10, 6), (2, 3, 6, 6)),              # Q.K^T of 3 heads
         ((2, 1, 2, 5, 8), (1, 2, 2, 8, 11), (2, 2, 2, 5, 11))]     # three batch dims, broadcast


@pytest.mark.parametrize("shapes", CASES)
@pytest.mark.parametrize("da,db,dy", [("uint8", "int8", "uint8"), ("int8", "int8", "int8"),
                                      ("uint8", "uint8", "uint8"), ("uint8", "int8", None)])
def test_qdq_matmul_of_two_activations_is_int8_and_within_one_step_of_onnxruntime(shapes, da, db, dy):
    rng = np.random.default_rng(20)
    m = _qdq_matmul(*shapes, da, db, dy, rng)
    g = run_passes(frontends.from_onnx(m))
    assert [n.op for n in g.nodes if n.op in ("MatMul", QMATMUL)] == [QMATMUL]
    feed = {"a": rng.normal(0, 1, shapes[0]).astype(np.float32), "b": rng.normal(0, 1, shapes[1]).astype(np.float32)}
    want = onnxruntime_session(m).run(None, feed)[0]
    got = frontends.build(frontends.from_onnx(m)).run(**feed)[0]
    sy = float(numpy_helper.to_array(next(i for i in m.graph.initializer if i.name == "sy")))
    step = sy if dy else 1e-4 * np.abs(want).max()
    assert np.abs(got - want).max() <= step * 1.001, np.abs(got - want).max()
    if dy:                              # a step apart only near a rounding boundary
        assert np.mean(got != want) < 0.05


@pytest.mark.parametrize("target", [None, "llvm -mcpu=haswell", "llvm -mcpu=x86-64"])   # the host's, vpmaddwd, float
def test_qlinearmatmul_of_two_activations_matches_onnxruntime(target):
    rng = np.random.default_rng(3)
    n = helper.make_node
    inits = [numpy_helper.from_array(np.array(v, dt), k) for k, v, dt in (
        ("sa", 0.02, np.float32), ("za", 120, np.uint8), ("sb", 0.03, np.float32), ("zb", 3, np.int8),
        ("sy", 0.4, np.float32), ("zy", 100, np.uint8))]
    g = helper.make_graph([n("QLinearMatMul", ["a", "sa", "za", "b", "sb", "zb", "sy", "zy"], ["y"])], "qlmm",
                          [helper.make_tensor_value_info("a", TensorProto.UINT8, [2, 11, 24]),
                           helper.make_tensor_value_info("b", TensorProto.INT8, [2, 24, 9])],
                          [helper.make_tensor_value_info("y", TensorProto.UINT8, [2, 11, 9])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    feed = {"a": _codes(rng, "uint8", (2, 11, 24)),
            "b": rng.integers(*int8_weight_range(), (2, 24, 9)).astype(np.int8)}    # ONNX Runtime's s8 operand
    want = onnxruntime_session(m).run(None, feed)[0]
    got = frontends.build(frontends.from_onnx(m), target=target).run(**feed)[0]
    assert got.dtype == np.uint8 and np.abs(got.astype(int) - want).max() <= 1
    assert (got == want).mean() > 0.95


@pytest.mark.parametrize("db", ["uint8", "int8"])
def test_matmulinteger_of_two_activations_is_exact_int32(db):
    rng = np.random.default_rng(5)
    n = helper.make_node
    zb = _codes(rng, db, ())
    inits = [numpy_helper.from_array(np.array(17, np.uint8), "za"), numpy_helper.from_array(zb, "zb")]
    g = helper.make_graph([n("MatMulInteger", ["a", "b", "za", "zb"], ["y"])], "mmi",
                          [helper.make_tensor_value_info("a", TensorProto.UINT8, [3, 40, 300]),
                           helper.make_tensor_value_info("b", ET[db], [3, 300, 9])],
                          [helper.make_tensor_value_info("y", TensorProto.INT32, [3, 40, 9])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    assert [x.op for x in run_passes(frontends.from_onnx(m)).nodes if x.op in ("MatMul", QMATMUL)] == [QMATMUL]
    feed = {"a": _codes(rng, "uint8", (3, 40, 300)), "b": _codes(rng, db, (3, 300, 9))}
    feed["a"][:], feed["b"][:] = 255, feed["b"].min()    # sums past 2^24: exact only in int32
    got = frontends.build(frontends.from_onnx(m)).run(**feed)[0]
    # against the int64 product: ONNX Runtime's u8 x s8 sums saturate in int16 pairs without VNNI
    np.testing.assert_array_equal(got, (feed["a"].astype(np.int64) - 17) @ (feed["b"].astype(np.int64) - zb))


def test_attention_quantised_by_quantize_static_runs_its_score_matmuls_in_int8(tmp_path):
    """onnxruntime.quantization.quantize_static (QDQ, defaults) quantises both inputs of Q.K^T and
    scores.V; tilewise runs them as QLinearMatMul, equal to ONNX Runtime's unfused run of the graph."""
    quantization = pytest.importorskip("onnxruntime.quantization")
    from frontends import zoo
    model = zoo.encoder_layer(seq=16, hidden=64, heads=4, ffn=128)
    rng = np.random.default_rng(11)
    feeds = iter([{"x": rng.standard_normal((16, 64)).astype(np.float32)} for _ in range(3)])

    class Reader(quantization.CalibrationDataReader):
        def get_next(self):
            return next(feeds, None)
    src, out = tmp_path / "f.onnx", tmp_path / "q.onnx"
    onnx.save(model, src)
    quantization.quantize_static(str(src), str(out), Reader(), quant_format=quantization.QuantFormat.QDQ)
    m = onnx.load(out)
    assert sum(x.op == QMATMUL for x in run_passes(frontends.from_onnx(m)).nodes) == 2
    feed = {"x": rng.standard_normal((16, 64)).astype(np.float32)}
    got = frontends.build(frontends.from_onnx(m)).run(**feed)[0]
    # ONNX Runtime with its graph optimisations off runs the QDQ graph as written: equal everywhere
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    plain = ort.InferenceSession(m.SerializeToString(), opts, providers=["CPUExecutionProvider"]).run(None, feed)[0]
    np.testing.assert_array_equal(got, plain)
    # optimised, it fuses other ops into its own int8 kernels (LayerNorm's input a few steps apart)
    fused = onnxruntime_session(m).run(None, feed)[0]
    assert np.abs(got - fused).max() < 0.15
