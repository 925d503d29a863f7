"""An unrolled loop around a vectorized store that is strided across the lanes but contiguous
across the iterations (te/codegen_vector.py `_transposed_stores`): a register transpose and
contiguous stores, not scatters; answers checked against numpy, the edge of a partial block
included, and a store whose value reads its own buffer left in order."""
from __future__ import annotations

import numpy as np
import pytest

import te
from te.codegen_llvm import codegen
from te.expr import BinOp, BinOpKind, Const, Load, Var
from te.schedule import ForKind
from te.stmt import Buffer, For, LoweredFunc, Store
from te.target import host


def _rows_by_channel_vectors(K: int, W: int, A: int):
    """out[k, w] = x[w, k] * 2 + 1 (a channels-last input stored channels first), scheduled with
    the row's columns unrolled by A around a vectorized loop over the channels."""
    x = te.placeholder((W, K), name="x")
    out = te.compute((K, W), lambda k, w: x[w, k] * 2.0 + 1.0, name="out")
    s = te.create_schedule(out.op)
    k, w = out.op.axis
    wo, wi = s[out].split(w, factor=A)
    s[out].reorder(wo, wi, k)
    s[out].unroll(wi)
    s[out].vectorize(k)
    return s, [x, out]


@pytest.mark.parametrize("K,W,A", [(16, 8, 4), (16, 10, 4), (8, 12, 2)])
def test_strided_store_becomes_contiguous_runs(K, W, A):
    """Stores of A elements and no scatter where the columns divide (a partial last block of columns keeps
    the scattered loop for the blocks that cross the edge); the answer is numpy's."""
    s, args = _rows_by_channel_vectors(K, W, A)
    text = str(codegen([te.lower(s, args, "f")], host()).module)
    assert f"store <{A} x float>" in text and ("masked.scatter" in text) == (W % A != 0)
    x = np.random.default_rng(0).standard_normal((W, K)).astype(np.float32)
    out = np.full((K, W), np.nan, np.float32)
    te.build(s, args)(x, out)
    np.testing.assert_allclose(out, x.T * 2 + 1, rtol=1e-6)



def test_a_store_whose_value_reads_its_own_buffer_stays_in_order():
    """B[8k + u + 1] = B[8k + u] + 1 reads what the previous iteration wrote: deferring the
    stores to a transpose would read the old values, so the loop is emitted as written."""
    B = Buffer("B", (16 * 8,), "float32")
    u, k = Var("u", "int64"), Var("k", "int64")
    at = BinOp(BinOpKind.ADD, BinOp(BinOpKind.MUL, k, Const(8, "int64"), "int64"), u, "int64")
    one = Const(1, "int64")
    body = Store(B, BinOp(BinOpKind.ADD, at, one, "int64"),
                 BinOp(BinOpKind.ADD, Load(B, at, "float32"), Const(1.0, "float32"), "float32"))
    func = LoweredFunc("f", [B], For(u, Const(4, "int64"), ForKind.UNROLLED,
                                     For(k, Const(16, "int64"), ForKind.VECTORIZED, body)))
    assert "store <4 x float>" not in str(codegen([func], host()).module)
    b = np.random.default_rng(3).standard_normal(16 * 8).astype(np.float32)
    want = b.copy()
    for uu in range(4):
        for kk in range(16):
            want[8 * kk + uu + 1] = want[8 * kk + uu] + 1
    te.build(func)(b)
    np.testing.assert_allclose(b, want, rtol=1e-6)
