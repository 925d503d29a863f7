"""compute_at a later consumer: stages computed at the same loop read one another (a row's softmax)."""
from __future__ import annotations

import numpy as np
import pytest

import te


def _softmax(R: int, N: int):
    X = te.placeholder((R, N), name="X")
    k1 = te.reduce_axis((0, N), name="k1")
    k2 = te.reduce_axis((0, N), name="k2")
    mx = te.compute((R,), lambda i: te.max(X[i, k1], axis=k1), name="mx")
    ex = te.compute((R, N), lambda i, j: te.exp(X[i, j] - mx[i]), name="ex")
    sm = te.compute((R,), lambda i: te.sum(ex[i, k2], axis=k2), name="sm")
    Y = te.compute((R, N), lambda i, j: ex[i, j] / sm[i], name="Y")
    return X, mx, ex, sm, Y


def test_a_row_at_a_time_matches_numpy():
    X, mx, ex, sm, Y = _softmax(6, 40)
    s = te.create_schedule(Y)
    row, col = s[Y].op.axis
    ko, ki = s[sm].split(sm.op.reduce_axis[0], factor=8)
    rf = s.rfactor(sm, ki)              # sm.rf runs inside sm, itself inside the row loop
    for t in (mx, ex, sm):              # mx is read by ex, ex by sm.rf and Y: all inside Y's row loop
        s[t].compute_at(s[Y], row)
    s[rf].compute_at(s[sm], s[sm].op.axis[0])
    text = str(te.lower(s, [X, Y]))
    assert "ex: float32[40]" in text and "mx: float32[1]" in text, "one row of each, not the whole tensor"
    x = np.random.default_rng(0).standard_normal((6, 40)).astype(np.float32)
    out = np.zeros_like(x)
    te.build(s, [X, Y])(x, out)
    e = np.exp(x - x.max(1, keepdims=True))
    np.testing.assert_allclose(out, e / e.sum(1, keepdims=True), rtol=1e-5, atol=1e-6)


def test_a_reader_outside_the_loop_is_a_clear_error():
    X, mx, ex, sm, Y = _softmax(4, 16)
    s = te.create_schedule(Y)
    s[ex].compute_at(s[Y], s[Y].op.axis[0])         # sm, at the root, reads ex too
    with pytest.raises(te.ScheduleError, match="stage ex: it is computed at Y but sm reads it too; .*"
                                               "compute sm at the same loop"):
        te.lower(s, [X, Y])
    s = te.create_schedule(Y)
    with pytest.raises(te.ScheduleError, match="stage Y does not read X|X is a placeholder|placeholder"):
        s[X].compute_at(s[Y], s[Y].op.axis[0])
