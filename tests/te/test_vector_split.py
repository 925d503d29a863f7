"""Vectorized loops of a width that is not a power of two are split into register-wide pieces
(te/vector_split.py): results unchanged, and no lane-by-lane reassembly in the code."""
import numpy as np
import pytest

import te
from te.ops.matmul import matmul, schedule_matmul
from te.schedule import ForKind
from te.stmt import For, walk_stmt
from te.target import host
from te.vector_split import pieces, split_wide_vectors


@pytest.mark.parametrize("extent,lanes,want", [
    (48, 16, (3, 0)), (24, 16, (1, 8)), (55, 16, (3, 7)), (96, 16, (6, 0)), (24, 8, (3, 0)),
    (17, 16, (1, 1)), (64, 16, None), (16, 16, None), (12, 16, None), (13, 16, None)])
def test_pieces(extent, lanes, want):
    assert pieces(extent, lanes) == want


def vectorized_extents(func):
    return sorted(s.extent.value for s in walk_stmt(func.body)
                  if isinstance(s, For) and s.kind is ForKind.VECTORIZED)


@pytest.mark.parametrize("n,pieces512,pieces256", [(48, [16], [8]), (55, [7, 16], [7, 8]), (17, [16], [8])])
def test_split_keeps_results_and_narrows_vectors(n, pieces512, pieces256):
    a = te.placeholder((8, n), name="a", dtype="float16")
    w = te.placeholder((8,), name="w")
    b = te.compute((8, n), lambda i, j: a[i, j] * w[i] + 1, name="b")
    s = te.create_schedule(b.op)
    s[b].vectorize(b.op.axis[1])
    func = te.lower(s, [a, w, b])
    assert vectorized_extents(func) == [n]
    # float16 is computed in float32: pieces of a float32 register (the whole ones unrolled)
    assert vectorized_extents(split_wide_vectors(func, 512)) == pieces512
    assert vectorized_extents(split_wide_vectors(func, 256)) == pieces256
    f = te.build(s, [a, w, b])
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((8, n)).astype(np.float16), rng.standard_normal(8).astype(np.float32)
    out = np.empty((8, n), np.float32)     # float16 arithmetic is float32
    f(x, y, out)
    np.testing.assert_allclose(out, x.astype(np.float32) * y[:, None] + 1, rtol=1e-5, atol=1e-6)


def test_matmul_with_a_three_register_column_block():
    """The packed GEMM with a column block of three registers (48 floats on AVX-512, 24 on AVX2),
    given to the op (the tuning space's blocks need not include it): split, no lane-by-lane code."""
    t = host()
    bn = 3 * t.lanes("float32")
    A, B = te.placeholder((64, 64), name="A"), te.placeholder((64, 2 * bn), name="B")
    C = matmul(A, B, bn=bn, strategy="packed", target=t)
    s = te.create_schedule(C.op)
    schedule_matmul(s, C, None, t)
    f = te.build(s, [A, B, C], target=t)
    rng = np.random.default_rng(1)
    args = [rng.standard_normal(x.shape).astype("float32") for x in (A, B, C)]
    f(*args)
    np.testing.assert_allclose(args[-1], args[0] @ args[1], rtol=1e-4, atol=1e-4)
    asm = f.get_source("asm")
    assert "vinsertps" not in asm and "vextractps" not in asm
