"""ConvTranspose through the importer against ONNX Runtime: strides, pads, output_padding,
dilations, groups, bias, 1-D; what is refused."""
import numpy as np
import pytest
from onnx import helper, numpy_helper

import frontends
from frontends import ModelError

from .onnx_helpers import tiny, vi

CASES = [  # x shape, w shape, attributes
    ((1, 8, 5, 6), (8, 16, 4, 4), dict(strides=[2, 2], pads=[1, 1, 1, 1])),          # the usual upsampler
    ((2, 6, 4, 5), (6, 2, 3, 3), dict(strides=[3, 2], output_padding=[1, 1], group=3)),
    ((1, 4, 6, 6), (4, 3, 3, 2), dict(dilations=[2, 3], pads=[2, 0, 1, 1])),
    ((1, 3, 7), (3, 5, 4), dict(strides=[2], auto_pad="SAME_UPPER")),
]


def _model(xs, ws, attrs, bias: bool, rand):
    inits = [numpy_helper.from_array(rand(ws), "w")]
    names = ["x", "w"]
    if bias:
        inits.append(numpy_helper.from_array(rand((ws[1] * attrs.get("group", 1),)), "b"))
        names.append("b")
    node = helper.make_node("ConvTranspose", names, ["y"], name="ct", **attrs)
    return tiny([node], [vi("x", list(xs))], [vi("y", None)], inits, opset=13)


@pytest.mark.parametrize("k", range(len(CASES)))
def test_conv_transpose_matches_onnxruntime(rand, k):
    import onnxruntime as ort
    xs, ws, attrs = CASES[k]
    m = _model(xs, ws, attrs, bias=k % 2 == 0, rand=rand)
    x = rand(xs)
    want = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    (got,) = frontends.build(frontends.from_onnx(m)).run(x=x)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_conv_transpose_refuses_a_weight_of_other_channels(rand):
    m = _model((1, 4, 5, 5), (6, 2, 3, 3), {}, bias=False, rand=rand)
    with pytest.raises(ModelError, match="has 6 input channels for data of 4 channels"):
        frontends.from_onnx(m)


def test_conv_transpose_between_other_kernels_matches_onnxruntime(rand):
    """A decoder step: ConvTranspose, Relu, then a Conv reading its output."""
    import onnxruntime as ort
    nodes = [helper.make_node("ConvTranspose", ["x", "w", "b"], ["u"], strides=[2, 2], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["u"], ["r"]),
             helper.make_node("Conv", ["r", "k"], ["y"], pads=[1, 1, 1, 1])]
    inits = [numpy_helper.from_array(rand((16, 8, 4, 4)), "w"), numpy_helper.from_array(rand((8,)), "b"),
             numpy_helper.from_array(rand((4, 8, 3, 3)), "k")]
    m = tiny(nodes, [vi("x", [1, 16, 6, 7])], [vi("y", None)], inits, opset=13)
    x = rand((1, 16, 6, 7))
    want = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    (got,) = frontends.build(frontends.from_onnx(m)).run(x=x)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
