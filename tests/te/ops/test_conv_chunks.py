"""The direct conv's chunks_outer tile order (te/ops/conv_chunks.py): outputs against numpy, with
the weights packed inside the kernel and ahead of time, with its epilogue, and the fallback where
the tiles do not divide the map; and where the untuned conv takes it."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import autotune
import te
from te import ops
from te.caches import Caches, KiB, MiB
from te.ops import registry
from te.ops.conv_geometry import geometry
from te.ops.direct_defaults import chunk_channels, chunks_pay, default_ocb, default_out_order, default_store, default_tiles
from te.ops.registry import ConvWorkload
from te.target import host, parse

from .conv_reference import conv_ref, parallel_tasks

DIRECT = registry.IMPLEMENTATIONS["conv2d.direct"]


def run(wl: ConvWorkload, knobs: dict, prepacked: bool, rng, relu: bool = True):
    """The direct conv of wl with the default config updated by knobs (bias, optionally a Relu)
    against numpy's."""
    target = host()
    task = autotune.create_task(DIRECT.template, DIRECT.args(wl), target)
    sp = task.config_space
    cfg = sp.default_with(knobs)
    x, w = DIRECT.placeholders(wl, cfg, target, prepacked)
    b = te.placeholder((wl.w_shape[0],), name="b")
    y = DIRECT.compute([x, w, b], wl, cfg, target, prepacked)
    if relu:
        y = ops.relu(y)
    s = ops.schedule([y], target, anchor_schedule=lambda s, out, final: DIRECT.schedule(s, out, final, cfg, target))
    f = te.build(s, [x, w, b, y], target=target)
    xa = rng.standard_normal(wl.x_shape).astype(np.float32)
    wa = rng.standard_normal(wl.w_shape).astype(np.float32)
    ba = rng.standard_normal(wl.w_shape[0]).astype(np.float32)
    out = np.zeros(y.shape, np.float32)
    f(xa, DIRECT.pack_weight(wa, wl, cfg, target) if prepacked else wa, ba, out)
    ref = conv_ref(xa, wa, wl.strides, wl.padding, groups=wl.groups) + ba[None, :, None, None]
    np.testing.assert_allclose(out, np.maximum(ref, 0) if relu else ref, rtol=2e-4, atol=2e-3)


@pytest.mark.parametrize("prepacked", [False, True])
@pytest.mark.parametrize("shape, tile", [
    ((1, 24, 28, 28, 64, 2), (2, 7)),       # stride 2, a 2 x 7 tile on a 14x14 map
    ((1, 16, 14, 14, 32, 1), (1, 7)),       # stride 1, one row of 7
    ((1, 8, 16, 16, 48, 2), (2, 4)),        # 48 channels: the last 32-channel block padded
])
def test_chunks_outer_matches_numpy(shape, tile, prepacked, rng):
    N, C, H, W, K, stride = shape
    wl = ConvWorkload((N, C, H, W), (K, C, 3, 3), (stride, stride), (1, 1, 1, 1))
    knobs = {"out_order": "chunks_outer", "tile_oc": 32, "tile_oh": [-1, tile[0]], "tile_ow": [-1, tile[1]],
             "tile_ic": [-1, 4 if C <= 8 else 8], "pack_at": "root"}     # two or more chunks
    run(wl, knobs, prepacked, rng)


def _lowered_chunks_outer(tile_oc: int):
    """The stride-2 3x3 16 -> 32 conv at 14x14 lowered in chunks_outer order, 4-channel chunks,
    1 x 7 tiles, `tile_oc` output channels a block."""
    wl = ConvWorkload((1, 16, 14, 14), (32, 16, 3, 3), (2, 2), (1, 1, 1, 1))
    task = autotune.create_task(DIRECT.template, DIRECT.args(wl), host())
    cfg = task.config_space.default_with({"out_order": "chunks_outer", "tile_oc": tile_oc,
                                          "tile_oh": [-1, 1], "tile_ow": [-1, 7], "tile_ic": [-1, 4]})
    s, tensors = task.instantiate(cfg)
    return te.lower(s, tensors)


