"""Vectorized loops of a width that is not a power of two are split into register-wide pieces
(te/vector_split.py): results unchanged, and no lane-by-lane reassembly in the code."""
import numpy as np
import pytest

import autotune
import te
from te.schedule import ForKind
from te.stmt import For, walk_stmt
from te.target import host
from te.vector_split import piece_lanes, split_wide_vectors


@pytest.mark.parametrize("extent,lanes,want", [
    (48, 16, 16), (24, 16, 8), (40, 16, 8), (96, 16, 16), (24, 8, 8),
    (64, 16, None), (16, 16, None), (12, 16, None), (36, 16, 4), (44, 16, 4), (50, 16, None)])
def test_piece_lanes(extent, lanes, want):
    assert piece_lanes(extent, lanes) == want


def vectorized_extents(func):
    return sorted(s.extent.value for s in walk_stmt(func.body)
                  if isinstance(s, For) and s.kind is ForKind.VECTORIZED)


def test_split_keeps_results_and_narrows_vectors():
    n = 48
    a = te.placeholder((8, n), name="a", dtype="float16")
    b = te.compute((8, n), lambda i, j: a[i, j] * 2 + 1, name="b")
    s = te.create_schedule(b.op)
    s[b].vectorize(b.op.axis[1])
    func = te.lower(s, [a, b])
    assert vectorized_extents(func) == [n]
    # float16 is computed in float32: pieces of a float32 register
    assert vectorized_extents(split_wide_vectors(func, 512)) == [16]     # unrolled 3 times
    assert vectorized_extents(split_wide_vectors(func, 256)) == [8]
    f = te.build(s, [a, b])
    x = np.random.default_rng(0).standard_normal((8, n)).astype(np.float16)
    y = np.empty((8, n), np.float32)     # float16 arithmetic is float32
    f(x, y)
    np.testing.assert_allclose(y, x.astype(np.float32) * 2 + 1, rtol=1e-6)


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
