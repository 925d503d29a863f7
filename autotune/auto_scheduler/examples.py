"""Example workloads in plain te for the auto-scheduler: GEMMs and a direct conv, no template.

    from autotune.auto_scheduler.examples import as_conv2d
    task = autotune.create_task(as_conv2d, (1, 64, 56, 56, 64, 3, 3))
    autotune.AutoScheduler(task).tune(n_trial=64)

Importing this module registers them (@register_workload, under their function names).  The
auto-scheduler's tests and bench/autosched.py both tune these, so a test covers the computation
the benchmark reports on.  A worker process that did not import the module still measures them:
it receives the task's compute DAG (auto_scheduler/workload.py).
"""
from __future__ import annotations

import te

from .workload import register_workload


@register_workload
def as_matmul(M, N, K):
    """C = A @ B: (M, K) x (K, N)."""
    A = te.placeholder((M, K), name="A")
    B = te.placeholder((K, N), name="B")
    k = te.reduce_axis((0, K), name="k")
    return [A, B, te.compute((M, N), lambda i, j: te.sum(A[i, k] * B[k, j], axis=k), name="C")]


@register_workload
def as_batch_matmul(B, H, M, K, N):
    """Z = X @ Y per batch and head, (B, H, M, K) x (B, H, K, N): attention's batched matmuls."""
    X = te.placeholder((B, H, M, K), name="X")
    Y = te.placeholder((B, H, K, N), name="Y")
    k = te.reduce_axis((0, K), name="k")
    return [X, Y, te.compute((B, H, M, N), lambda b, h, i, j: te.sum(X[b, h, i, k] * Y[b, h, k, j], axis=k),
                             name="Z")]


@register_workload
def as_conv2d(N, C, H, W, K, R, S):
    """A direct NCHW conv with OIHW weights, stride 1, "same" padding by a pad stage: three
    reduction axes over a window (ResNet's 3x3 convs: as_conv2d(1, 64, 56, 56, 64, 3, 3))."""
    X = te.placeholder((N, C, H, W), name="X")
    Wt = te.placeholder((K, C, R, S), name="W")
    P = te.ops.pad(X, (0, 0, R // 2, S // 2), (0, 0, R // 2, S // 2), name="P")
    c = te.reduce_axis((0, C), name="c")
    r = te.reduce_axis((0, R), name="r")
    q = te.reduce_axis((0, S), name="q")
    return [X, Wt, te.compute((N, K, H, W), lambda n, k, y, x: te.sum(P[n, c, y + r, x + q] * Wt[k, c, r, q],
                                                                      axis=[c, r, q]), name="Y")]
