"""float8 and int4 models: computed wide, converted at their inputs, outputs, Casts and Q/DQ."""
import ml_dtypes
import numpy as np
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

import frontends
from frontends.profile import onnxruntime_session

from .onnx_helpers import tiny, vi


def test_float8_inputs_are_added_in_float32_and_rounded_once(rng):
    # arithmetic on float8 values: the inputs widened, the sum rounded to float8 at the output
    node = helper.make_node("Add", ["a", "b"], ["y"])
    F8 = TensorProto.FLOAT8E4M3FN
    m = tiny([node], [vi("a", [4, 8], F8), vi("b", [4, 8], F8)], [vi("y", [4, 8], F8)], opset=21)
    a, b = (rng.uniform(-200, 200, (4, 8)).astype(ml_dtypes.float8_e4m3fn) for _ in range(2))
    g = frontends.from_onnx(m)
    assert {n.op for n in g.nodes} == {"Cast", "Add"}
    (y,) = frontends.build(g).run(a=a, b=b)
    assert y.dtype == np.dtype(ml_dtypes.float8_e4m3fn)
    want = ReferenceEvaluator(m).run(None, {"a": a, "b": b})[0]
    np.testing.assert_array_equal(y.view(np.uint8), want.view(np.uint8))


def test_int4_weights_dequantized_per_channel_match_onnx(rng):
    # weight-only int4 quantisation, as LLM exports carry it: DequantizeLinear(W int4) -> MatMul
    w = rng.integers(-8, 8, (16, 6)).astype(ml_dtypes.int4)
    zp = rng.integers(-2, 3, (6,)).astype(ml_dtypes.int4)
    scale = rng.uniform(0.01, 0.1, (6,)).astype(np.float32)
    nodes = [helper.make_node("DequantizeLinear", ["w", "s", "z"], ["wf"], axis=1),
             helper.make_node("MatMul", ["x", "wf"], ["y"])]
    inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(scale, "s"), numpy_helper.from_array(zp, "z")]
    m = tiny(nodes, [vi("x", [3, 16])], [vi("y", [3, 6])], inits, opset=21)
    x = rng.standard_normal((3, 16)).astype(np.float32)
    (y,) = frontends.build(frontends.from_onnx(m)).run(x=x)
    # onnx's reference and numpy agree; ONNX Runtime 1.23 reads these per-channel int4 zero points
    # differently (its result is off by up to 1e-2), so it is not the reference here
    want = x @ ((w.astype(np.float32) - zp.astype(np.float32)) * scale)
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(y, ReferenceEvaluator(m).run(None, {"x": x})[0], rtol=1e-5, atol=1e-5)


def test_quantizing_to_float8_and_int4_matches_onnx(rng):
    x = rng.uniform(-40, 40, (5, 7)).astype(np.float32)
    outs = []
    for k, (zp, t) in enumerate([(np.array(0, ml_dtypes.float8_e4m3fn), TensorProto.FLOAT8E4M3FN),
                                 (np.array(1, ml_dtypes.int4), TensorProto.INT4)]):
        inits = [numpy_helper.from_array(np.array(0.7, np.float32), "s"), numpy_helper.from_array(zp, "z")]
        m = tiny([helper.make_node("QuantizeLinear", ["x", "s", "z"], ["y"])], [vi("x", [5, 7])],
                 [vi("y", [5, 7], t)], inits, opset=21)
        (y,) = frontends.build(frontends.from_onnx(m)).run(x=x)
        # ONNX Runtime's Python API cannot return int4 arrays: float8 against it, both against onnx
        ref = onnxruntime_session(m, threads=1) if t == TensorProto.FLOAT8E4M3FN else ReferenceEvaluator(m)
        want = ref.run(None, {"x": x})[0]
        np.testing.assert_array_equal(y.view(np.uint8), np.asarray(want).view(np.uint8))
        outs.append(y)
    assert outs[1].astype(np.int8).min() == -8 and outs[1].astype(np.int8).max() == 7     # it saturated


def test_int4_weights_in_blocks_match_numpy(rng):
    # blocked int4 (LLM weight-only exports): 4 rows of W share each (scale, zero point); 10 rows
    w = rng.integers(-8, 8, (10, 6)).astype(ml_dtypes.int4)
    scale = rng.uniform(0.01, 0.1, (3, 6)).astype(np.float32)
    zp = rng.integers(-2, 3, (3, 6)).astype(ml_dtypes.int4)
    nodes = [helper.make_node("DequantizeLinear", ["w", "s", "z"], ["wf"], axis=0, block_size=4),
             helper.make_node("MatMul", ["x", "wf"], ["y"])]
    inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(scale, "s"), numpy_helper.from_array(zp, "z")]
    m = tiny(nodes, [vi("x", [2, 10])], [vi("y", [2, 6])], inits, opset=21)
    x = rng.standard_normal((2, 10)).astype(np.float32)
    (y,) = frontends.build(frontends.from_onnx(m)).run(x=x)
    blocks = np.arange(10) // 4
    want = x @ ((w.astype(np.float32) - zp.astype(np.float32)[blocks]) * scale[blocks])
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)
