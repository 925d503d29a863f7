"""DequantizeLinear -> Softmax -> QuantizeLinear of uint8 values as one tilewise.QSoftmax computed as
ONNX Runtime's QLinearSoftmax (which ONNX Runtime fuses the three into): bit-exact on seeded codes,
with the quantiser's 1/255 output scale (QLinearSoftmax multiplies by floor(1 / y_scale) = 254, where
QuantizeLinear divides by 1/255: the float path is a step off on about 1% of the probabilities, and
QDQ attention's output several steps off), over the last axis and over another one; int8 values and
a pre-13 Softmax over other than the last axis keep the float path."""
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import frontends
from frontends.lower_qnn import QSOFTMAX
from frontends.passes import run_passes
from frontends.profile import onnxruntime_session

from .onnx_helpers import ort_int8_exact, quantize_qdq

SHAPE = (3, 40, 128)            # attention probabilities: (heads, queries, keys), small
ONE_255 = np.float32(1) / np.float32(255)     # what onnxruntime.quantization gives a Softmax's output


def _softmax_model(sx, zx, sy, zy, dtype: str = "uint8", opset: int = 13, shape=SHAPE, **attrs) -> onnx.ModelProto:
    """x (8-bit codes) -> DequantizeLinear -> Softmax -> QuantizeLinear -> y (codes)."""
    npdt, et = (np.uint8, TensorProto.UINT8) if dtype == "uint8" else (np.int8, TensorProto.INT8)
    inits = [numpy_helper.from_array(np.array(v, np.float32), n) for n, v in (("sx", sx), ("sy", sy))]
    inits += [numpy_helper.from_array(np.array(v, npdt), n) for n, v in (("zx", zx), ("zy", zy))]
    n = helper.make_node
    nodes = [n("DequantizeLinear", ["x", "sx", "zx"], ["dx"]), n("Softmax", ["dx"], ["p"], **attrs),
             n("QuantizeLinear", ["p", "sy", "zy"], ["y"])]
    g = helper.make_graph(nodes, "qsoftmax", [helper.make_tensor_value_info("x", et, list(shape))],
                          [helper.make_tensor_value_info("y", et, None)], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


@pytest.mark.parametrize("axis", [-1, 1])
def test_quantised_softmax_is_bit_exact_with_onnxruntime(axis):
    rng = np.random.default_rng(5)
    for sx, zx in ((0.06, 131), (0.21, 97)):
        m = _softmax_model(np.float32(sx), zx, ONE_255, 0, axis=axis)
        g = run_passes(frontends.from_onnx(m))
        assert [n.op for n in g.nodes if n.op in (QSOFTMAX, "Softmax")] == [QSOFTMAX]
        lib = frontends.build(frontends.from_onnx(m))
        sess = onnxruntime_session(m)
        for _ in range(2):
            x = rng.integers(0, 256, SHAPE).astype(np.uint8)
            np.testing.assert_array_equal(lib.run(x=x)[0], sess.run(None, {"x": x})[0], err_msg=f"{sx} {zx}")


@pytest.mark.parametrize("shape", [SHAPE, (50,)])
def test_another_output_scale_and_zero_point(shape):
    """floor(1 / y_scale) (212 for 0.0047, where the float path is steps off near 1) and the zero point
    as QLinearSoftmax applies them; a 1-D input.  Within a step, all but a few codes equal: ONNX
    Runtime's table entries can differ from a float64 exp's in their last bits, which moves a
    quotient within 1e-6 of a rounding boundary (2 of these 15360; 1 in 10^7 on the scales above)."""
    rng = np.random.default_rng(6)
    m = _softmax_model(np.float32(0.1), 128, np.float32(0.0047), 40, shape=shape)
    x = rng.integers(0, 256, shape).astype(np.uint8)
    got = frontends.build(frontends.from_onnx(m)).run(x=x)[0].astype(int)
    want = onnxruntime_session(m).run(None, {"x": x})[0].astype(int)
    assert np.abs(got - want).max() <= 1 and np.count_nonzero(got != want) <= 3


@pytest.mark.parametrize("dtype,opset,axis", [("int8", 13, -1), ("uint8", 11, 1)])
def test_other_quantised_softmaxes_keep_the_float_softmax(dtype, opset, axis):
    m = _softmax_model(np.float32(0.1), 3, ONE_255, 0, dtype, opset, axis=axis)
    g = run_passes(frontends.from_onnx(m))
    assert not any(n.op == QSOFTMAX for n in g.nodes)
    assert any(n.op == "Softmax" for n in g.nodes)


def test_static_qdq_attention_probabilities_equal_onnxruntime(tmp_path):
    """A small encoder layer quantised statically (QDQ) by onnxruntime.quantization: the attention
    probabilities' codes are ONNX Runtime's (they were a step off on ~1% of them, and the layer's
    output several steps), and the output is within a step."""
    pytest.importorskip("onnxruntime.quantization")
    from frontends import zoo
    seq, hidden = 16, 64
    src, out = tmp_path / "f.onnx", tmp_path / "q.onnx"
    onnx.save(zoo.encoder_layer(0, seq=seq, hidden=hidden, heads=2, ffn=128), src)
    feeds = [{"x": np.random.default_rng(s).standard_normal((seq, hidden)).astype(np.float32)} for s in range(4)]

    quantize_qdq(src, out, feeds[:2], reduce_range=not ort_int8_exact())
    m = onnx.load(out)
    probs = next(n.output[0] for n in m.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == "probs")
    made = {n.output[0]: n for n in m.graph.node}
    last = made[m.graph.output[0].name]
    while last.op_type == "Identity":
        last = made[last.input[0]]
    assert last.op_type == "DequantizeLinear"       # its scale is one step of the output
    m.graph.output.append(helper.make_tensor_value_info(probs, TensorProto.UINT8, None))
    step = next(numpy_helper.to_array(t) for t in m.graph.initializer if t.name == last.input[1])
    assert any(n.op == QSOFTMAX for n in run_passes(frontends.from_onnx(m)).nodes)
    lib, sess = frontends.build(frontends.from_onnx(m)), onnxruntime_session(m)
    for feed in feeds:
        (y, p), (want_y, want_p) = lib.run(**feed), sess.run(None, feed)
        np.testing.assert_array_equal(p, want_p)
        assert np.abs(y - want_y).max() <= float(step) * 1.001
