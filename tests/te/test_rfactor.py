"""The rfactor primitive: partial reductions in a new stage, checked against numpy and replayed."""
from __future__ import annotations

import numpy as np
import pytest

import te


def _row_sum(n=6, k=50, lo=0, reducer=None):
    A = te.placeholder((n, k), name="A")
    r = te.reduce_axis((lo, k), name="k")
    red = reducer or te.sum
    C = te.compute((n,), lambda i: red(A[i, r] * 2.0, axis=r), name="C")
    return A, C


def _run(s, A, C, a):
    out = np.zeros(C.shape, np.float32)
    te.build(s, [A, C])(a, out)
    return out


@pytest.mark.parametrize("factor,factor_axis", [(16, 1), (10, 0), (7, 1)])
def test_rfactor_inner_part_matches_numpy(factor, factor_axis):
    A, C = _row_sum()
    s = te.create_schedule(C.op)
    ko, ki = s[C].split(C.op.reduce_axis[0], factor=factor)
    CF = s.rfactor(C, ki, factor_axis=factor_axis)
    assert CF.shape == ((factor, 6) if factor_axis == 0 else (6, factor))
    assert [st.name for st in s.stages] == ["A", "C.rf", "C"]
    a = np.random.default_rng(0).random((6, 50), np.float32)
    np.testing.assert_allclose(_run(s, A, C, a), 2 * a.sum(1), rtol=1e-5)


def test_rfactor_vectorized_partial_sums_under_compute_at():
    A, C = _row_sum()
    s = te.create_schedule(C.op)
    ko, ki = s[C].split(C.op.reduce_axis[0], factor=16)
    CF = s.rfactor(C, ki, factor_axis=1)
    i, kin = s[CF].op.axis
    (kout,) = s[CF].op.reduce_axis
    s[CF].reorder(i, kout, kin)
    s[CF].vectorize(kin)
    s[CF].compute_at(s[C], s[C].op.axis[0])
    text = str(te.lower(s, [A, C]))
    assert "vectorized" in text and "C.rf" in text
    a = np.random.default_rng(1).random((6, 50), np.float32)
    np.testing.assert_allclose(_run(s, A, C, a), 2 * a.sum(1), rtol=1e-5)


def test_rfactor_outer_part_unsplit_axis_offset_domain_and_max():
    a = np.random.default_rng(2).standard_normal((6, 50)).astype(np.float32)
    A, C = _row_sum(lo=3, reducer=te.max)
    s = te.create_schedule(C.op)
    ko, ki = s[C].split(C.op.reduce_axis[0], nparts=4)
    s.rfactor(C, ko)
    np.testing.assert_allclose(_run(s, A, C, a), 2 * a[:, 3:].max(1), rtol=1e-6)
    A, C = _row_sum()
    s = te.create_schedule(C.op)
    CF = s[C].rfactor(C.op.reduce_axis[0])        # the whole axis: one partial per element
    assert CF.shape == (50, 6)
    np.testing.assert_allclose(_run(s, A, C, a), 2 * a.sum(1), rtol=1e-5)


def test_rfactor_keeps_other_reduce_axes_and_replays():
    A = te.placeholder((4, 9, 20), name="A")
    r1 = te.reduce_axis((0, 9), name="r1")
    r2 = te.reduce_axis((0, 20), name="r2")
    C = te.compute((4,), lambda i: te.sum(A[i, r1, r2], axis=[r1, r2]), name="C")
    s = te.create_schedule(C.op)
    o, inner = s[C].split(r2, factor=8)
    CF = s.rfactor(C, inner)
    assert [a.name for a in s[CF].op.reduce_axis] == ["r1", "r2.outer"]
    a = np.random.default_rng(3).random((4, 9, 20), np.float32)
    np.testing.assert_allclose(_run(s, A, C, a), a.sum((1, 2)), rtol=1e-5)
    again = te.replay(te.create_schedule(C.op), s.to_json())
    assert str(te.lower(again, [A, C])) == str(te.lower(s, [A, C]))
    assert again.to_json() == s.to_json()


def test_rfactor_errors_name_the_stage_and_fix():
    A, C = _row_sum()
    s = te.create_schedule(C.op)
    with pytest.raises(te.ScheduleError, match="stage C: rfactor: i is a data axis"):
        s.rfactor(C, C.op.axis[0])
    with pytest.raises(te.ScheduleError, match="factor_axis must be an int in 0..1"):
        s.rfactor(C, C.op.reduce_axis[0], factor_axis=5)
    io, ii = s[C].split(C.op.axis[0], factor=2)
    with pytest.raises(te.ScheduleError, match="right after the split"):
        s.rfactor(C, C.op.reduce_axis[0])
    B = te.compute((6,), lambda i: A[i, 0] + 1.0, name="B")
    with pytest.raises(te.ScheduleError, match="stage B: rfactor needs a stage whose body is one reduction"):
        te.create_schedule(B.op).rfactor(B, B.op.axis[0])


def test_rfactor_again_folds_the_partial_lanes_under_its_own_name_and_replays():
    A, C = _row_sum(k=64)
    s = te.create_schedule(C.op)
    _, ki = s[C].split(C.op.reduce_axis[0], factor=16)
    rf1 = s.rfactor(C, ki, factor_axis=1)
    _, fi = s[C].split(s[C].op.reduce_axis[0], factor=8)    # the 16 lanes folded to 8
    rf2 = s.rfactor(C, fi, factor_axis=1)
    assert (rf1.name, rf2.name) == ("C.rf", "C.rf2") and rf2.shape == (6, 8)
    for t in (rf1, rf2):
        s[t].vectorize(s[t].op.axis[-1])
        s[t].reorder(s[t].op.axis[0], *s[t].op.reduce_axis, s[t].op.axis[-1])
        s[t].compute_at(s[C], s[C].op.axis[0])
    a = np.random.default_rng(4).standard_normal((6, 64)).astype(np.float32)
    np.testing.assert_allclose(_run(s, A, C, a), 2 * a.sum(1), rtol=1e-5, atol=1e-5)
    again = te.replay(te.create_schedule(C.op), s.steps)
    assert str(te.lower(again, [A, C])) == str(te.lower(s, [A, C]))
