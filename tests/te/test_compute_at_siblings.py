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


def _gemm(M: int, N: int, K: int, panel: int = 0):
    A = te.placeholder((M, K), name="A")
    B = te.placeholder((K, N), name="B")
    k = te.reduce_axis((0, K), name="k")
    C = te.compute((M, N), lambda i, j: te.sum(A[i, k] * B[k, j], axis=k), name="C")
    s = te.create_schedule(C)
    CL = s.cache_write(C, "local")
    BG = s.cache_read(B, "global", [CL], panel)
    i, j = s[C].op.axis
    jo, ji = s[C].split(j, factor=16)
    io, ii = s[C].split(i, factor=4)
    s[C].reorder(jo, io, ii, ji)
    return A, B, C, s, CL, BG, jo, io


def test_a_reader_at_an_inner_loop_of_the_same_consumer_runs_inside_the_producers_loop():
    A, B, C, s, CL, BG, jo, io = _gemm(8, 32, 12)
    s[CL].compute_at(s[C], io)          # a register tile of C.local per row tile
    s[BG].compute_at(s[C], jo)          # B's column panel once per column block, read by every row tile
    text = str(te.lower(s, [A, B, C]))
    assert "B.global: float32[192]" in text and "shape (12, 16)" in text, "one panel: K x 16 columns"
    assert text.index("allocate B.global") < text.index("for i.outer"), "packed outside the row tiles"
    _check_gemm(s, A, B, C)


def _check_gemm(s, A, B, C):
    a, b = (np.random.default_rng(d).standard_normal(sh).astype(np.float32) for d, sh in ((0, (8, 12)), (1, (12, 32))))
    out = np.zeros((8, 32), np.float32)
    te.build(s, [A, B, C])(a, b, out)
    np.testing.assert_allclose(out, a @ b, rtol=1e-5, atol=1e-5)


def test_a_reader_at_an_outer_loop_of_the_producers_consumer_is_still_an_error():
    A, B, C, s, CL, BG, jo, io = _gemm(8, 32, 12)
    s[CL].compute_at(s[C], jo)          # C.local once per column block: outside the row loop
    s[BG].compute_at(s[C], io)          # B.global inside it, but C.local reads all of it
    with pytest.raises(te.ScheduleError, match="stage B.global: it is computed at C but C.local reads it too"):
        te.lower(s, [A, B, C])


def test_cache_read_in_column_panels_is_a_gemms_packed_b():
    A, B, C, s, CL, BG, jo, io = _gemm(8, 32, 12, panel=16)
    s[CL].compute_at(s[C], io)
    text = str(te.lower(s, [A, B, C]))
    assert "shape (2, 12, 16)" in text and "B.global[j.outer * 192 + k * 16 + j.c]" in text, \
        "[N / 16, K, 16]: a panel contiguous over K, read without a division"
    _check_gemm(s, A, B, C)
    again = te.replay(te.create_schedule(C), s.to_json())
    assert str(te.lower(again, [A, B, C])) == text
    for bad in (5, 0.5, True, -16):
        s = te.create_schedule(C)
        with pytest.raises(te.ScheduleError, match=r"cache_read of B: panel=.* must be a positive int dividing its last"):
            s.cache_read(B, "global", [C], bad)
