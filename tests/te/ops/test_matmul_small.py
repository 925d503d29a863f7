"""matmul / dense of narrow outputs (N = 1, 2, 3, 4, 5, 7) and other small odd shapes: every path
(untuned, the template of each strategy that applies, a tuned config through the registry's choice)
builds and matches numpy."""
from __future__ import annotations

import numpy as np
import pytest

import autotune
import te
from te import ops
from te.ops import registry

TOL = dict(rtol=1e-4, atol=1e-4)
SHAPES = [(1, 4, 8), (1, 1, 8), (1, 2, 8), (1, 3, 8), (1, 5, 8), (1, 7, 8),      # (M, N, K)
          (3, 3, 5), (5, 1, 3), (9, 2, 3), (17, 3, 5), (2, 7, 7), (1, 1, 1)]


def operands(name: str, M: int, N: int, K: int):
    a = te.placeholder((M, K), name="a")
    b = te.placeholder((K, N) if name == "matmul" else (N, K), name="b")
    return a, b


def expect(name: str, av, bv, bias=None):
    y = av.astype(np.float64) @ (bv.T if name == "dense" else bv).astype(np.float64)
    return (y if bias is None else y + bias).astype(np.float32)


def run(f, arrays, shape):
    out = np.zeros(shape, np.float32)
    f(*arrays, out)
    return out


@pytest.mark.parametrize("name", ["matmul", "dense"])
@pytest.mark.parametrize("M, N, K", SHAPES)
def test_untuned(name, M, N, K, rand):
    a, b = operands(name, M, N, K)
    y = ops.matmul(a, b) if name == "matmul" else ops.dense(a, b)
    av, bv = rand(a.shape), rand(b.shape)
    out = run(te.build(ops.schedule([y]), [a, b, y]), [av, bv], (M, N))
    np.testing.assert_allclose(out, expect(name, av, bv), **TOL)


def strategy_tasks(name: str, M: int, N: int, K: int) -> list:
    """A task of each implementation (strategy) that applies to the shape, the preferred first."""
    wl = registry.MatmulWorkload(M, N, K, transpose_b=name == "dense")
    return [autotune.create_task(impl.template, (M, N, K, "float32"))
            for _, impl in registry.candidates(wl, te.target.host())]


@pytest.mark.parametrize("name", ["matmul", "dense"])
@pytest.mark.parametrize("M, N, K", SHAPES)
def test_template_configs(name, M, N, K, rand):
    # the template's bn knob used to offer only 8..64 and reject its own default for N < 8
    for task in strategy_tasks(name, M, N, K):
        arrays = [rand(s) for s, _ in task.arg_specs()[:-1]]
        want = expect(name, *arrays[:2], arrays[2] if name == "dense" else None)
        space = task.config_space
        for cfg in [None, space.get(space.default_index()), space.get(len(space) - 1)]:
            np.testing.assert_allclose(run(task.build(cfg), arrays, (M, N)), want, **TOL,
                                       err_msg=f"{task.name} {cfg}")


@pytest.mark.parametrize("name", ["matmul", "dense"])
@pytest.mark.parametrize("M, N, K", [(1, 4, 8), (3, 3, 5), (9, 2, 3)])
def test_tuned_config_through_the_registry_choice(name, M, N, K, rand):
    a, b = operands(name, M, N, K)
    av, bv = rand(a.shape), rand(b.shape)
    for task in strategy_tasks(name, M, N, K):
        wl = task.implementation.workload(task.args)
        cfg = task.config_space.get(len(task.config_space) - 1)
        choice = registry.Choice(task.implementation, wl, task.target, cfg)     # as a model build makes it
        y = choice.compute([a, b], name="y")
        out = run(te.build(ops.schedule([y], anchor_schedule=choice.schedule), [a, b, y]), [av, bv], (M, N))
        np.testing.assert_allclose(out, expect(name, av, bv), **TOL, err_msg=f"{task.name} {cfg}")
