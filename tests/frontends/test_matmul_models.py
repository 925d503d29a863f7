"""One-node MatMul / Gemm models with narrow outputs (N = 1, 2, 3, 4, 5, 7): imported, their tasks
extracted, built untuned and with a tuning record, and run against numpy."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import autotune
import frontends
from frontends.tasks import extract_tasks

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


def other_strategy_record(task) -> autotune.Record:
    """A record of the task's config with the last strategy the template offers (not the default)."""
    space = task.config_space
    d = space.get(space.default_index()).to_json()
    cfg = space.from_json({**d, "strategy": space.space_map["strategy"].candidates[-1]})
    return autotune.Record(task.workload_key, cfg.to_json(), [1e-6], isa=task.target.isa,
                           cpu=task.target.cpu)


@pytest.mark.parametrize("op", ["MatMul", "Gemm"])
@pytest.mark.parametrize("M, K, N", SHAPES)
def test_narrow_matmul_models_build_and_match_numpy(op, M, K, N, rng):
    model, ref = one_node(op, M, K, N, rng)
    graph = frontends.from_onnx(model)
    x = rng.standard_normal((M, K)).astype(np.float32)
    (y,) = frontends.build(graph).run(x=x)
    np.testing.assert_allclose(y, ref(x), rtol=1e-4, atol=1e-4)
    # the tuner's view of the model: this used to fail in the template's bn knob for N < 8
    (mt,) = extract_tasks(graph)
    assert mt.task.name == ("matmul" if op == "MatMul" else "dense") and mt.flops > 0
    lib = frontends.build(graph, logs=[other_strategy_record(mt.task)])
    assert [r.workload for r in lib.records] == [mt.task.workload_key]
    (y,) = lib.run(x=x)
    np.testing.assert_allclose(y, ref(x), rtol=1e-4, atol=1e-4)
