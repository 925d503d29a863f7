"""The packed GEMM's untuned defaults (te/ops/matmul.py), derived from the shape and the target:
which compute suits the shape (`default_strategy`), the register tile (`register_tile_shape`,
`tile_rows`, `default_bm`), the order of the loops over the register tiles (`default_tile_order`,
with the cache cost model of `streams_planes` and `panels_pay`) and the untuned 1x1 conv's order,
which also weighs its epilogue (`tile_order`).

Each docstring gives the reasoning (vector registers, the caches of te.caches.Caches) and the
measurements that fixed its constants; the tuner's knobs (matmul.define_knobs) keep every other
choice open.
"""
from __future__ import annotations

import te
from te.caches import Caches, beats
from te.schedule import AttachType
from te.target import Target

from .common import largest_divisor
from .schedule import input_stage

DOT_MAX_M = 64          # below this many rows, packing the (N, K) weights costs more than it saves
ROWS_MAX_M = 8          # the same for a row-major B
SPLITK_MAX_M = 2        # up to this many rows, a row-major B is streamed (memory bound)


def default_strategy(M: int, N: int, K: int, transpose_a: bool = False, transpose_b: bool = False,
                     batched: bool = False) -> str:
    """Which compute suits this shape: packed for large M, dot/rows (no packing) for small M."""
    if batched:
        return "packed"
    if transpose_b and not transpose_a and M < DOT_MAX_M:
        return "dot"
    if not transpose_b and M <= SPLITK_MAX_M:
        return "splitk"
    if not transpose_b and M <= ROWS_MAX_M:
        return "rows"
    return "packed"


# ---------------------------------------------------------------- register tiles

# row tiles the packed GEMM may pad M to; with `padded_rows` (the 1x1 conv's template) also those
# of the tiles 32 registers hold: 6 or 7 rows of 4 vectors, 12 or 14 of 2
PADDED_ROWS, WIDE_PADDED_ROWS = (4, 8), (4, 6, 7, 8, 12, 14)


def fits_registers(bm: int, nv: int, target: Target) -> bool:
    """Do a tile's accumulators, the input vectors of one reduction step and a broadcast fit the
    target's vector registers (a 7 x 4 tile on AVX-512's 32 spills)?"""
    return bm * nv <= target.acc_vectors and bm * nv + nv + 1 <= target.vector_registers


def register_tile_shape(target: Target) -> tuple[int, int]:
    """(rows, vectors) of the packed GEMM's register tile with the most FMAs per load.

    Each reduction step loads `vectors` vectors of B and broadcasts `rows` elements of A for
    rows x vectors FMAs.  Two FMA and two load ports make any tile with more FMAs than loads
    FMA-bound on paper, but the loads still take L1 bandwidth and issue slots, and measured the
    tile with fewer of them wins: 6 x 4 on AVX-512's 32 registers (24 FMAs per 10 loads; 29
    registers with the B vectors and a broadcast) ran ResNet-50's 256 -> 64 1x1 conv at 56x56
    1.1x faster than 4 x 4 and 8 x 2 (16 per 8 and 10) though it pads 64 rows to 66; with
    AVX2's 16, 4 x 3 (12 per 7)."""
    shapes = [(bm, nv) for nv in range(1, 5) for bm in range(1, max(WIDE_PADDED_ROWS) + 1)
              if fits_registers(bm, nv, target)]
    return max(shapes, key=lambda t: (t[0] * t[1] / (t[0] + t[1]), t[0] * t[1]))


