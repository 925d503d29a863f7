"""Compiling and running what te.compute expresses (elementwise, reductions, several outputs, math
functions): every result is checked against numpy."""
from __future__ import annotations

import math

import numpy as np
import pytest

import te

from .build_helpers import ELEM, RED, matmul, ref_matmul


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
