"""The sketch's multi-level tiling rule (SSRSRS for CPUs) and the GEMM layouts it seeds.

`TilingRules` is the part of `SketchPolicy` that schedules a stage with a reduction and data
reuse: the owner's S0 (parallel) and S1 loops, the stage computed inside its tile as R0 S2 R1 R2
S3 with S3 a register tile, the vector operand copied per reduction block, per column of
register tiles, per parallel task over the whole reduction, or once at the root in column
panels (`pack`), the broadcast operand per reduction block (`packa`), padded row tiles (`pad`).
The vector axis is the last data axis, or by parameter (`vaxis`) a channel axis: then the
accumulators are laid out with it last and its operand packed in panels of it (sketch.py).
`register_local`, `panel` and `channel` turn default parameters into the seeds of the
templates' layouts.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import te
from te.caches import FILL
from te.expr import DTYPE_BITS, TensorLoad, Var, free_vars, walk
from te.lower import CLAMP, MAX_VECTOR_LANES, OVERHANG
from te.ops.common import largest_divisor
from te.schedule import AttachType, Stage

from .blocking import padded_tile, register_tile

if TYPE_CHECKING:
    from .sketch import StageFacts

MAX_UNROLL_R = 16       # the unrolled part of a reduction axis (R2)
MAX_UNROLLED = 64       # register-tile rows x unrolled reduction steps in one unrolled body
# where a tiled stage's vector operand is copied: 0 not at all, 1 a block per reduction block
# (R0), 2 a panel (R1 R2 x the vector tile, contiguous as a GEMM's packed B) per column of
# register tiles, that column's S2 loop then outermost of the S2 loops so the panel is reused by
# every register tile of the column from L1; 3 the parallel task's columns over the whole
# reduction, once per task at the owner's S0 loop (with one register tile of columns a task, the
# matmul template's packed panel [K, bn]: B packed once when the task takes every row); 4 all of
# it once at the root, in parallel, laid out in column panels of the register tile's width
# (cache_read's panel: [N / nr, K, nr], the template's packed B), so tasks of row blocks can share it.
# With 3 and 4 the vector axis's S1 loop is the outermost S1 loop: a panel serves every row tile
PACKS = (0, 1, 2, 3, 4)


def primes(n: int) -> list[int]:
    """The prime factors of n, ascending, with repeats."""
    out, d = [], 2
    while d * d <= n:
        while n % d == 0:
            out.append(d)
            n //= d
        d += 1
    if n > 1:
        out.append(n)
    return out


class TilingRules:
    """The tiling rule of SketchPolicy (which provides facts, target and threads)."""

    def panel(self, p: dict, mr: int, nr: int, block_rows: int = 0) -> dict:
        """p with every tiled stage in the matmul template's layout: register tiles of mr rows
        (the last padded where mr does not divide) each summing the whole reduction in registers
        (computed at the owner's S1 loop) and storing its outputs once, over the vector operand in
        column panels [K, nr].  Without `block_rows`: one parallel task per column panel (more
        tasks, by rows, only where the panels leave threads idle) that packs its panel itself
        (pack 3); with it: one task per block of about block_rows rows over every panel, the
        operand packed in panels once at the root (pack 4)."""
        q = dict(p)
        for name, f in self.facts.items():
            if f.injective or q.get(f"kind:{name}") != "tile" or len(f.shape) < 2:
                continue
            rows, panels = f.shape[-2], math.prod(f.shape[:-2]) * -(-f.shape[-1] // nr)
            # row blocks: block_rows, or as many as the threads need (each packs its panel again)
            blocks = -(-rows // block_rows) if block_rows else -(-2 * self.threads // panels)
            tiles = padded_tile(rows, -(-rows // blocks), mr) if rows % mr else \
                largest_divisor(rows // mr, -(-rows // mr // blocks))
            cols = f.shape[-1] // nr if block_rows else 1
            for d in range(len(f.shape)):
                q[f"tile:{name}:{d}"] = (cols, 1, nr) if d == len(f.shape) - 1 else \
                    (tiles, 1, mr) if d == len(f.shape) - 2 else (1, 1, 1)
            q[f"pad:{name}"] = rows % mr != 0
            for d, n in enumerate(f.reduce_ext):      # R2 unrolled with the tile's rows, up to MAX_UNROLLED
                last = d == len(f.reduce_ext) - 1
                q[f"rtile:{name}:{d}"] = (1, largest_divisor(n, min(MAX_UNROLL_R, MAX_UNROLLED // mr)) if last else 1)
            q[f"at:{name}"], q[f"packa:{name}"], q[f"unroll:{name}"] = 1, False, 2
            q[f"pack:{name}"] = 4 if block_rows else 3
        return q

    def channel(self, p: dict, vectors: int, cols: int, inline_pad: bool = False) -> dict:
        """p with every tiled stage that has a channel axis (a conv's output channels) vectorized
        along it, as the direct conv template computes: a register tile of `vectors` vectors of
        channels x `cols` outputs along the last axis (a row of pixels) summing the whole
        reduction in registers (computed at the owner's S1 loop), the innermost reduction axes
        (a conv's window) unrolled, the operand indexed by the channels (the weights) packed once
        at the root in panels of the tile's channels; the other data axes one at a time, and
        enough parallel tasks of channel blocks x row blocks for every thread four times over.
        A guarded stage (the pad's select) is computed apart, as the template pads: once, rows in
        parallel, each row one vector (a select per broadcast value in the tile's loop costs
        more: ResNet's 3x3 conv, one thread, rough: 1.17 against 1.67 ms), unless `inline_pad`."""
        q = dict(p)
        for name, f in self.facts.items():
            if f.injective and f.guarded and f"inline:{name}" in q:
                q[f"inline:{name}"] = inline_pad
                q[f"vec:{name}"] = f.shape[-1] if f.shape[-1] <= MAX_VECTOR_LANES else \
                    largest_divisor(f.shape[-1], MAX_VECTOR_LANES)
            if f.injective or q.get(f"kind:{name}") != "tile" or not f.channel_axes:
                continue
            v = f.channel_axes[0]
            width = vectors * self.target.lanes(f.dtype)
            if f.shape[v] % width or f.shape[f.last] % cols:
                continue
            q[f"vaxis:{name}"] = v
            tasks = f.shape[v] // width
            for d, n in enumerate(f.shape):
                if d == v:
                    q[f"tile:{name}:{d}"] = (1, 1, width)
                elif d == f.last:
                    q[f"tile:{name}:{d}"] = (n // cols, 1, cols)
                else:       # rows: split into tasks until every thread has four
                    s0 = next((k for k in range(1, n + 1) if n % k == 0 and tasks * k >= 4 * self.threads), n)
                    tasks *= s0
                    q[f"tile:{name}:{d}"] = (n // s0, 1, 1)
            for d, n in enumerate(f.reduce_ext):
                # the first reduction axis (the input channels) a step at a time, the window unrolled
                q[f"rtile:{name}:{d}"] = (1, 1) if d == 0 and len(f.reduce_ext) > 1 else \
                    (1, largest_divisor(n, MAX_UNROLL_R))
            q[f"pad:{name}"], q[f"at:{name}"], q[f"packa:{name}"], q[f"unroll:{name}"] = False, 1, False, 2
            q[f"pack:{name}"] = 4
        return q

    def register_local(self, p: dict) -> dict:
        """p with every tiled stage computed per register tile (its S2 factors moved out to S1,
        computed at the owner's S1 loop) and its vector operand read in place: no accumulator
        block to copy out, no panel to pack, for a reduction short enough that its operand
        stays in L1 (attention's batched matmuls: K = 64; rough, loaded: 0.13 against 0.17 ms)."""
        q = dict(p)
        for name, f in self.facts.items():
            if f.injective or q.get(f"kind:{name}") != "tile":
                continue
            for d in range(len(f.shape)):
                s1, s2, s3 = q[f"tile:{name}:{d}"]
                q[f"tile:{name}:{d}"] = (s1 * s2, 1, s3)
            q[f"at:{name}"], q[f"pack:{name}"] = 1, 0
        return q

    def _operand_in_l1(self, f: StageFacts, p: dict) -> bool:
        """Does a register tile's column of the vector operand over the whole reduction (the
        K x nr a register_local tile reads in place) fit in L1? (1024^3 matmul: 128 KiB, no;
        measured 2.4x slower than the default there, rough)"""
        nr = p[f"tile:{f.name}:{len(f.shape) - 1}"][2]
        return math.prod(f.reduce_ext) * nr * max(1, DTYPE_BITS[f.dtype] // 8) <= FILL * self.target.caches.l1d

    def register_tile(self, f: StageFacts, vectors: int = 2) -> tuple[int, int]:
        """(rows, columns) of a register tile for a tiled stage on the target (blocking.py)."""
        return register_tile(self.target, f.shape, f.dtype, vectors)

    def _fit_registers(self, p: dict, f: StageFacts) -> None:
        """Move row factors of the register tile (the S3 of the data axes but the vector axis) out
        to S2 until its accumulators fit the target's vector registers."""
        keys = [f"tile:{f.name}:{d}" for d in range(len(f.shape))]
        vector = keys.pop(p.get(f"vaxis:{f.name}", f.last))
        vecs = -(-p[vector][2] // self.target.lanes(f.dtype))
        for _ in range(64):
            rows = math.prod(p[k][2] for k in keys)
            if rows * vecs <= self.target.acc_vectors or rows == 1:
                return
            k = max(keys, key=lambda k: p[k][2])
            s1, s2, s3 = p[k]
            q = primes(s3)[0]
            p[k] = (s1, s2 * q, s3 // q)

    def _fit_pack(self, p: dict, f: StageFacts) -> None:
        """Packing the vector operand in panels at the root (pack 4) needs the register tile's
        width to divide the operand's rows (f.vector_widths: a conv's padded input rows, W + 2,
        a 1-D conv's L + 2); where it does not, the operand is copied per tile (pack 2) instead
        of drawing a schedule that cannot be built."""
        key = f"pack:{f.name}"
        if p.get(key) != 4 or p.get(f"vaxis:{f.name}", f.last) != f.last:
            return
        width = p[f"tile:{f.name}:{f.last}"][2]
        if any(n % width for n in f.vector_widths):
            p[key] = 2

    def _tile_stage(self, s: te.Schedule, st: Stage, f: StageFacts, p: dict, owner: Stage | None) -> set[str]:
        """Multi-level tiling: the owner's S0 S1 loops, the stage computed inside the tile."""
        name = st.name
        v = p.get(f"vaxis:{name}", f.last)
        # the vector on a channel axis: the accumulators laid out with that axis last (contiguous)
        order = None if v == f.last else tuple(d for d in range(len(f.shape)) if d != v) + (v,)
        if owner is None or order:
            s.cache_write(st.op.output(0), "local", order)
            if owner is None:
                owner = st
            else:               # the fused reader reads the accumulators directly
                st.compute_inline()
            st = s.stage(f"{name}.local")
        tiles = [p[f"tile:{name}:{d}"] for d in range(len(f.shape))]
        inner_tiles = [tiles[d] for d in order] if order else tiles      # st's axes' tiles
        packable, rows_ops = self._operands(s, st, channel=bool(order))
        pack = p.get(f"pack:{name}", 0)
        if pack == 3 and packable:
            self._check_panel(f, p)
        # the vector operand in panels of the register tile's width: at the root (pack 4), and
        # wherever it is copied when its vector axis is not its last (a conv's weights [k, c, r, q])
        width_v = inner_tiles[-1][2]
        packed = [s[s.cache_read(t, "global", [st.op], width_v if pack == 4 or ax != len(t.shape) - 1 else 0,
                                 ax)] for t, ax in packable] if pack else []
        # the broadcast operand (a GEMM's A): its rows of the tile x one reduction block, copied
        # per R0 step so a register tile's rows are kc apart, not a whole row of A (4 KiB strides
        # alias in L1's sets)
        packed_rows = [(s[s.cache_read(t, "global", [st.op])], d) for t, d in rows_ops] \
            if p.get(f"packa:{name}") else []
        if p.get(f"pad:{name}") and len(f.shape) > 1 and not order:
            # row tiles that do not divide the rows: the last one's overhang computed on the
            # last row (into the tile's buffers, never stored), not guarded row by row
            st.pragma(st.op.axis[-2], OVERHANG, CLAMP)
            for pk, _ in packed_rows:
                for ax in pk.op.axis[:-1]:
                    pk.pragma(ax, OVERHANG, CLAMP)
        outer, mid, inner = [], [], []
        for ax, (s1, s2, s3) in zip(owner.op.axis, tiles):
            o, rest = owner.split(ax, factor=s1 * s2 * s3)
            m, i = owner.split(rest, factor=s2 * s3)
            outer.append(o), mid.append(m), inner.append(i)
        if pack >= 3:           # a task's panel (or the packed operand's) serves every row tile before the next
            mid = [mid[v], *mid[:v], *mid[v + 1:]]
        owner.reorder(*outer, *mid, *inner)
        fused = owner.fuse(*outer) if len(outer) > 1 else outer[0]
        owner.parallel(fused)
        # the owner's copy (or fused chain) vectorized along its last axis, the tensor's rows
        vo, vi = owner.split(inner[-1], factor=tiles[-1][2])
        # a register tile wider than te's vectors (a whole row of 128 floats: 8 registers) in
        # vectors of at most MAX_VECTOR_LANES, the chunks unrolled
        width = largest_divisor(tiles[-1][2], MAX_VECTOR_LANES)
        if width < tiles[-1][2]:
            vc, vi = owner.split(vi, factor=width)
            owner.unroll(vc)
        if tiles[-1][2] > 1:
            owner.vectorize(vi)
        at = mid[-1] if p[f"at:{name}"] and any(t[0] > 1 for t in tiles) else fused
        st.compute_at(owner, at)
        # inside the tile: (S1 unless the owner runs it) R0 S2 R1 R2 S3
        s1s, s2s, s3s, r0s, r1s, r2s = [], [], [], [], [], []
        for ax, (s1, s2, s3) in zip(st.op.axis, inner_tiles):
            if at is fused:
                a1, ax = st.split(ax, factor=s2 * s3)
                s1s.append(a1)
            a2, a3 = st.split(ax, factor=s3)
            s2s.append(a2), s3s.append(a3)
        for d, ax in enumerate(st.op.reduce_axis):
            r1, r2 = p[f"rtile:{name}:{d}"]
            a0, rest = st.split(ax, factor=r1 * r2)
            a1, a2 = st.split(rest, factor=r2)
            r0s.append(a0), r1s.append(a1), r2s.append(a2)
        if pack == 2:               # the vector axis's S2 loop outermost: one panel per column of tiles
            s2s = [s2s[-1], *s2s[:-1]]
        if pack >= 3 and s1s:       # as the owner's S1 loops: a panel serves every row tile
            s1s = [s1s[-1], *s1s[:-1]]
        st.reorder(*s1s, *r0s, *s2s, *r1s, *r2s, *s3s)
        width = largest_divisor(width_v, MAX_VECTOR_LANES)
        if width < width_v:
            vc, s3s[-1] = st.split(s3s[-1], factor=width)
            st.unroll(vc)
        st.vectorize(s3s[-1])
        for pk in packed:           # the block of the vector operand one R0 step reads, contiguous
            if pack == 4:           # at the root, in parallel over the panels
                lead = pk.op.axis[:-2]
                pk.parallel(pk.fuse(*lead) if len(lead) > 1 else lead[0])
            elif pack == 3:         # the whole panel, once per parallel task (its columns x the reduction)
                pk.compute_at(owner, fused)
            else:
                pk.compute_at(st, s2s[0] if pack == 2 else r0s[-1])
            lanes = self.target.lanes(f.dtype)
            _, vi = pk.split(pk.op.axis[-1], factor=largest_divisor(pk.op.shape[-1], lanes) if order else lanes)
            pk.vectorize(vi)
        for pk, d in packed_rows:      # its innermost axis: one R0 step's R1 x R2 values
            pk.compute_at(st, r0s[-1])
            lanes = self.target.lanes(f.dtype)
            if math.prod(p[f"rtile:{name}:{d}"]) % lanes == 0:
                _, vi = pk.split(pk.op.axis[-1], factor=lanes)
                pk.vectorize(vi)
        unroll = p[f"unroll:{name}"]
        if unroll >= 1:
            for a, t in zip(s3s[:-1], inner_tiles[:-1]):
                if t[2] > 1:
                    st.unroll(a)
        rows = math.prod(t[2] for t in inner_tiles[:-1])
        if unroll >= 2:
            for d, a in enumerate(r2s):
                r2 = p[f"rtile:{name}:{d}"][1]
                if 1 < r2 and rows * r2 <= MAX_UNROLLED:     # beyond it LLVM takes seconds per build
                    st.unroll(a)
        return {name, owner.name, st.name}

    def _check_panel(self, f: StageFacts, p: dict) -> None:
        """ScheduleError if a task's panel of the whole reduction (at most: the reduction x the
        tile's extent on every data axis but the rows) is larger than L2: no use, and at the root
        of a big tile a copy of the whole operand per task."""
        v = p.get(f"vaxis:{f.name}", f.last)
        dims = [v] if v != f.last else [d for d in range(len(f.shape)) if d != len(f.shape) - 2]
        extents = [math.prod(p[f"tile:{f.name}:{d}"]) for d in dims]
        nbytes = math.prod(f.reduce_ext) * math.prod(extents) * max(1, DTYPE_BITS[f.dtype] // 8)
        if nbytes > self.target.caches.l2:
            raise te.ScheduleError(f"stage {f.name}: pack 3: a panel of {nbytes >> 10} KiB is larger than L2 "
                                   f"({self.target.caches.l2 >> 10} KiB); take fewer columns per task")

    @staticmethod
    def _operands(s: te.Schedule, st: Stage, channel: bool = False) -> tuple[list, list]:
        """Inputs of a tiled stage worth copying per tile, read directly and not indexed by every
        data axis (reused across tiles): (vector operands, [(row operand, the reduction axis in its
        innermost index)]).  A vector operand, given as (tensor, the index the vectorized axis is
        in), has the vectorized axis (st's last) in its innermost index (a GEMM's B, whose rows a
        copy makes contiguous) or, with `channel` (the vector on a channel axis), alone in another
        (a conv's weights [k, c, r, q], packed in panels of k); a row operand has a reduction axis
        there and no vectorized axis anywhere (a GEMM's A, broadcast a value at a time)."""
        if not st.op.reduce_axis:
            return [], []
        last = st.op.axis[-1].var
        data = {a.var for a, n in zip(st.op.axis, st.op.shape) if n > 1}
        reduce = [a.var for a in st.op.reduce_axis]
        vector, rows = [], []
        for b in st.op.body:
            for x in walk(b):
                if (not isinstance(x, TensorLoad) or x.tensor in [t for t, _ in vector + rows]
                        or s[x.tensor].attach_type is AttachType.INLINE):
                    continue
                used = set().union(*[free_vars(i) for i in x.indices])
                if not data - used:
                    continue
                if last in free_vars(x.indices[-1]):
                    vector.append((x.tensor, len(x.indices) - 1))
                elif channel and any(i is last for i in x.indices):
                    vector.append((x.tensor, next(d for d, i in enumerate(x.indices) if i is last)))
                elif last not in used and isinstance(x.indices[-1], Var) and x.indices[-1] in reduce:
                    rows.append((x.tensor, reduce.index(x.indices[-1])))
        return vector, rows
