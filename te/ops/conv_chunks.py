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
8-channel chunks of a 3x3 filter), from the map that stays in L1.  Each tile row prefetches its
share of the next chunk's weights (`prefetch_next_chunk`), so they stream in evenly, not as a
burst at each chunk's first row.  direct_defaults.spatial_out_order
says where the untuned conv takes it, direct_defaults.chunk_channels how many channels its chunks hold.

The epilogue reads the map by channel vectors and stores them across NCHW's rows: a read along the
map's rows would gather from the accumulator buffer, which (a gather's address escapes) keeps LLVM
from holding the register tile in registers across the reduction loops, so the tuner's `store`
knob does not apply here.
"""
from __future__ import annotations

import te
from te.llvm_types import ELEM_BYTES
from te.prefetch_ahead import PRAGMA

from .conv_geometry import ConvGeometry
from .schedule import reduction_order, register_tile


def applies(g: ConvGeometry, bh: int, bw: int) -> bool:
    """Can the chunks_outer order run this conv's tiles: do they divide its map (the accumulator
    is the block's map, not padded to whole tiles)?"""
    return g.OH % bh == 0 and g.OW % bw == 0


def schedule_chunks_outer(cfg, s: te.Schedule, acc: te.Tensor, final: te.Tensor, g: ConvGeometry,
                          ocb: int, bh: int, bw: int, tasks) -> None:
    """Schedule the direct conv's accumulator `acc` and its output stage `final` (the epilogue
    inlined) in the chunks_outer order; `tasks` runs the loop of tasks in parallel and places the
    pad stage (conv2d._tasks); the caller schedules the weight-packing stage (packed at the root:
    a model's weights are packed ahead of time)."""
    n, k, oh, ow = s[final].op.axis
    ko, ki = s[final].split(k, factor=ocb)
    owo, owi = s[final].split(ow, factor=bw)
    s[final].reorder(n, ko, oh, owo, owi, ki)
    task = tasks(s[final].fuse(n, ko))
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
    prefetch_next_chunk(s, acc, aoho, g, ocb, cfg["tile_ic"].size[-1], g.OH // bh)


CHUNKS_AHEAD = 1        # the chunk whose weights the tile rows prefetch: the next one
PREFETCH_LOCALITY = 2   # llvm.prefetch locality 2, prefetcht1: into the L2


def prefetch_next_chunk(s: te.Schedule, acc: te.Tensor, rows, g: ConvGeometry, ocb: int, ic: int,
                        n_rows: int) -> None:
    """Have each tile row (the loop `rows`, n_rows iterations per chunk) prefetch its share of
    the next chunk's weights (te/prefetch_ahead.py).

    A chunk's weights (ic x R x S x ocb floats, contiguous in the packed layout, the next chunk
    right after) are read by the chunk's first tile row, then from L1 by the other rows.  Where
    the weights come from beyond the L2 (9 MiB for ResNet-50's 3x3 512 convs: from memory in a
    model, from L3 or memory when the kernel runs alone), that first row asks for 9 KiB in the
    time of 1/n_rows of the chunk's FMAs, a burst no core's outstanding misses feed (about 25
    GB/s a core), and the other rows leave the bus idle.  Prefetched a chunk ahead, a share per
    tile row, the demand is even: 9 KiB per 7 x 1008 FMAs, about 2.6 bytes a cycle.  The stride
    prefetchers do not do it: they stop at 4 KiB pages, and a chunk spans two or three.

    Measured on Emerald Rapids, one thread's CPU time, alternating (a loaded machine, rough),
    off -> on: the stride-2 3x3 512@14x14 1873 -> 1208 us with weights cold (rotating copies past
    the L2s), 1298 -> 1111 us with the same weights every call; the 3x3 512@7x7 1830 -> 1219 cold,
    1458 -> 1226 warm; the stride-2 256@28x28 (2 x 7 tiles) 1363 -> 1185 cold, 1205 -> 1187 warm.
    On two threads, weights cold, calls no other process disturbed (bench/conv_weak.py's timing):
    512@14x14 1325 -> 923 us, 512@7x7 1183 -> 781 us; in ResNet-50's order (where te/prefetch.py
    already streams the weights into the L2s) 1.10x and 1.12-1.14x on one thread, and on two
    (both threads' CPU time, idle threads asleep) 1.25x, 1.30x, the 256@28x28 1.10x.
    Two chunks ahead or prefetcht0 (into L1) measured the same within the noise; into the L2 keeps
    the L1 to the running chunk, its map and input rows on CPUs with a 32 KiB L1d (Zen 4), and
    one chunk ahead (9 KiB) is far more lead than a memory latency needs."""
    w = next(t for t in acc.op.input_tensors if len(t.shape) == 5)     # the packed weights
    chunk = ELEM_BYTES[w.dtype] * ic * g.R * g.S * ocb
    s[acc].pragma(rows, PRAGMA, (w.name, CHUNKS_AHEAD * chunk, -(-chunk // n_rows), PREFETCH_LOCALITY))
