"""The rows rule on reduction-then-elementwise chains other than softmax, on odd shapes: the whole
chain fused per row inside one parallel loop, rows no vector width divides in vectors with the last
one masked, and every schedule the sketch draws gives numpy's answer."""
from __future__ import annotations

import random

import numpy as np
import pytest

import autotune
import te
from autotune.auto_scheduler import SketchPolicy


@autotune.register_workload
def as_rmsnorm3(B, R, N):
    """RMS norm over the last axis of a 3-D tensor: one reduction, then a scaled elementwise output."""
    X = te.placeholder((B, R, N), name="X")
    g = te.placeholder((N,), name="g")
    k = te.reduce_axis((0, N), name="k")
    ss = te.compute((B, R), lambda b, i: te.sum(X[b, i, k] * X[b, i, k], axis=k), name="ss")
    return [X, g, te.compute((B, R, N), lambda b, i, j: X[b, i, j] * te.rsqrt(ss[b, i] * (1.0 / N) + 1e-6) * g[j],
                             name="Y")]


@autotune.register_workload
def as_logsoftmax3(B, R, N):
    """Log-softmax over the last axis: two chained reductions (max, sum of exp), then the output."""
    X = te.placeholder((B, R, N), name="X")
    k1 = te.reduce_axis((0, N), name="k1")
    k2 = te.reduce_axis((0, N), name="k2")
    mx = te.compute((B, R), lambda b, i: te.max(X[b, i, k1], axis=k1), name="mx")
    sm = te.compute((B, R), lambda b, i: te.sum(te.exp(X[b, i, k2] - mx[b, i]), axis=k2), name="sm")
    return [X, te.compute((B, R, N), lambda b, i, j: X[b, i, j] - mx[b, i] - te.log(sm[b, i]), name="Y")]


def _numpy(name: str, ins: list[np.ndarray]) -> np.ndarray:
    x = ins[0].astype(np.float64)
    if name == "as_rmsnorm3":
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + 1e-6) * ins[1]
    shifted = x - x.max(-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))


# rows of 37 and 33 (no vector width divides them), of 48 and 64 (vectors and folded partial lanes);
# row counts (21, 15, 10, 12) that are not a power of two
CASES = [(as_rmsnorm3, (3, 7, 37)), (as_rmsnorm3, (2, 5, 48)), (as_logsoftmax3, (3, 5, 33)),
         (as_logsoftmax3, (2, 6, 64))]


def _run(s, tensors, ins):
    out = np.zeros(tensors[-1].shape, np.float32)
    te.build(s, tensors)(*ins, out)
    return out


@pytest.mark.parametrize("func,args", CASES, ids=[f"{c[0].__name__}{c[1]}" for c in CASES])
def test_default_random_and_mutated_row_schedules_match_numpy(func, args):
    task = autotune.create_task(func, args)
    policy = SketchPolicy(task, threads=2)
    data = np.random.default_rng(1)
    ins = [data.standard_normal(t.shape).astype(np.float32) for t in task.tensors[:-1]]
    want = _numpy(task.name, ins)
    rng = random.Random(3)
    p = policy.default_params()
    candidates = [p, {**p, f"rows:{policy.rows_output}": False}]     # the rule and its absence
    for k in range(4):
        p = policy.mutate(p, rng) if k % 2 else policy.sample(rng)
        candidates.append(p)
    for c in candidates:
        s, tensors = policy.apply(c)
        np.testing.assert_allclose(_run(s, tensors, ins), want, rtol=1e-4, atol=1e-4)


def _loop_depth(text: str, marker: str) -> int:
    line = next(ln for ln in text.splitlines() if marker in ln)
    return len(line) - len(line.lstrip())


@pytest.mark.parametrize("func,args,members", [(as_rmsnorm3, (3, 7, 37), ["ss"]),
                                               (as_logsoftmax3, (2, 6, 64), ["mx", "sm"])],
                         ids=["rmsnorm", "logsoftmax"])
def test_a_reduction_then_elementwise_chain_is_fused_per_row(func, args, members):
    task = autotune.create_task(func, args)
    policy = SketchPolicy(task, threads=2)
    assert policy.rows_output == "Y" and sorted(policy._row_members()) == members
    p = policy.default_params()
    assert p["rows:Y"]
    s, tensors = policy.apply(p)
    text = str(te.lower(s, tensors, "f"))
    assert text.count("# parallel") == 1, "one parallel loop over (blocks of) rows"
    block = p["rowblock:Y"]
    outer = _loop_depth(text, "# parallel")
    for name in members:
        assert _loop_depth(text, f"# produce {name}") > outer, f"{name} is computed inside the row loop"
        assert f"allocate {name}: float32[{block}]" in text, f"{name}: one value per row of the block, not a tensor"
    assert text.index("# parallel") < min(text.index(f"# produce {m}") for m in members)
    # the reductions' partial results in vector lanes, the output's row in vectors; a row no
    # vector width divides (37) ends in a masked vector: the split's guard inside the last vector
    # loop (the masked step peeled off the whole vectors)
    assert all(p[f"kind:{m}"] == "rfactor" for m in members) and "vectorized" in text
    out_loop = text[text.rindex("for j."):]
    assert "vectorized" in out_loop and (f"< {args[-1]}:" in out_loop) == (args[-1] % 8 != 0)
