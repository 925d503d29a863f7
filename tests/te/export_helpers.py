"""Kernels shared by the export, library-loading and cache tests: a matmul and a lowered add-relu."""
from __future__ import annotations

import os

import numpy as np

import te

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
M, K, N = 24, 16, 20


def matmul_kernel(name="mm", target=None, parallel=False):
    """An M x K x N fp32 matmul, tiled and vectorized (rows parallel if asked), built."""
    A = te.placeholder((M, K), name="A")
    B = te.placeholder((K, N), name="B")
    k = te.reduce_axis((0, K), name="k")
    C = te.compute((M, N), lambda i, j: te.sum(A[i, k] * B[k, j], axis=k), name="C")
    s = te.create_schedule(C.op)
    io, ii = s[C].split(C.op.axis[0], factor=4)
    jo, ji = s[C].split(C.op.axis[1], factor=4)
    s[C].reorder(io, jo, ii, k, ji)
    s[C].vectorize(ji)
    if parallel:
        s[C].parallel(io)
    return te.build(s, [A, B, C], target=target, name=name)


def add_relu_func(name="add_relu"):
    """A lowered (not built) function: relu(x + y) on int32."""
    X = te.placeholder((7, 5), dtype="int32", name="X")
    Y = te.placeholder((7, 5), dtype="int32", name="Y")
    Z = te.compute((7, 5), lambda i, j: te.max(X[i, j] + Y[i, j], te.const(0, "int32")), name="Z")
    return te.lower(te.create_schedule(Z.op), [X, Y, Z], name=name)


def mm_inputs():
    """Seeded inputs of matmul_kernel and the expected output."""
    rng = np.random.default_rng(7)
    a = rng.uniform(-1, 1, (M, K)).astype(np.float32)
    b = rng.uniform(-1, 1, (K, N)).astype(np.float32)
    return a, b, (a.astype(np.float64) @ b.astype(np.float64)).astype(np.float32)


def check_mm(fn) -> None:
    """Call fn (a kernel or a loaded library) as matmul_kernel and check its output."""
    a, b, ref = mm_inputs()
    c = np.zeros((M, N), np.float32)
    fn(a, b, c)
    np.testing.assert_allclose(c, ref, rtol=1e-4, atol=1e-5)
