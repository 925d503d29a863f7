"""Tolerances and a plain matmul shared by the te build tests (test_build_*.py)."""
from __future__ import annotations

import numpy as np

import te

ELEM = dict(rtol=1e-5, atol=1e-6)     # fp32 elementwise
RED = dict(rtol=1e-4, atol=1e-5)      # fp32 reductions (reassociation, FMA contraction)


def matmul(M, K, N, dtype="float32"):
    """A, B and C = A @ B as te tensors, unscheduled."""
    A = te.placeholder((M, K), dtype, name="A")
    B = te.placeholder((K, N), dtype, name="B")
    k = te.reduce_axis((0, K), name="k")
    C = te.compute((M, N), lambda i, j: te.sum(A[i, k] * B[k, j], axis=k), name="C")
    return A, B, C


def ref_matmul(a, b):
    """a @ b computed in float64, in a's dtype."""
    return (a.astype(np.float64) @ b.astype(np.float64)).astype(a.dtype)
