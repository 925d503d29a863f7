"""One-node MatMul / Gemm models with narrow outputs (N = 1, 2, 3, 4, 5, 7): imported, their tasks
extracted, built untuned and with a tuning record, and run against numpy."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import autotune
import frontends
from frontends.tasks import extract_tasks
from te.ops import registry

SHAPES = [(1, 8, 4), (1, 8, 1), (1, 8, 2), (1, 8, 3), (1, 8, 5), (1, 8, 7), (3, 5, 3), (9, 3, 2)]  # M, K, N


def one_node(op: str, M: int, K: int, N: int, rng):
    """A MatMul x @ w, or a Gemm x @ w.T + c, with constant weights; returns (model, reference fn)."""
    w = rng.standard_normal((K, N) if op == "MatMul" else (N, K)).astype(np.float32)
    c = rng.standard_normal(N).astype(np.float32)
    if op == "MatMul":
        node, inits = helper.make_node("MatMul", ["x", "w"], ["y"]), [numpy_helper.from_array(w, "w")]
        ref = lambda x: x.astype(np.float64) @ w                                       # noqa: E731
    else:
        node = helper.make_node("Gemm", ["x", "w", "c"], ["y"], transB=1)
        inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(c, "c")]
        ref = lambda x: x.astype(np.float64) @ w.T + c                                 # noqa: E731
    g = helper.make_graph([node], "mm", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [M, K])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [M, N])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), ref


def default_record(task, cost: float = 1e-6) -> autotune.Record:
    """A record of the task's default config that ran in `cost` seconds."""
    space = task.config_space
    return autotune.Record(task.workload_key, space.get(space.default_index()).to_json(), [cost],
                           isa=task.target.isa, cpu=task.target.cpu)


@pytest.mark.parametrize("op", ["MatMul", "Gemm"])
@pytest.mark.parametrize("M, K, N", SHAPES)
def test_narrow_matmul_models_build_and_match_numpy(op, M, K, N, rng):
    model, ref = one_node(op, M, K, N, rng)
    graph = frontends.from_onnx(model)
    x = rng.standard_normal((M, K)).astype(np.float32)
    (y,) = frontends.build(graph).run(x=x)
    np.testing.assert_allclose(y, ref(x), rtol=1e-4, atol=1e-4)
    # the tuner's view of the model: a task per implementation (strategy) that applies, the
    # preferred first; a record of any of them makes the model build with that one
    tasks = extract_tasks(graph)
    assert tasks[0].task.implementation is registry.select(tasks[0].workload, tasks[0].task.target)
    assert len({t.workload for t in tasks}) == 1 and all(t.flops > 0 for t in tasks)
    for mt in tasks:
        lib = frontends.build(graph, logs=[default_record(mt.task)])
        assert [r.workload for r in lib.records] == [mt.task.workload_key]
        (y,) = lib.run(x=x)
        np.testing.assert_allclose(y, ref(x), rtol=1e-4, atol=1e-4)


def test_a_tuned_build_takes_the_implementation_whose_record_ran_fastest(rng):
    """Records of two implementations of one kernel: the build runs the faster, whichever the
    untuned build prefers (the algorithm is chosen by measurement)."""
    model, ref = one_node("Gemm", 1, 64, 48, rng)
    graph = frontends.from_onnx(model)
    dot, packed = (mt.task for mt in extract_tasks(graph))
    assert (dot.name, packed.name) == ("dense_dot", "dense")
    assert [mt.task.name for mt in extract_tasks(graph, algorithms="preferred")] == ["dense_dot"]
    x = rng.standard_normal((1, 64)).astype(np.float32)
    for fast, slow in ((dot, packed), (packed, dot)):
        lib = frontends.build(graph, logs=[default_record(slow, 2e-6), default_record(fast, 1e-6)])
        assert [r.workload for r in lib.records] == [fast.workload_key]
        np.testing.assert_allclose(lib.run(x=x)[0], ref(x), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("op", ["MatMul", "Gemm"])
def test_a_constant_b_is_packed_at_build_time(op, rng):
    """A MatMul's constant (K, N) weight (the encoder's dense layers) is laid out for the packed
    GEMM once, at build time: the kernel takes the packed constant and has no packing stage.
    N = 40 is no multiple of the column block: the packed panel is zero-padded."""
    M, K, N = 64, 24, 40
    w = rng.standard_normal((K, N)).astype(np.float32)
    c = rng.standard_normal(N).astype(np.float32)
    inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(c, "c")]
    node = helper.make_node(op, ["x", "w", "c"] if op == "Gemm" else ["x", "w"], ["y"])     # Gemm: transB=0
    g = helper.make_graph([node], "mm", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [M, K])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [M, N])], inits)
    lib = frontends.build(frontends.from_onnx(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])))
    (func,) = lib.plan.funcs
    text = str(func)
    assert ".packed: float32[" in text.splitlines()[0], text[:200]          # an argument ...
    assert not [ln for ln in text.splitlines() if "# produce" in ln and "packed" in ln], text[:400]   # ... no stage
    x = rng.standard_normal((M, K)).astype(np.float32)
    want = x.astype(np.float64) @ w + (c if op == "Gemm" else 0)
    np.testing.assert_allclose(lib.run(x=x)[0], want, rtol=1e-4, atol=1e-4)
