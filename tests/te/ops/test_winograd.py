"""Winograd F(4x4, 3x3) convolution: the transforms, the kernel against numpy, the template, the dispatch."""
from __future__ import annotations

import numpy as np
import pytest

import autotune
import te
from te import ops
from te.ops import winograd
from te.ops.conv2d import geometry

from .conv_reference import conv_ref

TOL = dict(rtol=1e-4, atol=1e-4)
AVX512 = "llvm -mcpu=skylake-avx512"


@pytest.mark.parametrize("m", winograd.TILE_SIZES)
def test_matrices_compute_a_1d_convolution_exactly(m):
    """A^T [(G g) . (B^T d)] is the correlation of an (m+2)-long signal with a 3-tap filter."""
    AT, G, BT = winograd.matrices(m)
    rng = np.random.default_rng(m)
    d, g = rng.standard_normal(m + 2), rng.standard_normal(3)
    want = np.array([d[i:i + 3] @ g for i in range(m)])
    np.testing.assert_allclose(AT @ ((G @ g) * (BT @ d)), want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ["AT", "BT"])
def test_factored_transform_rows_equal_the_matrices(name):
    """F(4x4)'s factored transform rows (shared sums) compute the same products as its matrices."""
    AT, _, BT = winograd.matrices(4)
    d = np.random.default_rng(3).standard_normal(6)
    rows = winograd._FACTORED[name, 4](list(d), lambda c, like: float(c))
    np.testing.assert_allclose(np.array(rows), {"AT": AT, "BT": BT}[name] @ d, rtol=1e-12, atol=1e-12)


def test_an_unknown_tile_size_is_refused():
    with pytest.raises(ValueError, match="output tile 3 is not supported"):
        winograd.matrices(3)


def _run(x, w, bias, pads, prepacked: bool, bn: int = 16, bm: int = 8, tile_k=None, relu=False, N=None):
    g = geometry(x.shape, w.shape, (1, 1), pads)
    X = te.placeholder(x.shape, "float32", name="x")
    B = te.placeholder(bias.shape, "float32", name="b")
    if prepacked:
        U = winograd.transform_weight_numpy(w, 4, bn)
        Wt = te.placeholder(U.shape, "float32", name="u")
        wt, wv = winograd.WinogradWeight(Wt, w.shape, 4), U
    else:
        Wt = te.placeholder(w.shape, "float32", name="w")
        wt, wv = Wt, w
    y = winograd.conv2d_winograd(X, wt, g, bias=B, m=4, bn=bn, bm=bm,
                                 epilogue=(lambda v, idx: te.max_of(v, 0.0)) if relu else None)
    s = te.create_schedule(y.op)
    winograd.schedule_winograd(s, y, None, te.target.host(), tile_k=tile_k)
    f = te.build(s, [X, Wt, B, y])
    out = np.full(y.shape, np.nan, np.float32)
    f(x, wv, bias, out)
    return out


@pytest.mark.parametrize("shape,K,pads,bn,bm", [
    ((1, 32, 14, 14), 32, (1, 1, 1, 1), 16, 8),       # tiles divide the map
    ((1, 16, 9, 11), 20, (1, 1, 1, 1), 16, 6),        # partial tiles, K not a multiple of bn
    ((2, 8, 7, 6), 48, (0, 1, 2, 0), 32, 4),          # two images, uneven padding, 2-vector tiles
    ((1, 24, 6, 5), 16, (0, 0, 0, 0), 16, 3),         # no padding, tiles not filling bm
])
def test_kernel_matches_numpy(shape, K, pads, bn, bm):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(np.float32)
    w = (rng.standard_normal((K, shape[1], 3, 3)) * 0.2).astype(np.float32)
    bias = rng.standard_normal(K).astype(np.float32)
    want = conv_ref(x, w, pads=pads) + bias[None, :, None, None]
    np.testing.assert_allclose(_run(x, w, bias, pads, True, bn, bm), want, **TOL)
    np.testing.assert_allclose(_run(x, w, bias, pads, False, bn, bm, relu=True), np.maximum(want, 0), **TOL)


