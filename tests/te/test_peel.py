"""Peeled vector tails (te/peel.py): whole vectors in a loop with no guard, then one masked step.

Every case is built twice: as lowered (peeled) and as the guarded loop nest before peeling
(the simplified function `te.lower(..., simple=False)` gives); the two must agree bit for bit
(the same additions in the same order) and with numpy, on extents 1, width-1, width+1 and 197.
"""
from __future__ import annotations

import numpy as np
import pytest

import te
from te.schedule import ForKind
from te.simplify import prove, simplify_func
from te.stmt import For, IfThenElse, walk_stmt

W = 16                                  # the vector width of every case
EXTENTS = [1, W - 1, W + 1, 197]


def _guarded(s, args):
    """The loop nest as lowered before peeling: every vector step under its lane guard."""
    return simplify_func(te.lower(s, args, "k", simple=False))


def _both(s, args, inputs, run):
    """The outputs of the peeled and of the guarded function, which must be equal bit for bit."""
    peeled, guarded = run(s, args, inputs), run(_guarded(s, args), args, inputs)
    np.testing.assert_array_equal(peeled, guarded)
    return peeled


def _elementwise(n: int, parallel: bool):
    A = te.placeholder((3, n), name="A")
    B = te.compute((3, n), lambda i, j: A[i, j] * 2.0 + 1.0, name="B")
    s = te.create_schedule(B.op)
    _, ji = s[B].split(B.op.axis[1], factor=W)
    s[B].vectorize(ji)
    if parallel:
        s[B].parallel(B.op.axis[0])
    return s, [A, B]


def _row_sum(n: int, parallel: bool):
    """A row's sum in W partial lanes (rfactor), the lanes the reduction's vector loop."""
    X = te.placeholder((3, n), name="X")
    k = te.reduce_axis((0, n), name="k")
    S = te.compute((3,), lambda i: te.sum(X[i, k] * X[i, k], axis=k), name="S")
    s = te.create_schedule(S.op)
    _, ki = s[S].split(k, factor=W)
    rf = s[s.rfactor(S, ki, factor_axis=1)]
    rf.reorder(*rf.op.axis[:-1], *rf.op.reduce_axis, rf.op.axis[-1])
    rf.vectorize(rf.op.axis[-1])
    rf.compute_at(s[S], S.op.axis[0])
    if parallel:
        s[S].parallel(S.op.axis[0])
    return s, [X, S]


def _column_sum(n: int, parallel: bool):
    """Columns summed over k, the columns in vectors: the guard sits inside the reduction loop."""
    X = te.placeholder((3, 5, n), name="X")
    k = te.reduce_axis((0, 5), name="k")
    S = te.compute((3, n), lambda b, j: te.sum(X[b, k, j], axis=k), name="S")
    s = te.create_schedule(S.op)
    jo, ji = s[S].split(S.op.axis[1], factor=W)
    s[S].reorder(S.op.axis[0], jo, k, ji)
    s[S].vectorize(ji)
    if parallel:
        s[S].parallel(S.op.axis[0])
    return s, [X, S]


@pytest.mark.parametrize("parallel", [False, True])
@pytest.mark.parametrize("n", EXTENTS)
def test_elementwise_peeled_equals_guarded_and_numpy(n, parallel, rand, run):
    s, args = _elementwise(n, parallel)
    a = rand((3, n))
    np.testing.assert_allclose(_both(s, args, [a], run), a * 2 + 1, rtol=1e-6)


@pytest.mark.parametrize("parallel", [False, True])
@pytest.mark.parametrize("n", EXTENTS)
def test_row_sum_peeled_equals_guarded_and_numpy(n, parallel, rand, run):
    s, args = _row_sum(n, parallel)
    x = rand((3, n))
    np.testing.assert_allclose(_both(s, args, [x], run), (x * x).sum(1), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("n", EXTENTS)
def test_column_sum_in_a_parallel_loop_peeled_equals_guarded_and_numpy(n, rand, run):
    s, args = _column_sum(n, parallel=True)
    x = rand((3, 5, n))
    np.testing.assert_allclose(_both(s, args, [x], run), x.sum(1), rtol=1e-5, atol=1e-6)


def _guards(stmt) -> list:
    return [x for x in walk_stmt(stmt) if isinstance(x, IfThenElse)]


@pytest.mark.parametrize("make", [_elementwise, _row_sum, _column_sum])
def test_main_loop_has_no_guard_and_the_tail_one(make):
    """197 = 12 * 16 + 5: a loop of 12 whole vectors with no guard, then one guarded step (an
    init's and an update's guards both in it)."""
    s, args = make(197, True)
    f = te.lower(s, args, "k")
    guarded = _guards(_guarded(s, args).body)       # an update's, and an init's in the vector loop
    mains = [x for x in walk_stmt(f.body) if isinstance(x, For) and x.kind is ForKind.SERIAL
             and x.extent.value == 12]
    assert len(mains) == 1 and not _guards(mains[0]), f"a main loop of 12 vectors, unguarded:\n{f}"
    tail = _guards(f.body)
    assert len(tail) == len(guarded), f"the guards left are the tail's:\n{f}"
    for g in tail:
        lane = next(x.var for x in walk_stmt(f.body) if isinstance(x, For) and x.kind is ForKind.VECTORIZED
                    and g in list(walk_stmt(x)))
        assert prove(g.cond, {lane: (0, 4)}) is True and prove(g.cond, {lane: (5, W - 1)}) is False, \
            f"the tail's guard keeps its first 5 lanes on, whatever the enclosing loops:\n{f}"


def test_extent_the_width_divides_and_single_step_are_left_alone():
    """Nothing to peel: 32 in vectors of 16 has no guard; 15 has one (masked) step only."""
    for n, guards in ((32, 0), (W - 1, 1)):
        s, args = _elementwise(n, False)
        f = te.lower(s, args, "k")
        assert str(f) == str(_guarded(s, args)) and len(_guards(f.body)) == guards


def test_parallel_split_outer_keeps_its_guard(rand, run):
    """A parallel loop is not peeled (its iterations are the threads' work): the guard stays."""
    A = te.placeholder((197,), name="A")
    B = te.compute((197,), lambda i: A[i] + 1.0, name="B")
    s = te.create_schedule(B.op)
    io, ii = s[B].split(B.op.axis[0], factor=W)
    s[B].vectorize(ii)
    s[B].parallel(io)
    assert len(_guards(te.lower(s, [A, B], "k").body)) == 1
    a = rand((197,))
    np.testing.assert_allclose(_both(s, [A, B], [a], run), a + 1, rtol=1e-6)


def test_only_the_loop_of_the_lane_guard_is_peeled(rand, run):
    """Rows split by 4 (10 rows: a scalar guard) and columns by 16 (37: a lane guard): the
    column loop is peeled, the row loop is not (its guard turns no lanes off), so the vector
    loop appears twice, not four times."""
    A = te.placeholder((10, 37), name="A")
    B = te.compute((10, 37), lambda i, j: A[i, j] - 3.0, name="B")
    s = te.create_schedule(B.op)
    yo, yi = s[B].split(B.op.axis[0], factor=4)
    xo, xi = s[B].split(B.op.axis[1], factor=W)
    s[B].reorder(yo, xo, yi, xi)
    s[B].vectorize(xi)
    f = te.lower(s, [A, B], "k")
    assert sum(isinstance(x, For) and x.kind is ForKind.VECTORIZED for x in walk_stmt(f.body)) == 2, str(f)
    a = rand((10, 37))
    np.testing.assert_allclose(_both(s, [A, B], [a], run), a - 3, rtol=1e-6)
