"""Compiling and running kernels: every result is checked against numpy."""
from __future__ import annotations

import math

import numpy as np
import pytest

import te

ELEM = dict(rtol=1e-5, atol=1e-6)     # fp32 elementwise
RED = dict(rtol=1e-4, atol=1e-5)      # fp32 reductions (reassociation, FMA contraction)


def matmul(M, K, N, dtype="float32"):
    A = te.placeholder((M, K), dtype, name="A")
    B = te.placeholder((K, N), dtype, name="B")
    k = te.reduce_axis((0, K), name="k")
    C = te.compute((M, N), lambda i, j: te.sum(A[i, k] * B[k, j], axis=k), name="C")
    return A, B, C


def ref_matmul(a, b):
    return (a.astype(np.float64) @ b.astype(np.float64)).astype(a.dtype)


# ------------------------------------------------------------------ elementwise

def test_elementwise_add(rand, run):
    A = te.placeholder((7, 9), name="A")
    B = te.placeholder((7, 9), name="B")
    C = te.compute((7, 9), lambda i, j: A[i, j] + B[i, j], name="C")
    a, b = rand((7, 9)), rand((7, 9))
    np.testing.assert_allclose(run(te.create_schedule(C.op), [A, B, C], [a, b]), a + b, **ELEM)


def test_elementwise_expression(rand, run):
    A = te.placeholder((33,), name="A")
    B = te.placeholder((33,), name="B")
    C = te.compute((33,), lambda i: (A[i] * 3.0 - B[i]) / (B[i] * B[i] + 1.0) + 0.25, name="C")
    a, b = rand(33), rand(33)
    np.testing.assert_allclose(run(te.create_schedule(C.op), [A, B, C], [a, b]),
                               (a * 3 - b) / (b * b + 1) + 0.25, **ELEM)


def test_elementwise_uses_index_values(run):
    C = te.compute((5, 6), lambda i, j: (i * 10 + j).astype("float32"), name="C")
    out = run(te.create_schedule(C.op), [C], [])
    np.testing.assert_array_equal(out, np.add.outer(np.arange(5) * 10, np.arange(6)))


def test_negation_comparison_select(rand, run):
    A = te.placeholder((40,), name="A")
    C = te.compute((40,), lambda i: te.if_then_else((A[i] > 0.25) | (A[i] < -0.5), -A[i], A[i] * 2.0),
                   name="C")
    a = rand(40)
    s = te.create_schedule(C.op)
    s[C].vectorize(s[C].split(C.op.axis[0], factor=8)[1])
    np.testing.assert_allclose(run(s, [A, C], [a]), np.where((a > 0.25) | (a < -0.5), -a, a * 2), **ELEM)


def test_broadcast_bias_row_and_column(rand, run):
    M, N = 6, 10
    A = te.placeholder((M, N), name="A")
    row = te.placeholder((N,), name="row")
    col = te.placeholder((M, 1), name="col")
    C = te.compute((M, N), lambda i, j: A[i, j] + row[j] * col[i, 0], name="C")
    a, r, c = rand((M, N)), rand(N), rand((M, 1))
    s = te.create_schedule(C.op)
    s[C].vectorize(C.op.axis[1])
    np.testing.assert_allclose(run(s, [A, row, col, C], [a, r, c]), a + r[None, :] * c, **ELEM)


def test_broadcast_outer_product(rand, run):
    x = te.placeholder((5,), name="x")
    y = te.placeholder((7,), name="y")
    C = te.compute((3, 5, 7), lambda b, i, j: x[i] * y[j] + b.astype("float32"), name="C")
    xv, yv = rand(5), rand(7)
    want = np.outer(xv, yv)[None] + np.arange(3, dtype=np.float32)[:, None, None]
    np.testing.assert_allclose(run(te.create_schedule(C.op), [x, y, C], [xv, yv]), want, **ELEM)


def test_transpose_and_gather_like_indexing(rand, run):
    A = te.placeholder((6, 4), name="A")
    C = te.compute((4, 6), lambda i, j: A[5 - j, (i + 1) % 4], name="C")
    a = rand((6, 4))
    want = a[::-1][:, (np.arange(4) + 1) % 4].T
    np.testing.assert_allclose(run(te.create_schedule(C.op), [A, C], [a]), want)


