"""Lowering refuses reads that provably leave their tensor, naming the tensor, the index and its range."""
import numpy as np
import pytest

import te
from te.schedule import ScheduleError

X = te.placeholder((16,), name="X")


def build(c, *inputs):
    return te.build(te.create_schedule(c.op), [*inputs, c])


@pytest.mark.parametrize("index, span", [(lambda i: i + 1, "[1, 16]"),
                                         (lambda i: i + 100000000, "[100000000, 100000015]"),
                                         (lambda i: i - 1, "[-1, 14]"),
                                         (lambda i: i * 2, "[0, 30]")])
def test_an_affine_read_outside_the_tensor_is_refused(index, span):
    c = te.compute((16,), lambda i: X[index(i)], name="C")
    with pytest.raises(ScheduleError) as e:
        build(c, X)
    msg = str(e.value)
    assert "stage C" in msg and "reads X[" in msg and f"spans {span}" in msg and "extent 16" in msg, msg


def test_a_reduction_axis_past_the_tensor_is_refused():
    A = te.placeholder((4, 8), name="A")
    k = te.reduce_axis((0, 9), name="k")
    c = te.compute((4,), lambda i: te.sum(A[i, k], axis=k), name="S")
    with pytest.raises(ScheduleError, match=r"reads A\[i, k\].*dimension 1 spans \[0, 8\].*extent 8"):
        build(c, A)


def test_a_read_through_an_inlined_stage_is_checked():
    p = te.compute((16,), lambda i: X[i + 1], name="P")
    c = te.compute((16,), lambda i: p[i] * 2.0, name="C")
    s = te.create_schedule(c.op)
    s[p].compute_inline()
    with pytest.raises(ScheduleError, match=r"stage C: reads X\[i \+ 1\]"):
        te.build(s, [X, c])


def test_guarded_and_data_dependent_reads_still_build(run):
    x = np.arange(16, dtype=np.float32)
    # padding: the condition keeps the read in bounds
    pad = te.compute((18,), lambda i: te.if_then_else(te.all(i >= 1, i <= 16), X[i - 1], 0.0), name="pad")
    np.testing.assert_array_equal(run(te.create_schedule(pad.op), [X, pad], [x]), np.pad(x, 1))
    # gather: the index is loaded data
    idx = te.placeholder((4,), name="idx", dtype="int64")
    g = te.compute((4,), lambda i: X[idx[i]], name="g")
    np.testing.assert_array_equal(run(te.create_schedule(g.op), [X, idx, g], [x, np.array([3, 0, 15, 7])]),
                                  x[[3, 0, 15, 7]])
    # a conditional reduction whose condition keeps the read in bounds
    k = te.reduce_axis((0, 4), name="k")
    r = te.compute((16,), lambda i: te.sum(X[i + k], axis=k, where=i + k < 16), name="r")
    want = [x[i:i + 4].sum() for i in range(16)]
    np.testing.assert_allclose(run(te.create_schedule(r.op), [X, r], [x]), want)
    # a clamped index
    cl = te.compute((16,), lambda i: X[te.min_of(i + 1, 15)], name="cl")
    np.testing.assert_array_equal(run(te.create_schedule(cl.op), [X, cl], [x]), x[np.minimum(np.arange(16) + 1, 15)])


def test_a_shifted_read_inside_the_tensor_builds(run):
    c = te.compute((15,), lambda i: X[i + 1] - X[i], name="diff")
    x = np.arange(16, dtype=np.float32) ** 2
    np.testing.assert_array_equal(run(te.create_schedule(c.op), [X, c], [x]), np.diff(x))
