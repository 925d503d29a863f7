"""Multi-stage pipelines: compute_inline, compute_at (region inference, overhang guards), caches."""
from __future__ import annotations

import numpy as np
import pytest

import te

RED = dict(rtol=1e-4, atol=1e-5)
ELEM = dict(rtol=1e-5, atol=1e-6)

CI, H, W, CO, KH, KW, PAD = 3, 10, 9, 4, 3, 3, 1


def conv_pipeline():
    """pad -> conv2d (CHW, stride 1, 'same') -> relu."""
    X = te.placeholder((CI, H, W), name="X")
    Wt = te.placeholder((CO, CI, KH, KW), name="W")
    Pd = te.compute((CI, H + 2 * PAD, W + 2 * PAD),
                    lambda c, y, x: te.if_then_else(
                        te.all(y >= PAD, y < H + PAD, x >= PAD, x < W + PAD),
                        X[c, y - PAD, x - PAD], 0.0),
                    name="pad")
    rc = te.reduce_axis((0, CI), name="rc")
    ry = te.reduce_axis((0, KH), name="ry")
    rx = te.reduce_axis((0, KW), name="rx")
    # the reduce axis goes first: `y + ry` (Var + IterVar) is a known bug, see test_expr.py
    Conv = te.compute((CO, H, W),
                      lambda f, y, x: te.sum(Pd[rc, ry + y, rx + x] * Wt[f, rc, ry, rx], axis=[rc, ry, rx]),
                      name="conv")
    R = te.compute((CO, H, W), lambda f, y, x: te.max_of(Conv[f, y, x], 0.0), name="relu")
    return X, Wt, Pd, Conv, R


def conv_reference(x, w):
    xp = np.pad(x.astype(np.float64), ((0, 0), (PAD, PAD), (PAD, PAD)))
    out = np.zeros((CO, H, W))
    for dy in range(KH):
        for dx in range(KW):
            out += np.einsum("fc,cyx->fyx", w[:, :, dy, dx], xp[:, dy:dy + H, dx:dx + W])
    return np.maximum(out, 0).astype(np.float32)


@pytest.fixture
def conv_data(rand):
    x, w = rand((CI, H, W)), rand((CO, CI, KH, KW))
    return x, w, conv_reference(x, w)


def _run_conv(s, X, Wt, R, x, w):
    f = te.build(s, [X, Wt, R])
    out = np.full((CO, H, W), np.nan, np.float32)
    f(x, w, out)
    return out


def test_conv_default_schedule(conv_data):
    X, Wt, Pd, Conv, R = conv_pipeline()
    x, w, ref = conv_data
    s = te.create_schedule(R.op)
    np.testing.assert_allclose(_run_conv(s, X, Wt, R, x, w), ref, **RED)


def test_conv_inline_pad_compute_at_conv(conv_data):
    X, Wt, Pd, Conv, R = conv_pipeline()
    x, w, ref = conv_data
    s = te.create_schedule(R.op)
    s[Pd].compute_inline()
    f, y, xx = R.op.axis
    yo, yi = s[R].split(y, factor=4)          # 10 rows: the last block overhangs
    s[Conv].compute_at(s[R], yo)
    s[R].vectorize(xx)
    text = str(te.lower(s, [X, Wt, R]))
    assert "produce pad" not in text, "an inlined stage has no loop nest"
    assert "allocate conv: float32[36]" in text, "conv is realized per 4-row block (4 x 9)"
    assert text.index("for y.outer") < text.index("produce conv")
    np.testing.assert_allclose(_run_conv(s, X, Wt, R, x, w), ref, **RED)


def test_conv_pad_at_conv_at_relu(conv_data):
    X, Wt, Pd, Conv, R = conv_pipeline()
    x, w, ref = conv_data
    s = te.create_schedule(R.op)
    yo, yi = s[R].split(R.op.axis[1], factor=4)
    s[Conv].compute_at(s[R], yo)
    s[Pd].compute_at(s[Conv], Conv.op.axis[1])
    text = str(te.lower(s, [X, Wt, R]))
    assert "allocate pad: float32[99]" in text, "pad region of one conv row: 3 x 3 x 11"
    np.testing.assert_allclose(_run_conv(s, X, Wt, R, x, w), ref, **RED)