# ------------------------------------------------------------------ reductions

REDUCERS = {
    "sum": (te.sum, lambda x, m: np.where(m, x, 0).sum(axis=1)),
    "max": (te.max, lambda x, m: np.where(m, x, -np.inf).max(axis=1)),
    "min": (te.min, lambda x, m: np.where(m, x, np.inf).min(axis=1)),
    "prod": (te.prod, lambda x, m: np.where(m, x, 1).prod(axis=1)),
}


@pytest.mark.parametrize("name", list(REDUCERS))
def test_row_reductions(name, rand, run):
    red, ref = REDUCERS[name]
    M, N = 9, 13
    A = te.placeholder((M, N), name="A")
    k = te.reduce_axis((0, N), name="k")
    C = te.compute((M,), lambda i: red(A[i, k], axis=k), name="C")
    a = rand((M, N), low=0.5, high=1.5) if name == "prod" else rand((M, N))
    np.testing.assert_allclose(run(te.create_schedule(C.op), [A, C], [a]),
                               ref(a, np.ones_like(a, bool)), **RED)


@pytest.mark.parametrize("name", list(REDUCERS))
def test_row_reductions_with_where(name, rand, run):
    red, ref = REDUCERS[name]
    M, N = 9, 13
    A = te.placeholder((M, N), name="A")
    k = te.reduce_axis((0, N), name="k")
    C = te.compute((M,), lambda i: red(A[i, k], axis=k, where=A[i, k] > -0.5), name="C")
    a = rand((M, N), low=-0.6, high=1.4)
    s = te.create_schedule(C.op)
    ko, ki = s[C].split(k, factor=4)      # 13 % 4 != 0: the guard and the where must combine
    np.testing.assert_allclose(run(s, [A, C], [a]), ref(a, a > -0.5), **RED)


def test_where_on_index_condition(rand, run):
    """A lower-triangular sum: the where clause depends on the data axis."""
    N = 11
    A = te.placeholder((N, N), name="A")
    k = te.reduce_axis((0, N), name="k")
    C = te.compute((N,), lambda i: te.sum(A[i, k], axis=k, where=k <= i), name="C")
    a = rand((N, N))
    np.testing.assert_allclose(run(te.create_schedule(C.op), [A, C], [a]),
                               np.tril(a).sum(axis=1), **RED)


def test_where_empty_gives_identity(run):
    A = te.placeholder((3, 4), name="A")
    k = te.reduce_axis((0, 4), name="k")
    C = te.compute((3,), lambda i: te.max(A[i, k], axis=k, where=A[i, k] > 100.0), name="C")
    out = run(te.create_schedule(C.op), [A, C], [np.zeros((3, 4), np.float32)])
    assert np.all(np.isneginf(out))


def test_reduction_over_two_axes(rand, run):
    A = te.placeholder((4, 6, 5), name="A")
    r1 = te.reduce_axis((0, 6), name="r1")
    r2 = te.reduce_axis((0, 5), name="r2")
    C = te.compute((4,), lambda b: te.sum(A[b, r1, r2] * A[b, r1, r2], axis=[r1, r2]), name="C")
    a = rand((4, 6, 5))
    s = te.create_schedule(C.op)
    s[C].reorder(r2, r1)
    np.testing.assert_allclose(run(s, [A, C], [a]), (a * a).sum(axis=(1, 2)), **RED)


def test_reduction_with_offset_domain(rand, run):
    A = te.placeholder((20,), name="A")
    k = te.reduce_axis((3, 17), name="k")
    C = te.compute((1,), lambda i: te.sum(A[k], axis=k), name="C")
    a = rand(20)
    s = te.create_schedule(C.op)
    s[C].split(k, factor=5)
    np.testing.assert_allclose(run(s, [A, C], [a]), [a[3:17].sum()], **RED)


def test_full_reduction_to_scalar(rand, run):
    A = te.placeholder((5, 7), name="A")
    r1, r2 = te.reduce_axis((0, 5), name="r1"), te.reduce_axis((0, 7), name="r2")
    C = te.compute((), lambda: te.sum(A[r1, r2], axis=[r1, r2]), name="C")
    a = rand((5, 7))
    np.testing.assert_allclose(run(te.create_schedule(C.op), [A, C], [a]), a.sum(), **RED)


