"""Features of a candidate, read off its lowered loop IR (in the spirit of AutoTVM's itervar features).

For the hottest stores of the kernel (by trip count), and for each loop around them from the
innermost out: the loop's extent and annotation, how many iterations run inside it, and for
each memory access in the statement its stride with respect to that loop and the bytes it
touches within it.  Plus a few global counts.  The vector has a fixed length so records of
different configs, and of other tasks of the same operator, share one cost model.
"""
from __future__ import annotations

import math

import numpy as np

import te
from te.expr import Load, Var, free_vars
from te.schedule import ForKind
from te.simplify import linear, skey
from te.stmt import Allocate, For, IfThenElse, LoweredFunc, Seq, Store, all_exprs

MAX_STORES = 3
MAX_LOOPS = 6
MAX_ACCESS = 4
KINDS = (ForKind.SERIAL, ForKind.PARALLEL, ForKind.VECTORIZED, ForKind.UNROLLED)
PER_ACCESS = 3
PER_LOOP = 3 + len(KINDS) + MAX_ACCESS * PER_ACCESS
N_GLOBAL = 8
LENGTH = MAX_STORES * MAX_LOOPS * PER_LOOP + N_GLOBAL

ELEM = {"float32": 4, "float64": 8, "int8": 1, "uint8": 1, "int16": 2, "uint16": 2, "int32": 4,
        "uint32": 4, "int64": 8, "uint64": 8, "bool": 1}


def _log(x: float) -> float:
    return math.log2(1.0 + abs(x))


class _Access:
    """One memory access, analysed once: its index's linear form over the loop variables."""
    __slots__ = ("buffer", "vars", "coeff", "inside")

    def __init__(self, buffer, index):
        self.buffer = buffer
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


def extract(func: LoweredFunc) -> np.ndarray:
    """The fixed-length feature vector of a lowered function."""
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
        accesses = [_Access(b, i) for b, i in accesses[:MAX_ACCESS]]
        # per access, the loops it depends on (stride != 0), from the innermost out
        depends = [[a.stride(lp.var) != 0 for lp in loops] for a in accesses]
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
            for a, acc in enumerate(accesses):
                stride = acc.stride(loop.var)
                touched = math.prod(_extent(lp) for lp, dep in zip(loops[first:], depends[a][first:]) if dep)
                off = base + 3 + len(KINDS) + a * PER_ACCESS
                vec[off] = _log(stride) if stride >= 0 else -1.0
                vec[off + 1] = _log(touched * ELEM.get(acc.buffer.dtype, 4))
                vec[off + 2] = _log(inner / max(1, touched))       # reuse within the loop
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
        return extract(te.lower(s, tensors, "f"))
    except Exception:
        return np.zeros(LENGTH, np.float32)
