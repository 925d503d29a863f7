"""A built Kernel checks its numpy arguments: count, shape, dtype, layout, writability; a refused call
writes nothing, and checked pointers keep their arrays alive."""
from __future__ import annotations

import numpy as np
import pytest

import te


# ------------------------------------------------------------------ argument checking

@pytest.fixture
def add_kernel():
    A = te.placeholder((3, 4), name="A")
    B = te.placeholder((3, 4), name="B")
    C = te.compute((3, 4), lambda i, j: A[i, j] + B[i, j], name="C")
    return te.build(te.create_schedule(C.op), [A, B, C])


def _ok_args():
    return [np.ones((3, 4), np.float32), np.ones((3, 4), np.float32), np.zeros((3, 4), np.float32)]


def test_kernel_accepts_good_arguments(add_kernel):
    a, b, c = _ok_args()
    add_kernel(a, b, c)
    assert np.all(c == 2)


def test_kernel_wrong_argument_count(add_kernel):
    a, b, c = _ok_args()
    with pytest.raises(ValueError, match=r"takes 3 arrays \(A, B, C\), got 2"):
        add_kernel(a, b)
    with pytest.raises(ValueError, match="got 4"):
        add_kernel(a, b, c, c)


def test_kernel_wrong_shape_names_argument(add_kernel):
    a, b, c = _ok_args()
    with pytest.raises(ValueError, match=r"argument B: expected shape \(3, 4\), got \(4, 3\)"):
        add_kernel(a, np.ones((4, 3), np.float32), c)
    with pytest.raises(ValueError, match="argument C"):
        add_kernel(a, b, np.zeros(12, np.float32))


def test_kernel_wrong_dtype_names_argument(add_kernel):
    a, b, c = _ok_args()
    with pytest.raises(ValueError, match="argument A: expected dtype float32, got float64"):
        add_kernel(a.astype(np.float64), b, c)
    with pytest.raises(ValueError, match="argument C"):
        add_kernel(a, b, c.astype(np.int32))


def test_kernel_non_contiguous_names_argument(add_kernel):
    a, b, c = _ok_args()
    wide = np.ones((3, 8), np.float32)
    with pytest.raises(ValueError, match="argument B: .*contiguous"):
        add_kernel(a, wide[:, ::2], c)
    with pytest.raises(ValueError, match="argument A"):
        add_kernel(np.asfortranarray(np.ones((3, 4), np.float32)), b, c)


def test_kernel_non_array_argument(add_kernel):
    a, b, c = _ok_args()
    with pytest.raises(ValueError, match="argument A: expected a numpy array"):
        add_kernel(a.tolist(), b, c)


def test_kernel_read_only_output(add_kernel):
    a, b, c = _ok_args()
    c.flags.writeable = False
    with pytest.raises(ValueError, match="argument C: .*read-only"):
        add_kernel(a, b, c)
    a.flags.writeable = False      # read-only inputs are fine
    add_kernel(a, b, np.zeros((3, 4), np.float32))


def test_kernel_bad_call_leaves_output_untouched(add_kernel):
    a, b, c = _ok_args()
    c[:] = 5
    with pytest.raises(ValueError):
        add_kernel(a, b.astype(np.float64), c)
    assert np.all(c == 5)

def test_checked_pointers_keep_their_arrays_alive():
    """Kernel.check's pointers hold the arrays: a timing loop over temporaries cannot write into freed memory."""
    import gc
    import weakref
    a = te.placeholder((64,), name="a")
    b = te.compute((64,), lambda i: a[i] * 2.0, name="b")
    f = te.build(te.create_schedule(b.op), [a, b])
    src = np.arange(64, dtype=np.float32)
    out = np.zeros(64, np.float32)
    ptrs = f.check([src.copy(), out])
    probe = weakref.ref(ptrs.arrays[0])
    gc.collect()
    assert probe() is not None                       # the temporary copy lives with the pointers
    f.call_unchecked(ptrs)
    np.testing.assert_array_equal(out, src * 2)
    del ptrs
    gc.collect()
    assert probe() is None
