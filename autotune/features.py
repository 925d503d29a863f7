"""Features of a candidate, read off its lowered loop IR (in the spirit of AutoTVM's itervar features).

For the hottest stores of the kernel (by trip count), and for each loop around them from the
innermost out: the loop's extent and annotation, how many iterations run inside it, and for
each memory access in the statement its stride with respect to that loop, the bytes it
touches within it, and its reuse distance there against the target's caches.  Plus a few
global counts.  The vector has a fixed length so records of different configs, and of other
tasks of the same operator, share one cost model.

The reuse distance of an access at a loop is the bytes the statement touches between two
iterations of that loop that read the same element: one iteration's footprint when the index
does not move with the loop, the whole loop's when it moves affinely, and for a fused loop read
through div/mod (a parallel loop over channel blocks and rows) the gap between equal indices,
found by evaluating the index over the loop's iterations.  It tells apart loop orders whose
strides look alike (rows outside the channel blocks re-read every weight block per row; a
4 MiB weight re-read so spills a 2 MiB L2, a 64 KiB one does not), and as log2 of its ratio to
the L1d and L2 sizes (and each buffer's size to the L2) it means the same on targets with
other caches, so a model trained on one machine's logs ranks for another.
"""
from __future__ import annotations

import math

import numpy as np

import te
from te.caches import CONSERVATIVE, Caches
from te.expr import BinOp, BinOpKind, Const, Load, Var, free_vars
from te.schedule import ForKind
from te.simplify import linear, skey
from te.stmt import Allocate, For, IfThenElse, LoweredFunc, Seq, Store, all_exprs

MAX_STORES = 3
MAX_LOOPS = 6
MAX_ACCESS = 4
KINDS = (ForKind.SERIAL, ForKind.PARALLEL, ForKind.VECTORIZED, ForKind.UNROLLED)
PER_ACCESS = 6
MAX_BODY_ACCESS = 16        # accesses summed into a loop body's footprint
MAX_EVAL = 4096             # iterations of a loop a div/mod index is evaluated over
PER_LOOP = 3 + len(KINDS) + MAX_ACCESS * PER_ACCESS
N_GLOBAL = 8
LENGTH = MAX_STORES * MAX_LOOPS * PER_LOOP + N_GLOBAL

ELEM = {"float32": 4, "float64": 8, "int8": 1, "uint8": 1, "int16": 2, "uint16": 2, "int32": 4,
        "uint32": 4, "int64": 8, "uint64": 8, "bool": 1}


def _log(x: float) -> float:
    return math.log2(1.0 + abs(x))


def _ratio(nbytes: float, size: int) -> float:
    """log2 of bytes against a cache size: 0 at the size, one per doubling."""
    return math.log2(max(nbytes, 1.0) / size)


# integer index arithmetic, evaluated over a loop's iterations (DIV on indices floors)
_NP_OPS = {BinOpKind.ADD: np.add, BinOpKind.SUB: np.subtract, BinOpKind.MUL: np.multiply,
           BinOpKind.DIV: np.floor_divide, BinOpKind.FLOORDIV: np.floor_divide,
           BinOpKind.FLOORMOD: np.mod, BinOpKind.MIN: np.minimum, BinOpKind.MAX: np.maximum}


def _evaluate(e, var: Var, values: np.ndarray):
    """The index e at var = values, every other variable 0; None when e is not plain integer
    arithmetic (a load, a select)."""
    if isinstance(e, Const):
        return int(e.value)
    if isinstance(e, Var):
        return values if e is var else 0
    if isinstance(e, BinOp) and e.op in _NP_OPS:
        a, b = _evaluate(e.a, var, values), _evaluate(e.b, var, values)
        if a is None or b is None:
            return None
        if e.op in (BinOpKind.DIV, BinOpKind.FLOORDIV, BinOpKind.FLOORMOD) and np.any(np.asarray(b) == 0):
            return None
        return _NP_OPS[e.op](a, b)
    return None


def _reuse_iterations(index, var: Var, extent: int) -> float:
    """Iterations of the loop over var between two that read the same element, for an index
    that reads var through div/mod: the median gap between equal values (the extent when no
    value repeats, or the index cannot be evaluated)."""
    n = min(extent, MAX_EVAL)
    vals = _evaluate(index, var, np.arange(n, dtype=np.int64))
    if vals is None or np.ndim(vals) == 0:
        return 1.0 if vals is not None else float(extent)
    order = np.lexsort((np.arange(n), vals))
    sv = vals[order]
    gaps = np.diff(order)[sv[1:] == sv[:-1]]
    return float(np.median(gaps)) if len(gaps) else float(extent)


class _Access:
    """One memory access, analysed once: its index's linear form over the loop variables."""
    __slots__ = ("buffer", "index", "vars", "coeff", "inside")

    def __init__(self, buffer, index):
        self.buffer = buffer
        self.index = index
        self.vars = free_vars(index)
        self.coeff: dict = {}           # skey(var) -> coefficient, for vars appearing as atoms
        self.inside: set = set()        # skeys of vars read inside a non-trivial atom (div, mod, a load)
        if not self.vars:
            return
        for k, (atom, c) in linear(index).terms.items():
            if isinstance(atom, Var):
                self.coeff[k] = c
            else:
                self.inside |= {skey(v) for v in free_vars(atom)}

    def stride(self, var: Var) -> float:
        """Coefficient of var in the index (0 when independent, -1 when not affine)."""
        if var not in self.vars:
            return 0.0
        k = skey(var)
        if k in self.inside:
            return -1.0
        return float(self.coeff.get(k, 0))

    def reuse_iterations(self, loop: For) -> float:
        """Iterations of loop between two reads of one element (see the module docstring)."""
        stride = self.stride(loop.var)
        if stride == 0:
            return 1.0
        if stride > 0:
            return float(_extent(loop))
        return _reuse_iterations(self.index, loop.var, _extent(loop))


