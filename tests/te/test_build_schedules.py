"""Compiling and running scheduled kernels (tiles, splits that do not divide, parallel, vectorize,
unroll, fuse, cache_read/write, pragmas): every result is checked against numpy."""
from __future__ import annotations

import numpy as np
import pytest

import te

from .build_helpers import ELEM, RED, matmul, ref_matmul


# ------------------------------------------------------------------ matmul

@pytest.mark.parametrize("shape", [(24, 20, 18), (16, 16, 16), (1, 7, 3), (13, 1, 5)])
def test_matmul_default(shape, rand, run):
    M, K, N = shape
    A, B, C = matmul(M, K, N)
    a, b = rand((M, K)), rand((K, N))
    np.testing.assert_allclose(run(te.create_schedule(C.op), [A, B, C], [a, b]), ref_matmul(a, b), **RED)


def test_matmul_tiled_reordered(rand, run):
    M, K, N = 32, 24, 40
    A, B, C = matmul(M, K, N)
    s = te.create_schedule(C.op)
    i, j = C.op.axis
    (k,) = C.op.reduce_axis
    io, jo, ii, ji = s[C].tile(i, j, 8, 8)
    ko, ki = s[C].split(k, factor=4)
    s[C].reorder(io, jo, ko, ii, ki, ji)
    s[C].vectorize(ji)
    a, b = rand((M, K)), rand((K, N))
    np.testing.assert_allclose(run(s, [A, B, C], [a, b]), ref_matmul(a, b), **RED)


def test_tile_returns_loops_in_order():
    A, B, C = matmul(8, 8, 8)
    s = te.create_schedule(C.op)
    xo, yo, xi, yi = s[C].tile(C.op.axis[0], C.op.axis[1], 4, 2)
    assert s[C].leaf_iter_vars[:4] == [xo, yo, xi, yi]
    assert [iv.name for iv in (xo, yo, xi, yi)] == ["i.outer", "j.outer", "i.inner", "j.inner"]


def test_matmul_float64(rand, run):
    A, B, C = matmul(9, 11, 7, "float64")
    a, b = rand((9, 11), "float64"), rand((11, 7), "float64")
    s = te.create_schedule(C.op)
    s[C].vectorize(C.op.axis[1])
    np.testing.assert_allclose(run(s, [A, B, C], [a, b]), a @ b, rtol=1e-12, atol=1e-12)

# ------------------------------------------------------------------ non-divisible splits

@pytest.mark.parametrize("factor", [1, 2, 3, 5, 7, 23, 24, 25, 100])
def test_split_factor_that_does_not_divide(factor, rand, run):
    M, K, N = 24, 20, 18
    A, B, C = matmul(M, K, N)
    s = te.create_schedule(C.op)
    io, ii = s[C].split(C.op.axis[0], factor=factor)
    jo, ji = s[C].split(C.op.axis[1], factor=factor)
    ko, ki = s[C].split(C.op.reduce_axis[0], factor=factor)
    s[C].reorder(io, jo, ko, ii, ki, ji)
    a, b = rand((M, K)), rand((K, N))
    np.testing.assert_allclose(run(s, [A, B, C], [a, b]), ref_matmul(a, b), **RED)


@pytest.mark.parametrize("nparts", [1, 4, 5, 7, 19, 30])
def test_split_nparts_that_does_not_divide(nparts, rand, run):
    A = te.placeholder((19,), name="A")
    C = te.compute((19,), lambda i: A[i] * 2.0 + 1.0, name="C")
    s = te.create_schedule(C.op)
    o, i = s[C].split(C.op.axis[0], nparts=nparts)
    s[C].split(i, factor=3)
    a = rand(19)
    np.testing.assert_allclose(run(s, [A, C], [a]), a * 2 + 1, **ELEM)


def test_nested_non_divisible_splits_write_no_out_of_bounds(rand):
    """Guards must keep every store inside the output: canaries around it stay untouched."""
    A = te.placeholder((13,), name="A")
    C = te.compute((13,), lambda i: A[i] + 1.0, name="C")
    s = te.create_schedule(C.op)
    o, i = s[C].split(C.op.axis[0], factor=5)
    io, ii = s[C].split(i, factor=2)
    s[C].vectorize(ii)
    f = te.build(s, [A, C])
    a = rand(13)
    buf = np.full(13 + 32, -7.0, np.float32)
    out = buf[16:29]
    f(a, out)
    np.testing.assert_allclose(out, a + 1, **ELEM)
    assert np.all(buf[:16] == -7.0) and np.all(buf[29:] == -7.0)

# ------------------------------------------------------------------ loop annotations