def test_chunks_outer_accumulates_chunk_by_chunk_outside_the_tiles():
    """The reduction's channel chunks run outside the map's tiles inside one task per block."""
    nest = str(_lowered_chunks_outer(16))
    update = nest[nest.index("for rc.outer in range(4)"):]           # after the accumulator's init
    assert update.index("for oh.outer in range(7)") < update.index("for rc.inner in range(4)"), nest
    assert parallel_tasks(nest) == 2, nest                           # a task per block of 16


@pytest.mark.parametrize("wl", [
    ConvWorkload((1, 64, 14, 14), (64, 32, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 2),    # two groups
    ConvWorkload((1, 32, 14, 14), (64, 32, 1, 1), (1, 1), (0, 0, 0, 0)),               # a 1x1 conv
])
def test_chunks_outer_of_the_tuners_other_convs_matches_numpy(wl, rng):
    """The tuner may pick chunks_outer for any direct conv: grouped and 1x1 ones too."""
    run(wl, {"out_order": "chunks_outer", "tile_oc": 16, "tile_oh": [-1, 1], "tile_ow": [-1, 7],
             "tile_ic": [-1, 8]}, False, rng)


def test_tiles_that_do_not_divide_the_map_fall_back_to_oc_outer(rng):
    wl = ConvWorkload((1, 8, 15, 15), (32, 8, 3, 3), (2, 2), (1, 1, 1, 1))     # an 8x8 map, 1 x 7 tiles
    run(wl, {"out_order": "chunks_outer", "tile_oc": 32, "tile_oh": [-1, 1], "tile_ow": [-1, 7]}, False, rng,
        relu=False)


EMERALD = Caches(48 * KiB, 2 * MiB, 150 * MiB)
ZEN4 = Caches(32 * KiB, 1 * MiB, 4 * MiB)
ICELAKE = Caches(48 * KiB, 1280 * KiB, 1536 * KiB)
AVX512 = parse("llvm -mcpu=skylake-avx512")


def untuned(C, H, K, R, stride, caches, threads=2):
    """(out_order, store) of the untuned direct conv on AVX-512 with these caches."""
    t = dataclasses.replace(AVX512, caches=caches, threads=threads)
    g = geometry((1, C, H, H), (K, C, R, R), (stride, stride), R // 2, (1, 1), 1)
    ocb = default_ocb(g, t)
    bh, bw = default_tiles(g, ocb, t)
    return default_out_order(g, ocb, bh, bw, t), default_store(g, bw)


def test_untuned_order_of_resnet50s_strided_convs_per_target():
    # weights past L2 (2.3 and 9 MiB), the block's map and a chunk within the L1d: chunks_outer
    for caches in (EMERALD, ICELAKE):
        assert untuned(256, 28, 256, 3, 2, caches)[0] == "chunks_outer"
        assert untuned(512, 14, 512, 3, 2, caches)[0] == "chunks_outer"
        assert untuned(512, 7, 512, 3, 1, caches)[0] == "chunks_outer"
    # Zen 4's 32 KiB L1d holds the 7x7 map's 6 KiB but not the 14x14 map's 25 KiB with a chunk
    assert untuned(512, 14, 512, 3, 2, ZEN4)[0] == "chunks_outer"
    assert untuned(256, 28, 256, 3, 2, ZEN4)[0] == "rows_outer"
    # the 128@56x56's 0.6 MiB of weights stay in L2: rows_outer everywhere; the stem likewise
    assert {untuned(128, 56, 128, 3, 2, c)[0] for c in (EMERALD, ZEN4, ICELAKE)} == {"rows_outer"}
    assert untuned(3, 224, 64, 7, 2, EMERALD)[0] == "rows_outer"


def test_chunks_need_tasks_for_every_thread():
    t = dataclasses.replace(AVX512, caches=EMERALD, threads=2)
    g = geometry((1, 512, 14, 14), (64, 512, 3, 3), (2, 2), 1, (1, 1), 1)     # two 32-channel blocks
    assert not chunks_pay(g, 32, 1, 7, t)
    assert not chunks_pay(g, 32, 1, 7, dataclasses.replace(t, threads=1))     # 2 tasks < 4 per thread
    g = geometry((1, 512, 14, 14), (256, 512, 3, 3), (2, 2), 1, (1, 1), 1)    # eight
    assert chunks_pay(g, 32, 1, 7, t)


def test_stem_stores_channel_vectors_transposed():
    # the stem's 1 x 8 tile: a power of two of pixels per tile row, transposed in registers
    assert untuned(3, 224, 64, 7, 2, EMERALD)[1] == "vec_oc"
    # rows of 7: vectors along the row (no transpose of 7); 1x1 convs keep vec_ow
    assert untuned(512, 14, 512, 3, 2, EMERALD)[1] == "vec_ow"
    g = geometry((1, 64, 56, 56), (64, 64, 1, 1), (1, 1), 0, (1, 1), 1)
    assert default_store(g, 8) == "vec_ow"
    assert default_store(geometry((1, 8, 9, 9), (8, 8, 3, 3), (1, 1), 1, (1, 1), 1), 4) == "vec_oc"


def default_tile_ic(C, H, K, stride, caches) -> tuple[str, int]:
    """(out_order, tile_ic) of the untuned direct 3x3 conv on AVX-512 with these caches, 2 threads."""
    t = dataclasses.replace(AVX512, caches=caches, threads=2)
    wl = ConvWorkload((1, C, H, H), (K, C, 3, 3), (stride, stride), (1, 1, 1, 1))
    sp = autotune.create_task(DIRECT.template, DIRECT.args(wl), t).config_space
    cfg = sp.get(sp.default_index())
    return cfg["out_order"].val, cfg["tile_ic"].size[-1]


def test_untuned_chunks_take_the_chunk_that_fits_l1_per_target():
    # ResNet-50's 7x7-stage 3x3 convs: one-row tiles, chunks of 8 channels (the 16 of the other
    # orders overfill the L1d with the chunk's weights and input rows), on every target
    for caches in (EMERALD, ICELAKE, ZEN4):
        assert default_tile_ic(512, 7, 512, 1, caches) == ("chunks_outer", 8)
        assert default_tile_ic(512, 14, 512, 2, caches) == ("chunks_outer", 8)
    assert default_tile_ic(256, 28, 256, 2, EMERALD) == ("chunks_outer", 8)
    # channels a chunk of 8 does not divide: the largest divisor under it; other orders keep 16
    assert chunk_channels(geometry((1, 12, 7, 7), (64, 12, 3, 3), (1, 1), 1, (1, 1), 1)) == 6
    assert chunk_channels(geometry((1, 4, 7, 7), (64, 4, 3, 3), (1, 1), 1, (1, 1), 1)) == 4
    assert default_tile_ic(128, 14, 128, 1, EMERALD) == ("rows_outer", 16)


def test_untuned_chunks_outer_conv_matches_numpy(rng):
    """The untuned 3x3 512@7x7 (chunks of 8 channels where this machine's caches pick chunks_outer)."""
    wl = ConvWorkload((1, 512, 7, 7), (512, 512, 3, 3), (1, 1), (1, 1, 1, 1))
    run(wl, {}, True, rng)


def test_tile_rows_prefetch_the_next_chunks_weights():
    """Each tile row prefetches its share of the next chunk's packed weights (conv_chunks.
    prefetch_next_chunk, te/prefetch_ahead.py): the row loop carries the pragma, and the code
    has one prefetch per line of the share."""
    from te.codegen_llvm import codegen
    from te.ops.conv_chunks import PREFETCH_LOCALITY
    from te.prefetch_ahead import PRAGMA
    func = _lowered_chunks_outer(32)
    chunk = 4 * 4 * 9 * 32                       # 4 channels x 3 x 3 taps x 32 output channels
    share = -(-chunk // 7)                       # over the map's 7 tile rows
    assert f"pragma({PRAGMA}=('conv2d.wpack', {chunk}, {share}, {PREFETCH_LOCALITY}))" in str(func), func
    text = str(codegen([func], host()).module)
    assert text.count("call void @\"llvm.prefetch.p0\"") == -(-share // 64), text


def test_prefetching_the_next_chunk_changes_no_result(rng):
    """The prefetches read past the last chunk (the block's last row prefetches the next block's
    first chunk, the last block's past the weights' end): harmless, the outputs are numpy's."""
    wl = ConvWorkload((1, 16, 14, 14), (64, 16, 3, 3), (2, 2), (1, 1, 1, 1))
    run(wl, {"out_order": "chunks_outer", "tile_oc": 32, "tile_oh": [-1, 1], "tile_ow": [-1, 7],
             "tile_ic": [-1, 8], "pack_at": "root"}, True, rng)
