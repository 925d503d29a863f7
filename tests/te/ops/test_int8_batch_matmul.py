"""The int8 batched matmul of two activations (te/ops/int8_batch_matmul.py): every sign combination
of A and B, odd sizes and the float or quantised epilogue equal to numpy's integer product with
the zero points, on this host's dot product and on AVX2's vpmaddwd; vpdpbusd chosen where the
target has VNNI; bad operands refused in one line."""
import numpy as np
import pytest

import te
from te import ops, tensorize
from te.ops.int8_batch_matmul import (PACKS, SPLITS, define_knobs, qlinear_batch_matmul,
                                      schedule_batch_matmul_int8_cfg)
from te.ops.knobs import ConfigSpace
from te.schedule import ForKind
from te.simplify import simplify
from te.stmt import For, walk_stmt
from te.target import Target, host, parse

HOST = host()


def _codes(rng, dtype, shape):
    lo = 0 if dtype == "uint8" else -128
    return rng.integers(lo, lo + 256, shape).astype(dtype)


def _schedule(y, cfg, target):
    """The default schedule, or with a config the tuned one (as a model build passes its choice's)."""
    if cfg is None:
        return ops.schedule([y], target=target)
    return ops.schedule([y], target, lambda s, out, final: schedule_batch_matmul_int8_cfg(cfg, s, out, final, target))


def _run(target, shape, da, db, out_dtype, rng, cfg=None):
    bt, M, N, K = shape
    a, b = _codes(rng, da, (bt, M, K)), _codes(rng, db, (bt, K, N))
    a[0, 0], b[0, :, 0] = a.max(), b.min()           # the extreme products too
    za, zb = int(_codes(rng, da, ())), int(_codes(rng, db, ()))
    A, B = te.placeholder(a.shape, da, name="A"), te.placeholder(b.shape, db, name="B")
    y = qlinear_batch_matmul(A, B, 0.02, za, 0.03, zb, 0.5, 7, out_dtype, cfg=cfg, target=target)
    f = te.build(_schedule(y, cfg, target), [A, B, y], target=target)
    out = np.zeros(y.shape, np.dtype(y.dtype))
    f(a, b, out)
    acc = (a.astype(np.int64) - za) @ (b.astype(np.int64) - zb)
    if out_dtype is None:
        return out, acc.astype(np.float32) * (np.float32(0.02) * np.float32(0.03))
    lo, hi = (0, 255) if out_dtype == "uint8" else (-128, 127)
    m = np.float32(0.02) * np.float32(0.03) / np.float32(0.5)
    return out, np.clip(np.rint(acc.astype(np.float32) * m) + 7, lo, hi).astype(out_dtype)


@pytest.mark.parametrize("da,db", [("uint8", "int8"), ("int8", "int8"), ("uint8", "uint8"), ("int8", "uint8")])
@pytest.mark.parametrize("out_dtype", ["uint8", "int8", None])
def test_every_sign_combination_matches_numpy(rng, da, db, out_dtype):
    out, ref = _run(HOST, (2, 7, 19, 13), da, db, out_dtype, rng)
    if out_dtype is None:
        np.testing.assert_allclose(out, ref, rtol=1e-6, atol=1e-6)
    else:
        np.testing.assert_array_equal(out, ref)


@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (3, 16, 32, 64), (1, 33, 5, 3)])
def test_odd_and_whole_tile_sizes(rng, shape):
    out, ref = _run(HOST, shape, "uint8", "int8", "uint8", rng)
    np.testing.assert_array_equal(out, ref)


def test_avx2_target_runs_vpmaddwd(rng):
    out, ref = _run(Target("haswell"), (2, 9, 12, 10), "int8", "uint8", "int8", rng)
    np.testing.assert_array_equal(out, ref)


def _config(M, N, K, **knobs):
    space = ConfigSpace()
    define_knobs(space, M, N, K, HOST.lanes("int32"), HOST)
    return space.from_json({**{k: e.to_json() for k, e in space.defaults.items()}, **knobs})


