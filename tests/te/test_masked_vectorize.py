"""Vectorized loops under a lane-dependent guard: masked loads and stores, not a serial loop.

A split that does not divide leaves a guard such as `io * 32 + ii < 1000` around the vectorized
body.  Codegen turns it into a lane mask; these tests check the answers, that lanes which are
off touch no memory (canaries, and an input that ends at an unreadable page), and that the code
really is vector code.
"""
from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

import te
from te.codegen_llvm import codegen
from te.expr import Const, Load, Var
from te.schedule import ForKind
from te.stmt import Buffer, For, IfThenElse, LoweredFunc, Store
from te.target import host

ELEM = dict(rtol=1e-5, atol=1e-6)


def llvm_ir(func) -> str:
    return str(codegen([func], host()).module)


def test_guarded_store_is_masked_and_keeps_canaries(rand):
    n = 1000
    A = te.placeholder((n,), name="A")
    B = te.compute((n,), lambda i: A[i] * 2.0 + 1.0, name="B")
    s = te.create_schedule(B.op)
    _, xi = s[B].split(B.op.axis[0], factor=32)
    s[B].vectorize(xi)
    ir_text = llvm_ir(te.lower(s, [A, B], "k"))
    assert "llvm.masked.store" in ir_text and "llvm.masked.load" in ir_text
    f = te.build(s, [A, B])
    a = rand(n)
    buf = np.full(n + 64, -7.0, np.float32)
    out = buf[32:32 + n]
    f(a, out)
    np.testing.assert_allclose(out, a * 2 + 1, **ELEM)
    assert np.all(buf[:32] == -7.0) and np.all(buf[32 + n:] == -7.0)


def test_lanes_that_are_off_read_nothing():
    """The input ends where an unreadable page begins: a load past its end would crash."""
    code = textwrap.dedent("""
        import ctypes, mmap
        import numpy as np
        import te
        n = 1000
        A = te.placeholder((n,), name="A")
        B = te.compute((n,), lambda i: A[i] + 1.0, name="B")
        s = te.create_schedule(B.op)
        _, xi = s[B].split(B.op.axis[0], factor=64)
        s[B].vectorize(xi)
        f = te.build(s, [A, B])
        page = mmap.PAGESIZE
        mm = mmap.mmap(-1, 2 * page)
        base = ctypes.addressof(ctypes.c_char.from_buffer(mm))
        libc = ctypes.CDLL(None)
        assert libc.mprotect(ctypes.c_void_p(base + page), page, 0) == 0    # PROT_NONE
        a = np.frombuffer(mm, np.float32, count=n, offset=page - 4 * n)
        a[:] = np.arange(n, dtype=np.float32)
        out = np.zeros(n, np.float32)
        f(a, out)
        assert np.array_equal(out, np.arange(n, dtype=np.float32) + 1)
        # a clamp that never bites (min(j, n) with j < n): the clamped element, one past the
        # end, must not be read either
        from te.expr import BinOp, BinOpKind, Const, Load, Var
        from te.schedule import ForKind
        from te.stmt import Buffer, For, LoweredFunc, Store
        A, B = Buffer("A", (n,), "float32"), Buffer("B", (n,), "float32")
        o, i = Var("o", "int64"), Var("i", "int64")
        j = o * 8 + i
        body = Store(B, j, Load(A, BinOp(BinOpKind.MIN, j, Const(n, "int64"), "int64"), "float32"))
        nest = For(o, Const(n // 8, "int64"), ForKind.SERIAL, For(i, Const(8, "int64"), ForKind.VECTORIZED, body))
        g = te.build(LoweredFunc("clamp", [A, B], nest))
        out[:] = 0
        g(a, out)
        assert np.array_equal(out, np.arange(n, dtype=np.float32))
        print("ok")
    """)
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and "ok" in p.stdout, p.stderr[-2000:]


@pytest.mark.parametrize("n", [17, 50, 96])
def test_guarded_reduction_accumulates_only_live_lanes(n, rand, run):
    M, K = 9, 13
    A = te.placeholder((M, K), name="A")
    B = te.placeholder((K, n), name="B")
    k = te.reduce_axis((0, K), name="k")
    C = te.compute((M, n), lambda i, j: te.sum(A[i, k] * B[k, j], axis=k), name="C")
    s = te.create_schedule(C.op)
    i, j = C.op.axis
    jo, ji = s[C].split(j, factor=16)
    s[C].reorder(i, jo, C.op.reduce_axis[0], ji)
    s[C].vectorize(ji)
    a, b = rand((M, K)), rand((K, n))
    np.testing.assert_allclose(run(s, [A, B, C], [a, b]), a @ b, rtol=1e-4, atol=1e-5)


def test_guarded_scatter_stores_only_live_lanes(rand):
    """Vectorized along rows of a row-major output: a strided (scatter) store under the guard."""
    R, Ccols = 19, 7
    A = te.placeholder((R, Ccols), name="A")
    B = te.compute((R, Ccols), lambda r, c: A[r, c] - 3.0, name="B")
    s = te.create_schedule(B.op)
    r, c = B.op.axis
    ro, ri = s[B].split(r, factor=8)
    s[B].reorder(ro, c, ri)
    s[B].vectorize(ri)
    assert "llvm.masked.scatter.v8f32" in llvm_ir(te.lower(s, [A, B], "k"))
    f = te.build(s, [A, B])
    a = rand((R, Ccols))
    buf = np.full(R * Ccols + 64, -7.0, np.float32)
    out = buf[32:32 + R * Ccols].reshape(R, Ccols)
    f(a, out)
    np.testing.assert_allclose(out, a - 3.0, **ELEM)
    assert np.all(buf[:32] == -7.0) and np.all(buf[32 + R * Ccols:] == -7.0)


