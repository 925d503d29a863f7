"""Vectorized loops of a width that is not a power of two are split into register-wide pieces
(te/vector_split.py): results unchanged, and no lane-by-lane reassembly in the code."""
import numpy as np
import pytest

import autotune
import te
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
    t = host()
    lanes = t.lanes("float32")
    bn = 3 * lanes
    task = autotune.create_task("matmul", (64, 2 * bn, 64, "float32"), t)
    space = task.config_space
    cfg = dict(space.get(space.default_index()).to_json(), bn=bn)
    s, tensors = task.instantiate(space.from_json(cfg))
    f = te.build(s, tensors)
    rng = np.random.default_rng(1)
    args = [rng.standard_normal(x.shape).astype("float32") for x in tensors]
    f(*args)
    np.testing.assert_allclose(args[-1], args[0] @ args[1], rtol=1e-4, atol=1e-4)
    asm = f.get_source("asm")
    assert "vinsertps" not in asm and "vextractps" not in asm
