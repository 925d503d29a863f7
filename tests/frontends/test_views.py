"""Reshapes as views: a Reshape/Flatten/Squeeze/Unsqueeze group is no kernel, its consumers read
the source's buffer, and a graph output that is a view is written by the source's kernel; results
equal ONNX Runtime's."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import frontends
import te
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


def test_a_view_output_read_by_a_later_node(rng):
    """The channel shuffle's last Reshape is a graph output and Relu's input: the transpose writes
    the caller's output array, which Relu reads; no copy runs."""
    x = rng.standard_normal((1, 4, 6, 6)).astype(np.float32)
    lib = run_both(shuffle_model(rng, reshape_output=True), x)
    steps = {st.nodes[0]: st for st in lib.plan.steps}
    assert list(steps) == ["Conv_0", "Transpose_2", "Relu_4", "Flatten_5"]
    assert steps["Transpose_2"].args[-1] == ("io", 3) and steps["Relu_4"].args[0] == ("io", 3)
    y, z, sh = lib.run(x=x)
    assert not np.shares_memory(y, sh)


def _model(nodes, inits: dict, outputs: dict, x_shape) -> onnx.ModelProto:
    g = helper.make_graph(nodes, "views", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape))],
                          [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(s)) for n, s in outputs.items()],
                          [numpy_helper.from_array(v, n) for n, v in inits.items()])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])


def _dense(rng, tail: str) -> tuple[onnx.ModelProto, tuple]:
    """MatMul -> Reshape (a flattened dense layer's end), or Conv -> Flatten, as the model's output."""
    if tail == "reshape":
        nodes = [helper.make_node("MatMul", ["x", "w"], ["y"]), helper.make_node("Reshape", ["y", "s"], ["o"])]
        inits = {"w": rng.standard_normal((16, 12)).astype(np.float32), "s": np.array([2, 2, 12], np.int64)}
        return _model(nodes, inits, {"o": (2, 2, 12)}, (4, 16)), (4, 16)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"]), helper.make_node("Flatten", ["c"], ["o"], axis=1)]
    inits = {"w": (rng.standard_normal((8, 4, 1, 1)) * 0.3).astype(np.float32)}
    return _model(nodes, inits, {"o": (1, 8 * 36)}, (1, 4, 6, 6)), (1, 4, 6, 6)


@pytest.mark.parametrize("tail", ["reshape", "flatten"])
def test_a_view_output_costs_no_copy(rng, tail):
    """The anchor's kernel writes the caller's output array: one kernel, no workspace."""
    model, shape = _dense(rng, tail)
    lib = run_both(model, rng.standard_normal(shape).astype(np.float32))
    (st,) = lib.plan.steps
    assert st.args[-1] == ("io", 1) and lib.plan.workspace_bytes == 0


@pytest.mark.parametrize("both", [["o1", "o2"], ["y", "o1"]])
def test_outputs_sharing_one_tensor_keep_a_copy(rng, both):
    """Two outputs of one tensor's bytes (two views, or the tensor and a view of it) need two
    arrays: one is the kernel's, the other a copy of it."""
    nodes = [helper.make_node("MatMul", ["x", "w"], ["y"]), helper.make_node("Reshape", ["y", "s"], ["o1"]),
             helper.make_node("Flatten", ["y"], ["o2"], axis=0)]
    shapes = {"y": (4, 12), "o1": (2, 2, 12), "o2": (1, 48)}
    inits = {"w": rng.standard_normal((16, 12)).astype(np.float32), "s": np.array([2, 2, 12], np.int64)}
    model = _model(nodes, inits, {n: shapes[n] for n in both}, (4, 16))
    x = rng.standard_normal((4, 16)).astype(np.float32)
    lib = run_both(model, x)
    assert [st.args[-1] for st in lib.plan.steps] == [("io", 1), ("io", 2)]       # the matmul, one copy
    a, b = lib.run(x=x)
    assert not np.shares_memory(a, b)


def test_a_view_output_of_an_input_is_copied(rng):
    """A reshaped graph input as an output: the caller's input is not its output array."""
    nodes = [helper.make_node("Flatten", ["x"], ["o"], axis=1), helper.make_node("Relu", ["x"], ["r"])]
    model = _model(nodes, {}, {"o": (1, 144), "r": (1, 4, 6, 6)}, (1, 4, 6, 6))
    x = rng.standard_normal((1, 4, 6, 6)).astype(np.float32)
    lib = run_both(model, x)
    o, _ = lib.run(x=x)
    assert not np.shares_memory(o, x) and len(lib.plan.steps) == 2


@pytest.mark.parametrize("view_first", [True, False])
def test_a_view_output_of_a_concat_part(rng, view_first):
    """A conv's result that is both a graph output's view and a part of a channel Concat lives in
    one place: the caller's array (the Concat then runs as a kernel), or the Concat's slice (the
    view output then is a copy), whichever the model reaches first."""
    view = helper.make_node("Flatten", ["a"], ["o"], axis=1)
    cat = [helper.make_node("Concat", ["a", "b"], ["c"], axis=1), helper.make_node("Conv", ["c", "wc"], ["y"])]
    nodes = [helper.make_node("Conv", ["x", "wa"], ["a"]), helper.make_node("Conv", ["x", "wb"], ["b"]),
             *([view] + cat if view_first else cat + [view])]
    inits = {n: (rng.standard_normal(s) * 0.3).astype(np.float32)
             for n, s in {"wa": (3, 4, 1, 1), "wb": (5, 4, 1, 1), "wc": (2, 8, 1, 1)}.items()}
    model = _model(nodes, inits, {"y": (1, 2, 6, 6), "o": (1, 3 * 36)}, (1, 4, 6, 6))
    lib = run_both(model, rng.standard_normal((1, 4, 6, 6)).astype(np.float32))
    assert len(lib.plan.steps) == 4       # three convs, and the Concat or the copy


def test_a_view_output_with_a_dynamic_batch(rng, tmp_path):
    """Conv -> Flatten with a symbolic batch, exported and loaded: each compiled batch's conv
    writes its chunk of the caller's output array (batch 3 runs as 2 + 1)."""
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"]), helper.make_node("Flatten", ["c"], ["o"], axis=1)]
    g = helper.make_graph(nodes, "views", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4, 6, 6])],
                          [helper.make_tensor_value_info("o", TensorProto.FLOAT, ["N", 8 * 36])],
                          [numpy_helper.from_array((rng.standard_normal((8, 4, 1, 1)) * 0.3).astype(np.float32), "w")])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    lib = frontends.build(frontends.from_onnx(model, max_batch=4))
    assert all(len(steps) == 1 and steps[0].args[-1] == ("io", 1) for _, steps in lib.plan.variants)
    lib.export_library(tmp_path / "dyn.so")
    m, sess = te.runtime.load_module(tmp_path / "dyn.so"), onnxruntime_session(model)
    for n in (1, 3, 4):
        x = rng.standard_normal((n, 4, 6, 6)).astype(np.float32)
        np.testing.assert_allclose(m.run(None, {"x": x})[0], sess.run(None, {"x": x})[0], rtol=1e-5, atol=1e-5)