@pytest.mark.parametrize("dtype", ["float32", "int8", "bool"])
def test_transposed_store_is_one_scatter(dtype, rand):
    """Vectorized along the columns of the input, so the transposed output's lanes are a row
    apart: one llvm.masked.scatter per vector instead of a store per lane."""
    A = te.placeholder((12, 16), dtype, name="A")
    B = te.compute((16, 12), lambda j, i: A[i, j], name="B")
    s = te.create_schedule(B.op)
    j, i = B.op.axis
    s[B].reorder(i, j)
    s[B].vectorize(j)
    text = llvm_ir(te.lower(s, [A, B], "k"))
    assert "llvm.masked.scatter.v16" in text and text.count("store ") == 0
    a = rand((12, 16), dtype)
    out = np.zeros((16, 12), np.dtype(dtype))
    te.build(s, [A, B])(a, out)
    np.testing.assert_array_equal(out, a.T)


def test_scatter_into_a_stack_buffer_stays_per_lane(rand):
    """A small intermediate lives on the stack; per-lane stores let LLVM keep it in registers."""
    A = te.placeholder((8, 8), name="A")
    T = te.compute((8, 8), lambda j, i: A[i, j] * 2.0, name="T")
    B = te.compute((8, 8), lambda i, j: T[j, i] + 1.0, name="B")
    s = te.create_schedule(B.op)
    s[T].reorder(T.op.axis[1], T.op.axis[0])
    s[T].vectorize(T.op.axis[0])
    text = llvm_ir(te.lower(s, [A, B], "k"))
    assert "alloca" in text and "llvm.masked.scatter" not in text
    a = rand((8, 8))
    out = np.zeros((8, 8), np.float32)
    te.build(s, [A, B])(a, out)
    np.testing.assert_allclose(out, a * 2.0 + 1.0, **ELEM)


def test_clamped_pack_is_a_masked_load(rand):
    """A pack padded to whole vectors reads `min(j, N - 1)`: one masked load, no gather."""
    from te.ops.matmul import _pack_b
    K, N = 5, 45
    B = te.placeholder((K, N), name="B")
    P = _pack_b(lambda k, j: B[k, j], K, N, 16, "float32", "mm")
    s = te.create_schedule(P.op)
    s[P].vectorize(P.op.axis[2])
    func = te.lower(s, [B, P], "pack")
    ir_text = llvm_ir(func)
    assert "llvm.masked.load" in ir_text
    f = te.build(s, [B, P])
    b = rand((K, N))
    out = np.zeros((3, K, 16), np.float32)
    f(b, out)
    padded = np.zeros((K, 48), np.float32)
    padded[:, :N] = b
    np.testing.assert_array_equal(out, padded.reshape(K, 3, 16).transpose(1, 0, 2))


def test_lane_condition_with_else_branch(rand):
    """IfThenElse on the lane, both branches: each lane takes exactly one of them."""
    A = Buffer("A", (40,), "float32")
    B = Buffer("B", (40,), "float32")
    o, i = Var("o", "int64"), Var("i", "int64")
    idx = o * 8 + i
    body = IfThenElse(idx % 3 == 0,
                      Store(B, idx, Load(A, idx, "float32") * Const(10.0, "float32")),
                      Store(B, idx, Load(A, idx, "float32") + Const(1.0, "float32")))
    nest = For(o, Const(5, "int64"), ForKind.SERIAL, For(i, Const(8, "int64"), ForKind.VECTORIZED, body))
    func = LoweredFunc("ite", [A, B], nest)
    assert "llvm.masked.store" in llvm_ir(func)
    f = te.build(func)
    a = rand(40)
    out = np.zeros(40, np.float32)
    f(a, out)
    want = np.where(np.arange(40) % 3 == 0, a * 10, a + 1)
    np.testing.assert_allclose(out, want, **ELEM)


@pytest.mark.parametrize("n", [37, 197])
def test_partial_lanes_in_a_stack_buffer_stay_plain_and_full_vectors_run_unmasked(n, rand, run):
    """A row reduction in 16 partial lanes (rfactor) over a row no vector divides: the partial
    lanes, a stack buffer holding every lane, are updated by a select, not a masked store (which
    would keep them in memory); vectors whose lanes are all on take an unmasked branch."""
    X = te.placeholder((4, n), name="X")
    k = te.reduce_axis((0, n), name="k")
    S = te.compute((4,), lambda i: te.sum(X[i, k] * X[i, k], axis=k), name="S")
    s = te.create_schedule(S.op)
    _, ki = s[S].split(k, factor=16)
    rf = s[s.rfactor(S, ki, factor_axis=1)]
    rf.reorder(*rf.op.axis[:-1], *rf.op.reduce_axis, rf.op.axis[-1])
    rf.vectorize(rf.op.axis[-1])
    rf.compute_at(s[S], S.op.axis[0])
    ir_text = llvm_ir(te.lower(s, [X, S], "k"))
    assert "llvm.vector.reduce.and" in ir_text, "the all-lanes-on test before the masked path"
    assert "llvm.masked.store" not in ir_text and "llvm.masked.load" in ir_text, \
        "X's last vector is a masked load; the partial lanes' store is a plain one"
    x = rand((4, n))
    np.testing.assert_allclose(run(s, [X, S], [x]), (x * x).sum(1), rtol=1e-4, atol=1e-5)