def tile_rows(bn: int, target: Target) -> int:
    """The most rows (up to 8) of a packed register tile bn wide whose accumulators fit the target."""
    return max(1, min(8, target.acc_vectors // -(-bn // target.lanes())))


def default_bm(M: int, max_rows: int) -> int:
    """Rows of the packed strategy's register tile: a divisor of M up to max_rows, else max_rows
    (M is padded)."""
    d = largest_divisor(M, max_rows)
    return d if d >= max_rows // 2 or d == M else max_rows


def row_lanes(N: int) -> int:
    """Vector width along N for the rows strategy: a multiple of 8 that divides N, else a divisor <= 64."""
    for d in (64, 32, 16, 8):
        if N % d == 0:
            return d
    return N if N <= 64 else largest_divisor(N, 64)


# ---------------------------------------------------------------- tile order

def default_tile_order(M: int, N: int, K: int, bm: int, bn: int, target: Target, nchw_arrays: int = 0,
                       packs_b: bool = False) -> str:
    """The packed strategy's loops over register tiles: column blocks outside ("cols_outer") where
    N >= M, row tiles outside otherwise, unless with the target's caches the other order takes
    fewer cycles (te.caches.beats).

    The cycles are te.caches' model (Caches.loop_cycles: the FMAs, plus the bytes re-read at the
    bandwidth of the level that holds what lies between two reads of them), with A the M x K
    operand (a band of it bm rows), B the packed K x N one (a panel of it bn columns):

    * cols_outer re-reads a panel at every row tile (panel + band apart) and A at every column
      block (A + panel apart);
    * rows_outer re-reads a band at every column block (band + panel apart) and B at every row
      tile (B + band apart).

    Operands within L2 feed the register tile as fast as it computes, so the usual order stays;
    where one spills L2 and the other does not, or both do, the order that keeps the re-reads
    close wins (M 2048, N 512, K 2048 takes cols_outer though N < M: with 8 rows and 32
    columns, B would be re-read 256 times, A 16).

    `nchw_arrays` counts the output-sized NCHW arrays the output stage moves (a 1x1 conv's
    output, and a residual its epilogue adds): cols_outer visits their rows bm channel planes at
    a time, a plane apart (Caches.plane_cycles: no prefetcher follows them), rows_outer streams
    each plane.  With a residual that decides ResNet-50's 64 -> 256 conv at 56x56 (3.1 MiB of
    output and as much residual): rows_outer, 0.70 against 0.88 ms on two threads.

    A 1x1 conv whose output planes spill the L2 while B (and a band) stays in it takes rows_outer
    outright (streams_planes): its re-reads of B come from L2 as the tile consumes them, nv lines
    per bm x nv / 2 cycles of FMAs (a line every 3-4 cycles with the 6- and 8-row tiles, where the
    L2 delivers one a cycle and its streamer fetches a panel's or a plane's ascending lines
    ahead), so they overlap the FMAs the model adds them to, while cols_outer's plane-apart
    visits of the output stall on misses.  On one thread only: on several, rows_outer splits the
    output between them by channels where the 1x1 convs around it split by pixels (cols_outer,
    panels), so a thread reads half its input, or its consumer half of its own, from lines the
    other core wrote.  In the model on two threads (frontends.profile.time_steps, order="model",
    Emerald Rapids) ResNet-50's 64 -> 256 at 56x56 ran 0.92-0.93x with rows_outer (1.07x alone),
    its 128 -> 512 + Sum 1.00-1.03x but the 512 -> 128 conv reading its output 0.95-0.97x.

    `packs_b`: the kernel packs B itself (a 1x1 conv's input): "panels" replaces cols_outer
    where panels_pay.
    """
    a, b = 4.0 * M * K, 4.0 * K * N
    panel, band = 4.0 * K * bn, 4.0 * K * bm
    row_tiles, col_blocks = -(-M // bm), -(-N // bn)
    c, lanes, work = target.caches, target.lanes(), 2.0 * M * N * K
    if nchw_arrays and target.threads == 1 and streams_planes(nchw_arrays * 4.0 * M * N, b + band, c):
        return "rows_outer"
    cycles = {"cols_outer": c.loop_cycles(work, lanes, [(row_tiles * b, panel + band), (col_blocks * a, a + panel)]),
              "rows_outer": c.loop_cycles(work, lanes, [(col_blocks * a, band + panel), (row_tiles * b, b + band)])}
    if nchw_arrays:
        out = 4.0 * M * N
        cycles["cols_outer"] += c.plane_cycles(nchw_arrays * out, out)
        cycles["rows_outer"] += c.reread_cycles([(nchw_arrays * out, out)])
    usual = "cols_outer" if N >= M else "rows_outer"
    other = "rows_outer" if usual == "cols_outer" else "cols_outer"
    order = other if beats(cycles[other], cycles[usual]) else usual
    # panels visits the output planes as cols_outer does: it replaces that order only
    return "panels" if order == "cols_outer" and packs_b and panels_pay(M, K, col_blocks * bn, bn, target) else order


def streams_planes(out: float, b_and_band: float, caches: Caches) -> bool:
    """Does a 1x1 conv's GEMM stream its output planes (rows_outer) whatever the cycle model says:
    do the output-sized arrays its output stage moves (`out` bytes: the output and a residual)
    spill the L2 while B and a band of A stay in it?

    Measured on Emerald Rapids (one thread's CPU time, alternating, rows_outer against the order
    the model picked): ResNet-50's 128 -> 512 at 28x28 + Sum + Relu 1.11x, 64 -> 256 at 56x56
    (+ bias) 1.06x, the stride-2 256 -> 512 1.03x (in the model on one thread 1.05-1.07x each),
    128 -> 512 (+ bias) as fast; where B spills (256 -> 64 at 56x56: 3.1 MiB of input read in
    place) rows_outer ran 0.4x, and where the output stays in L2 (64 -> 64 at 56x56)
    0.97-1.0x: the usual order stays there.  The
    bounds are the target's: with Zen 4's 1 MiB L2 the 0.8 MiB input of 64 -> 256 spills and the
    model decides; Ice Lake's 1.25 MiB holds it as Emerald Rapids' 2 MiB does."""
    return caches.level(out) >= 2 and caches.level(b_and_band) <= 1


# column blocks per thread the panels order needs: its tasks are whole column blocks, and with
# fewer the last claims leave a thread idle (28x28 maps give 25 blocks of 32 pixels)
PANELS_PER_THREAD = 4


def panels_pay(M: int, K: int, Np: int, bn: int, target: Target) -> bool:
    """Does the "panels" tile order beat packing all of B (K x Np floats) before the row tiles
    read it: does the round trip it saves cost more than the accumulator pass it adds?

    Packed first, all of B lies between a panel's write and its first read: the pack writes B to
    the level that holds it (Caches.level) and the tiles read it back from there.  Packed per
    task, a panel (K x bn floats) is read right after its own core wrote it, from the level that
    holds one panel.  What panels adds: each block's accumulator (M x bn floats) is written by the
    register tiles and re-read by the epilogue, from the level that holds one block, where the
    other orders keep it in registers.  So panels pays for deep reductions over few output rows
    (K large, M small) and where B outgrows the L2; its tasks are whole column blocks, so it also
    needs PANELS_PER_THREAD of them a thread.  Measured on Emerald Rapids, one thread's CPU time
    against cols_outer: 128 -> 16 at 55x55 (SqueezeNet) 1.5-1.66x, 512 -> 128 and 512 -> 256 at
    28x28 1.05-1.11x (on two threads, idle moments: 1.25-1.28x and 1.05-1.11x), 256 -> 32 at
    27x27 1.03x; 128 -> 512 at 28x28 and the
    stride-2 256 -> 512 0.94-0.97x, which this keeps packed first.  The levels are the target's:
    a 1 MiB L2 (Zen 4) or 1.25 MiB (Ice Lake) moves the bound where B spills.
    """
    c = target.caches
    if -(-Np // bn) < PANELS_PER_THREAD * target.threads:
        return False
    b, out = 4.0 * K * Np, 4.0 * M * Np
    saved = c.reread_cycles([(2 * b, b)]) - c.reread_cycles([(2 * b, 4.0 * K * bn)])
    added = c.reread_cycles([(2 * out, 4.0 * M * bn)])
    return saved > added


def tile_order(cfg, s: te.Schedule, out: te.Tensor, final: te.Tensor, target: Target) -> str:
    """The packed strategy's tile order: cfg's, except that an untuned 1x1 conv also weighs its
    epilogue, which the workload (so the knob's default) does not know: its output and each
    residual it reads (default_tile_order's nchw_arrays)."""
    attrs = out.op.attrs
    if not (cfg.is_fallback and attrs.get("nchw")):
        return cfg["tile_order"].val
    packed = input_stage(input_stage(out, "acc"), "pack")
    return default_tile_order(attrs["M"], attrs["N"], attrs["K"], cfg["tile_y"].size[-1], attrs["bn"], target,
                              1 + len(output_sized_reads(s, out, final)),
                              packs_b=packed is not None and isinstance(packed.op, te.ComputeOp))


def output_sized_reads(s: te.Schedule, out: te.Tensor, final: te.Tensor) -> list[te.Tensor]:
    """The tensors of out's shape that the elementwise chain from out to final reads (residuals)."""
    shape, seen, found, todo = tuple(out.shape), {id(out.op)}, [], [final]
    while todo:
        for t in todo.pop().op.input_tensors:
            if id(t.op) in seen:
                continue
            seen.add(id(t.op))
            if isinstance(t.op, te.ComputeOp) and s[t].attach_type is AttachType.INLINE:
                todo.append(t)              # a link of the fused chain
            elif tuple(t.shape) == shape:
                found.append(t)
    return found