def test_custom_comm_reducer_absmax(rand, run):
    absmax = te.comm_reducer(lambda x, y: te.max_of(te.abs(x), te.abs(y)),
                             lambda t: te.const(0, t), name="absmax")
    A = te.placeholder((6, 10), name="A")
    k = te.reduce_axis((0, 10), name="k")
    C = te.compute((6,), lambda i: absmax(A[i, k], axis=k), name="C")
    a = rand((6, 10))
    np.testing.assert_allclose(run(te.create_schedule(C.op), [A, C], [a]), np.abs(a).max(axis=1))


def test_custom_comm_reducer_sum_of_squares_with_where(rand, run):
    sumsq = te.comm_reducer(lambda x, y: x + y * y, lambda t: te.const(0, t), name="sumsq")
    A = te.placeholder((6, 10), name="A")
    k = te.reduce_axis((0, 10), name="k")
    C = te.compute((6,), lambda i: sumsq(A[i, k], axis=k, where=k % 2 == 0), name="C")
    a = rand((6, 10))
    np.testing.assert_allclose(run(te.create_schedule(C.op), [A, C], [a]),
                               (a[:, ::2] ** 2).sum(axis=1), **RED)


def test_custom_comm_reducer_integer_product(rand, run):
    myprod = te.comm_reducer(lambda x, y: x * y, lambda t: 1, name="myprod")
    A = te.placeholder((4, 5), "int32", name="A")
    k = te.reduce_axis((0, 5), name="k")
    C = te.compute((4,), lambda i: myprod(A[i, k], axis=k), name="C")
    a = rand((4, 5), "int32", low=-4, high=5)
    np.testing.assert_array_equal(run(te.create_schedule(C.op), [A, C], [a]), a.prod(axis=1))


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


# ------------------------------------------------------------------ multiple outputs

def test_multiple_outputs_one_op(rand, run):
    A = te.placeholder((5, 8), name="A")
    S, P, G = te.compute((5, 8), lambda i, j: (A[i, j] + 1.0, A[i, j] * A[i, j], A[i, j] > 0), name="T")
    s = te.create_schedule(S.op)
    s[S].vectorize(S.op.axis[1])
    a = rand((5, 8))
    s_out, p_out, g_out = run(s, [A, S, P, G], [a])
    np.testing.assert_allclose(s_out, a + 1, **ELEM)
    np.testing.assert_allclose(p_out, a * a, **ELEM)
    np.testing.assert_array_equal(g_out, a > 0)


def test_multiple_output_ops_in_one_schedule(rand, run):
    M, K, N = 8, 6, 10
    A, B, C = matmul(M, K, N)
    D = te.compute((M, N), lambda i, j: te.max_of(C[i, j], 0.0), name="D")
    E = te.compute((M,), lambda i: A[i, 0] - A[i, 1], name="E")
    s = te.create_schedule([D.op, C.op, E.op])
    a, b = rand((M, K)), rand((K, N))
    c, d, e = run(s, [A, B, C, D, E], [a, b])
    np.testing.assert_allclose(c, ref_matmul(a, b), **RED)
    np.testing.assert_allclose(d, np.maximum(ref_matmul(a, b), 0), **RED)
    np.testing.assert_allclose(e, a[:, 0] - a[:, 1], **ELEM)


# ------------------------------------------------------------------ math functions

def _erf(x):
    return np.vectorize(math.erf)(x)


MATH = {
    "exp": (te.exp, np.exp, (-4, 4)),
    "log": (te.log, np.log, (0.05, 5)),
    "sqrt": (te.sqrt, np.sqrt, (0, 9)),
    "tanh": (te.tanh, np.tanh, (-4, 4)),
    "sigmoid": (te.sigmoid, lambda x: 1 / (1 + np.exp(-x)), (-6, 6)),
    "erf": (te.erf, _erf, (-2.5, 2.5)),
    "abs": (te.abs, np.abs, (-3, 3)),
    "floor": (te.floor, np.floor, (-3, 3)),
    "ceil": (te.ceil, np.ceil, (-3, 3)),
    "round": (te.round, np.round, (-3, 3)),
    "sin": (te.sin, np.sin, (-3, 3)),
    "cos": (te.cos, np.cos, (-3, 3)),
    "rsqrt": (te.rsqrt, lambda x: 1 / np.sqrt(x), (0.1, 4)),
    "power": (lambda x: te.power(x, 2.5), lambda x: np.power(x, 2.5), (0, 3)),
}


