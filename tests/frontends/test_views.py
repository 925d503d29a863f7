"""Reshapes as views: a Reshape/Flatten/Squeeze/Unsqueeze group is no kernel, its consumers read
the source's buffer; results equal ONNX Runtime's."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import frontends
from frontends.profile import onnxruntime_session


def shuffle_model(rng, reshape_output: bool = False) -> onnx.ModelProto:
    """Conv -> channel shuffle (Reshape, Transpose, Reshape) -> Relu, as ShuffleNet runs it; the
    input also goes through a Flatten into a second output; optionally the last Reshape's result
    is itself a graph output."""
    w = (rng.standard_normal((8, 4, 3, 3)) * 0.3).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Reshape", ["c", "s5"], ["r5"]),
             helper.make_node("Transpose", ["r5"], ["t5"], perm=[0, 2, 1, 3, 4]),
             helper.make_node("Reshape", ["t5", "s4"], ["sh"]),
             helper.make_node("Relu", ["sh"], ["y"]),
             helper.make_node("Flatten", ["x"], ["xf"], axis=1),
             helper.make_node("Mul", ["xf", "two"], ["z"])]
    inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.array([1, 2, 4, 6, 6], np.int64), "s5"),
             numpy_helper.from_array(np.array([1, 8, 6, 6], np.int64), "s4"),
             numpy_helper.from_array(np.array(2.0, np.float32), "two")]
    outs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 6, 6]),
            helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 144])]
    if reshape_output:
        outs.append(helper.make_tensor_value_info("sh", TensorProto.FLOAT, [1, 8, 6, 6]))
    g = helper.make_graph(nodes, "shuffle", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 6, 6])],
                          outs, inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])


def run_both(model, x):
    lib = frontends.build(frontends.from_onnx(model))
    got = lib.run(x=x)
    want = onnxruntime_session(model).run(None, {"x": x})
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    return lib


def test_reshapes_are_views_not_kernels(rng):
    x = rng.standard_normal((1, 4, 6, 6)).astype(np.float32)
    lib = run_both(shuffle_model(rng), x)
    # the first Reshape is a view: the transpose reads the conv's output buffer; the second and
    # the Flatten start elementwise kernels (Relu, Mul), which index through them
    assert [st.nodes for st in lib.plan.steps] == [["Conv_0"], ["Transpose_2"], ["Reshape_3", "Relu_4"],
                                                   ["Flatten_5", "Mul_6"]]


def test_a_view_of_a_view_and_of_an_input(rng):
    """Reshape -> Squeeze -> Unsqueeze of the graph input, then Sigmoid: one kernel, which reads
    the caller's input buffer through the views."""
    nodes = [helper.make_node("Reshape", ["x", "s"], ["a"]), helper.make_node("Squeeze", ["a", "ax"], ["b"]),
             helper.make_node("Unsqueeze", ["b", "ax"], ["c"]), helper.make_node("Sigmoid", ["c"], ["y"])]
    inits = [numpy_helper.from_array(np.array([1, 2, 72], np.int64), "s"),
             numpy_helper.from_array(np.array([0], np.int64), "ax")]
    g = helper.make_graph(nodes, "views", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 6, 6])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 72])], inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    lib = run_both(model, rng.standard_normal((1, 4, 6, 6)).astype(np.float32))
    (st,) = lib.plan.steps
    assert st.nodes == ["Unsqueeze_2", "Sigmoid_3"] and st.args[0] == ("io", 0)


def test_a_reshape_that_is_a_graph_output_is_still_written(rng):
    """The caller's output buffer must hold the reshaped values: that Reshape stays a copy."""
    x = rng.standard_normal((1, 4, 6, 6)).astype(np.float32)
    lib = run_both(shuffle_model(rng, reshape_output=True), x)
    assert len(lib.run(x=x)) == 3