def test_parallel_and_vectorize_combined(rand, run):
    M, N = 37, 64
    A = te.placeholder((M, N), name="A")
    B = te.placeholder((N,), name="B")
    C = te.compute((M, N), lambda i, j: te.sigmoid(A[i, j] * B[j]) + 1.0, name="C")
    s = te.create_schedule(C.op)
    jo, ji = s[C].split(C.op.axis[1], factor=16)
    s[C].parallel(C.op.axis[0])
    s[C].vectorize(ji)
    a, b = rand((M, N)), rand(N)
    f = te.build(s, [A, B, C])
    llvm = f.get_source("llvm")
    assert "GOMP_parallel" in llvm
    assert "<16 x float>" in llvm, "the vectorized loop should be emitted as vectors"
    c = np.zeros((M, N), np.float32)
    f(a, b, c)
    np.testing.assert_allclose(c, 1 / (1 + np.exp(-(a * b))) + 1, **ELEM)


@pytest.mark.parametrize("threads", [1, 2, 3, 8])
def test_parallel_thread_counts(threads, rand):
    A, B, C = matmul(23, 9, 17)
    s = te.create_schedule(C.op)
    fused = s[C].fuse(*C.op.axis)
    s[C].parallel(fused)
    f = te.build(s, [A, B, C])
    f.set_num_threads(threads)
    a, b = rand((23, 9)), rand((9, 17))
    c = np.zeros((23, 17), np.float32)
    f(a, b, c)
    np.testing.assert_allclose(c, ref_matmul(a, b), **RED)


@pytest.mark.parametrize("extent", [1, 2, 3, 15, 16, 17, 1000])
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_parallel_loops_claim_every_iteration_once(extent, threads):
    """Threads claim chunks of a parallel loop from a shared counter: every iteration runs, also
    where the chunks do not divide the extent or there are fewer iterations than threads (the
    output starts as NaN, so a skipped iteration shows)."""
    A = te.placeholder((extent, 4), name="A")
    C = te.compute((extent, 4), lambda i, j: A[i, j] + 1.0, name="C")
    s = te.create_schedule(C.op)
    s[C].parallel(C.op.axis[0])
    f = te.build(s, [A, C])
    f.set_num_threads(threads)
    a = np.arange(extent * 4, dtype=np.float32).reshape(extent, 4)
    c = np.full((extent, 4), np.nan, np.float32)
    f(a, c)
    np.testing.assert_array_equal(c, a + 1)


def test_parallel_reduction_over_data_axis(rand, run):
    A = te.placeholder((50, 30), name="A")
    k = te.reduce_axis((0, 30), name="k")
    C = te.compute((50,), lambda i: te.sum(A[i, k], axis=k), name="C")
    s = te.create_schedule(C.op)
    io, ii = s[C].split(C.op.axis[0], factor=7)
    s[C].parallel(io)
    a = rand((50, 30))
    np.testing.assert_allclose(run(s, [A, C], [a]), a.sum(axis=1), **RED)


def test_cache_write_register_blocking(rand, run):
    """TVM's GEMM tutorial: write into a local block, then copy it out."""
    M, K, N = 64, 48, 40
    A, B, C = matmul(M, K, N)
    s = te.create_schedule(C.op)
    CC = s.cache_write(C, "local")
    mo, no, mi, ni = s[C].tile(C.op.axis[0], C.op.axis[1], 8, 16)
    s[CC].compute_at(s[C], no)
    mc, nc = s[CC].op.axis
    (kk,) = s[CC].op.reduce_axis
    ko, ki = s[CC].split(kk, factor=4)
    s[CC].reorder(ko, mc, ki, nc)
    s[CC].unroll(ki)
    s[CC].vectorize(nc)
    s[C].vectorize(ni)
    s[C].parallel(mo)
    text = str(te.lower(s, [A, B, C]))
    assert "allocate C.local" in text
    assert text.index("produce C.local") > text.index("for j.outer")
    a, b = rand((M, K)), rand((K, N))
    np.testing.assert_allclose(run(s, [A, B, C], [a, b]), ref_matmul(a, b), **RED)


def test_cache_write_then_elementwise_consumer(rand, run):
    M, K, N = 12, 8, 20
    A, B, C = matmul(M, K, N)
    D = te.compute((M, N), lambda i, j: te.tanh(C[i, j]), name="D")
    s = te.create_schedule(D.op)
    CC = s.cache_write(C, "local")
    s[C].compute_inline()
    s[CC].compute_at(s[D], D.op.axis[0])
    s[CC].vectorize(s[CC].op.axis[1])
    a, b = rand((M, K)), rand((K, N))
    np.testing.assert_allclose(run(s, [A, B, D], [a, b]), np.tanh(ref_matmul(a, b)), **RED)


