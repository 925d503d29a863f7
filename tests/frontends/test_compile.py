"""The model compiler's lowering: output shapes reach the lowerings as an argument."""
from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper

import frontends
import te
from frontends.compile import plan_model
from frontends.lowering import LOWER


def reshape_model():
    node = helper.make_node("Reshape", ["x", "s"], ["y"])
    graph = helper.make_graph([node], "reshape", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 4])],
                              [helper.make_tensor("s", TensorProto.INT64, [2], [3, 4])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def test_planning_leaves_the_graph_nodes_as_they_were():
    """lower_group used to store each node's output shapes on the node (Node.out_shapes)."""
    graph = frontends.from_onnx(reshape_model())
    _, g, _ = plan_model(graph, te.target.host(), 13)
    assert not [n.name for n in list(graph.nodes) + list(g.nodes) if hasattr(n, "out_shapes")]
    x = np.arange(12, dtype=np.float32).reshape(2, 6)
    np.testing.assert_array_equal(frontends.build(graph).run(x=x)[0], x.reshape(3, 4))


def test_a_lowering_takes_its_output_shapes():
    graph = frontends.from_onnx(reshape_model())
    (node,) = graph.nodes
    x = te.placeholder((2, 6), name="x")
    (y,) = LOWER[node.op](node, [x], node.attrs, 13, [(4, 3)])
    assert tuple(y.shape) == (4, 3)
