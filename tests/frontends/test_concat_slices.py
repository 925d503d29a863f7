"""Concat into slices: the kernels producing a channel Concat's parts write straight into their
slices of its result, and the Concat is no kernel (frontends.compile.concat_slices); results equal
ONNX Runtime's."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import frontends
from frontends.profile import onnxruntime_session


def _model(rng, nodes, weights: dict, outputs: dict, x_shape=(1, 4, 6, 6)):
    inits = [numpy_helper.from_array((rng.standard_normal(s) * 0.3).astype(np.float32), n) for n, s in weights.items()]
    outs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(s)) for n, s in outputs.items()]
    g = helper.make_graph(nodes, "concat", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape))],
                          outs, inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])


def fire(rng, x_shape=(1, 4, 6, 6), extra=(), extra_outputs=None):
    """SqueezeNet's fire module: squeeze 1x1 -> Relu -> (expand 1x1, expand 3x3) -> Relu each ->
    Concat on channels -> a 1x1 conv reading the concat."""
    C = x_shape[1]
    nodes = [helper.make_node("Conv", ["x", "ws"], ["s"]), helper.make_node("Relu", ["s"], ["sr"]),
             helper.make_node("Conv", ["sr", "w1"], ["e1"]), helper.make_node("Relu", ["e1"], ["e1r"]),
             helper.make_node("Conv", ["sr", "w3"], ["e3"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["e3"], ["e3r"]),
             helper.make_node("Concat", ["e1r", "e3r"], ["cat"], axis=1),
             helper.make_node("Conv", ["cat", "wo"], ["y"]), *extra]
    weights = {"ws": (3, C, 1, 1), "w1": (5, 3, 1, 1), "w3": (6, 3, 3, 3), "wo": (2, 11, 1, 1)}
    outputs = {"y": (x_shape[0], 2) + tuple(x_shape[2:]), **(extra_outputs or {})}
    return _model(rng, nodes, weights, outputs, x_shape)


def check(model, x, layout=None):
    """The built model's outputs against ONNX Runtime's; the library."""
    lib = frontends.build(frontends.from_onnx(model), layout=layout)
    got = lib.run(x=x)
    want = onnxruntime_session(model).run(None, {"x": x})
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    return lib


def _concat_steps(lib) -> int:
    return sum(any(n.startswith("Concat") for n in st.nodes) for st in lib.plan.steps)


@pytest.mark.parametrize("layout", [None, "NCHWc"])
def test_a_fire_module_concat_is_no_kernel(rng, layout):
    lib = check(fire(rng), rng.standard_normal((1, 4, 6, 6)).astype(np.float32), layout)
    assert _concat_steps(lib) == 0
    assert len(lib.plan.steps) == 4          # squeeze, two expands, the conv after


def test_a_part_read_after_the_concat_stays_alive(rng):
    # e1r is also read by a node after the last reader of the concat: the concat's buffer (which
    # holds e1r) must outlive it, or a later intermediate would overwrite e1r
    extra = [helper.make_node("Conv", ["y", "wz"], ["z"]), helper.make_node("Relu", ["z"], ["zr"]),
             helper.make_node("Conv", ["zr", "wz2"], ["z2"]),
             helper.make_node("Add", ["e1r", "z2"], ["late"])]
    m = fire(rng, extra=extra, extra_outputs={"late": (1, 5, 6, 6)})
    m.graph.initializer.extend([numpy_helper.from_array((rng.standard_normal(s) * 0.3).astype(np.float32), n)
                                for n, s in {"wz": (7, 2, 1, 1), "wz2": (5, 7, 1, 1)}.items()])
    lib = check(m, rng.standard_normal((1, 4, 6, 6)).astype(np.float32))
    assert _concat_steps(lib) == 0


def test_a_concat_of_a_concat_is_one_buffer(rng):
    nodes = [helper.make_node("Conv", ["x", "wa"], ["a"]), helper.make_node("Conv", ["x", "wb"], ["b"]),
             helper.make_node("Concat", ["a", "b"], ["ab"], axis=1),
             helper.make_node("Conv", ["x", "wc"], ["c"]),
             helper.make_node("Concat", ["ab", "c"], ["abc"], axis=1),
             helper.make_node("Conv", ["abc", "wo"], ["y"]), helper.make_node("Conv", ["ab", "wp"], ["p"])]
    w = {"wa": (3, 4, 1, 1), "wb": (2, 4, 3, 3), "wc": (4, 4, 1, 1), "wo": (2, 9, 1, 1), "wp": (3, 5, 1, 1)}
    nodes[1].attribute.extend([helper.make_attribute("pads", [1, 1, 1, 1])])
    m = _model(rng, nodes, w, {"y": (1, 2, 6, 6), "p": (1, 3, 6, 6)})
    lib = check(m, rng.standard_normal((1, 4, 6, 6)).astype(np.float32))
    assert _concat_steps(lib) == 0


@pytest.mark.parametrize("case", ["batch 2", "a graph input part", "a graph output", "a part twice"])
def test_concats_that_cannot_be_slices_stay_kernels(rng, case):
    x_shape = (2, 4, 6, 6) if case == "batch 2" else (1, 4, 6, 6)
    nodes = [helper.make_node("Conv", ["x", "wa"], ["a"]),
             helper.make_node("Concat", {"a graph input part": ["a", "x"], "a part twice": ["a", "a"]}.get(
                 case, ["a", "a2"]), ["cat"], axis=1),
             helper.make_node("Relu", ["x"], ["a2"])]
    nodes = [nodes[0], nodes[2], nodes[1], helper.make_node("Conv", ["cat", "wo"], ["y"])]
    outs = {"y": (x_shape[0], 2, 6, 6)}
    if case == "a graph output":
        outs["cat"] = (1, 7, 6, 6)
    wo_in = 6 if case == "a part twice" else 7
    m = _model(rng, nodes, {"wa": (3, 4, 1, 1), "wo": (2, wo_in, 1, 1)}, outs, x_shape)
    lib = check(m, rng.standard_normal(x_shape).astype(np.float32))
    assert _concat_steps(lib) == 1


def test_a_dynamic_batch_slices_at_batch_1_and_copies_above(rng):
    # the batch-1 plan writes the parts into the concat's buffer; the larger batches' plans, where
    # a channel block is not contiguous, keep the copy kernel
    m = fire(rng)
    m.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "N"
    m.graph.output[0].type.tensor_type.shape.dim[0].dim_param = "N"
    lib = frontends.build(frontends.from_onnx(m, max_batch=4))
    sess = onnxruntime_session(m)
    for n in (1, 3, 4):
        x = rng.standard_normal((n, 4, 6, 6)).astype(np.float32)
        np.testing.assert_allclose(lib.run(x=x)[0], sess.run(None, {"x": x})[0], rtol=1e-4, atol=1e-5)
    concat_kernels = {size: sum(any(x.startswith("Concat") for x in st.nodes) for st in steps)
                      for size, steps in lib.plan.variants}
    assert concat_kernels[1] == 0 and all(c == 1 for size, c in concat_kernels.items() if size > 1)