def test_cache_read(rand, run):
    M, K, N = 16, 12, 8
    A, B, C = matmul(M, K, N)
    s = te.create_schedule(C.op)
    AA = s.cache_read(A, "shared", [C])
    s.cache_read(B, "local", [C])
    io, ii = s[C].split(C.op.axis[0], factor=4)
    s[AA].compute_at(s[C], io)
    text = str(te.lower(s, [A, B, C]))
    assert "A.shared" in text and "B.local" in text
    a, b = rand((M, K)), rand((K, N))
    np.testing.assert_allclose(run(s, [A, B, C], [a, b]), ref_matmul(a, b), **RED)


@pytest.mark.parametrize("which", ["inner", "outer", "both", "reduce"])
def test_unroll(which, rand, run):
    M, K, N = 10, 6, 12
    A, B, C = matmul(M, K, N)
    s = te.create_schedule(C.op)
    jo, ji = s[C].split(C.op.axis[1], factor=4)
    if which in ("inner", "both"):
        s[C].unroll(ji)
    if which in ("outer", "both"):
        s[C].unroll(jo)
    if which == "reduce":
        s[C].unroll(C.op.reduce_axis[0])
    assert "# unrolled" in str(te.lower(s, [A, B, C]))
    a, b = rand((M, K)), rand((K, N))
    np.testing.assert_allclose(run(s, [A, B, C], [a, b]), ref_matmul(a, b), **RED)


def test_fuse_then_split(rand, run):
    A = te.placeholder((6, 7, 5), name="A")
    C = te.compute((6, 7, 5), lambda a, b, c: A[a, b, c] * 2.0 - 1.0, name="C")
    s = te.create_schedule(C.op)
    f = s[C].fuse(*C.op.axis)
    fo, fi = s[C].split(f, factor=16)     # 210 = 13 * 16 + 2
    s[C].parallel(fo)
    s[C].vectorize(fi)
    text = str(te.lower(s, [A, C]))
    assert "a.b.fused.c.fused.outer" in text
    x = rand((6, 7, 5))
    np.testing.assert_allclose(run(s, [A, C], [x]), x * 2 - 1, **ELEM)


def test_fuse_matmul_data_axes_and_split(rand, run):
    A, B, C = matmul(9, 5, 7)
    s = te.create_schedule(C.op)
    f = s[C].fuse(C.op.axis[0], C.op.axis[1])
    fo, fi = s[C].split(f, factor=10)
    s[C].reorder(fi, fo)
    a, b = rand((9, 5)), rand((5, 7))
    np.testing.assert_allclose(run(s, [A, B, C], [a, b]), ref_matmul(a, b), **RED)


def test_fuse_reduce_axes(rand, run):
    A = te.placeholder((3, 4, 6), name="A")
    r1, r2 = te.reduce_axis((0, 4), name="r1"), te.reduce_axis((0, 6), name="r2")
    C = te.compute((3,), lambda i: te.sum(A[i, r1, r2], axis=[r1, r2]), name="C")
    s = te.create_schedule(C.op)
    fr = s[C].fuse(r1, r2)
    s[C].split(fr, factor=5)
    a = rand((3, 4, 6))
    np.testing.assert_allclose(run(s, [A, C], [a]), a.sum(axis=(1, 2)), **RED)


def test_vectorize_reduction_with_data_axis_inside(rand, run):
    A, B, C = matmul(8, 16, 32)
    s = te.create_schedule(C.op)
    i, j = C.op.axis
    (k,) = C.op.reduce_axis
    s[C].reorder(i, k, j)
    s[C].vectorize(j)
    a, b = rand((8, 16)), rand((16, 32))
    np.testing.assert_allclose(run(s, [A, B, C], [a, b]), ref_matmul(a, b), **RED)


def test_pragma_is_kept_in_lowered_ir(rand, run):
    A = te.placeholder((8,), name="A")
    C = te.compute((8,), lambda i: A[i] + 1.0, name="C")
    s = te.create_schedule(C.op)
    s[C].pragma(C.op.axis[0], "auto_unroll_max_step", 16)
    assert "pragma(auto_unroll_max_step=16)" in str(te.lower(s, [A, C]))
    a = rand(8)
    np.testing.assert_allclose(run(s, [A, C], [a]), a + 1, **ELEM)


def test_large_intermediate_goes_to_heap(rand, run):
    """An intermediate over the 64 KiB stack limit is heap-allocated and still correct."""
    M, N = 160, 128      # 80 KiB of float32
    A = te.placeholder((M, N), name="A")
    T = te.compute((M, N), lambda i, j: A[i, j] * 3.0, name="T")
    C = te.compute((M, N), lambda i, j: T[i, j] + T[M - 1 - i, j], name="C")
    a = rand((M, N))
    np.testing.assert_allclose(run(te.create_schedule(C.op), [A, C], [a]), a * 3 + a[::-1] * 3, **ELEM)
