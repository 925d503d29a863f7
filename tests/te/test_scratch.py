"""hoist_scratch: a kernel's large per-call allocations become arguments a model plans in its workspace
(a whole model's use of them: tests/frontends/test_workspace.py)."""
import numpy as np

import te
from te.stmt import PER_ITERATION_MAX, Allocate, For, hoist_scratch, walk_stmt


def _two_stage(n: int, parallel_inner: bool, shares: int = 0):
    a = te.placeholder((n, 64), "float32", name="a")
    t = te.compute((n, 64), lambda i, j: a[i, j] * 2.0, name="t")
    out = te.compute((n, 64), lambda i, j: t[i, j] + 1.0, name="out")
    s = te.create_schedule(out.op)
    if parallel_inner:          # t computed inside the parallel loop: a per-row buffer
        s[out].parallel(s[out].op.axis[0])
        s[t].compute_at(s[out], s[out].op.axis[0])
    if shares:                  # `shares` parallel iterations, each computing its rows of t
        outer, _ = s[out].split(s[out].op.axis[0], nparts=shares)
        s[out].parallel(outer)
        s[t].compute_at(s[out], outer)
    return s, [a, out]


def test_a_large_root_allocation_becomes_the_last_argument():
    s, args = _two_stage(1024, parallel_inner=False)          # t: 256 KiB at the root
    f = te.lower(s, args, "k")
    h = hoist_scratch(f, 64 * 1024)
    assert [b.name for b in h.args] == [b.name for b in f.args] + ["t"]
    assert h.attrs["scratch"] == 1
    assert not any(isinstance(x, Allocate) for x in walk_stmt(h.body))
    a = np.random.default_rng(0).standard_normal((1024, 64)).astype(np.float32)
    out, scratch = np.zeros_like(a), np.zeros_like(a)
    te.build(h)(a, out, scratch)
    np.testing.assert_allclose(out, a * 2 + 1, rtol=1e-6)
    np.testing.assert_allclose(scratch, a * 2, rtol=1e-6)   # the kernel wrote its stage there


def test_small_and_per_thread_allocations_stay():
    s, args = _two_stage(16, parallel_inner=False)             # 4 KiB: on the stack
    f = te.lower(s, args, "k")
    assert hoist_scratch(f, 64 * 1024) is f
    s, args = _two_stage(1024, parallel_inner=True)
    f = te.lower(s, args, "k")
    h = hoist_scratch(f, 0)                                     # even a tiny one inside a parallel loop stays
    assert h is f
    assert any(isinstance(x, For) for x in walk_stmt(h.body))


def test_a_large_buffer_of_a_short_parallel_loop_becomes_one_slice_per_iteration():
    """A buffer allocated in each iteration of a parallel loop of a few iterations (a share per
    thread, as the direct conv's padded input: te.ops.conv2d._tasks) becomes one argument of a
    64-byte aligned slice per iteration, iteration i on slice i."""
    s, args = _two_stage(1000, parallel_inner=False, shares=2)      # 500 rows of t per share: 125 KiB
    f = te.lower(s, args, "k")
    assert any(isinstance(x, Allocate) for x in walk_stmt(f.body))
    h = hoist_scratch(f, 64 * 1024)
    assert not any(isinstance(x, Allocate) for x in walk_stmt(h.body))
    assert h.attrs["scratch"] == 1 and h.args[-1].shape == (2 * 500 * 64,)
    a = np.random.default_rng(0).standard_normal((1000, 64)).astype(np.float32)
    out, scratch = np.zeros_like(a), np.full(2 * 500 * 64, np.nan, np.float32)
    te.build(h)(a, out, scratch)
    np.testing.assert_allclose(out, a * 2 + 1, rtol=1e-6)
    np.testing.assert_allclose(scratch.reshape(1000, 64), a * 2, rtol=1e-6)   # each share its own slice


def test_a_slice_starts_on_a_line():
    a = te.placeholder((10, 3), "float32", name="a")
    t = te.compute((10, 3), lambda i, j: a[i, j] * 2.0, name="t")
    out = te.compute((10, 3), lambda i, j: t[i, j] + 1.0, name="out")
    sch = te.create_schedule(out.op)
    outer, _ = sch[out].split(sch[out].op.axis[0], nparts=2)
    sch[out].parallel(outer)
    sch[t].compute_at(sch[out], outer)
    h = hoist_scratch(te.lower(sch, [a, out], "k"), 0)              # 15 floats a share: 16 a slice
    assert h.args[-1].shape == (2 * 16,)
    x = np.arange(30, dtype=np.float32).reshape(10, 3)
    y = np.zeros_like(x)
    te.build(h)(x, y, np.zeros(32, np.float32))
    np.testing.assert_array_equal(y, x * 2 + 1)


def test_buffers_of_long_parallel_loops_stay():
    s, args = _two_stage(4 * PER_ITERATION_MAX, parallel_inner=True)
    f = te.lower(s, args, "k")
    assert hoist_scratch(f, 0) is f
