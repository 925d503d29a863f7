"""The channel shuffle folded into the depthwise conv that reads it (frontends/shuffle.py)."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import frontends
from frontends import passes
from frontends.profile import onnxruntime_session


def shuffle_model(rng, C=12, G=3, H=9, stride=1, extra_user=None):
    """x -> 1x1 grouped conv -> Relu -> channel shuffle (G groups) -> 3x3 depthwise conv (-> extra_user)."""
    w1 = rng.standard_normal((C, C // G, 1, 1)).astype(np.float32)
    w2 = rng.standard_normal((C, 1, 3, 3)).astype(np.float32)
    b2 = rng.standard_normal(C).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], group=G),
             helper.make_node("Relu", ["c1"], ["r"]),
             helper.make_node("Reshape", ["r", "s5"], ["r5"]),
             helper.make_node("Transpose", ["r5"], ["t5"], perm=[0, 2, 1, 3, 4]),
             helper.make_node("Reshape", ["t5", "s4"], ["sh"]),
             helper.make_node("Conv", ["sh", "w2", "b2"], ["y"], group=C, pads=[1, 1, 1, 1], strides=[stride, stride])]
    outs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]
    if extra_user == "output":
        outs.append(helper.make_tensor_value_info("sh", TensorProto.FLOAT, None))
    elif extra_user == "conv":       # an ungrouped conv reads the shuffle too: it must stay
        nodes.append(helper.make_node("Conv", ["sh", "w3"], ["z"]))
        outs.append(helper.make_tensor_value_info("z", TensorProto.FLOAT, None))
    inits = [numpy_helper.from_array(a, n) for a, n in (
        (w1, "w1"), (w2, "w2"), (b2, "b2"), (np.array([1, G, C // G, H, H], np.int64), "s5"),
        (np.array([1, C, H, H], np.int64), "s4"), (rng.standard_normal((4, C, 1, 1)).astype(np.float32), "w3"))]
    g = helper.make_graph(nodes, "shuffle", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, C, H, H])],
                          outs, inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])


@pytest.mark.parametrize("stride", [1, 2])
def test_the_shuffle_becomes_the_convs_attribute_and_matches_onnxruntime(rng, stride):
    m = shuffle_model(rng, stride=stride)
    g = passes.run_passes(frontends.from_onnx(m))
    assert not any(n.op in ("Transpose", "Reshape") for n in g.nodes)
    dw = [n for n in g.nodes if n.op == "Conv" and n.attrs.get("group") == 12]
    assert dw[0].attrs["channel_shuffle"] == 3 and dw[0].inputs[0] == "r"
    x = rng.standard_normal((1, 12, 9, 9)).astype(np.float32)
    got = frontends.build(frontends.from_onnx(m)).run(x=x)[0]
    want = onnxruntime_session(m).run(None, {"x": x})[0]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("extra_user", ["output", "conv"])
def test_a_shuffle_read_elsewhere_stays(rng, extra_user):
    m = shuffle_model(rng, extra_user=extra_user)
    g = passes.run_passes(frontends.from_onnx(m))
    assert any(n.op == "Transpose" for n in g.nodes)
    assert not any("channel_shuffle" in n.attrs for n in g.nodes)
    x = rng.standard_normal((1, 12, 9, 9)).astype(np.float32)
    got = frontends.build(frontends.from_onnx(m)).run(x=x)
    want = onnxruntime_session(m).run(None, {"x": x})
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
