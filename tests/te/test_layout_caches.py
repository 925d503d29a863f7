"""Caches in another layout: cache_write's axis order and cache_read's panels of any axis."""
from __future__ import annotations

import json

import numpy as np
import pytest

import te


def _mm_by_rows():
    """C[j, i] = sum_k A[i, k] * W[j, k]: W's rows indexed by C's first axis."""
    A = te.placeholder((8, 16), name="A")
    W = te.placeholder((32, 16), name="W")
    k = te.reduce_axis((0, 16), name="k")
    C = te.compute((32, 8), lambda j, i: te.sum(A[i, k] * W[j, k], axis=k), name="C")
    return A, W, C


def test_channels_last_cache_and_weights_packed_along_their_first_axis_replay_and_compute():
    A, W, C = _mm_by_rows()
    s = te.create_schedule(C.op)
    CL = s.cache_write(C, "local", (1, 0))
    WP = s.cache_read(W, "global", [CL.op], 16, 0)
    assert tuple(CL.shape) == (8, 32) and tuple(WP.shape) == (2, 16, 16)
    st = s[CL]
    i, j = st.op.axis
    jo, ji = st.split(j, factor=16)
    st.reorder(i, jo, *st.op.reduce_axis, ji)
    st.vectorize(ji)
    assert [x[0] for x in s.to_json()][:2] == ["cache_write", "cache_read"]
    again = te.replay(te.create_schedule(C.op), json.loads(json.dumps(s.to_json())))
    assert str(te.lower(again, [A, W, C])) == str(te.lower(s, [A, W, C]))
    data = np.random.default_rng(0)
    a, w = data.standard_normal((8, 16)).astype(np.float32), data.standard_normal((32, 16)).astype(np.float32)
    c = np.zeros((32, 8), np.float32)
    te.build(again, [A, W, C])(a, w, c)
    np.testing.assert_allclose(c, w @ a.T, rtol=1e-4, atol=1e-4)


def test_a_panel_of_the_last_axis_keeps_the_gemm_layout():
    A = te.placeholder((4, 6, 32), name="B")
    R = te.compute((4, 6, 32), lambda b, k, j: A[b, k, j] + 1.0, name="R")
    s = te.create_schedule(R.op)
    assert tuple(s.cache_read(A, "global", [R.op], 8).shape) == (4, 4, 6, 8)
    s = te.create_schedule(R.op)
    assert tuple(s.cache_read(A, "global", [R.op], 2, 1).shape) == (4, 3, 32, 2)


@pytest.mark.parametrize("panel,axis,match", [(5, 0, "panel=5 must be a positive int dividing its axis 0"),
                                              (8, 2, "axis=2 must be an axis of its 2 axes")])
def test_cache_read_refuses_a_panel_that_does_not_fit(panel, axis, match):
    A, W, C = _mm_by_rows()
    s = te.create_schedule(C.op)
    with pytest.raises(te.ScheduleError, match=match):
        s.cache_read(W, "global", [C.op], panel, axis)
