"""Workloads the auto-scheduler tests register (importable, so a second process registers them too).

The GEMMs and the conv are the example workloads bench/autosched.py tunes too
(autotune/auto_scheduler/examples.py); the rest are the tests' own.
"""
from __future__ import annotations

import te
import autotune
from autotune.auto_scheduler.examples import as_batch_matmul, as_conv2d, as_matmul   # noqa: F401


@autotune.register_workload
def as_dense_relu(M, N, K):
    """relu(A @ W^T + b): a reduction with a bias-add and an activation after it."""
    A = te.placeholder((M, K), name="A")
    W = te.placeholder((N, K), name="W")
    b = te.placeholder((N,), name="b")
    k = te.reduce_axis((0, K), name="k")
    D = te.compute((M, N), lambda i, j: te.sum(A[i, k] * W[j, k], axis=k), name="D")
    E = te.compute((M, N), lambda i, j: D[i, j] + b[j], name="E")
    R = te.compute((M, N), lambda i, j: te.max_of(E[i, j], 0.0), name="R")
    return [A, W, b, R]


@autotune.register_workload
def as_softmax(R, N):
    """Row softmax: two reductions and elementwise stages."""
    X = te.placeholder((R, N), name="X")
    k1 = te.reduce_axis((0, N), name="k1")
    k2 = te.reduce_axis((0, N), name="k2")
    mx = te.compute((R,), lambda i: te.max(X[i, k1], axis=k1), name="mx")
    ex = te.compute((R, N), lambda i, j: te.exp(X[i, j] - mx[i]), name="ex")
    sm = te.compute((R,), lambda i: te.sum(ex[i, k2], axis=k2), name="sm")
    Y = te.compute((R, N), lambda i, j: ex[i, j] / sm[i], name="Y")
    return [X, Y]


@autotune.register_workload
def as_total(N):
    """A whole-vector sum: no spatial parallelism, the case for rfactor."""
    X = te.placeholder((N,), name="X")
    k = te.reduce_axis((0, N), name="k")
    S = te.compute((1,), lambda i: te.sum(X[k + i * 0], axis=k), name="S")
    return [X, S]


@autotune.register_workload
def as_layernorm(M, N):
    """Layer norm of rows: two reductions, a per-row scale (rsqrt) and the normalised output."""
    X = te.placeholder((M, N), name="X")
    k1 = te.reduce_axis((0, N), name="k1")
    k2 = te.reduce_axis((0, N), name="k2")
    total = te.compute((M,), lambda i: te.sum(X[i, k1], axis=k1), name="total")
    mean = te.compute((M,), lambda i: total[i] * (1.0 / N), name="mean")
    var = te.compute((M,), lambda i: te.sum((X[i, k2] - mean[i]) * (X[i, k2] - mean[i]), axis=k2), name="var")
    rstd = te.compute((M,), lambda i: te.rsqrt(var[i] * (1.0 / N) + 1e-5), name="rstd")
    Y = te.compute((M, N), lambda i, j: (X[i, j] - mean[i]) * rstd[i], name="Y")
    return [X, Y]


@autotune.register_workload
def as_conv2d_relu(N, C, H, W, K, R, S):
    """as_conv2d with a ReLU reading it point for point: the reader owns the conv's tile."""
    X, Wt, Y = as_conv2d(N, C, H, W, K, R, S)
    return [X, Wt, te.compute(Y.shape, lambda n, k, y, x: te.max_of(Y[n, k, y, x], 0.0), name="Z")]


@autotune.register_workload
def as_scale_relu(M, N):
    """relu(X * s + b): elementwise stages only."""
    X = te.placeholder((M, N), name="X")
    b = te.placeholder((N,), name="b")
    T = te.compute((M, N), lambda i, j: X[i, j] * 2.0 + b[j], name="T")
    return [X, b, te.compute((M, N), lambda i, j: te.max_of(T[i, j], 0.0), name="Z")]