def test_conv_channel_parallel_with_cache_write(conv_data):
    X, Wt, Pd, Conv, R = conv_pipeline()
    x, w, ref = conv_data
    s = te.create_schedule(R.op)
    s[Pd].compute_inline()
    s[Conv].compute_at(s[R], R.op.axis[0])
    s[R].parallel(R.op.axis[0])
    rc, ry, rx = Conv.op.reduce_axis
    f, y, xx = Conv.op.axis
    s[Conv].reorder(rc, ry, rx, y, xx)        # reductions outside the spatial loops
    s[Conv].vectorize(xx)
    s[Conv].unroll(rx)
    np.testing.assert_allclose(_run_conv(s, X, Wt, R, x, w), ref, **RED)


def test_conv_pad_at_root_conv_fused(conv_data):
    X, Wt, Pd, Conv, R = conv_pipeline()
    x, w, ref = conv_data
    s = te.create_schedule(R.op)
    fyx = s[Conv].fuse(*Conv.op.axis)
    o, i = s[Conv].split(fyx, factor=16)
    s[Conv].parallel(o)
    s[R].compute_root()
    np.testing.assert_allclose(_run_conv(s, X, Wt, R, x, w), ref, **RED)


# ------------------------------------------------------------------ stencils and region inference

@pytest.mark.parametrize("factor", [1, 3, 4, 7, 26, 40])
def test_blur_compute_at_overhanging_blocks(factor, rand):
    M = 30
    X = te.placeholder((M,), name="X")
    Bx = te.compute((M - 2,), lambda i: (X[i] + X[i + 1] + X[i + 2]) / 3.0, name="Bx")
    By = te.compute((M - 4,), lambda i: (Bx[i] + Bx[i + 1] + Bx[i + 2]) / 3.0, name="By")
    s = te.create_schedule(By.op)
    o, i = s[By].split(By.op.axis[0], factor=factor)
    s[Bx].compute_at(s[By], o)
    f = te.build(s, [X, By])
    x = rand(M)
    y = np.zeros(M - 4, np.float32)
    f(x, y)
    bx = (x[:-2] + x[1:-1] + x[2:]) / 3
    np.testing.assert_allclose(y, (bx[:-2] + bx[1:-1] + bx[2:]) / 3, **ELEM)


def test_blur_2d_tiled_with_compute_at(rand):
    Hh, Ww = 19, 23
    X = te.placeholder((Hh, Ww), name="X")
    Bx = te.compute((Hh, Ww - 2), lambda y, x: (X[y, x] + X[y, x + 1] + X[y, x + 2]) / 3.0, name="Bx")
    By = te.compute((Hh - 2, Ww - 2), lambda y, x: (Bx[y, x] + Bx[y + 1, x] + Bx[y + 2, x]) / 3.0,
                    name="By")
    s = te.create_schedule(By.op)
    yo, xo, yi, xi = s[By].tile(By.op.axis[0], By.op.axis[1], 8, 8)
    s[Bx].compute_at(s[By], xo)
    s[Bx].vectorize(Bx.op.axis[1])
    s[By].vectorize(xi)
    s[By].parallel(yo)
    text = str(te.lower(s, [X, By]))
    assert "allocate Bx: float32[80]" in text, "a (8+2) x 8 tile of Bx per By tile"
    f = te.build(s, [X, By])
    x = rand((Hh, Ww))
    y = np.zeros((Hh - 2, Ww - 2), np.float32)
    f(x, y)
    bx = (x[:, :-2] + x[:, 1:-1] + x[:, 2:]) / 3
    np.testing.assert_allclose(y, (bx[:-2] + bx[1:-1] + bx[2:]) / 3, **ELEM)


def test_compute_at_inner_loop_of_tile(rand):
    """compute_at the innermost loop: the producer is computed one element at a time."""
    A = te.placeholder((12, 10), name="A")
    B = te.compute((12, 10), lambda i, j: te.exp(A[i, j]), name="B")
    C = te.compute((12, 10), lambda i, j: B[i, j] * 2.0, name="C")
    s = te.create_schedule(C.op)
    io, jo, ii, ji = s[C].tile(C.op.axis[0], C.op.axis[1], 5, 3)
    s[B].compute_at(s[C], ji)
    assert "allocate B: float32[1]" in str(te.lower(s, [A, C]))
    f = te.build(s, [A, C])
    a = rand((12, 10))
    c = np.zeros((12, 10), np.float32)
    f(a, c)
    np.testing.assert_allclose(c, np.exp(a) * 2, **ELEM)


