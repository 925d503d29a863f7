"""NCHW rows from vectors of channels (te/codegen_rows.py): an unrolled loop around a vectorized
loop that reads a buffer across its rows is emitted as row loads and a butterfly transpose, and a
contiguous access of a row shorter than a register as one masked access; answers against numpy."""
from __future__ import annotations

import numpy as np
import pytest

import te
from te.codegen_llvm import codegen
from te.codegen_rows import butterfly_masks
from te.expr import BinOp, BinOpKind, Const, Load, Var
from te.schedule import ForKind
from te.stmt import Buffer, For, LoweredFunc, Store
from te.target import host, parse
from te.vector_split import pieces

AVX512 = parse("llvm -mcpu=sapphirerapids")


def _channels_to_rows(W: int, K: int, A: int, residual: bool = False):
    """out[k, w] = x[w, k] * 2 (+ r[k, w]): a channels-last input read with A channels unrolled
    around a vectorized loop over the W pixels of a row (a conv's output stage)."""
    x = te.placeholder((W, K), name="x")
    r = te.placeholder((K, W), name="r")
    out = te.compute((K, W), lambda k, w: x[w, k] * 2.0 + (r[k, w] if residual else 0.0), name="out")
    s = te.create_schedule(out.op)
    k, w = out.op.axis
    ko, ki = s[out].split(k, factor=A)
    s[out].reorder(ko, ki, w)
    s[out].unroll(ki)
    s[out].vectorize(w)
    return s, [x, r, out] if residual else [x, out]


@pytest.mark.parametrize("n", [2, 4, 8, 16])
def test_butterfly_masks_transpose(n):
    """The stages, applied to the rows of an n x n matrix as two-source shuffles, transpose it."""
    m = np.arange(n * n).reshape(n, n)
    rows = [m[i] for i in range(n)]
    for h, lo, hi in butterfly_masks(n):
        for i in range(n):
            if not i & h:
                both = np.concatenate([rows[i], rows[i + h]])
                rows[i], rows[i + h] = both[lo], both[hi]
    np.testing.assert_array_equal(np.array(rows), m.T)


@pytest.mark.parametrize("W,K,A", [(14, 32, 32), (7, 64, 16), (16, 32, 16), (5, 12, 12), (3, 8, 2)])
def test_rows_read_across_are_transposed(W, K, A):
    """Row loads of the channels and shuffles, no per-lane loads of x; the answer is numpy's
    (rows of 14 and 7 pixels as ResNet's maps have, a chunk of channels narrower than the block)."""
    s, args = _channels_to_rows(W, K, A)
    func = te.lower(s, args, "f")
    # the transpose reads a row that reaches codegen as one vectorized loop: every row here on
    # AVX-512's 16 lanes; on the host where its registers hold the row whole (AVX2's 8 lanes
    # split a row of 14 into pieces first, te/vector_split.py)
    here = host()
    for target in [AVX512] + ([here] if pieces(W, here.lanes("float32")) is None else []):
        text = str(codegen([func], target).module)
        assert "shufflevector" in text and "load float," not in text, target    # no element-by-element gather
    x = np.random.default_rng(0).standard_normal((W, K)).astype(np.float32)
    out = np.full((K, W), np.nan, np.float32)
    te.build(s, args)(x, out)
    np.testing.assert_allclose(out, x.T * 2, rtol=1e-6)


def test_short_rows_are_masked_register_accesses():
    """A row of 14 floats is read and written by one masked access each on AVX-512 (16 lanes, mask
    registers); on the host, whatever its registers, the elements past it are left alone."""
    W, K, A = 14, 32, 16
    s, args = _channels_to_rows(W, K, A, residual=True)
    text = str(codegen([te.lower(s, args, "f")], AVX512).module)
    assert "llvm.masked.store.v16f32" in text and "llvm.masked.load.v16f32" in text
    rng = np.random.default_rng(1)
    x = rng.standard_normal((W, K)).astype(np.float32)
    r = rng.standard_normal((K, W)).astype(np.float32)
    # the output lies inside a larger array: the lanes past each row must not be written
    big = np.full(K * W + 16, 7.0, np.float32)
    out = big[:K * W].reshape(K, W)
    te.build(s, args)(x, r, out)
    np.testing.assert_allclose(out, x.T * 2 + r, rtol=1e-6)
    assert (big[K * W:] == 7.0).all()


def test_a_load_of_the_stored_buffer_is_not_transposed():
    """B[8l + u + 1] = B[8l + u] + 1 reads what the previous iteration wrote: hoisting the reads
    before the stores would read old values, so the loop is emitted as written."""
    B = Buffer("B", (8 * 8,), "float32")
    u, lane = Var("u", "int64"), Var("l", "int64")
    at = BinOp(BinOpKind.ADD, BinOp(BinOpKind.MUL, lane, Const(8, "int64"), "int64"), u, "int64")
    body = Store(B, BinOp(BinOpKind.ADD, at, Const(1, "int64"), "int64"),
                 BinOp(BinOpKind.ADD, Load(B, at, "float32"), Const(1.0, "float32"), "float32"))
    func = LoweredFunc("f", [B], For(u, Const(4, "int64"), ForKind.UNROLLED,
                                     For(lane, Const(8, "int64"), ForKind.VECTORIZED, body)))
    b = np.random.default_rng(3).standard_normal(8 * 8).astype(np.float32)
    want = b.copy()
    for uu in range(4):
        for ll in range(8):
            want[8 * ll + uu + 1] = want[8 * ll + uu] + 1
    te.build(func)(b)
    np.testing.assert_allclose(b, want, rtol=1e-6)