def test_weight_transform_layout():
    rng = np.random.default_rng(1)
    w = rng.standard_normal((20, 3, 3, 3)).astype(np.float32)
    U = winograd.transform_weight_numpy(w, 4, 16)
    assert U.shape == (6, 6, 2, 3, 16) and U.dtype == np.float32
    _, G, _ = winograd.matrices(4)
    k, c = 17, 2
    np.testing.assert_allclose(U[:, :, k // 16, c, k % 16], G @ w[k, c] @ G.T, rtol=1e-5, atol=1e-6)
    assert not U[:, :, 1, :, 4:].any()          # channels 20..31 are padding


def test_kernel_refuses_what_it_cannot_compute():
    X = te.placeholder((1, 8, 8, 8), "float32")
    Wt = te.placeholder((8, 8, 3, 3), "float32")
    with pytest.raises(ValueError, match="3x3 stride-1"):
        winograd.conv2d_winograd(X, Wt, geometry((1, 8, 8, 8), (8, 8, 3, 3), (2, 2), 1))
    U = te.placeholder((6, 6, 1, 8, 16), "float32")
    with pytest.raises(ValueError, match="transformed for F\\(4\\) by 16"):
        winograd.conv2d_winograd(X, winograd.WinogradWeight(U, (8, 8, 3, 3), 4),
                                 geometry((1, 8, 8, 8), (8, 8, 3, 3), (1, 1), 1), bn=32)


def test_conv2d_runs_winograd_for_a_transformed_weight_and_direct_otherwise():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((1, 32, 16, 16)).astype(np.float32)
    w = (rng.standard_normal((32, 32, 3, 3)) * 0.1).astype(np.float32)
    X = te.placeholder(x.shape, "float32", name="x")
    U = winograd.transform_weight_numpy(w, 4, 32)
    Ut = te.placeholder(U.shape, "float32", name="u")
    y = ops.conv2d(X, winograd.WinogradWeight(Ut, w.shape, 4), padding=1)
    assert y.op.tag == "conv2d_winograd"
    f = te.build(ops.schedule([y]), [X, Ut, y])
    out = np.zeros(y.shape, np.float32)
    f(x, U, out)
    np.testing.assert_allclose(out, conv_ref(x, w, pads=(1, 1, 1, 1)), **TOL)
    Wt = te.placeholder(w.shape, "float32", name="w")
    assert ops.conv2d(X, Wt, padding=1).op.tag == "conv2d_nchw"      # an OIHW weight: direct


def test_template_configs_match_numpy():
    args = ((1, 16, 10, 10), (24, 16, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1, "float32")
    task = autotune.create_task("conv2d_nchw_winograd", args)
    sp = task.config_space
    assert {"tile_bn", "tile_bm", "tile_k"} <= set(sp.space_map)
    assert task.flops == geometry(args[0], args[1], (1, 1), 1).flops     # the direct conv's count
    rng = np.random.default_rng(3)
    x = rng.standard_normal(args[0]).astype(np.float32)
    w = (rng.standard_normal(args[1]) * 0.2).astype(np.float32)
    want = conv_ref(x, w, pads=(1, 1, 1, 1))
    import random
    r = random.Random(0)
    for i in {sp.default_index(), *(sp.sample(r) for _ in range(3))}:
        f = task.build(sp.get(i))
        out = np.zeros(want.shape, np.float32)
        f(x, w, out)
        np.testing.assert_allclose(out, want, **TOL, err_msg=str(sp.get(i)))


def test_template_measures_with_the_weight_transformed_by_the_runner():
    args = ((1, 32, 14, 14), (32, 32, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1, "float32")
    task = autotune.create_task("conv2d_nchw_winograd", args)
    sp = task.config_space
    cfgs = [sp.get(sp.default_index()), sp.default_with({"tile_bn": 16})]
    with autotune.Measurer(autotune.measure_option(n_parallel=1, min_repeat_ms=2, repeat=1)) as m:
        recs = m.measure(task, cfgs)
    assert all(r.ok for r in recs), [r.error_msg for r in recs]   # both checked against the default's output


def test_a_winograd_kernel_is_recognised_after_lowering():
    X = te.placeholder((1, 32, 16, 16), "float32", name="x")
    U = te.placeholder((6, 6, 2, 32, 16), "float32", name="u")
    y = ops.conv2d(X, winograd.WinogradWeight(U, (32, 32, 3, 3), 4), padding=1)
    assert winograd.in_kernel(te.lower(ops.schedule([y]), [X, U, y], "k"))
    Wt = te.placeholder((32, 32, 3, 3), "float32", name="w")
    d = ops.conv2d(X, Wt, padding=1)
    assert not winograd.in_kernel(te.lower(ops.schedule([d]), [X, Wt, d], "k"))


@pytest.mark.parametrize("threads,parallel", [(1, "range(7):  # parallel"), (2, "range(49):  # parallel")])
def test_output_tiles_are_shared_out_evenly(threads, parallel):
    # 27x27 in 4x4 tiles: 7 rows of tiles, whole rows for one thread, single tiles for two
    import dataclasses
    rng = np.random.default_rng(4)
    x = rng.standard_normal((1, 16, 27, 27)).astype(np.float32)
    w = (rng.standard_normal((32, 16, 3, 3)) * 0.2).astype(np.float32)
    g = geometry(x.shape, w.shape, (1, 1), (1, 1, 1, 1))
    X = te.placeholder(x.shape, "float32", name="x")
    U = winograd.transform_weight_numpy(w, 4, 16)
    Ut = te.placeholder(U.shape, "float32", name="u")
    y = winograd.conv2d_winograd(X, winograd.WinogradWeight(Ut, w.shape, 4), g, m=4, bn=16, bm=8)
    s = te.create_schedule(y.op)
    target = dataclasses.replace(te.target.host(), threads=threads)
    winograd.schedule_winograd(s, y, None, target, fused=False)       # the output stage on its own
    last = [ln for ln in str(te.lower(s, [X, Ut, y])).splitlines() if "# parallel" in ln][-1]
    assert parallel in last
    f = te.build(s, [X, Ut, y], target=target)
    f.set_num_threads(threads)
    out = np.full(y.shape, np.nan, np.float32)
    f(x, U, out)
    np.testing.assert_allclose(out, conv_ref(x, w, pads=(1, 1, 1, 1)), **TOL)


@pytest.mark.parametrize("target,m,shape,K,vectors", [
    # AVX-512's register tiles: 7 tiles of 2 or 1 vectors (14 or 7 of its 28 accumulators)
    (AVX512, 2, (1, 24, 13, 13), 40, 2),      # SqueezeNet's 13x13 by F(2x2): 7 tiles a row, K padded to 64
    (AVX512, 4, (2, 16, 9, 16), 20, 1),       # two images, partial tile rows, K not a multiple of bn
    (AVX512, 4, (1, 8, 27, 27), 32, 1),       # 7 tiles a row of 4x4, the last one partial
    # the host's: one vector of channels, so that 7 tiles fit AVX2's 12 accumulators as well
    (None, 2, (1, 24, 13, 13), 40, 1),
    (None, 4, (2, 16, 9, 16), 20, 1),
    (None, 4, (1, 8, 27, 27), 32, 1),
])
@pytest.mark.parametrize("fused", [True, False])
def test_fused_gemm_and_output_match_numpy(target, m, shape, K, vectors, fused):
    """The input transform, the GEMMs and the output transform per block of a row of tiles
    (schedule_fused) or stage by stage."""
    target = te.target.parse(target)
    bn = vectors * target.lanes()
    rng = np.random.default_rng(m)
    x = rng.standard_normal(shape).astype(np.float32)
    w = (rng.standard_normal((K, shape[1], 3, 3)) * 0.2).astype(np.float32)
    bias = rng.standard_normal(K).astype(np.float32)
    g = geometry(x.shape, w.shape, (1, 1), (1, 1, 1, 1))
    assert winograd.fused_row_tiles(g, m, bn, target) >= 4
    X, B = te.placeholder(x.shape, "float32", name="x"), te.placeholder(bias.shape, "float32", name="b")
    U = winograd.transform_weight_numpy(w, m, bn)
    Wt = te.placeholder(U.shape, "float32", name="u")
    y = winograd.conv2d_winograd(X, winograd.WinogradWeight(Wt, w.shape, m), g, bias=B, m=m, bn=bn, bm=6,
                                 epilogue=lambda v, idx: te.max_of(v, 0.0))
    s = te.create_schedule(y.op)
    winograd.schedule_winograd(s, y, None, target, fused=fused)
    lowered = str(te.lower(s, [X, Wt, B, y])).splitlines()
    for buf in ("conv2d.m", "conv2d.v"):         # M's and V's tiles: a task's block, or the map's
        alloc = next(ln for ln in lowered if f"allocate {buf}:" in ln)
        tiles = int(alloc.rsplit("(", 1)[1].split(",")[2])
        assert (tiles == winograd.fused_row_tiles(g, m, bn, target)) is fused
    f = te.build(s, [X, Wt, B, y], target=target)
    out = np.full(y.shape, np.nan, np.float32)
    f(x, U, bias, out)
    want = conv_ref(x, w, pads=(1, 1, 1, 1)) + bias[None, :, None, None]
    np.testing.assert_allclose(out, np.maximum(want, 0), **TOL)


def test_fused_schedule_is_the_default_for_few_input_channels():
    target = te.target.host()
    few, many = (geometry((1, C, 13, 13), (64, C, 3, 3), (1, 1), (1, 1, 1, 1)) for C in (64, 128))
    assert winograd.fused_pays(few) and not winograd.fused_pays(many)
    assert winograd.fused_row_tiles(geometry((1, 16, 6, 6), (32, 16, 3, 3), (1, 1), (1, 1, 1, 1)), 4, 16,
                                     target) == 0          # 2 tiles a row: the stage-by-stage schedule
