"""pragma(axis, "overhang", "clamp"): a tile that does not divide the tensor, its overhang computed
at the last point into the stage's own buffer instead of guarded point by point (a padded GEMM tile)."""
from __future__ import annotations

import numpy as np
import pytest

import te
from te.lower import CLAMP, OVERHANG
from te.schedule import ScheduleError

from .build_helpers import RED, matmul, ref_matmul


def _tiled(M: int, rows: int, clamp: bool = True, pack_a: bool = False):
    """C = A @ B (M x 16 x 32) in row tiles of `rows` (overhanging M), the accumulator and A's
    rows copied per tile, their row axes clamped."""
    A, B, C = matmul(M, 16, 32)
    s = te.create_schedule(C)
    CL = s.cache_write(C, "local")
    AA = s.cache_read(A, "global", [s[CL].op]) if pack_a else None
    i, j = s[C].op.axis
    io, ii = s[C].split(i, factor=rows)
    s[C].vectorize(j)
    s[CL].compute_at(s[C], io)
    if clamp:
        s[CL].pragma(s[CL].op.axis[0], OVERHANG, CLAMP)
    ci, cj = s[CL].op.axis
    (k,) = s[CL].op.reduce_axis
    s[CL].reorder(k, ci, cj)
    s[CL].unroll(ci)
    s[CL].vectorize(cj)
    if pack_a:
        s[AA].compute_at(s[C], io)
        if clamp:
            s[AA].pragma(s[AA].op.axis[0], OVERHANG, CLAMP)
    return s, [A, B, C], CL


@pytest.mark.parametrize("pack_a", [False, True])
def test_clamped_overhang_matches_numpy_without_a_guard_in_the_tile(pack_a):
    s, args, CL = _tiled(20, 6, pack_a=pack_a)          # 4 tiles of 6 rows, the last 4 past the end
    text = str(te.lower(s, args))
    nest = text[text.index("produce C.local"):text.index("for i.inner")]
    assert "min(" in nest and "if " not in nest, "the tile's rows clamped, not guarded"
    assert "C.local: float32[192]" in text, "the buffer holds the whole 6-row tile"
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((20, 16), np.float32), rng.standard_normal((16, 32), np.float32)
    c = np.full((20, 32), np.nan, np.float32)
    te.build(s, args)(a, b, c)
    np.testing.assert_allclose(c, ref_matmul(a, b), **RED)


def test_without_the_pragma_the_overhang_is_guarded():
    s, args, _ = _tiled(20, 6, clamp=False)
    text = str(te.lower(s, args))
    nest = text[text.index("produce C.local"):text.index("for i.inner")]
    assert "if " in nest and "min(" not in nest


def test_an_unknown_value_is_a_clear_error():
    A, B, C = matmul(8, 4, 16)
    s = te.create_schedule(C)
    CL = s.cache_write(C, "local")
    s[CL].compute_at(s[C], s[C].op.axis[0])
    s[CL].pragma(s[CL].op.axis[0], OVERHANG, "pad")
    with pytest.raises(ScheduleError, match="the only value is 'clamp'"):
        te.lower(s, [A, B, C])


def test_on_a_split_or_reduction_axis_it_is_a_clear_error():
    for where in ("split", "reduce"):
        A, B, C = matmul(8, 4, 16)
        s = te.create_schedule(C)
        CL = s.cache_write(C, "local")
        s[CL].compute_at(s[C], s[C].op.axis[0])
        if where == "split":
            _, ax = s[CL].split(s[CL].op.axis[0], factor=2)
        else:
            ax = s[CL].op.reduce_axis[0]
        s[CL].pragma(ax, OVERHANG, CLAMP)
        with pytest.raises(ScheduleError, match="put it on one of the stage's own data axes"):
            te.lower(s, [A, B, C])


def test_at_the_root_it_changes_nothing():
    A, B, C = matmul(8, 4, 16)
    s = te.create_schedule(C)
    s[C].pragma(s[C].op.axis[0], OVERHANG, CLAMP)
    a = np.ones((8, 4), np.float32)
    b = np.ones((4, 16), np.float32)
    c = np.zeros((8, 16), np.float32)
    te.build(s, [A, B, C])(a, b, c)
    np.testing.assert_allclose(c, np.full((8, 16), 4.0, np.float32))
