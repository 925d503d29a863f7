"""The direct conv's "chunks_outer" tile order (conv2d.py's out_order knob): one parallel task per
(image, output-channel block), which accumulates the block's whole output map one chunk of input
channels at a time.

    for each task (n, ko):                       # parallel
        acc[ko] = 0                              # OH x OW x ocb floats, in L1
        for each chunk of tile_ic input channels:
            for each bh x bw register tile of the map:
                acc tile += chunk's taps x input  # the chunk's weights stay in L1 across the tiles
        epilogue, store to NCHW

With the tile loops outermost (oc_outer, rows_outer) each register tile streams its block's
weights (C x R x S x ocb floats) through L1 once per tile: from L2, or from L3 where they outgrow
it.  Here each chunk's weights (tile_ic x R x S x ocb floats, 9 KiB for 8 channels of a 3x3 filter
with 32-channel blocks) are read from memory once per call and then from L1 by every tile of the
map; the accumulators are loaded and stored once per tile and chunk (per 72 taps x channels with
8-channel chunks of a 3x3 filter), from the map that stays in L1.  direct_defaults.spatial_out_order
says where the untuned conv takes it, direct_defaults.chunk_channels how many channels its chunks hold.

The epilogue reads the map by channel vectors and stores them across NCHW's rows: a read along the
map's rows would gather from the accumulator buffer, which (a gather's address escapes) keeps LLVM
from holding the register tile in registers across the reduction loops, so the tuner's `store`
knob does not apply here.
"""
from __future__ import annotations

import te

from .conv_geometry import ConvGeometry
from .schedule import parallel_if_worth, reduction_order, register_tile


def applies(g: ConvGeometry, bh: int, bw: int) -> bool:
    """Can the chunks_outer order run this conv's tiles: do they divide its map (the accumulator
    is the block's map, not padded to whole tiles)?"""
    return g.OH % bh == 0 and g.OW % bw == 0


def schedule_chunks_outer(cfg, s: te.Schedule, acc: te.Tensor, final: te.Tensor, g: ConvGeometry,
                          ocb: int, bh: int, bw: int) -> None:
    """Schedule the direct conv's accumulator `acc` and its output stage `final` (the epilogue
    inlined) in the chunks_outer order; the caller schedules the pad and weight-packing stages
    (packed at the root: a model's weights are packed ahead of time)."""
    n, k, oh, ow = s[final].op.axis
    ko, ki = s[final].split(k, factor=ocb)
    owo, owi = s[final].split(ow, factor=bw)
    s[final].reorder(n, ko, oh, owo, owi, ki)
    task = s[final].fuse(n, ko)
    parallel_if_worth(s[final], task, g.flops / 2)
    s[final].unroll(owi)            # a tile row of channel vectors: codegen's transposed stores
    s[final].vectorize(ki)

    s[acc].compute_at(s[final], task)
    an, ako, aoh, aow, aki = s[acc].op.axis
    aoho, aohi = s[acc].split(aoh, factor=bh)
    awo, awi = s[acc].split(aow, factor=bw)
    rc, rr, rs = s[acc].op.reduce_axis
    rco, rci = cfg["tile_ic"].apply(s, acc, rc)
    taps = reduction_order(cfg["reduce_order"].val, [rci], [rr, rs])
    register_tile(s[acc], [an, ako, rco, aoho, awo], taps, [aohi, awi], aki,
                  unroll=[rs] if cfg["unroll_kw"].val else [])