def test_compute_at_then_split_the_attach_loop(rand):
    """Splitting the attach loop after compute_at moves the producer to the inner loop."""
    A = te.placeholder((20,), name="A")
    B = te.compute((20,), lambda i: A[i] + 1.0, name="B")
    C = te.compute((20,), lambda i: B[i] * B[i], name="C")
    s = te.create_schedule(C.op)
    s[B].compute_at(s[C], C.op.axis[0])
    o, i = s[C].split(C.op.axis[0], factor=6)
    f = te.build(s, [A, C])
    a = rand(20)
    c = np.zeros(20, np.float32)
    f(a, c)
    np.testing.assert_allclose(c, (a + 1) ** 2, **ELEM)


@pytest.mark.parametrize("where", ["k.outer", "k.inner", "j", "i"])
def test_compute_at_inside_reduction_loop(where, rand):
    M, K, N = 12, 10, 8
    A = te.placeholder((M, K), name="A")
    B = te.placeholder((K, N), name="B")
    A2 = te.compute((M, K), lambda i, kk: A[i, kk] * 2.0, name="A2")
    k = te.reduce_axis((0, K), name="k")
    C = te.compute((M, N), lambda i, j: te.sum(A2[i, k] * B[k, j], axis=k), name="C")
    s = te.create_schedule(C.op)
    ko, ki = s[C].split(k, factor=3)
    i, j = C.op.axis
    s[C].reorder(i, ko, j, ki)
    s[A2].compute_at(s[C], {"k.outer": ko, "k.inner": ki, "j": j, "i": i}[where])
    f = te.build(s, [A, B, C])
    a, b = rand((M, K)), rand((K, N))
    c = np.zeros((M, N), np.float32)
    f(a, b, c)
    np.testing.assert_allclose(c, 2 * a.astype(np.float64) @ b, **RED)


def test_three_stage_chain_of_compute_at(rand):
    A = te.placeholder((16, 16), name="A")
    B = te.compute((16, 16), lambda i, j: A[i, j] + 1.0, name="B")
    C = te.compute((16, 16), lambda i, j: B[i, j] * 3.0, name="C")
    D = te.compute((16, 16), lambda i, j: C[i, j] - A[i, j], name="D")
    s = te.create_schedule(D.op)
    io, ii = s[D].split(D.op.axis[0], factor=4)
    s[C].compute_at(s[D], io)
    s[B].compute_at(s[C], C.op.axis[0])
    text = str(te.lower(s, [A, D]))
    assert text.index("for i.outer") < text.index("produce C") < text.index("produce B")
    assert "allocate C: float32[64]" in text and "allocate B: float32[16]" in text
    f = te.build(s, [A, D])
    a = rand((16, 16))
    d = np.zeros((16, 16), np.float32)
    f(a, d)
    np.testing.assert_allclose(d, (a + 1) * 3 - a, **ELEM)


def test_inline_chain_into_reduction(rand):
    A = te.placeholder((8, 12), name="A")
    B = te.compute((8, 12), lambda i, j: A[i, j] * 0.5, name="B")
    C = te.compute((8, 12), lambda i, j: te.exp(B[i, j]), name="C")
    k = te.reduce_axis((0, 12), name="k")
    D = te.compute((8,), lambda i: te.sum(C[i, k], axis=k), name="D")
    s = te.create_schedule(D.op)
    s[B].compute_inline()
    s[C].compute_inline()
    text = str(te.lower(s, [A, D]))
    assert "produce B" not in text and "produce C" not in text and "exp(" in text
    f = te.build(s, [A, D])
    a = rand((8, 12))
    d = np.zeros(8, np.float32)
    f(a, d)
    np.testing.assert_allclose(d, np.exp(a * 0.5).sum(axis=1), **RED)


def test_inline_into_two_consumers_and_compute_at(rand):
    M, N = 6, 8
    A = te.placeholder((M, N), name="A")
    C = te.compute((M, N), lambda i, j: A[i, j] * 2.0, name="C")
    D = te.compute((M, N), lambda i, j: C[i, j] + 1.0, name="D")
    E = te.compute((M, N), lambda i, j: C[i, j] + D[i, j], name="E")
    s = te.create_schedule(E.op)
    s[C].compute_inline()
    s[D].compute_at(s[E], E.op.axis[0])
    f = te.build(s, [A, E])
    a = rand((M, N))
    e = np.zeros((M, N), np.float32)
    f(a, e)
    np.testing.assert_allclose(e, a * 4 + 1, **ELEM)


