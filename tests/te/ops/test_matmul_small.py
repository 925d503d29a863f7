"""matmul / dense of narrow outputs (N = 1, 2, 3, 4, 5, 7) and other small odd shapes: every path
(untuned, the template's configs of each strategy, a tuned config through the registry's choice) builds
and matches numpy."""
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


def strategy_configs(space):
    """The template's default config with each strategy it offers."""
    d = space.get(space.default_index()).to_json()
    return [space.from_json({**d, "strategy": st}) for st in space.space_map["strategy"].candidates]


@pytest.mark.parametrize("name", ["matmul", "dense"])
@pytest.mark.parametrize("M, N, K", SHAPES)
def test_template_configs(name, M, N, K, rand):
    # the template's bn knob used to offer only 8..64 and reject its own default for N < 8
    task = autotune.create_task(name, (M, N, K, "float32"))
    arrays = [rand(s) for s, _ in task.arg_specs()[:-1]]
    want = expect(name, *arrays[:2], arrays[2] if name == "dense" else None)
    for cfg in [None] + strategy_configs(task.config_space):
        np.testing.assert_allclose(run(task.build(cfg), arrays, (M, N)), want, **TOL, err_msg=str(cfg))


@pytest.mark.parametrize("name", ["matmul", "dense"])
@pytest.mark.parametrize("M, N, K", [(1, 4, 8), (3, 3, 5), (9, 2, 3)])
def test_tuned_config_through_the_registry_choice(name, M, N, K, rand):
    task = autotune.create_task(name, (M, N, K, "float32"))
    wl = task.implementation.workload(task.args)
    a, b = operands(name, M, N, K)
    av, bv = rand(a.shape), rand(b.shape)
    for cfg in strategy_configs(task.config_space):
        choice = registry.Choice(task.implementation, wl, task.target, cfg)     # as a model build makes it
        y = choice.compute([a, b], name="y")
        out = run(te.build(ops.schedule([y], anchor_schedule=choice.schedule), [a, b, y]), [av, bv], (M, N))
        np.testing.assert_allclose(out, expect(name, av, bv), **TOL, err_msg=str(cfg))
