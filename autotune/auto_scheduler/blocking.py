"""GEMM blockings for the sketch's tiled stages, from the target's registers and caches.

A tiled stage (a matmul's C[i, j] += A[i, k] * B[k, j]) runs as a GEMM library blocks it
(GotoBLAS, BLIS): a register tile of mr x nr accumulators (`register_tile`), B's panel [kc, nr]
copied contiguous and kept in L1 while every register tile of its column reads it, A's block
[rows, kc] read from L2 by every column of the tile, the tile's [rows, cols] accumulators in L2
across the reduction blocks.  `blockings` sizes those from the target, so the same rule serves an
AVX2 core with 32 KiB of L1 and an AVX-512 one with 48 KiB; the sketch rounds them to divisors,
or pads the last row tile to register tiles of `padded_rows` (te's overhang clamp).

`panel_tiles` gives the other GEMM layout, the matmul template's: one parallel task per column
panel, B's panel [K, nr] packed once by its task (in L2), every register tile of the panel summing
over the whole reduction in registers and storing its outputs once, no accumulator block.
"""
from __future__ import annotations

import math
from typing import NamedTuple

from te.caches import FILL
from te.expr import DTYPE_BITS
from te.ops.common import largest_divisor
from te.target import Target

MAX_ROWS = 16           # a register tile's unrolled rows (S3 of the data axes before the last)
L1_WAYS = 12            # rows of A a register tile may read unpacked: an L1 set's ways (Golden Cove; 8 before)
# a blocking's shares of the caches: B's panel in L1 as full as stays there, or half; A's block
# and the tile's accumulators a quarter of L2 each, so B's panels and the output pass by
L1_SHARES = (FILL, 0.5)
L2_SHARE = 0.25


class Blocking(NamedTuple):
    """One GEMM blocking: a tile of `rows` x `cols` outputs per parallel task, the reduction in
    blocks of `kc`, register tiles `vectors` registers wide, A copied per block or not; `mr`:
    register-tile rows that need not divide the rows (the last tile padded), 0 for
    register_tile's divisor."""
    rows: int
    cols: int
    kc: int
    vectors: int
    pack_a: bool = False
    mr: int = 0


def register_tile(target: Target, shape: tuple, dtype: str, vectors: int = 2) -> tuple[int, int]:
    """(rows, columns) of a register tile for an output of `shape` on the target: columns
    `vectors` vector registers wide (fewer if the last axis does not divide), rows as many as the
    accumulator registers allow that divide the second-last axis."""
    lanes = target.lanes(dtype)
    last = shape[-1]
    nr = next((v * lanes for v in range(vectors, 0, -1) if last % (v * lanes) == 0),
              largest_divisor(last, lanes))
    rows = shape[-2] if len(shape) > 1 else 1
    return largest_divisor(rows, min(MAX_ROWS, target.acc_vectors // -(-nr // lanes))), nr


def padded_rows(target: Target, vectors: int) -> int:
    """The most register-tile rows `vectors` registers wide whose accumulators, the reduction
    step's B vectors and a broadcast of A fit the vector registers (6 x 4 and 14 x 2 on AVX-512's
    32), up to MAX_ROWS; a GEMM pads its last row tile to them."""
    fits = [r for r in range(1, MAX_ROWS + 1) if r * vectors <= target.acc_vectors
            and r * vectors + vectors + 1 <= target.vector_registers]
    return max(fits, default=1)


def padded_tile(n: int, block: int, mr: int) -> int:
    """Register tiles of mr rows per block of about `block` of n rows, with the least padding:
    as many blocks as `block` gives, each rounded up to whole register tiles."""
    blocks = max(1, -(-n // max(block, mr)))
    return -(-(-(-n // blocks)) // mr)


def blockings(target: Target, shape: tuple, dtype: str) -> list[Blocking]:
    """Blockings of a tiled stage's output for the target, the default first: a register tile two
    (or four) vectors wide; kc such that B's panel [kc, nr] fills a share of L1 (L1_SHARES); rows
    such that A's block [rows, kc], and cols such that the tile's accumulators [rows, cols], take
    L2_SHARE of L2 each; the first also with A packed, and with half the rows."""
    nbytes = max(1, DTYPE_BITS[dtype] // 8)
    caches = target.caches
    out = []
    for vectors in (2, 4):
        _, nr = register_tile(target, shape, dtype, vectors)
        for share in L1_SHARES:
            kc = max(1, int(share * caches.l1d) // (nr * nbytes))
            rows = max(1, int(L2_SHARE * caches.l2) // (kc * nbytes))
            cols = max(nr, int(L2_SHARE * caches.l2) // (rows * nbytes))
            out.append(Blocking(rows, cols, kc, vectors))
    first = out[0]
    # register tiles with the most rows that fit, where they do not divide the rows (the last
    # tile padded): more FMAs per load than the divisors allow (1024 rows: 6 x 4, 14 x 2 against 4 x 4)
    rows = shape[-2] if len(shape) > 1 else 1
    padded = []
    for vectors in (4, 2):
        mr = padded_rows(target, vectors)
        divisor, nr = register_tile(target, shape, dtype, vectors)
        if rows % mr and mr > divisor and nr == vectors * target.lanes(dtype):
            padded.append(next(b for b in out if b.vectors == vectors)._replace(mr=mr))
    # A packed per reduction block: a register tile's rows kc apart, not a whole row of A (a
    # power-of-two row length maps them to the same L1 sets); and half the rows: twice the
    # parallel tasks, for threads that would otherwise wait at the end
    # (a padded tile of more than L1's 12 ways of rows reads A packed only: a power-of-two row
    # length puts its rows in one set, measured 2.5x slower unpacked with 14 rows on 1024^3)
    return [first, first._replace(pack_a=True), first._replace(rows=max(1, first.rows // 2)),
            *[b for b in padded if b.mr <= L1_WAYS], *[b._replace(pack_a=True) for b in padded], *out[1:]]


def panel_tiles(target: Target, shape: tuple, reduce_len: int, dtype: str) -> list[tuple[int, int]]:
    """Register tiles (rows, columns) for the panel layout, where a panel of the whole reduction,
    [reduce_len, columns], takes at most L2_SHARE of L2: two and four vectors wide, rows dividing
    the output's or (the last tile padded) the most that fit, up to L1_WAYS (a tile reads its rows
    of A in place, a row apart)."""
    nbytes = max(1, DTYPE_BITS[dtype] // 8)
    rows = shape[-2] if len(shape) > 1 else 1
    out = []
    for vectors in (2, 4):
        divisor, nr = register_tile(target, shape, dtype, vectors)
        if reduce_len * nr * nbytes > L2_SHARE * target.caches.l2:
            continue
        out.append((divisor, nr))
        mr = padded_rows(target, vectors)
        if rows % mr and divisor < mr <= L1_WAYS and nr == vectors * target.lanes(dtype):
            out.append((mr, nr))
    return list(dict.fromkeys(out))


def panel_rows(target: Target, shape: tuple, reduce_len: int, dtype: str, mr: int) -> int:
    """Rows of a block of A, [rows, reduce_len], that takes L2_SHARE of L2, in whole register tiles
    of mr rows, for tasks of row blocks over every panel of B; 0 where the rows do not make two
    such blocks for every thread (the panel layout's tasks of column panels serve them)."""
    nbytes = max(1, DTYPE_BITS[dtype] // 8)
    rows = shape[-2] if len(shape) > 1 else 1
    block = int(L2_SHARE * target.caches.l2) // (reduce_len * nbytes) // mr * mr
    return block if block and math.prod(shape[:-2]) * -(-rows // block) >= 2 * target.threads else 0