@pytest.mark.parametrize("vectorize", [False, True], ids=["scalar", "vector"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", list(MATH))
def test_math_functions(name, dtype, vectorize, rand, run):
    tfn, nfn, (lo, hi) = MATH[name]
    n = 32
    x = rand(n, dtype, low=lo, high=hi)
    if name in ("round", "floor", "ceil"):
        x[:6] = [0.5, 1.5, 2.5, -0.5, -1.5, 2.0]      # ties round to even, as numpy
    X = te.placeholder((n,), dtype, name="X")
    C = te.compute((n,), lambda i: tfn(X[i]), name="C")
    s = te.create_schedule(C.op)
    if vectorize:
        s[C].vectorize(s[C].split(C.op.axis[0], factor=8)[1])
    out = run(s, [X, C], [x])
    assert out.dtype == np.dtype(dtype)
    want = nfn(x.astype(np.float64)).astype(dtype)
    tol = dict(rtol=2e-6, atol=1e-6) if dtype == "float32" else dict(rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(out, want, **tol)


def test_power_of_two_tensors(rand, run):
    A = te.placeholder((16,), name="A")
    B = te.placeholder((16,), name="B")
    C = te.compute((16,), lambda i: te.power(A[i], B[i]), name="C")
    a, b = rand(16, low=0.1, high=3), rand(16, low=-2, high=2)
    np.testing.assert_allclose(run(te.create_schedule(C.op), [A, B, C], [a, b]), a ** b, rtol=1e-5)


def test_softmax_rows(rand, run):
    M, N = 5, 12
    A = te.placeholder((M, N), name="A")
    k1 = te.reduce_axis((0, N), name="k1")
    mx = te.compute((M,), lambda i: te.max(A[i, k1], axis=k1), name="mx")
    ex = te.compute((M, N), lambda i, j: te.exp(A[i, j] - mx[i]), name="ex")
    k2 = te.reduce_axis((0, N), name="k2")
    sm = te.compute((M,), lambda i: te.sum(ex[i, k2], axis=k2), name="sm")
    out = te.compute((M, N), lambda i, j: ex[i, j] / sm[i], name="out")
    s = te.create_schedule(out.op)
    s[out].vectorize(out.op.axis[1])
    a = rand((M, N), low=-5, high=5)
    e = np.exp(a - a.max(axis=1, keepdims=True))
    np.testing.assert_allclose(run(s, [A, out], [a]), e / e.sum(axis=1, keepdims=True), **RED)


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


# ------------------------------------------------------------------ printing

def test_lower_prints_loop_names_and_annotations():
    A, B, C = matmul(24, 20, 18)
    s = te.create_schedule(C.op)
    io, ii = s[C].split(C.op.axis[0], factor=8)
    jo, ji = s[C].split(C.op.axis[1], nparts=3)
    s[C].parallel(io)
    s[C].vectorize(ji)
    s[C].unroll(ii)
    text = str(te.lower(s, [A, B, C]))
    assert text.startswith("def default_function(A: float32[24, 20], B: float32[20, 18], C: float32[24, 18]):")
    for name in ("i.outer", "i.inner", "j.outer", "j.inner", "k"):
        assert f"for {name} in range(" in text, name
    assert "for i.outer in range(3):  # parallel" in text
    assert "for i.inner in range(8):  # unrolled" in text
    assert "for j.inner in range(6):  # vectorized" in text
    assert "# produce C" in text
    assert "C[" in text and "A[" in text and "B[" in text


def test_lower_name_and_unsimplified():
    A = te.placeholder((4,), name="A")
    C = te.compute((4,), lambda i: A[i] * 1.0, name="C")
    s = te.create_schedule(C.op)
    f = te.lower(s, [A, C], name="scale")
    assert str(f).startswith("def scale(")
    assert f.name == "scale"
    raw = te.lower(s, [A, C], simple=False)
    assert "for i in range(4)" in str(raw)


def test_lower_shows_guard_for_non_divisible_split():
    A = te.placeholder((10,), name="A")
    C = te.compute((10,), lambda i: A[i], name="C")
    s = te.create_schedule(C.op)
    s[C].split(C.op.axis[0], factor=4)
    assert "if i.outer * 4 + i.inner < 10:" in str(te.lower(s, [A, C]))
    s2 = te.create_schedule(C.op)
    s2[C].split(C.op.axis[0], factor=5)
    assert "if " not in str(te.lower(s2, [A, C])), "a dividing split needs no guard"


def test_kernel_sources_and_repr():
    A = te.placeholder((4,), name="A")
    C = te.compute((4,), lambda i: A[i] + 1.0, name="C")
    f = te.build(te.create_schedule(C.op), [A, C], name="inc")
    assert "for i in range(4)" in f.get_source("ir")
    assert "define" in f.get_source("llvm") and "inc" in f.get_source("llvm")
    assert f.get_source("asm")
    with pytest.raises(ValueError, match="kind"):
        f.get_source("ptx")
    assert "inc(" in repr(f)
    assert [n for n, _, _ in f.arg_specs] == ["A", "C"]


def test_build_from_lowered_func(rand):
    A = te.placeholder((6,), name="A")
    C = te.compute((6,), lambda i: A[i] - 1.0, name="C")
    f = te.build(te.lower(te.create_schedule(C.op), [A, C]))
    a = rand(6)
    c = np.zeros(6, np.float32)
    f(a, c)
    np.testing.assert_allclose(c, a - 1, **ELEM)


def test_build_with_explicit_target_string(rand):
    A = te.placeholder((16,), name="A")
    C = te.compute((16,), lambda i: A[i] * 2.0, name="C")
    s = te.create_schedule(C.op)
    s[C].vectorize(C.op.axis[0])
    f = te.build(s, [A, C], target="llvm -mcpu=x86-64")
    a = rand(16)
    c = np.zeros(16, np.float32)
    f(a, c)
    np.testing.assert_allclose(c, a * 2, **ELEM)
    with pytest.raises(ValueError, match="target"):
        te.build(s, [A, C], target="cuda")


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


# ------------------------------------------------------------------ lowering errors

def test_lower_requires_inputs_and_outputs():
    A = te.placeholder((4,), name="A")
    C = te.compute((4,), lambda i: A[i] * 2.0, name="C")
    s = te.create_schedule(C.op)
    with pytest.raises(ValueError, match="placeholder A is read but is not in the argument list"):
        te.lower(s, [C])
    with pytest.raises(ValueError, match="output C is not in the argument list"):
        te.lower(s, [A])
    with pytest.raises(ValueError, match="passed twice"):
        te.lower(s, [A, A, C])
    with pytest.raises(TypeError, match="must be tensors"):
        te.lower(s, [A, "C"])


def test_intermediate_as_argument_must_be_at_root():
    A = te.placeholder((4,), name="A")
    B = te.compute((4,), lambda i: A[i] * 2.0, name="B")
    C = te.compute((4,), lambda i: B[i] + 1.0, name="C")
    s = te.create_schedule(C.op)
    s[B].compute_inline()
    with pytest.raises(te.ScheduleError, match="stage B: .*argument"):
        te.lower(s, [A, B, C])


def test_intermediate_as_argument_at_root_is_written(rand, run):
    A = te.placeholder((4,), name="A")
    B = te.compute((4,), lambda i: A[i] * 2.0, name="B")
    C = te.compute((4,), lambda i: B[i] + 1.0, name="C")
    a = rand(4)
    b, c = run(te.create_schedule(C.op), [A, B, C], [a])
    np.testing.assert_allclose(b, a * 2, **ELEM)
    np.testing.assert_allclose(c, a * 2 + 1, **ELEM)


def test_num_threads_environment_variable(monkeypatch):
    from te.target import num_threads
    monkeypatch.setenv("TILEWISE_NUM_THREADS", "3")
    assert num_threads() == 3
    monkeypatch.setenv("TILEWISE_NUM_THREADS", "many")
    with pytest.raises(ValueError, match="TILEWISE_NUM_THREADS"):
        num_threads()
    monkeypatch.setenv("TILEWISE_NUM_THREADS", "0")
    with pytest.raises(ValueError, match="at least 1"):
        num_threads()


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