# ------------------------------------------------------------------ dense layer and multiple outputs

def test_dense_bias_relu_gemm_schedule(rand):
    M, K, N = 32, 24, 48
    X = te.placeholder((M, K), name="X")
    Wt = te.placeholder((N, K), name="W")
    bias = te.placeholder((N,), name="bias")
    k = te.reduce_axis((0, K), name="k")
    D = te.compute((M, N), lambda i, j: te.sum(X[i, k] * Wt[j, k], axis=k), name="dense")
    Y = te.compute((M, N), lambda i, j: te.max_of(D[i, j] + bias[j], 0.0), name="Y")
    s = te.create_schedule(Y.op)
    DL = s.cache_write(D, "local")
    s[D].compute_inline()
    yo, xo, yi, xi = s[Y].tile(Y.op.axis[0], Y.op.axis[1], 4, 16)
    s[DL].compute_at(s[Y], xo)
    (kk,) = s[DL].op.reduce_axis
    s[DL].reorder(kk, *s[DL].op.axis)
    s[DL].vectorize(s[DL].op.axis[1])
    s[Y].vectorize(xi)
    s[Y].parallel(s[Y].fuse(yo, xo))
    f = te.build(s, [X, Wt, bias, Y])
    x, w, b = rand((M, K)), rand((N, K)), rand(N)
    y = np.zeros((M, N), np.float32)
    f(x, w, b, y)
    np.testing.assert_allclose(y, np.maximum(x.astype(np.float64) @ w.T + b, 0), **RED)


def test_two_outputs_sharing_an_inlined_producer(rand):
    A = te.placeholder((10, 7), name="A")
    T = te.compute((10, 7), lambda i, j: A[i, j] * A[i, j], name="T")
    k1 = te.reduce_axis((0, 7), name="k1")
    k2 = te.reduce_axis((0, 7), name="k2")
    S = te.compute((10,), lambda i: te.sum(T[i, k1], axis=k1), name="S")
    Mx = te.compute((10,), lambda i: te.max(T[i, k2], axis=k2), name="Mx")
    s = te.create_schedule([S.op, Mx.op])
    s[T].compute_inline()
    s[S].parallel(S.op.axis[0])
    f = te.build(s, [A, S, Mx])
    a = rand((10, 7))
    out_s, out_m = np.zeros(10, np.float32), np.zeros(10, np.float32)
    f(a, out_s, out_m)
    np.testing.assert_allclose(out_s, (a * a).sum(axis=1), **RED)
    np.testing.assert_allclose(out_m, (a * a).max(axis=1), **ELEM)


def test_multi_output_stage_feeding_a_consumer(rand):
    A = te.placeholder((9, 5), name="A")
    Lo, Hi = te.compute((9, 5), lambda i, j: (te.min_of(A[i, j], 0.0), te.max_of(A[i, j], 0.0)),
                        name="split")
    Out = te.compute((9, 5), lambda i, j: Hi[i, j] * 2.0 + Lo[i, j] * 0.5, name="out")
    s = te.create_schedule(Out.op)
    s[Lo].compute_at(s[Out], Out.op.axis[0])
    f = te.build(s, [A, Out])
    a = rand((9, 5))
    o = np.zeros((9, 5), np.float32)
    f(a, o)
    np.testing.assert_allclose(o, np.maximum(a, 0) * 2 + np.minimum(a, 0) * 0.5, **ELEM)


def test_output_that_is_also_read(rand):
    A = te.placeholder((6, 8), name="A")
    C = te.compute((6, 8), lambda i, j: A[i, j] * 2.0, name="C")
    D = te.compute((6, 8), lambda i, j: C[i, j] + 1.0, name="D")
    s = te.create_schedule([C.op, D.op])
    s[D].vectorize(D.op.axis[1])
    f = te.build(s, [A, C, D])
    a = rand((6, 8))
    c, d = np.zeros((6, 8), np.float32), np.zeros((6, 8), np.float32)
    f(a, c, d)
    np.testing.assert_allclose(c, a * 2, **ELEM)
    np.testing.assert_allclose(d, a * 2 + 1, **ELEM)
