"""Lowering: a Schedule becomes a loop-IR function.

Steps: inline the compute_inline'd stages; refuse a read that provably leaves its tensor
(`check_reads`); infer the region each stage must produce (the whole tensor at the root, the
part its consumer reads under a compute_at loop); derive every loop's extent from the splits
and fuses; then build each stage's loop nest, with the stages computed at its loops nested
inside, reductions as an init nest plus an update nest, and guards where a split does not
divide or a region overhangs its tensor (or, on an axis marked pragma "overhang"="clamp", the
overhang computed at the tensor's last point).  `lower()` then simplifies and peels each vector
loop's masked last step off the loop around it (te/peel.py).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from .expr import (INDEX_DTYPE, BinOp, BinOpKind, Cmp, CmpKind, Const, Expr, Load, Logic, LogicKind,
                   Reduce, Select, TensorLoad, Var, children, const, free_vars, substitute, transform, walk)
from . import tensorize
from .peel import peel_vector_tails
from .printer import expr_str
from .schedule import AttachType, ForKind, Fuse, Schedule, ScheduleError, Split, Stage
from .simplify import INF, Linear, bound, linear, simplify, simplify_func
from .stmt import Allocate, Buffer, Comment, For, IfThenElse, LoweredFunc, Stmt, Store, seq
from .tensor import IterKind, IterVar, PlaceholderOp, Tensor

log = logging.getLogger(__name__)

MAX_VECTOR_LANES = 64
MAX_UNROLL = 512
# s[st].pragma(axis, OVERHANG, CLAMP) on a data axis of a stage computed at another one: where
# its region overhangs the tensor (a tile that does not divide it), those points are computed at
# the tensor's last point into the stage's own buffer instead of being skipped by a guard (a GEMM
# pads its last row tile so; the consumer never reads them)
OVERHANG, CLAMP = "overhang", "clamp"


@dataclass
class StageInfo:
    """What lowering knows about one stage: region, loop extents, and ivar values."""
    stage: Stage
    body: tuple                 # inlined body expressions
    region_min: list[Expr]      # per output dimension, in enclosing loop vars
    region_ext: list[int]
    ext: dict                   # IterVar -> int extent
    value: dict                 # IterVar -> Expr in leaf vars (offset from region/dom min)
    guards: list[Expr]
    buffers: list[Buffer]
    clamped: frozenset = frozenset()   # axes whose overhang is computed at the tensor's last point


def _flatten(indices: list[Expr], shape: tuple[int, ...]) -> Expr:
    out: Expr = const(0, INDEX_DTYPE)
    for idx, n in zip(indices, shape):
        out = out * n + idx
    return out


class Lowering:
    def __init__(self, sch: Schedule, args: list[Tensor], name: str):
        self.sch, self.name = sch, name
        self.args = args
        self.arg_buffers: dict[int, Buffer] = {}       # id(op) of the stage op, output idx -> Buffer
        self.info: dict[Stage, StageInfo] = {}
        self.live = [st for st in sch.stages if st.attach_type is not AttachType.INLINE]

    # ------------------------------------------------------------- arguments
    def bind_args(self) -> list[Buffer]:
        bufs = []
        seen = set()
        for t in self.args:
            if not isinstance(t, Tensor):
                raise TypeError(f"te.build/lower arguments must be tensors, got {t!r}")
            st = self.sch[t]
            key = (id(st), t.value_index)
            if key in seen:
                raise ValueError(f"tensor {t.name} is passed twice in the argument list")
            seen.add(key)
            if st.attach_type is not AttachType.ROOT:
                raise ScheduleError(f"stage {st.name}: it is an argument of the function, so it must be "
                                    f"computed at the root (it is {st.attach_type.value})")
            b = Buffer(t.name, t.shape, t.dtype)
            self.arg_buffers[key] = b
            bufs.append(b)
        for st in self.live:
            if isinstance(st.op, PlaceholderOp) and (id(st), 0) not in self.arg_buffers:
                if self._is_read(st):
                    raise ValueError(f"placeholder {st.name} is read but is not in the argument list")
        for op in self.sch.outputs:
            st = self.sch[op]
            for i in range(op.num_outputs):
                if (id(st), i) not in self.arg_buffers:
                    raise ValueError(f"output {st.name} is not in the argument list; pass it so the "
                                     "result has somewhere to go")
        return bufs

    def _is_read(self, producer: Stage) -> bool:
        for st in self.sch.stages:
            if st.attach_type is not AttachType.INLINE and hasattr(st.op, "body"):
                if self.sch._reads(st, producer):
                    return True
        return False

    # ------------------------------------------------------------- inlining
    def inline_bodies(self) -> dict[Stage, tuple]:
        bodies: dict[Stage, tuple] = {}
        for st in self.sch.stages:
            if isinstance(st.op, PlaceholderOp):
                continue

            def repl(e, bodies=bodies):
                if isinstance(e, TensorLoad):
                    src = self.sch[e.tensor]
                    if src.attach_type is AttachType.INLINE:
                        body = bodies[src][e.tensor.value_index]
                        return substitute(body, {a.var: i for a, i in zip(src.op.axis, e.indices)})
                return None
            bodies[st] = tuple(transform(b, repl) for b in st.op.body)
        return bodies

    def check_reads(self, bodies: dict[Stage, tuple]) -> None:
        """ScheduleError for a read that leaves its tensor at some point of a stage's domain.

        Only what is certain is refused: an affine index of the stage's axes (its range over
        the axes' box is exact), in a load evaluated at every point (not inside a select's
        branch or a conditional reduction, where a condition may keep it in bounds); an index
        computed from loaded data or clamped with min/max is left alone."""
        for st in self.live:
            if isinstance(st.op, PlaceholderOp):
                continue
            ranges = {a.var: (0, n - 1) for a, n in zip(st.op.axis, st.op.shape)}
            ranges.update({a.var: (a.dom[0], a.dom[0] + a.dom[1] - 1) for a in st.op.reduce_axis})
            if any(not isinstance(lo, int) or not isinstance(hi, int) or hi < lo for lo, hi in ranges.values()):
                continue                # an empty domain reads nothing
            for body in bodies[st]:
                for x in _unconditional_loads(body):
                    for d, (idx, n) in enumerate(zip(x.indices, x.tensor.shape)):
                        span = _affine_range(idx, ranges)
                        if span is None or not isinstance(n, int) or (span[0] >= 0 and span[1] < n):
                            continue
                        where = ", ".join(expr_str(i) for i in x.indices)
                        raise ScheduleError(
                            f"stage {st.name}: reads {x.tensor.name}[{where}] out of bounds: index "
                            f"{expr_str(idx)} of dimension {d} spans [{span[0]}, {span[1]}] over the "
                            f"stage's axes, but {x.tensor.name} has extent {n} there (0..{n - 1}); fix "
                            "the index, shrink the compute's shape, or guard the read with te.if_then_else")

    # ------------------------------------------------------------- bound inference
    def infer(self, bodies: dict[Stage, tuple]) -> None:
        for st in reversed(self.live):
            if isinstance(st.op, PlaceholderOp):
                continue
            op = st.op
            if st.attach_type is AttachType.ROOT:
                rmin: list[Expr] = [const(0, INDEX_DTYPE)] * len(op.shape)
                rext = list(op.shape)
            else:
                rmin, rext = self.region_at(st, bodies)
            ext: dict = {}
            for a, e in zip(op.axis, rext):
                ext[a] = e
            for a in op.reduce_axis:
                ext[a] = a.dom[1]
            for rel in st.relations:
                if isinstance(rel, Split):
                    e = ext[rel.parent]
                    if rel.factor is not None:
                        ext[rel.inner], ext[rel.outer] = rel.factor, -(-e // rel.factor)
                    else:
                        ext[rel.outer], ext[rel.inner] = rel.nparts, -(-e // rel.nparts)
                else:
                    ext[rel.fused] = ext[rel.outer] * ext[rel.inner]
            value: dict = {iv: iv.var for iv in st.leaf_iter_vars}
            guards: list[Expr] = []
            for rel in reversed(st.relations):
                if isinstance(rel, Split):
                    f = ext[rel.inner]
                    value[rel.parent] = value[rel.outer] * f + value[rel.inner]
                    if ext[rel.outer] * f > ext[rel.parent]:
                        guards.append(value[rel.parent] < ext[rel.parent])
                else:
                    n = ext[rel.inner]
                    value[rel.outer] = value[rel.fused] // n
                    value[rel.inner] = value[rel.fused] % n
            clamped = self._clamped(st)
            if st.attach_type is AttachType.SCOPE:
                # the region may overhang the tensor: compute only the points that exist (or,
                # on a clamped axis, compute the overhang at the last point: no branch per point)
                for a, m, n in zip(op.axis, rmin, op.shape):
                    if a in clamped:
                        continue
                    idx = m + value[a]
                    guards.append(Logic(LogicKind.AND, Cmp(CmpKind.GE, idx, const(0, INDEX_DTYPE)),
                                        Cmp(CmpKind.LT, idx, const(n, INDEX_DTYPE))))
            self._check_annotations(st, ext)
            bufs = []
            for i, t in enumerate(op.outputs):
                b = self.arg_buffers.get((id(st), i))
                if b is None:
                    shape = tuple(rext)
                    b = Buffer(t.name if st.scope == "global" else f"{t.name}", shape, t.dtype, st.scope)
                elif clamped:
                    raise ScheduleError(f"stage {st.name}: pragma {OVERHANG}={CLAMP} writes past the tensor's "
                                        "end; it needs a stage computed at another one (a cache_write/"
                                        "cache_read copy), not an argument")
                bufs.append(b)
            self.info[st] = StageInfo(st, bodies[st], rmin, rext, ext, value, guards, bufs, clamped)

    @staticmethod
    def _clamped(st: Stage) -> frozenset:
        """The data axes of st marked with pragma(axis, "overhang", "clamp") before they were split."""
        out = set()
        for a, marks in st.pragmas.items():
            for key, v in marks:
                if key != OVERHANG:
                    continue
                if v != CLAMP:
                    raise ScheduleError(f"stage {st.name}: pragma {OVERHANG}={v!r} on {a.name}: the only "
                                        f"value is {CLAMP!r}")
                if a not in st.op.axis:
                    raise ScheduleError(f"stage {st.name}: pragma {OVERHANG}={CLAMP} on {a.name}: put it on "
                                        "one of the stage's own data axes, before splitting it")
                out.add(a)
        if out and st.attach_type is not AttachType.SCOPE:
            # at the root the region is the tensor: nothing overhangs
            return frozenset()
        return frozenset(out)

    def _check_annotations(self, st: Stage, ext: dict) -> None:
        for iv, kind in st.iter_attrs.items():
            if iv not in st.leaf_iter_vars:
                continue
            e = ext[iv]
            if not isinstance(e, int):
                raise ScheduleError(f"stage {st.name}: {kind.value} axis {iv.name} has no constant extent")
            if kind is ForKind.VECTORIZED and e > MAX_VECTOR_LANES:
                raise ScheduleError(f"stage {st.name}: vectorize {iv.name}: extent {e} is more than "
                                    f"{MAX_VECTOR_LANES} lanes; split it and vectorize the inner part")
            if kind is ForKind.UNROLLED and e > MAX_UNROLL:
                raise ScheduleError(f"stage {st.name}: unroll {iv.name}: extent {e} is more than "
                                    f"{MAX_UNROLL}; split it and unroll the inner part")

    def root_index(self, st: Stage, clamp: bool = True) -> dict:
        """Var of each root/reduce axis -> its index expression (region min + loop value; on a
        clamped axis, with `clamp`, no further than the tensor's last point)."""
        info = self.info[st]
        m = {a.var: info.region_min[d] + info.value[a] for d, a in enumerate(st.op.axis)}
        if clamp:
            for a, n in zip(st.op.axis, st.op.shape):
                if a in info.clamped:
                    m[a.var] = BinOp(BinOpKind.MIN, m[a.var], const(n - 1, INDEX_DTYPE), INDEX_DTYPE)
        for a in st.op.reduce_axis:
            m[a.var] = info.value[a] + a.dom[0] if a.dom[0] else info.value[a]
        return m

    def _chain_to(self, c: Stage, parent: Stage, iv) -> list[Stage] | None:
        """The stages from c up its compute_at chain to the one computed at loop iv of parent or
        at a loop of parent inside it (c runs inside iv), or None if c does not run inside it."""
        chain, pos = [], parent.leaf_iter_vars.index(iv)
        while c.attach_type is AttachType.SCOPE:
            chain.append(c)
            if c.attach_stage is parent and parent.leaf_iter_vars.index(parent.leaf_of(c.attach_ivar)) >= pos:
                return chain
            c = c.attach_stage
        return None

    def region_at(self, st: Stage, bodies) -> tuple[list[Expr], list[int]]:
        """The region of st that its consumer reads below the compute_at loop."""
        parent = st.attach_stage
        iv = parent.leaf_of(st.attach_ivar)
        pinfo = self.info.get(parent)
        if pinfo is None:
            raise ScheduleError(f"stage {st.name}: computed at {parent.name}, which is inlined or not "
                                "part of the computation")
        # other readers must run inside the same loop (computed at it, or inside a stage that is), so
        # the region covers their reads over all of their own loops
        readers = [c for c in self.live if c is not parent and c is not st and hasattr(c.op, "body")
                   and self.sch._reads(c, st)]
        chains = {c: self._chain_to(c, parent, iv) for c in readers}
        others = [c for c in readers if chains[c] is None or c not in self.info]
        if others:
            raise ScheduleError(f"stage {st.name}: it is computed at {parent.name} but {others[0].name} "
                                "reads it too; compute it at the root, inline it, or compute "
                                f"{others[0].name} at the same loop")
        pos = parent.leaf_iter_vars.index(iv)
        relax = {leaf.var: (0, pinfo.ext[leaf] - 1) for leaf in parent.leaf_iter_vars[pos + 1:]}
        # every loop's range, so that e.g. (ko * 16 + ki) // 16 simplifies to ko before relaxing
        loop_ranges = {leaf.var: (0, pinfo.ext[leaf] - 1) for leaf in parent.leaf_iter_vars
                       if isinstance(pinfo.ext[leaf], int)}
        reads = [(pinfo.body, self.root_index(parent, clamp=False), relax)]
        for c in readers:
            inner = {lv.var: (0, self.info[q].ext[lv] - 1) for q in chains[c] for lv in q.leaf_iter_vars
                     if isinstance(self.info[q].ext[lv], int)}
            loop_ranges.update(inner)
            reads.append((self.info[c].body, self.root_index(c, clamp=False), {**relax, **inner}))
        shape = st.op.shape
        lows: list[list[Linear]] = [[] for _ in shape]
        highs: list[list[Linear]] = [[] for _ in shape]
        full = [False] * len(shape)
        for bodies, vmap, rel in reads:
            for body in bodies:
                for x in walk(body):
                    if not (isinstance(x, TensorLoad) and self.sch[x.tensor] is st):
                        continue
                    for d, idx in enumerate(x.indices):
                        lo, hi = _relaxed_bounds(simplify(substitute(idx, vmap), loop_ranges), rel)
                        if lo is None:
                            full[d] = True
                        else:
                            lows[d].append(lo)
                            highs[d].append(hi)
        rmin, rext = [], []
        for d, n in enumerate(shape):
            lo = _pick(lows[d], -1) if not full[d] else None
            hi = _pick(highs[d], 1) if not full[d] else None
            span = None if lo is None or hi is None else hi.add(lo, -1)
            if span is None or span.terms or not lows[d]:
                rmin.append(const(0, INDEX_DTYPE))
                rext.append(n)
            else:
                rmin.append(simplify(lo.to_expr()))
                rext.append(int(span.const) + 1)
        return rmin, rext

    # ------------------------------------------------------------- statements
    def load_of(self, e: TensorLoad) -> Expr:
        st = self.sch[e.tensor]
        if isinstance(st.op, PlaceholderOp):
            b = self.arg_buffers[(id(st), 0)]
            return Load(b, _flatten(list(e.indices), b.shape), e.dtype)
        info = self.info[st]
        b = info.buffers[e.tensor.value_index]
        rel = [i - m if not (isinstance(m, Const) and m.value == 0) else i
               for i, m in zip(e.indices, info.region_min)]
        return Load(b, _flatten(rel, b.shape), e.dtype)

    def body_value(self, st: Stage, e: Expr) -> Expr:
        e = substitute(e, self.root_index(st))
        return transform(e, lambda x: self.load_of(x) if isinstance(x, TensorLoad) else None)

    def make_nest(self, st: Stage) -> Stmt:
        info = self.info[st]
        op = st.op
        leaves = st.leaf_iter_vars
        out_index = [_flatten([info.value[a] for a in op.axis], b.shape) for b in info.buffers]
        data_guards = [g for g in info.guards if not self._uses_reduce(st, g)]
        body0 = info.body[0]
        if isinstance(body0, Reduce):
            buf = info.buffers[0]
            src = self.body_value(st, body0.source)
            acc = Load(buf, out_index[0], buf.dtype)
            update: Stmt = Store(buf, out_index[0], body0.combiner.combine(acc, src))
            if body0.condition is not None:
                update = IfThenElse(self.body_value(st, body0.condition), update)
            init: Stmt = Store(buf, out_index[0], body0.combiner.identity(buf.dtype))
            first_r = next(i for i, lv in enumerate(leaves) if lv.kind is IterKind.REDUCE)
            inner_leaves = set(leaves[first_r:])
            init_leaves = [lv for lv in leaves[first_r:] if lv.kind is IterKind.DATA_PAR]
            inner_guards = [g for g in info.guards if self._leaf_vars(st, g) & inner_leaves]
            outer_guards = [g for g in info.guards if not self._leaf_vars(st, g) & inner_leaves]
            init_guards = [g for g in data_guards if self._leaf_vars(st, g) & set(init_leaves)]
            init_nest = self.wrap(st, init_leaves, init, init_guards, attach=False)
            upd_nest = self.wrap(st, leaves[first_r:], update, inner_guards, attach=True)
            return self.wrap(st, leaves[:first_r], seq([init_nest, upd_nest]), outer_guards, attach=True)
        stores = [Store(b, out_index[i], self.body_value(st, info.body[i]))
                  for i, b in enumerate(info.buffers)]
        return self.wrap(st, leaves, seq(stores), info.guards, attach=True)

    def _leaf_vars(self, st: Stage, g: Expr) -> set:
        vs = free_vars(g)
        return {lv for lv in st.leaf_iter_vars if lv.var in vs}

    def _uses_reduce(self, st: Stage, g: Expr) -> bool:
        return any(lv.kind is IterKind.REDUCE for lv in self._leaf_vars(st, g))

    def _deepest(self, st: Stage, g: Expr, leaves: list) -> int | None:
        used = self._leaf_vars(st, g)
        pos = [i for i, lv in enumerate(leaves) if lv in used]
        return max(pos) if pos else None

    def wrap(self, st: Stage, leaves: list, inner: Stmt, guards: list, attach: bool) -> Stmt:
        """Wrap `inner` in the loops of `leaves`, each guard placed under its deepest loop."""
        placed: dict[int, list] = {}
        for g in guards:
            d = self._deepest(st, g, leaves)
            placed.setdefault(-1 if d is None else d, []).append(g)
        stmt = inner
        for pos in range(len(leaves) - 1, -2, -1):
            conds = placed.get(pos, [])
            if conds:
                c = conds[0]
                for x in conds[1:]:
                    c = Logic(LogicKind.AND, c, x)
                stmt = IfThenElse(c, stmt)
            if pos < 0:
                break
            lv = leaves[pos]
            if attach:
                stmt = self.attach_children(st, lv, stmt)
            kind = st.iter_attrs.get(lv, ForKind.SERIAL)
            stmt = For(lv.var, const(self.info[st].ext[lv], INDEX_DTYPE), kind, stmt,
                       tuple(st.pragmas.get(lv, ())))
        return stmt

    def attach_children(self, st: Stage, lv: IterVar, rest: Stmt) -> Stmt:
        kids = [c for c in self.live if c.attach_type is AttachType.SCOPE and c.attach_stage is st
                and st.leaf_of(c.attach_ivar) is lv]
        for c in reversed(kids):
            rest = self.realize(c, rest)
        return rest

    def realize(self, st: Stage, rest: Stmt) -> Stmt:
        """Allocate st's buffers (unless arguments), compute it, then run `rest`."""
        stmt = seq([Comment(f"produce {st.name}"), self.make_nest(st), rest])
        for b in self.info[st].buffers:
            if b not in self.arg_buffers.values():
                stmt = Allocate(b, stmt)
        return stmt

    def run(self) -> LoweredFunc:
        args = self.bind_args()
        bodies = self.inline_bodies()
        self.check_reads(bodies)
        self.infer(bodies)
        roots = [st for st in self.live if st.attach_type is AttachType.ROOT
                 and not isinstance(st.op, PlaceholderOp)]
        body: Stmt = seq([])
        for st in reversed(roots):
            body = self.realize(st, body)
        return LoweredFunc(self.name, args, body)


def _unconditional_loads(e: Expr) -> list[TensorLoad]:
    """The tensor reads of e that run at every point: not those in a select's branches or in
    the source of a conditional reduction (their condition may keep them in bounds)."""
    def kids(x: Expr) -> tuple:
        if isinstance(x, Select):
            return (x.cond,)
        if isinstance(x, Reduce) and x.condition is not None:
            return (x.condition,)
        return children(x)
    return [x for x in walk(e, kids) if isinstance(x, TensorLoad)]


def _affine_range(idx: Expr, ranges: dict) -> tuple[int, int] | None:
    """The exact (min, max) of idx over the box of `ranges` if idx is an affine form of its vars
    (each var once, so every corner is reached); None for anything else."""
    lin = linear(idx)
    lo = hi = lin.const
    for atom, c in lin.terms.values():
        if not isinstance(atom, Var) or atom not in ranges:
            return None
        a, b = ranges[atom]
        lo, hi = lo + min(c * a, c * b), hi + max(c * a, c * b)
    return lo, hi


def _relaxed_bounds(e: Expr, relax: dict) -> tuple[Linear | None, Linear | None]:
    """Symbolic (lo, hi) of e with the `relax` vars ranging over their intervals, others kept."""
    lin = linear(e)
    lo = Linear(e.dtype, k=lin.const)
    hi = Linear(e.dtype, k=lin.const)
    for key, (atom, c) in lin.terms.items():
        vs = free_vars(atom)
        relaxed = {v for v in vs if v in relax}
        if not relaxed:
            lo.terms[key] = [atom, c]
            hi.terms[key] = [atom, c]
            continue
        if len(relaxed) != len(vs):
            return None, None
        alo, ahi = bound(atom, relax)
        if alo == -INF or ahi == INF:
            return None, None
        a_lo, a_hi = (c * alo, c * ahi) if c > 0 else (c * ahi, c * alo)
        lo.const += a_lo
        hi.const += a_hi
    return lo, hi


def _pick(forms: list[Linear], sign: int) -> Linear | None:
    """The smallest (sign -1) or largest (sign 1) of linear forms that differ by constants."""
    if not forms:
        return None
    best = forms[0]
    for f in forms[1:]:
        diff = f.add(best, -1)
        if diff.terms:
            return None
        if diff.const * sign > 0:
            best = f
    return best


def lower(sch: Schedule, args: list, name: str = "default_function", simple: bool = True,
          simple_mode: bool = False) -> LoweredFunc:
    """Lower a schedule to a loop-IR function of the given argument tensors; print() shows it.

    simple_mode is TVM's flag for a readable listing (TVM then skips loop partitioning and
    unrolling); tilewise's lowering does neither (codegen unrolls), so the readable function
    is what it always returns, and `print(te.lower(s, args, simple_mode=True))` works as in TVM."""
    f = Lowering(sch, list(args), name).run()
    f = peel_vector_tails(simplify_func(f)) if simple else f   # whole vectors, then one masked tail
    tensorize.check(f)                  # a tensorized nest is what its intrinsic computes
    return f
