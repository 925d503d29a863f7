"""The model compiler's lowering: output shapes reach the lowerings as an argument."""
from __future__ import annotations

import numpy as np
import pytest
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


def test_a_kernel_of_another_dtype_than_the_model_says_is_refused(monkeypatch):
    """The model's buffers are sized by its value types: a lowering that produced another dtype
    (Pad of an integer tensor did) would write past them; the build stops with the node named."""
    node = helper.make_node("Neg", ["x"], ["y"], name="neg0")
    graph = helper.make_graph([node], "neg", [helper.make_tensor_value_info("x", TensorProto.INT32, [8])],
                              [helper.make_tensor_value_info("y", TensorProto.INT32, [8])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    monkeypatch.setitem(LOWER, "Neg", lambda n, ins, *_: [te.compute(ins[0].shape, lambda i: ins[0][i].astype("float32"),
                                                                     name="neg")])
    with pytest.raises(RuntimeError, match=r"\(Neg neg0\): lowering produced float32 \(8,\), the model says int32 \(8,\)"):
        frontends.build(frontends.from_onnx(model))


def test_a_build_compares_implementations_judged_in_the_model_like_with_like(rng):
    """choose with records of two implementations of one Gemm.  Both judged in the model: the
    larger speed-up over the untuned kernel there wins, not the lower in-model cost (timings of
    two builds).  A record the model never ran, older than the judging, loses to a judged one,
    though it ran faster alone; newer, it competes as before; a judged config slower than the
    untuned kernel gives way to the untuned build's implementation and defaults."""
    from dataclasses import replace

    from frontends.tasks import extract_tasks

    from .test_matmul_models import default_record, one_node
    model, ref = one_node("Gemm", 1, 64, 48, rng)
    graph = frontends.from_onnx(model)
    dot, packed = (mt.task for mt in extract_tasks(graph))
    x = rng.standard_normal((1, 64)).astype(np.float32)

    def judged(task, vs, cost, t=2_000.0):
        return replace(default_record(task, cost), checked=True, in_model=True, vs_default=vs, timestamp=t)

    def built(*records) -> list[str]:
        lib = frontends.build(graph, logs=list(records))
        np.testing.assert_allclose(lib.run(x=x)[0], ref(x), rtol=1e-4, atol=1e-4)
        return [r.workload for r in lib.records]

    assert built(judged(dot, 1.0, 2e-6), judged(packed, 1.2, 3e-6)) == [packed.workload_key]
    alone = replace(default_record(packed, 1e-6), timestamp=1_000.0)
    assert built(judged(dot, 1.0, 2e-6), alone) == [dot.workload_key]
    assert built(judged(dot, 1.0, 2e-6), replace(alone, timestamp=3_000.0)) == [packed.workload_key]
    assert built(judged(packed, 0.8, 3e-6), replace(default_record(dot, 5e-6), timestamp=1_000.0)) == []
