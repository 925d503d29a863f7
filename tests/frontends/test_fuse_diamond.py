"""fuse: an elementwise chain that reads its anchor's output twice (Erf-GELU) becomes the anchor's
epilogue; chains whose values escape stay kernels of their own. Each checked against ONNX Runtime."""
import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import frontends
from frontends import passes
from frontends.profile import onnxruntime_session


def dense_model(rng, tail, extra_outputs=()):
    """x (64, 16) @ w (16, 32) + b, then `tail(h)`: nodes reading "h" and ending in "y"."""
    inits = [numpy_helper.from_array(rng.standard_normal((16, 32)).astype(np.float32), "w"),
             numpy_helper.from_array(rng.standard_normal(32).astype(np.float32), "b")]
    consts = {"sqrt2": np.sqrt(2.0), "one": 1.0, "half": 0.5}
    inits += [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in consts.items()]
    nodes = [helper.make_node("MatMul", ["x", "w"], ["mm"]), helper.make_node("Add", ["mm", "b"], ["h"])]
    nodes += [helper.make_node(op, ins, [out]) for op, ins, out in tail]
    outs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [64, 32]) for n in ("y", *extra_outputs)]
    g = helper.make_graph(nodes, "dense_tail", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [64, 16])],
                          outs, inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


GELU = [("Div", ["h", "sqrt2"], "d"), ("Erf", ["d"], "e"), ("Add", ["e", "one"], "a"),
        ("Mul", ["h", "a"], "m"), ("Mul", ["m", "half"], "y")]


def groups_and_check(rng, m):
    """The fused groups' op lists, after checking the built model against ONNX Runtime."""
    x = rng.standard_normal((64, 16)).astype(np.float32)
    want = onnxruntime_session(m).run(None, {"x": x})
    for got, ref in zip(frontends.build(frontends.from_onnx(m)).run(x=x), want):
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)
    return [[n.op for n in grp.nodes] for grp in passes.fuse(passes.run_passes(frontends.from_onnx(m)))]


def test_erf_gelu_fuses_into_the_dense_kernel(rng):
    m = dense_model(rng, GELU)
    assert groups_and_check(rng, m) == [["MatMul", "Add", "Div", "Erf", "Add", "Mul", "Mul"]]
    # and into the GEMM's output tile (te.ops.schedule.fusion_chain): no buffer of the dense output
    (func,) = frontends.build(frontends.from_onnx(m)).plan.funcs
    stages = [ln.strip() for ln in str(func).splitlines() if "# produce" in ln]
    assert len(stages) == 2 and stages[1].endswith(".acc"), stages      # y, and the GEMM's register tile


def test_a_square_fuses(rng):
    assert groups_and_check(rng, dense_model(rng, [("Mul", ["h", "h"], "y")])) == [["MatMul", "Add", "Mul"]]


@pytest.mark.parametrize("tail, extra, want", [
    # h is also a graph output: it must be stored, the chain runs after it
    (GELU, ("h",), [["MatMul", "Add"], ["Div", "Erf", "Add", "Mul", "Mul"]]),
    # a value inside the chain is an output too
    (GELU, ("e",), [["MatMul", "Add"], ["Div", "Erf"], ["Add", "Mul", "Mul"]]),
    # two branches of h meet: fuse follows one chain only, so h stays in memory
    ([("Relu", ["h"], "r"), ("Sigmoid", ["h"], "s"), ("Add", ["r", "s"], "y")], (),
     [["MatMul", "Add"], ["Relu", "Add"], ["Sigmoid"]]),
])
def test_chains_whose_values_leave_stay_apart(rng, tail, extra, want):
    got = groups_and_check(rng, dense_model(rng, tail, extra))
    assert sorted(got) == sorted(want)