def test_a_tuned_tile_is_taken_and_still_exact(rng):
    cfg = _config(8, 32, 16, tile_m=2, tile_n=16)
    A, B = te.placeholder((1, 8, 16), "uint8"), te.placeholder((1, 16, 32), "int8")
    assert qlinear_batch_matmul(A, B, 0.1, 0, 0.1, 0, cfg=cfg, target=HOST).op.attrs["tile_m"] == 2
    out, ref = _run(HOST, (1, 8, 32, 16), "uint8", "int8", None, rng, cfg=cfg)
    np.testing.assert_allclose(out, ref, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("split,pack", [(s, p) for s in SPLITS for p in PACKS if p == "first" or s == "batch"])
def test_every_thread_split_and_pack_placement_is_exact(rng, split, pack):
    """The knobs a tuner turns: the parallel loop over tiles, row bands or whole batches, and the
    packs and zero-point sums first or inside each batch's task (odd sizes: rows, k and columns padded)."""
    lanes = HOST.lanes("int32")            # a column tile of one vector
    cfg = _config(17, 36, 32, tile_m=4, tile_n=lanes, split=split, pack=pack)
    out, ref = _run(HOST, (3, 17, 36, 29), "int8", "uint8", "uint8", rng, cfg=cfg)
    np.testing.assert_array_equal(out, ref)
    A, B = te.placeholder((3, 17, 29), "int8", name="A"), te.placeholder((3, 29, 36), "uint8", name="B")
    y = qlinear_batch_matmul(A, B, 0.1, 3, 0.1, 4, 0.2, 0, "uint8", cfg=cfg, target=HOST)
    f = te.lower(_schedule(y, cfg, HOST), [A, B, y])
    parallel = [s for s in walk_stmt(f.body) if isinstance(s, For) and s.kind is ForKind.PARALLEL]
    # 17 rows in 5 tiles, 36 columns in tiles of a vector (3 of 16 lanes, 5 of 8)
    tasks = {"tiles": 3 * 5 * -(-36 // lanes), "rows": 3 * 5, "batch": 3}[split]
    assert simplify(parallel[-1].extent).value == tasks, str(f)
    # the packs of A and B and the zero-point sums: parallel loops of their own, or inside the task
    assert len(parallel) == (1 if pack == "in_task" else 5), str(f)


@pytest.mark.parametrize("target,intrin", [("llvm -mcpu=cascadelake", "vpdpbusd"),
                                           ("llvm -mcpu=haswell", "pmaddwd.256")])
def test_the_dot_product_is_tensorized(target, intrin):
    """VNNI's vpdpbusd on AVX-512 (16 lanes), vpmaddwd on AVX2 (8 lanes)."""
    target = parse(target)
    A, B = te.placeholder((2, 8, 16), "uint8", name="A"), te.placeholder((2, 16, 32), "int8", name="B")
    y = qlinear_batch_matmul(A, B, 0.1, 3, 0.1, 4, 0.2, 0, "uint8", target=target)
    f = te.lower(ops.schedule([y], target=target), [A, B, y])
    marked = [tensorize.intrin_of(s) for s in walk_stmt(f.body) if isinstance(s, For)]
    assert intrin in marked, str(f)


def test_bad_operands_say_what_to_do():
    A, B = te.placeholder((1, 8, 32, 16), "uint8"), te.placeholder((1, 16, 32), "int8")
    with pytest.raises(ValueError, match=r"A \(batch, M, K\)"):
        qlinear_batch_matmul(A, B, 0.1, 0, 0.1, 0)
    A, B = te.placeholder((2, 4, 8), "float32"), te.placeholder((2, 8, 4), "int8")
    with pytest.raises(ValueError, match="uint8 or int8 operands"):
        qlinear_batch_matmul(A, B, 0.1, 0, 0.1, 0)
    A = te.placeholder((2, 4, 8), "uint8")
    with pytest.raises(ValueError, match="no 8-bit dot product"):
        qlinear_batch_matmul(A, B, 0.1, 0, 0.1, 0, target=Target("x86-64"))
