"""Knob defaults derived from the target's caches: the sizes their docstrings say, and every
derived default builds and matches numpy."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import autotune
import te
from te.caches import Caches, KiB, MiB
from te.ops import registry
from te.ops import winograd as wg
from te.ops.conv2d import default_ocb, default_out_order, default_pack_at, default_tiles, input_rows_read
from te.ops.conv_geometry import geometry
from te.ops.matmul_defaults import default_tile_order
from te.ops.registry import ConvWorkload, MatmulWorkload
from te.target import host, parse

from .conv_reference import conv_ref

EMERALD = Caches(48 * KiB, 2 * MiB, 150 * MiB)
ZEN4 = Caches(32 * KiB, 1 * MiB, 4 * MiB)
ICELAKE = Caches(48 * KiB, 1280 * KiB, 1536 * KiB)
TINY = Caches(4 * KiB, 16 * KiB, 64 * KiB)
HUGE = Caches(1 * MiB, 64 * MiB, 1024 * MiB)


AVX512 = parse("llvm -mcpu=skylake-avx512")      # the docstrings' figures are for AVX-512 register tiles


def with_caches(c: Caches, target=AVX512):
    return dataclasses.replace(target, caches=c)


def test_pack_at_oc_block_while_the_block_map_fits_l1d():
    g = geometry((1, 256, 18, 18), (64, 256, 3, 3), (1, 1), 1, (1, 1), 1)
    # 18 x 18 pixels x 32 channels x 4 bytes = 40.5 KiB: inside 48 KiB, outside 32 KiB
    assert default_pack_at(g, 32, 1, 6, with_caches(EMERALD)) == "oc_block"
    assert default_pack_at(g, 32, 1, 6, with_caches(ZEN4)) == "root"


def direct_order(shape, caches, stride=1, target=AVX512, threads=1):
    """The untuned out_order; on one thread by default: the caches model (on more, a 1x1 conv
    may split by rows first: schedule.rows_split_pays, tests/te/ops/test_schedule.py)."""
    C, H, K, R = shape
    g = geometry((1, C, H, H), (K, C, R, R), (stride, stride), R // 2, (1, 1), 1)
    t = dataclasses.replace(with_caches(caches, target), threads=threads)
    ocb = default_ocb(g, t)
    return default_out_order(g, ocb, *default_tiles(g, ocb, t), t)


def test_out_order_as_the_docstring_says():
    # inputs past L2, few weights: oc_outer would re-read the input's channel planes from L3 per
    # block (measured 1.2-1.4x slower on Emerald Rapids, 1 thread)
    for big_input in [(256, 56, 64, 1), (256, 56, 128, 1), (512, 28, 128, 1), (512, 28, 256, 1)]:
        assert {direct_order(big_input, c) for c in (EMERALD, ZEN4, ICELAKE)} == {"rows_outer"}, big_input
    # a spatial filter: rows_outer while its weights stay in the core's L3 share (spatial_out_order)
    assert {direct_order((128, 56, 128, 3), c, stride=2) for c in (EMERALD, ZEN4, ICELAKE)} == {"rows_outer"}
    assert direct_order((128, 56, 128, 3), EMERALD, 2, parse("llvm -mcpu=haswell")) == "rows_outer"
    # 2.3 MiB of weights from L3 at 4.6 bytes a cycle; on Emerald Rapids the map and a chunk of
    # them fit the L1d: chunks_outer (tests/te/ops/test_conv_chunks.py)
    assert direct_order((256, 28, 256, 3), ZEN4, stride=2) == "rows_outer"
    assert direct_order((256, 28, 256, 3), EMERALD, stride=2) == "chunks_outer"
    # 9 MiB of weights from L3 at 18 bytes a cycle (one row of 7 pixels per weight vector): read
    # once, by chunks kept in L1 where a chunk and the 7x7 map fit it
    assert {direct_order((512, 7, 512, 3), c) for c in (EMERALD, ZEN4, ICELAKE)} == {"chunks_outer"}
    assert direct_order((512, 7, 512, 3), TINY) == "oc_outer"
    assert direct_order((512, 14, 512, 3), EMERALD, stride=2) == "chunks_outer"
    # 2.3 MiB of weights past Ice Lake's 1.5 MiB L3 share: read once
    assert direct_order((256, 28, 256, 3), ICELAKE, stride=2) == "chunks_outer"
    assert {direct_order((1024, 14, 256, 1), c) for c in (EMERALD, ICELAKE, TINY)} == {"oc_outer"}
    # within L2 (Emerald Rapids' 2 MiB), or weights past L2 that rows_outer re-reads per tile row
    assert direct_order((128, 28, 512, 1), EMERALD) == "oc_outer"
    assert direct_order((128, 28, 512, 1), EMERALD, threads=2) == "rows_outer"      # input > weights
    assert direct_order((512, 28, 1024, 1), EMERALD, stride=2) == "oc_outer"


def test_input_rows_read():
    def rows(R, stride, H=56, pad=0):
        return input_rows_read(geometry((1, 8, H, H), (8, 8, R, R), (stride, stride), pad, (1, 1), 1))
    assert rows(1, 2) == 28                 # every other row
    assert rows(3, 2, pad=1) == 57          # rows 0..56 of the 58 padded ones
    assert rows(1, 1) == rows(3, 1, pad=1) - 2 == 56
    assert rows(7, 2, H=224, pad=3) == 229


def test_tile_order_as_the_docstring_says():
    order = default_tile_order
    for c in (EMERALD, ZEN4, ICELAKE):
        t = with_caches(c)
        assert order(2048, 512, 2048, 8, 32, t) == "cols_outer"       # though N < M
        assert order(128, 3072, 768, 8, 32, t) == "cols_outer"        # BERT's feed-forward
        assert order(128, 64, 128, 8, 32, t) == "rows_outer"          # within L2: the usual order


def test_tile_order_of_a_1x1_conv_weighs_its_output_planes():
    """A 1x1 GEMM conv's output rows lie a channel plane apart: cols_outer visits them where no
    prefetcher follows, rows_outer streams them.  ResNet-50's 64 -> 256 at 56x56 with its residual
    (output and residual: 2 arrays of 3.1 MiB) takes rows_outer with a 2 MiB L2; without the
    residual, where rows_outer would re-read B (0.8 MiB) from past a 1 MiB L2 per row tile, with
    a deeper B, or with caches that hold everything, the usual cols_outer stays."""
    order, t = default_tile_order, with_caches(EMERALD)
    assert order(256, 3136, 64, 8, 32, t, nchw_arrays=2) == "rows_outer"
    assert order(256, 3136, 64, 8, 32, t, nchw_arrays=1) == "cols_outer"
    assert order(256, 3136, 64, 8, 32, t) == "cols_outer"
    assert order(256, 3136, 256, 8, 32, t, nchw_arrays=2) == "cols_outer"      # B re-read per row tile
    assert order(256, 3136, 64, 8, 32, with_caches(ZEN4), nchw_arrays=2) == "cols_outer"
    assert order(256, 3136, 64, 8, 32, with_caches(HUGE), nchw_arrays=2) == "cols_outer"


def test_untuned_1x1_conv_with_a_residual_streams_its_output_planes(rand):
    """The untuned schedule counts the residual the fused epilogue reads (the workload, and so the
    knob's default, cannot) and matches numpy with the order it picks."""
    from te import ops
    from te.ops.matmul_defaults import tile_order
    wl = ConvWorkload((1, 64, 56, 56), (256, 64, 1, 1), (1, 1), (0, 0, 0, 0))
    im = registry.IMPLEMENTATIONS["conv2d.gemm1x1"]
    a, b = rand(wl.x_shape), rand(wl.w_shape)
    for residual, want in ((True, "rows_outer"), (False, "cols_outer")):
        for target in (with_caches(EMERALD), with_caches(EMERALD, host())):
            cfg = im.config(wl, target)
            x, w = im.placeholders(wl, cfg, target, False)
            y = im.compute([x, w], wl, cfg, target)
            r = te.placeholder(y.shape, name="r")
            z = ops.relu(ops.add(y, r) if residual else y)
            s = ops.schedule([z], target, anchor_schedule=lambda s, out, final: im.schedule(s, out, final, cfg, target))
            if "avx512f" in target.feature_set:
                assert tile_order(cfg, s, y, z, target) == want
        c = rand(y.shape) if residual else np.zeros(y.shape, np.float32)
        out = np.zeros(z.shape, np.float32)
        te.build(s, [x, w, r, z] if residual else [x, w, z], target=target)(*([a, b, c, out] if residual else [a, b, out]))
        np.testing.assert_allclose(out, np.maximum(conv_ref(a, b) + c, 0), rtol=1e-4, atol=1e-4)


def test_winograd_rows_fill_the_registers_unless_they_pad():
    """As many GEMM rows as the accumulators allow, on every cache size (U's blocks come from L1
    after the first row tile), unless they pad the tiles more than an eighth past the least."""
    for c in (EMERALD, ZEN4, ICELAKE, TINY):
        assert wg.default_bm(32, with_caches(c), 512, 512) == 14      # 28 accumulators / 2 vectors
        assert wg.default_bm(32, with_caches(c), 256, 256, P=49) == 7   # 49 tiles: 7 x 7, not 56 rows
    assert wg.default_bm(32, with_caches(EMERALD), 256, 256, P=16) == 8   # F(4x4) on 14x14: not 28 rows
    assert wg.default_bm(16, with_caches(EMERALD), 512, 512) == 14
    assert wg.default_bm(16, with_caches(EMERALD, parse("llvm -mcpu=haswell")), 512, 512) == 6   # AVX2: 12 accumulators
    assert wg.default_tile_k(256, fused=False) == 16 and wg.default_tile_k(64) == 4


def test_nchwc_out_order_follows_the_target():
    args = ((1, 32, 32, 32), (64, 32, 1, 1))
    for c, want in ((TINY, "rows_outer"), (HUGE, "oc_outer")):
        # one thread: the caches model (on two, input > weights splits by rows first)
        task = autotune.create_task("conv2d_NCHWc", args, dataclasses.replace(with_caches(c), threads=1))
        sp = task.config_space
        assert sp.get(sp.default_index())["out_order"].val == want


# (implementation, workload, knob, its default with TINY caches, with HUGE ones)
CASES = [
    ("conv2d.direct", ConvWorkload((1, 32, 32, 32), (64, 32, 1, 1), (1, 1), (0, 0, 0, 0)),
     "out_order", "rows_outer", "oc_outer"),
    ("conv2d.direct", ConvWorkload((1, 8, 40, 40), (32, 8, 1, 1), (2, 2), (0, 0, 0, 0)),
     "out_order", "rows_outer", "oc_outer"),
    ("conv2d.direct", ConvWorkload((1, 32, 8, 8), (32, 32, 3, 3), (1, 1), (1, 1, 1, 1)),
     "pack_at", "root", "oc_block"),
    # a stride-2 3x3 conv with the 2 x 7 tile: rows_outer while its 0.35 MiB of weights stay in L2
    ("conv2d.direct", ConvWorkload((1, 96, 28, 28), (96, 96, 3, 3), (2, 2), (1, 1, 1, 1)),
     "out_order", "oc_outer", "rows_outer"),
    ("matmul.packed", MatmulWorkload(128, 64, 256), "tile_order", "cols_outer", "rows_outer"),
    # Winograd's rows no longer depend on the caches: 4 tiles (F(4x4) on 8x8) take 4 rows
    ("conv2d.winograd", ConvWorkload((1, 128, 8, 8), (128, 128, 3, 3), (1, 1), (1, 1, 1, 1)),
     "tile_bm", 4, 4),
]


@pytest.mark.parametrize("impl, wl, knob, tiny, huge", CASES, ids=[f"{c[0]}-{c[2]}" for c in CASES])
def test_derived_defaults_build_and_match_numpy(impl, wl, knob, tiny, huge, rng):
    im = registry.IMPLEMENTATIONS[impl]
    for caches, want in ((TINY, tiny), (HUGE, huge)):
        target = dataclasses.replace(with_caches(caches, host()), threads=1)     # the caches model alone
        task = autotune.create_task(im.template, im.args(wl), target)
        sp = task.config_space
        cfg = sp.get(sp.default_index())
        if "avx512f" in target.feature_set:       # the register tiles the cases were picked for
            assert cfg[knob].val == want
        s, tensors = task.instantiate(cfg)
        ins = [rng.standard_normal(t.shape).astype(np.float32) for t in tensors[:-1]]
        out = np.zeros(tensors[-1].shape, np.float32)
        te.build(s, tensors, target=target)(*ins, out)
        if isinstance(wl, MatmulWorkload):
            ref = ins[0].astype(np.float64) @ ins[1]
        else:
            ref = conv_ref(*ins, wl.strides, wl.padding)
        np.testing.assert_allclose(out, ref, rtol=2e-4, atol=2e-3, err_msg=f"{impl} {cfg}")


def test_panels_where_the_pack_round_trip_outweighs_the_accumulator_pass():
    """matmul_defaults.panels_pay: a 1x1 conv that packs its input takes "panels" where the packed input's
    round trip (beyond L2, or a deep reduction over few output channels) costs more than writing
    and re-reading the accumulator blocks, with 4 column blocks a thread; the cases its docstring
    measured on Emerald Rapids."""
    order = default_tile_order
    t = dataclasses.replace(with_caches(EMERALD), threads=2)
    assert order(128, 784, 512, 8, 32, t, 1, packs_b=True) == "panels"          # 512 -> 128 at 28x28
    assert order(256, 784, 512, 8, 32, t, 1, packs_b=True) == "panels"          # 512 -> 256
    assert order(16, 3025, 128, 8, 32, t, 1, packs_b=True) == "panels"          # SqueezeNet's 128 -> 16
    assert order(512, 784, 128, 8, 32, t, 2, packs_b=True) == "cols_outer"      # 128 -> 512: M > K
    assert order(512, 784, 256, 8, 32, t, 1, packs_b=True) == "cols_outer"      # 256 -> 512 stride 2
    assert order(128, 784, 512, 8, 32, t, 1) == "cols_outer"                    # the input read in place
    # too few column blocks for the threads (25 blocks, 8 threads), and the residual-streaming order
    assert order(128, 784, 512, 8, 32, dataclasses.replace(t, threads=8), 1, packs_b=True) == "cols_outer"
    assert order(256, 3136, 64, 8, 32, t, 2, packs_b=True) == "rows_outer"


def test_untuned_1x1_conv_packs_per_panel_and_matches_numpy(rand):
    """The untuned schedule of a deep 1x1 conv over few channels takes panels (each column block
    packs its panel inside the parallel loop) and matches numpy with its epilogue."""
    from te import ops
    from te.ops.matmul_defaults import tile_order
    from te.schedule import AttachType
    wl = ConvWorkload((1, 128, 20, 20), (16, 128, 1, 1), (1, 1), (0, 0, 0, 0))
    im = registry.IMPLEMENTATIONS["conv2d.gemm1x1"]
    target = dataclasses.replace(with_caches(EMERALD, host()), threads=2)
    cfg = im.config(wl, target)
    x, w = im.placeholders(wl, cfg, target, False)
    y = im.compute([x, w], wl, cfg, target)
    z = ops.relu(y)
    s = ops.schedule([z], target, anchor_schedule=lambda s, out, final: im.schedule(s, out, final, cfg, target))
    assert tile_order(cfg, s, y, z, target) == "panels"
    assert next(st for st in s.stages if getattr(st.op, "tag", "") == "pack").attach_type is AttachType.SCOPE
    a, b = rand(wl.x_shape), rand(wl.w_shape)
    out = np.zeros(z.shape, np.float32)
    te.build(s, [x, w, z], target=target)(a, b, out)
    np.testing.assert_allclose(out, np.maximum(conv_ref(a, b), 0), rtol=1e-4, atol=1e-4)
