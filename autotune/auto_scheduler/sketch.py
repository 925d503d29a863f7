"""Sketches by rules (Ansor's, for CPUs) and their annotation with random parameters.

A `SketchPolicy` reads a workload's compute DAG once and decides, stage by stage, which rules
apply; the rules' open choices are the parameters of a schedule.  `sample` draws them at
random, `mutate` changes one, and `apply` turns them into te schedule steps on a fresh
schedule (ScheduleError when a combination does not fit), so every candidate is a plain list
of steps that te.replay reproduces.

The rules, for each stage from the outputs back (the tiling rule's schedule and its layouts'
seeds are tiling.py's `TilingRules`, which SketchPolicy inherits):

* inline: an injective stage that is not an output is computed inside its readers (an
  expensive one, a math call or a long expression, only if the parameter says so: it would
  be recomputed by every reader; a guarded one, a pad's select, likewise: a test per load);
* multi-level tiling of a stage with a reduction and data reuse (an input not indexed by
  every data axis, as a matmul's): each data axis split S0 S1 S2 S3, each reduction axis
  R0 R1 R2, in the order S0 S1 R0 S2 R1 R2 S3.  S0 (fused, parallel) and S1 are loops of the
  tile owner, the stage's single elementwise reader when it reads the stage point for point
  (the consumer chain fused into the tile), else a cache_write copy (the accumulator local);
  the stage is computed inside the owner's tile.  The last data axis's S3 is the vector, the
  other S3 and R2 loops are unrolled by parameter; S3 of the data axes is a register tile
  (its accumulators fit the target's vector registers).  By parameter, the reused input the
  vectors are loaded from is copied (cache_read) per R0 step into a contiguous block, or per
  column of register tiles into a panel (R1 R2 x the tile's vectors) as a GEMM packs B, the
  column's S2 loop then outermost so every register tile of the column reads the panel from
  L1, or over the whole reduction (the matmul template's layout): per parallel task, or all of
  it at the root in panels of the register tile's width (te's cache_read `panel`).  By parameter, the operand broadcast a value at a time (a GEMM's A) is copied per R0
  step too, the tile's rows x one reduction block, so a register tile's rows are kc apart.
  The default parameters and the search's seeds are such GEMM blockings, derived from the
  target (vector width, registers, L1 and L2 sizes: blocking.py);
* multi-level tiling with layout rewrite, where the last data axis is a poor vector (short, or
  sliding over an input's window with a reduction axis: a conv's x + q) and another data axis
  alone indexes an input (a conv's output channel k in W[k, c, r, q]): by parameter (`vaxis`)
  that axis carries the vector instead, as the direct conv template computes; the accumulators
  are laid out with it last (cache_write's order), the input it indexes is copied in panels of
  the register tile's channels (cache_read's panel along that axis), and the register tile is
  pixels x a vector of channels, each pixel's input broadcast.  The seeds include the template's
  layout (`channel`: four, two or one vectors of channels x pixels of a row, the weights packed
  once, the pad computed apart a row a vector);
* rows: when nothing is tiled and the single output is elementwise over rows (softmax, a
  norm), by parameter the output's leading axes are fused into one parallel loop of rows and
  every stage over those leading axes is computed inside it, a row at a time (in L1), its
  reductions by rfactor in vector lanes;
* rfactor of a reduction whose innermost reduction axis is long enough: partial results in
  vector lanes (`s.rfactor`), by parameter folded in halves (an rfactor of the lanes again, a
  vector operation per level), then a short reduction over the lanes;
* every other stage: outer data axes fused and parallel at the root, or computed at a loop of
  its single reader (a parameter picks the loop), innermost data axis vectorized.

A stage whose arithmetic order is its op's definition (te.ops.nn.STAT_TAG: a layer norm's row
statistics, bit-equal to ONNX Runtime's) is left as its op wrote it: never inlined, tiled or
rfactored, only placed (`exact`).
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass

import te
from te.expr import Call, Select, TensorLoad, free_vars, walk
from te.lower import Lowering
from te.ops.common import largest_divisor
from te.ops.nn import STAT_TAG
from te.schedule import AttachType, ForKind, Stage
from te.tensor import ComputeOp, IterKind, PlaceholderOp

from .blocking import MAX_ROWS, Blocking, blockings, padded_rows, padded_tile, panel_rows, panel_tiles
from .tiling import MAX_UNROLL_R, PACKS, TilingRules, primes as _primes

LANES = (8, 16, 32, 64)
MAX_VECTOR = 64
MAX_ROW_BLOCK = 8       # rows the rows rule computes together
FOLD_LANES = 2          # an rfactor's partial lanes are folded in halves down to this many (`fold`)
MAX_FOLDED_STEPS = 16   # by default, folded where the partial lanes take at most this many steps
EXPENSIVE_NODES = 24    # an injective stage's expression this large is worth not recomputing
SHORT_AXIS = 16         # a last data axis shorter than this is a poor vector (one AVX-512 register of fp32)
MASKED_LANES = (8, 16, 32)  # vectors over an axis no width of LANES divides: the last one masked


def divisors(n: int) -> list[int]:
    """The divisors of n, ascending."""
    small = [d for d in range(1, int(math.isqrt(n)) + 1) if n % d == 0]
    return sorted(set(small + [n // d for d in small]))


@dataclass(frozen=True)
class StageFacts:
    """What the rules need to know about one compute stage of the workload."""
    name: str
    shape: tuple
    reduce_ext: tuple           # extents of the reduction axes
    is_output: bool
    expensive: bool             # recomputing it costs: a math call (exp, erf, ...) or a long expression
    reuse: bool                 # some input is not indexed by every data axis (tiling pays)
    dtype: str = "float32"
    # innermost extents of the inputs read along the last data axis (a GEMM's B: N; a conv's
    # padded input: W + 2, its index x + q), which a panel layout must divide
    vector_widths: tuple = ()
    # data axes that may carry the vector instead of the last (a conv's output channels): see _channel_axes
    channel_axes: tuple = ()
    guarded: bool = False       # a select (a pad's bounds test): computed apart by parameter
    # its order of operations is its op's (te.ops.nn.STAT_TAG): placed only, never inlined,
    # tiled or rfactored, so its sums add in the order that makes them bit-equal to ONNX Runtime's
    exact: bool = False

    @property
    def last(self) -> int:
        return len(self.shape) - 1

    @property
    def injective(self) -> bool:
        return not self.reduce_ext


def _facts(s: te.Schedule) -> dict[str, StageFacts]:
    out = {}
    for st in s.stages:
        op = st.op
        if not isinstance(op, ComputeOp):
            continue
        data = {a.var for a, n in zip(op.axis, op.shape) if n > 1}
        loads = [x for b in op.body for x in walk(b) if isinstance(x, TensorLoad)]
        reuse = bool(op.reduce_axis) and any(
            data - set().union(*[free_vars(i) for i in x.indices]) for x in loads)
        nodes = [x for b in op.body for x in walk(b)]
        # a math call, or a long expression (te.ops.fastmath's exp is a polynomial of ~40 nodes)
        expensive = any(isinstance(x, Call) for x in nodes) or len(nodes) > EXPENSIVE_NODES
        last = op.axis[-1].var if op.axis else None
        widths = tuple(x.tensor.shape[-1] for x in loads if x.indices and last in free_vars(x.indices[-1]))
        out[st.name] = StageFacts(st.name, tuple(op.shape), tuple(a.dom[1] for a in op.reduce_axis),
                                  st.is_output, expensive, reuse, op.output(0).dtype, widths,
                                  _channel_axes(op, loads), any(isinstance(x, Select) for x in nodes),
                                  op.tag == STAT_TAG)
    return out


def _channel_axes(op: ComputeOp, loads: list[TensorLoad]) -> tuple[int, ...]:
    """Data axes a reduction stage may vectorize instead of its last (Ansor's multi-level tiling
    with layout rewrite): where the last axis is a poor vector, short or sliding over a window of
    an input with a reduction axis (a conv's x + q, strided or not), an axis that alone indexes a
    dimension of an input not read along the last axis (a conv's output channel k in W[k, c, r, q]):
    that input packed in panels of the axis is a contiguous vector of outputs."""
    if not op.reduce_axis or len(op.axis) < 2:
        return ()
    last = op.axis[-1].var
    reduce = {a.var for a in op.reduce_axis}
    window = any(last in free_vars(i) and free_vars(i) & reduce for x in loads for i in x.indices)
    if not window and op.shape[-1] >= SHORT_AXIS:
        return ()
    out = []
    for d, (a, n) in enumerate(zip(op.axis[:-1], op.shape[:-1])):
        if n > 1 and any(isinstance(x.tensor.op, PlaceholderOp) and any(i is a.var for i in x.indices)
                         and not any(last in free_vars(i) for i in x.indices) for x in loads):
            out.append(d)
    return tuple(out)


class SketchPolicy(TilingRules):
    """The rules applied to one workload: parameter sampling, mutation, and application as steps."""

    def __init__(self, task, threads: int | None = None):
        self.task = task
        self.threads = threads or task.target.threads
        self.target = task.target
        self.facts = _facts(task.schedule())
        self.order = list(self.facts)       # topological: producers first
        self.rows_output = self._rows_output()

    # ------------------------------------------------------------- parameters
    def sample(self, rng: random.Random) -> dict:
        """Random parameters for every open choice of the rules."""
        p: dict = {}
        for name, f in self.facts.items():
            if f.injective:
                if not f.is_output and not f.exact and (f.expensive or f.guarded):
                    p[f"inline:{name}"] = rng.random() < 0.5
                p[f"vec:{name}"] = self._lanes(f.shape[-1] if f.shape else 1, rng)
                p[f"loc:{name}"] = rng.randrange(4)
                continue
            kinds = self.kinds(f)
            weights = [3 if k == "tile" else 1 for k in kinds]
            p[f"kind:{name}"] = rng.choices(kinds, weights)[0]
            if f.channel_axes:          # the vector along the last axis or a channel axis, evenly
                p[f"vaxis:{name}"] = rng.choice([f.last, *f.channel_axes])
            v = p.get(f"vaxis:{name}", f.last)
            for d, n in enumerate(f.shape):
                p[f"tile:{name}:{d}"] = self._tile(n, d == v, rng)
            p[f"pad:{name}"] = len(f.shape) > 1 and rng.random() < 0.25 and v == f.last
            if p[f"pad:{name}"]:            # the most register rows that fit, the last row tile padded
                vectors = -(-p[f"tile:{name}:{len(f.shape) - 1}"][2] // self.target.lanes(f.dtype))
                mr = padded_rows(self.target, vectors)
                rows = f.shape[-2]
                p[f"tile:{name}:{len(f.shape) - 2}"] = (1, padded_tile(rows, mr << rng.randrange(7), mr), mr)
            self._fit_registers(p, f)
            self._keep_parallel(p, f, rng)
            for d, n in enumerate(f.reduce_ext):
                p[f"rtile:{name}:{d}"] = self._rtile(n, rng)
            p[f"at:{name}"] = rng.randrange(2)
            p[f"pack:{name}"] = rng.choices(PACKS, (1, 1, 2, 1, 1))[0]
            self._fit_pack(p, f)
            p[f"packa:{name}"] = rng.random() < 0.5
            p[f"unroll:{name}"] = rng.randrange(3)
            p[f"rf:{name}"] = rng.choice(self._rf_lanes(f) or [0])
            p[f"fold:{name}"] = rng.random() < 0.5
            p[f"loc:{name}"] = rng.randrange(4)
        if self.rows_output:
            out = self.rows_output
            for name in [out, *self._row_members()]:
                n = self.facts[name].shape[-1]
                if self.facts[name].injective and not any(n % v == 0 for v in LANES):
                    # inside the rows rule a row's vector may end masked (te's lane mask on the split's guard)
                    p[f"vec:{name}"] = rng.choice([p[f"vec:{name}"], *(v for v in MASKED_LANES if v < n)])
            p[f"rows:{out}"] = rng.random() < 0.75
            p[f"rowblock:{out}"] = rng.choice([d for d in divisors(self.facts[out].shape[-2]) if d <= MAX_ROW_BLOCK])
        return p

    def default_params(self, blocking: Blocking | None = None) -> dict:
        """The parameters of the default schedule: where tiling applies, a GEMM's blocking
        (`blocking`, else the first of blocking.py's `blockings` for the stage: a register
        tile the target suggests `vectors` registers wide, a tile of `rows` x `cols` outputs per
        parallel task, the reduction in blocks of `kc`, B's panel packed per column of register
        tiles); plain loops elsewhere, expensive stages not inlined, outer loops parallel,
        innermost data axes in 16 or 8 lanes."""
        p = self.sample(random.Random(0))
        for name, f in self.facts.items():
            last = f.shape[-1] if f.shape else 1
            lanes = next((v for v in (16, 8) if last % v == 0), 1)
            p[f"loc:{name}"] = 0
            if f.injective:
                p[f"vec:{name}"] = lanes
                if f"inline:{name}" in p:       # a pad's select stays inlined
                    p[f"inline:{name}"] = not f.expensive
                continue
            p[f"kind:{name}"] = "tile" if "tile" in self.kinds(f) and lanes > 1 else "plain"
            if f.channel_axes:
                p[f"vaxis:{name}"] = f.last
            rows_tile, cols_tile, kc, vectors, pack_a, padded = blocking or blockings(self.target, f.shape, f.dtype)[0]
            mr, nr = self.register_tile(f, vectors)
            for d, n in enumerate(f.shape):
                s3 = nr if d == len(f.shape) - 1 else mr if d == len(f.shape) - 2 else 1
                block = cols_tile if d == len(f.shape) - 1 else rows_tile if d == len(f.shape) - 2 else 1
                p[f"tile:{name}:{d}"] = (1, largest_divisor(n // s3, max(1, block // s3)), s3)
            p[f"pad:{name}"] = bool(padded) and len(f.shape) > 1
            if p[f"pad:{name}"]:
                p[f"tile:{name}:{len(f.shape) - 2}"] = (1, padded_tile(f.shape[-2], rows_tile, padded), padded)
            for d, n in enumerate(f.reduce_ext):
                last_r = d == len(f.reduce_ext) - 1
                r2 = largest_divisor(n, 4) if last_r else 1
                p[f"rtile:{name}:{d}"] = (largest_divisor(n // r2, max(1, kc // r2)) if last_r else 1, r2)
            p[f"at:{name}"], p[f"unroll:{name}"], p[f"pack:{name}"], p[f"packa:{name}"] = 0, 2, 2, pack_a
            self._keep_parallel(p, f, random.Random(0))
        if self.rows_output:            # a row at a time, its reductions in vector lanes
            p[f"rows:{self.rows_output}"] = True
            p[f"rowblock:{self.rows_output}"] = largest_divisor(self.facts[self.rows_output].shape[-2], 4)
            for name in [self.rows_output, *self._row_members()]:
                f = self.facts[name]
                wide = 2 * self.target.lanes(f.dtype)   # two registers an operation: more in flight
                if f.injective and (f.shape[-1] % wide == 0 or _masked(f.shape[-1], wide)):
                    p[f"vec:{name}"] = wide
                elif f.injective and _masked(f.shape[-1], wide // 2):
                    p[f"vec:{name}"] = wide // 2
                if not f.injective and "rfactor" in self.kinds(f):
                    p[f"kind:{name}"] = "rfactor"
                    vector = self.target.lanes(f.dtype)      # one register of partial results
                    p[f"rf:{name}"] = max((v for v in self._rf_lanes(f) if v <= vector),
                                          default=min(self._rf_lanes(f)))
                    # folding the lanes in halves pays where the main loop is short next to the
                    # scalar chain over the lanes (softmax's 128 in 16 lanes: 8 steps; measured
                    # 5-20% faster there, 3-10% slower on layer norm's 768: 48 steps)
                    p[f"fold:{name}"] = f.reduce_ext[-1] // p[f"rf:{name}"] <= MAX_FOLDED_STEPS
        return p

    def seeds(self) -> list[dict]:
        """Register-shaped starting points for the search: the default parameters under every
        blocking of the first tiled stage (blocking.py's `blockings`), the default's second with
        accumulators local to one register tile (`register_local`) where the operand it reads in
        place fits in L1, then the template's panel layouts (`panel`): a task per column panel
        under each of blocking.py's `panel_tiles`, and tasks of row blocks (`panel_rows`) over the
        operand packed once where its panels divide the operand (not a conv's padded rows),
        distinct ones only."""
        tiled = [f for f in self.facts.values() if not f.injective and "tile" in self.kinds(f)]
        out, seen = [], set()
        params = [self.default_params(b) for b in (blockings(self.target, tiled[0].shape, tiled[0].dtype)
                                                   if tiled else [None])]
        local = [self.register_local(params[0])] if tiled and self._operand_in_l1(tiled[0], params[0]) else []
        panels = []
        if tiled and len(tiled[0].shape) > 1:
            f = tiled[0]
            tiles = panel_tiles(self.target, f.shape, math.prod(f.reduce_ext), f.dtype)
            panels = [self.panel(params[0], mr, nr) for mr, nr in tiles]
            # the first tile also in tasks of row blocks whose A block takes a share of L2, over B
            # packed once at the root, where the rows make enough such blocks for the threads
            block = panel_rows(self.target, f.shape, math.prod(f.reduce_ext), f.dtype, tiles[0][0]) if tiles else 0
            if block and all(n % tiles[0][1] == 0 for n in (f.shape[-1], *f.vector_widths)):
                panels.append(self.panel(params[0], *tiles[0], block_rows=block))
        # the conv template's layout where a channel axis may carry the vector: four, two or one
        # vectors of channels x the most pixels of a row whose accumulators fit the registers
        # beside a vector of each (four first: the fewest loads of the input a FMA, the conv
        # template's pick on ResNet's 3x3 conv), then the first with the pad inlined
        channel = []
        if tiled and tiled[0].channel_axes:
            f = tiled[0]
            lanes = self.target.lanes(f.dtype)
            regs = self.target.vector_registers - 1         # one for the broadcast input
            tiles = [(vectors, largest_divisor(f.shape[f.last], max(1, regs // vectors - 1)))
                     for vectors in (4, 2, 1) if f.shape[f.channel_axes[0]] % (vectors * lanes) == 0]
            channel = [self.channel(params[0], *t) for t in tiles] + [self.channel(params[0], *tiles[0], True)] \
                if tiles else []
        for p in [params[0], *channel, *local, *panels, *params[1:]]:
            key = tuple(sorted(p.items()))
            if key not in seen:
                seen.add(key)
                out.append(p)
        return out

    def kinds(self, f: StageFacts) -> list[str]:
        """The ways a reduction stage can be scheduled: tiled where inputs are reused, else plain
        loops; rfactor where the data axes leave threads idle, or the reduction is a plain one
        (its partial results then run in vector lanes along the reduction axis); plain loops
        alone for an exact stage (its reduction in its op's order)."""
        if f.exact:
            return ["plain"]
        spatial = math.prod(f.shape)
        out = ["tile"] if f.reuse and spatial > 1 else ["plain"]
        if self._rf_lanes(f) and (not f.reuse or spatial < 8 * self.threads):
            out.append("rfactor")
        return out

    def _rf_lanes(self, f: StageFacts) -> list[int]:
        """Lanes of partial results for an rfactor of the innermost reduction axis: the widths that
        divide it, else (a row of 37 or 197) widths shorter than it, the last step's lanes masked."""
        if not f.reduce_ext:
            return []
        n = f.reduce_ext[-1]
        return [v for v in LANES if n % v == 0 and v < n] or [v for v in MASKED_LANES if v < n]

    @staticmethod
    def _lanes(n: int, rng: random.Random) -> int:
        opts = [v for v in LANES if n % v == 0] or [d for d in divisors(n) if d <= MAX_VECTOR][-1:]
        return rng.choice(opts)

    @staticmethod
    def _tile(n: int, last: bool, rng: random.Random) -> tuple[int, int, int]:
        """(S1, S2, S3) factors of a data axis of extent n (S0 = n / their product)."""
        cap = MAX_VECTOR if last else MAX_ROWS
        opts = [d for d in divisors(n) if d <= cap]
        if last:
            opts = [d for d in opts if d % 8 == 0] or opts
        s3 = rng.choice(opts)
        s2 = rng.choice(divisors(n // s3))
        s1 = rng.choice(divisors(n // s3 // s2))
        return s1, s2, s3

    @staticmethod
    def _rtile(n: int, rng: random.Random) -> tuple[int, int]:
        """(R1, R2) factors of a reduction axis of extent n (R0 = n / their product)."""
        r2 = rng.choice([d for d in divisors(n) if d <= MAX_UNROLL_R])
        r1 = rng.choice(divisors(n // r2))
        return r1, r2

    def _keep_parallel(self, p: dict, f: StageFacts, rng: random.Random) -> None:
        """Move tile factors out to S0 until the fused S0 loop has work for every thread (twice
        over, so a thread's share is balanced), or nothing is left to move."""
        keys = [f"tile:{f.name}:{d}" for d in range(len(f.shape))]
        for _ in range(64):
            outer = math.prod(n // math.prod(p[k]) for k, n in zip(keys, f.shape))
            movable = [(k, lvl) for k in keys for lvl in (0, 1) if p[k][lvl] > 1]
            if outer >= 2 * self.threads or not movable:
                return
            k, lvl = rng.choice(movable)
            t = list(p[k])
            t[lvl] //= _primes(t[lvl])[0]
            p[k] = tuple(t)

    def mutate(self, p: dict, rng: random.Random) -> dict:
        """A copy of p with one choice changed (a tile factor moved between levels, or redrawn)."""
        q = dict(p)
        key = rng.choice(sorted(q))
        kind, name, *rest = key.split(":")
        f = self.facts[name]
        if kind == "tile":
            vector = int(rest[0]) == q.get(f"vaxis:{name}", f.last)
            q[key] = _move_factor((f.shape[int(rest[0])],) + q[key], rng, last=vector)
            self._fit_registers(q, f)
            self._keep_parallel(q, f, rng)
        elif kind == "rtile":
            q[key] = _move_factor((f.reduce_ext[int(rest[0])],) + q[key], rng, last=None)
        else:
            fresh = self.sample(rng)
            q[key] = fresh[key]
            if kind == "vaxis":         # another vector axis: its register tile refitted
                self._fit_registers(q, f)
        self._fit_pack(q, f)
        return q

    # ------------------------------------------------------------- application
    def apply(self, p: dict) -> tuple[te.Schedule, list]:
        """(schedule, tensors) with the rules applied under parameters p; ScheduleError if they do not fit."""
        s, tensors = self.task.schedule(), list(self.task.tensors)
        live = {st.name: st for st in s.stages}
        for name, f in self.facts.items():
            if f.injective and not f.is_output and not f.exact and (
                    not (f.expensive or f.guarded) or p.get(f"inline:{name}", True)):
                live[name].compute_inline()
        done: set[str] = self._rows(s, p) if p.get(f"rows:{self.rows_output}") else set()
        owners: dict[str, Stage] = {}          # tiled stage -> the reader that owns its tile
        for name, f in self.facts.items():
            st = live[name]
            if not f.injective and p[f"kind:{name}"] == "tile" and not f.is_output:
                owner = self._fusible(s, st)
                if owner is not None:
                    owners[name] = owner
                    done.add(owner.name)
        for name in reversed(self.order):
            st = s.stage(name)
            if name in done or st.attach_type is AttachType.INLINE:
                continue
            f = self.facts[name]
            kind = "elementwise" if f.injective else p[f"kind:{name}"]
            if kind == "tile":
                done |= self._tile_stage(s, st, f, p, owners.get(name))
            else:
                self._place(s, st, f, p, kind)
                done.add(name)
        return s, tensors

    def _rows_output(self) -> str | None:
        """The output the rows rule applies to, if any: the single output, elementwise, of two or
        more axes, with other stages over its leading axes (a row's reductions: softmax, a norm)
        and no stage to tile."""
        outs = [n for n, f in self.facts.items() if f.is_output]
        if len(outs) != 1 or not self.facts[outs[0]].injective or len(self.facts[outs[0]].shape) < 2:
            return None
        if any("tile" in self.kinds(f) for f in self.facts.values() if not f.injective):
            return None
        return outs[0] if self._row_members(outs[0]) else None

    def _row_members(self, out: str | None = None) -> list[str]:
        """The stages the rows rule computes inside the output's row loop: those whose shape
        starts with the output's leading axes (a row of the output needs their row)."""
        out = out or self.rows_output
        lead = self.facts[out].shape[:-1]
        return [n for n, f in self.facts.items() if n != out and f.shape[:len(lead)] == lead]

    def _rows(self, s: te.Schedule, p: dict) -> set[str]:
        """The rows rule: the output's leading axes fused into one parallel loop of row blocks
        (`rowblock` rows each, independent reductions the core overlaps), its last axis
        vectorized; every member stage computed at that loop (a block of rows at a time, in L1),
        its last axis vectorized or, for a reduction, its partial results in vector lanes."""
        out = s.stage(self.rows_output)
        f = self.facts[out.name]
        axes = list(out.op.axis)
        lanes = p.get(f"vec:{out.name}", 1)
        if 1 < lanes and (f.shape[-1] % lanes == 0 or _masked(f.shape[-1], lanes)):
            _, vi = out.split(axes[-1], factor=lanes)
            out.vectorize(vi)
        block, _ = out.split(axes[-2], factor=p.get(f"rowblock:{out.name}", 1))
        row = out.fuse(*axes[:-2], block) if len(axes) > 2 else block
        out.parallel(row)
        done = {out.name}
        for name in reversed(self._row_members()):
            st = s.stage(name)
            if st.attach_type is AttachType.INLINE:
                continue
            mf = self.facts[name]
            # a stage with no axis past the rows (a row's scale) has no vector: its last axis is rows
            q = p if len(mf.shape) == len(f.shape) else {**p, f"vec:{name}": 1}
            self._place(s, st, mf, q, "elementwise" if mf.injective else p[f"kind:{name}"], at=(out, row))
            done.add(name)
        return done

    def _reader(self, s: te.Schedule, st: Stage) -> Stage | None:
        """The single live stage that reads st (through inlined stages), or None."""
        readers = [c for c in s.stages if c is not st and isinstance(c.op, ComputeOp)
                   and c.attach_type is not AttachType.INLINE and s._reads(c, st)]
        return readers[0] if len(readers) == 1 else None

    def _fusible(self, s: te.Schedule, st: Stage) -> Stage | None:
        """st's single reader if it is elementwise, of st's shape, and reads st point for point."""
        c = self._reader(s, st)
        if c is None or c.op.reduce_axis or tuple(c.op.shape) != tuple(st.op.shape) or c.relations:
            return None
        bodies = Lowering(s, [], "sketch").inline_bodies()
        axes = [a.var for a in c.op.axis]
        for b in bodies[c]:
            for x in walk(b):
                if isinstance(x, TensorLoad) and s[x.tensor] is st and list(x.indices) != axes:
                    return None
        return c

    def _place(self, s: te.Schedule, st: Stage, f: StageFacts, p: dict, kind: str,
               at: tuple | None = None) -> None:
        """A stage without tiling: at the root (outer axes fused, parallel), at a loop of its
        reader, or at the loop `at` = (stage, loop) the rows rule gives."""
        reader = None if st.is_output else self._reader(s, st)
        loops = [] if reader is None else _attach_points(reader)
        choice = p.get(f"loc:{st.name}", 0) % (len(loops) + 1)
        if at is not None:
            reader, loops, choice = at[0], [at[1]], 1
        if kind == "rfactor":
            lanes = p[f"rf:{st.name}"]
            ko, ki = st.split(st.op.reduce_axis[-1], factor=lanes)
            partials = [s.rfactor(st.op.output(0), ki, factor_axis=len(f.shape))]
            # the partial lanes folded in halves, a vector operation each, down to FOLD_LANES:
            # the stage's own reduction over the lanes is a chain of dependent scalar operations
            while p.get(f"fold:{st.name}") and lanes > FOLD_LANES and lanes % 2 == 0:
                lanes //= 2
                _, fi = st.split(st.op.reduce_axis[-1], factor=lanes)
                partials.append(s.rfactor(st.op.output(0), fi, factor_axis=len(f.shape)))
        lanes = p.get(f"vec:{st.name}", 1)
        if choice:
            st.compute_at(reader, loops[choice - 1])
            data = list(st.op.axis)
        else:
            data = self._root_loops(st, f, lanes)
        if kind == "rfactor":
            for rf in partials:
                rst = s[rf]
                rdata, rred = list(rst.op.axis), list(rst.op.reduce_axis)
                rst.reorder(*rdata[:-1], *rred, rdata[-1])
                rst.vectorize(rdata[-1])
                rst.compute_at(st, data[-1] if data else st.op.reduce_axis[0])
        elif kind == "elementwise" and choice and 1 < lanes and (
                f.shape[-1] % lanes == 0 or (at is not None and _masked(f.shape[-1], lanes))):
            _, vi = st.split(data[-1], factor=lanes)
            st.vectorize(vi)

    @staticmethod
    def _root_loops(st: Stage, f: StageFacts, lanes: int) -> list:
        """Root loops: the last data axis vectorized (elementwise stages), the outer ones fused and parallel."""
        axes = list(st.op.axis)
        if not axes:
            return []
        if f.injective and 1 < lanes and f.shape[-1] % lanes == 0:
            vo, vi = st.split(axes[-1], factor=lanes)
            st.vectorize(vi)
            axes[-1:] = [vo]
        outer = st.fuse(*axes) if len(axes) > 1 else axes[0]
        if math.prod(f.shape) // (f.shape[-1] if f.injective else 1) > 1:
            st.parallel(outer)
        return [outer]


def _masked(n: int, lanes: int) -> bool:
    """Whether a row of n is vectorized in `lanes` with the last vector masked: no width of LANES
    divides it (else a dividing one serves) and it spans at least one whole vector."""
    return lanes in MASKED_LANES and lanes <= n and not any(n % v == 0 for v in LANES)


def _attach_points(reader: Stage) -> list:
    """Loops of `reader` a producer may be computed at: data loops outside its first reduction loop."""
    out = []
    for lv in reader.leaf_iter_vars:
        if lv.kind is IterKind.REDUCE:
            break
        if reader.iter_attrs.get(lv) is ForKind.VECTORIZED:
            break
        out.append(lv)
    return out


def _move_factor(t: tuple, rng: random.Random, last: bool | None) -> tuple:
    """Move one prime factor between two levels of a tile (t = (extent, *factors)); the product
    of the factors keeps dividing the extent and the innermost keeps its cap."""
    n, factors = t[0], list(t[1:])
    levels = len(factors) + 1                 # level 0: the outermost, n / prod(factors)
    for _ in range(8):
        src, dst = rng.sample(range(levels), 2)
        full = [n // math.prod(factors)] + factors
        primes = _primes(full[src])
        if not primes:
            continue
        q = rng.choice(primes)
        full[src] //= q
        full[dst] *= q
        new = tuple(full[1:])
        cap = MAX_VECTOR if last else MAX_ROWS if last is False else MAX_UNROLL_R
        if new[-1] <= cap:
            return new
    return tuple(factors)
