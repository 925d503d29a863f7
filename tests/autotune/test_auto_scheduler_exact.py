"""The sketch leaves a layer norm's row statistics (te.ops.nn.STAT_TAG stages, ONNX Runtime's
order) as the op wrote them: never inlined, tiled or rfactored, their reduction unsplit and
innermost, so every schedule it draws gives the op's own schedule's answer bit for bit."""
from __future__ import annotations

import random

import numpy as np
import pytest

import autotune
import te
from autotune.auto_scheduler import SketchPolicy
from te import ops
from te.schedule import AttachType
from te.tensor import IterKind


@autotune.register_workload
def as_ort_layer_norm(B, R, N):
    """te.ops' layer norm over the last axis: its statistics in ONNX Runtime's order."""
    X = te.placeholder((B, R, N), name="X")
    g = te.placeholder((N,), name="g")
    b = te.placeholder((N,), name="b")
    return [X, g, b, ops.layer_norm(X, g, b, name="ln")]


def _candidates(policy: SketchPolicy) -> list[dict]:
    """The default parameters, the rows rule off, and random and mutated draws."""
    rng = random.Random(5)
    p = policy.default_params()
    out = [p, {**p, f"rows:{policy.rows_output}": False}]
    for k in range(4):
        p = policy.mutate(p, rng) if k % 2 else policy.sample(rng)
        out.append(p)
    return out


def _run(s, tensors, ins):
    out = np.zeros(tensors[-1].shape, np.float32)
    te.build(s, tensors)(*ins, out)
    return out


# a row of 40 (whole lane blocks) and of 37 (tails after the 4- and 8-lane sums)
@pytest.mark.parametrize("shape", [(2, 3, 40), (1, 5, 37)])
def test_layer_norm_statistics_are_left_in_their_op_order(shape):
    task = autotune.create_task(as_ort_layer_norm, shape)
    policy = SketchPolicy(task, threads=2)
    exact = sorted(n for n, f in policy.facts.items() if f.exact)
    assert exact == ["ln.inv", "ln.mean", "ln.sq", "ln.sum"]
    assert all(policy.kinds(policy.facts[n]) == ["plain"] for n in exact if not policy.facts[n].injective)
    data = np.random.default_rng(2)
    ins = [(data.standard_normal(t.shape) * 3 + 0.5).astype(np.float32) for t in task.tensors[:-1]]
    ref = task.tensors
    want = _run(ops.schedule([ref[-1]]), ref, ins)
    for p in _candidates(policy):
        s, tensors = policy.apply(p)
        for name in exact:
            st = s.stage(name)
            assert st.attach_type is not AttachType.INLINE, f"{name} inlined"
            assert not any(o.name.startswith(f"{name}.rf") for o in s.stages), f"{name} rfactored"
            reduce = [lv for lv in st.leaf_iter_vars if lv.kind is IterKind.REDUCE]
            assert reduce == list(st.op.reduce_axis), f"{name}: its reduction split or rfactored"
            if reduce:
                assert st.leaf_iter_vars[-len(reduce):] == reduce, f"{name}: its reduction not innermost"
        np.testing.assert_array_equal(_run(s, tensors, ins), want)