def _collect(stmt, loops: list, out: list, allocs: list) -> None:
    if isinstance(stmt, Seq):
        for s in stmt.stmts:
            _collect(s, loops, out, allocs)
    elif isinstance(stmt, For):
        _collect(stmt.body, loops + [stmt], out, allocs)
    elif isinstance(stmt, (IfThenElse,)):
        _collect(stmt.then, loops, out, allocs)
        if stmt.orelse is not None:
            _collect(stmt.orelse, loops, out, allocs)
    elif isinstance(stmt, Allocate):
        allocs.append(stmt.buffer)
        _collect(stmt.body, loops, out, allocs)
    elif isinstance(stmt, Store):
        out.append((stmt, list(loops)))


def _extent(loop: For) -> int:
    e = loop.extent
    return int(e.value) if hasattr(e, "value") else 1


def extract(func: LoweredFunc, caches: Caches = CONSERVATIVE) -> np.ndarray:
    """The fixed-length feature vector of a lowered function, its cache terms against `caches`
    (the target's: Target.caches)."""
    stores: list = []
    allocs: list = []
    _collect(func.body, [], stores, allocs)
    trips = [math.prod(_extent(lp) for lp in loops) for _, loops in stores]
    order = sorted(range(len(stores)), key=lambda i: -trips[i])[:MAX_STORES]
    vec = np.zeros(LENGTH, np.float32)
    for slot, si in enumerate(order):
        st, loops = stores[si]
        accesses = [(st.buffer, st.index)] + [(x.buffer, x.index) for x in all_exprs(st.value)
                                              if isinstance(x, Load)]
        accesses = [_Access(b, i) for b, i in accesses[:MAX_BODY_ACCESS]]
        # per access, the loops it depends on (stride != 0), from the innermost out
        depends = [[a.stride(lp.var) != 0 for lp in loops] for a in accesses]
        elems = [ELEM.get(a.buffer.dtype, 4) for a in accesses]

        def body_bytes(first: int) -> float:
            """Bytes the statement touches in one iteration of loops[first]."""
            return sum(e * math.prod(_extent(lp) for lp, dep in zip(loops[first + 1:], d[first + 1:]) if dep)
                       for e, d in zip(elems, depends))
        inner = 1
        for level, loop in enumerate(reversed(loops[-MAX_LOOPS:])):
            ext = _extent(loop)
            inner *= ext
            base = (slot * MAX_LOOPS + level) * PER_LOOP
            vec[base] = _log(ext)
            vec[base + 1] = _log(inner)
            vec[base + 2] = _log(trips[si] / inner)
            vec[base + 3 + KINDS.index(loop.kind)] = 1.0
            first = len(loops) - level - 1
            body = body_bytes(first)
            for a, acc in enumerate(accesses[:MAX_ACCESS]):
                stride = acc.stride(loop.var)
                touched = math.prod(_extent(lp) for lp, dep in zip(loops[first:], depends[a][first:]) if dep)
                off = base + 3 + len(KINDS) + a * PER_ACCESS
                vec[off] = _log(stride) if stride >= 0 else -1.0
                vec[off + 1] = _log(touched * elems[a])
                vec[off + 2] = _log(inner / max(1, touched))       # reuse within the loop
                reuse = acc.reuse_iterations(loop) * body
                vec[off + 3] = _ratio(reuse, caches.l1d)
                vec[off + 4] = _ratio(reuse, caches.l2)
                vec[off + 5] = _ratio(acc.buffer.size * elems[a], caches.l2)
    g = MAX_STORES * MAX_LOOPS * PER_LOOP
    vec[g] = _log(sum(trips))
    vec[g + 1] = len(stores)
    vec[g + 2] = len(allocs)
    vec[g + 3] = _log(sum(b.size * ELEM.get(b.dtype, 4) for b in allocs))
    all_loops = [lp for _, loops in stores for lp in loops]
    vec[g + 4] = max((_extent(lp) for lp in all_loops if lp.kind is ForKind.VECTORIZED), default=0)
    vec[g + 5] = _log(max((_extent(lp) for lp in all_loops if lp.kind is ForKind.PARALLEL), default=0))
    vec[g + 6] = _log(max((_extent(lp) for lp in all_loops if lp.kind is ForKind.UNROLLED), default=0))
    vec[g + 7] = _log(len(all_loops))
    return vec


def config_features(task, index: int) -> np.ndarray:
    """Features of config `index` of a task (zeros when the config cannot be lowered), of the
    kernel the tuner's builders build (weights pre-packed, as in a model)."""
    try:
        s, tensors = task.instantiate(index, prepacked=True)
        return extract(te.lower(s, tensors, "f"), task.target.caches)
    except Exception:
        return np.zeros(LENGTH, np.float32)
