"""Simplifier: constant folding, canonical linear forms, range-aware div/mod and guard proving.

Integer index arithmetic is put into a linear form  sum(c_i * atom_i) + k  so that terms
cancel (`(io*32 + 31) - io*32` is 31) and `(x*32 + r) // 32` becomes `x` when r is known to
lie in [0, 32).  Ranges are inclusive (lo, hi) bounds of loop variables.
"""
from __future__ import annotations

import math
import operator

from .expr import (BinOp, BinOpKind, Call, Cast, Cmp, CmpKind, Const, Expr, Load, Logic,
                   LogicKind, Not, Select, Var, children, const, is_float, is_int, rebuild)
from .stmt import Allocate, Comment, For, IfThenElse, LoweredFunc, Seq, Stmt, Store, seq

Ranges = dict  # Var -> (lo, hi), inclusive
INF = math.inf


# ---------------------------------------------------------------- structural keys

def skey(e: Expr, memo: dict | None = None):
    """A hashable key equal for structurally equal expressions (Vars and buffers by identity)."""
    memo = {} if memo is None else memo
    k = memo.get(id(e))
    if k is not None:
        return k
    if isinstance(e, Const):
        k = ("c", e.value, e.dtype)
    elif isinstance(e, Var):
        k = ("v", id(e))
    elif isinstance(e, Load):
        k = ("ld", id(e.buffer), skey(e.index, memo))
    else:
        op = getattr(e, "op", None) or getattr(e, "func", None)
        k = (type(e).__name__, op, e.dtype) + tuple(skey(c, memo) for c in children(e))
    memo[id(e)] = k
    return k


# ---------------------------------------------------------------- linear forms

class Linear:
    """sum(coeff * atom) + const over integers; atoms are kept by structural key."""
    __slots__ = ("terms", "const", "dtype")

    def __init__(self, dtype: str, terms: dict | None = None, k: int = 0):
        self.dtype = dtype
        self.terms: dict = terms or {}      # key -> [atom, coeff]
        self.const = k

    def add(self, other: "Linear", sign: int = 1) -> "Linear":
        terms = {k: [a, c] for k, (a, c) in self.terms.items()}
        for k, (a, c) in other.terms.items():
            if k in terms:
                terms[k][1] += sign * c
            else:
                terms[k] = [a, sign * c]
        return Linear(self.dtype, {k: v for k, v in terms.items() if v[1] != 0},
                      self.const + sign * other.const)

    def add_in_place(self, other: "Linear", sign: int = 1) -> "Linear":
        """self + sign * other, made in self: for a form no one else holds (linear()'s own).

        A sum of n terms is a chain of n additions, each simplified with its linear form: copying
        the terms at every addition made that O(n^2) per form and O(n^3) per chain (the 76 float8
        node cases of tests/frontends/test_low_precision.py, each encoder 126 compares summed:
        29 s of CPU simplifying with copies, 5.5 s in place)."""
        terms = self.terms
        for k, (a, c) in other.terms.items():
            t = terms.get(k)
            if t is None:
                terms[k] = [a, sign * c]
            elif t[1] + sign * c:
                t[1] += sign * c
            else:
                del terms[k]
        self.const += sign * other.const
        return self

    def scale(self, f: int) -> "Linear":
        if f == 0:
            return Linear(self.dtype)
        return Linear(self.dtype, {k: [a, c * f] for k, (a, c) in self.terms.items()}, self.const * f)

    def to_expr(self) -> Expr:
        dt = self.dtype
        pos = [(a, c) for a, c in self.terms.values() if c > 0]
        neg = [(a, -c) for a, c in self.terms.values() if c < 0]

        def term(a, c):
            return a if c == 1 else BinOp(BinOpKind.MUL, a, const(c, dt), dt)
        out: Expr | None = None
        for a, c in pos:
            t = term(a, c)
            out = t if out is None else BinOp(BinOpKind.ADD, out, t, dt)
        for a, c in neg:
            t = term(a, c)
            out = BinOp(BinOpKind.SUB, out if out is not None else const(0, dt), t, dt)
        if out is None:
            return const(self.const, dt)
        if self.const > 0:
            out = BinOp(BinOpKind.ADD, out, const(self.const, dt), dt)
        elif self.const < 0:
            out = BinOp(BinOpKind.SUB, out, const(-self.const, dt), dt)
        return out


def linear(e: Expr, memo: dict | None = None) -> Linear:
    """The linear form of an integer expression (non-linear parts become atoms), a fresh one the
    caller may change."""
    memo = {} if memo is None else memo
    dt = e.dtype
    if isinstance(e, Const):
        return Linear(dt, k=int(e.value))
    if isinstance(e, BinOp) and is_int(dt):
        if e.op is BinOpKind.ADD:
            return _merge_divmod(linear(e.a, memo).add_in_place(linear(e.b, memo)), memo)
        if e.op is BinOpKind.SUB:
            return _merge_divmod(linear(e.a, memo).add_in_place(linear(e.b, memo), -1), memo)
        if e.op is BinOpKind.MUL:
            la, lb = linear(e.a, memo), linear(e.b, memo)
            if not lb.terms:
                return la.scale(lb.const)
            if not la.terms:
                return lb.scale(la.const)
    return Linear(dt, {skey(e, memo): [e, 1]})


def _merge_divmod(lin: Linear, memo: dict) -> Linear:
    """m*c*(x // c) + m*(x % c) -> m*x (floor division): a fused-then-split index made whole again."""
    for key, (atom, coeff) in list(lin.terms.items()):
        if not (isinstance(atom, BinOp) and atom.op is BinOpKind.FLOORDIV and isinstance(atom.b, Const)):
            continue
        c = int(atom.b.value)
        if c <= 0 or coeff % c:
            continue
        # no memo for this temporary: memo is keyed by id(), and a freed temporary's id is reused
        # by the next one, which would then get this key
        mkey = skey(BinOp(BinOpKind.FLOORMOD, atom.a, atom.b, atom.dtype))
        if key not in lin.terms or mkey not in lin.terms or lin.terms[mkey][1] * c != coeff:
            continue
        m = lin.terms[mkey][1]
        rest = Linear(lin.dtype, {k: v for k, v in lin.terms.items() if k not in (key, mkey)}, lin.const)
        lin = rest.add(linear(atom.a, memo).scale(m))
    return lin


# ---------------------------------------------------------------- bounds

def bound(e: Expr, ranges: Ranges) -> tuple[float, float]:
    """Inclusive (lo, hi) of an integer expression given variable ranges; +-inf when unknown."""
    if isinstance(e, Const):
        v = e.value
        return (v, v) if not isinstance(v, bool) else (int(v), int(v))
    if isinstance(e, Var):
        return ranges.get(e, (-INF, INF))
    if isinstance(e, Cast) and (is_int(e.dtype) and (is_int(e.value.dtype) or e.value.dtype == "bool")):
        lo, hi = bound(e.value, ranges)
        tlo, thi = _dtype_range(e.dtype)
        return (lo, hi) if tlo <= lo and hi <= thi else (tlo, thi)     # a narrowing cast may wrap
    if isinstance(e, (Cmp, Logic, Not)):
        return (0, 1)
    if isinstance(e, Select):
        a, b = bound(e.t, ranges), bound(e.f, ranges)
        return (min(a[0], b[0]), max(a[1], b[1]))
    if not isinstance(e, BinOp) or not is_int(e.dtype):
        return (-INF, INF)
    a, b = bound(e.a, ranges), bound(e.b, ranges)
    op = e.op
    if op is BinOpKind.ADD:
        return (a[0] + b[0], a[1] + b[1])
    if op is BinOpKind.SUB:
        return (a[0] - b[1], a[1] - b[0])
    if op is BinOpKind.MUL:
        prods = [_mul(x, y) for x in a for y in b]
        return (min(prods), max(prods))
    if op is BinOpKind.MIN:
        return (min(a[0], b[0]), min(a[1], b[1]))
    if op is BinOpKind.MAX:
        return (max(a[0], b[0]), max(a[1], b[1]))
    if op in (BinOpKind.FLOORDIV, BinOpKind.DIV) and b[0] == b[1] and b[0] > 0:
        c = b[0]
        return (_fdiv(a[0], c), _fdiv(a[1], c))
    if op is BinOpKind.FLOORMOD and b[0] == b[1] and b[0] > 0:
        c = b[0]
        if a[0] >= 0 and a[1] < c:
            return a
        if a[1] - a[0] < c and _fdiv(a[0], c) == _fdiv(a[1], c):
            return (a[0] % c, a[1] % c)
        return (0, c - 1)
    return (-INF, INF)


def _dtype_range(dtype: str) -> tuple[int, int]:
    from .expr import DTYPE_BITS, is_unsigned
    bits = DTYPE_BITS[dtype]
    if is_unsigned(dtype):
        return 0, (1 << bits) - 1
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


def _fits(lo, hi, dtype: str) -> bool:
    """Do values in [lo, hi] (and so the arithmetic that produced them) fit dtype without wrapping?"""
    if dtype == "int64":
        return True
    tlo, thi = _dtype_range(dtype)
    return tlo <= lo and hi <= thi


def _mul(x, y):
    if x == 0 or y == 0:
        return 0
    return x * y


def _fdiv(x, c):
    return x if x in (INF, -INF) else x // c


def linear_bound(lin: Linear, ranges: Ranges) -> tuple[float, float]:
    """Bounds of a linear form from the bounds of its atoms."""
    lo = hi = lin.const
    for a, c in lin.terms.values():
        alo, ahi = bound(a, ranges)
        if c > 0:
            lo, hi = lo + _mul(c, alo), hi + _mul(c, ahi)
        else:
            lo, hi = lo + _mul(c, ahi), hi + _mul(c, alo)
    return lo, hi


def prove(cond: Expr, ranges: Ranges) -> bool | None:
    """True/False when the ranges decide an (integer) condition, else None."""
    c = simplify(cond, ranges)
    if isinstance(c, Const):
        return bool(c.value)
    return None


# ---------------------------------------------------------------- expression simplifier

_FOLD = {
    BinOpKind.ADD: operator.add, BinOpKind.SUB: operator.sub, BinOpKind.MUL: operator.mul,
    BinOpKind.MIN: min, BinOpKind.MAX: max,
}
_CMP = {CmpKind.EQ: operator.eq, CmpKind.NE: operator.ne, CmpKind.LT: operator.lt,
        CmpKind.LE: operator.le, CmpKind.GT: operator.gt, CmpKind.GE: operator.ge}


def _wrap(v: int, dtype: str) -> int:
    from .expr import DTYPE_BITS, is_unsigned
    bits = DTYPE_BITS[dtype]
    v &= (1 << bits) - 1
    if not is_unsigned(dtype) and v >= 1 << (bits - 1):
        v -= 1 << bits
    return v


def _fold_binop(e: BinOp) -> Expr | None:
    a, b = e.a.value, e.b.value
    op, dt = e.op, e.dtype
    if is_float(dt):
        import numpy as np
        npdt = np.float32 if dt == "float32" else np.float64
        x, y = npdt(a), npdt(b)
        with np.errstate(all="ignore"):
            if op in _FOLD:
                return const(float(npdt(_FOLD[op](x, y))), dt)
            if op is BinOpKind.DIV:
                return const(float(x / y), dt) if y != 0 else None
        return None
    if op in _FOLD:
        return const(_wrap(int(_FOLD[op](a, b)), dt), dt)
    if b == 0:
        return None
    if op in (BinOpKind.FLOORDIV, BinOpKind.DIV):
        return const(a // b, dt)
    if op is BinOpKind.FLOORMOD:
        return const(a % b, dt)
    return None


class _Simplifier:
    def __init__(self, ranges: Ranges):
        self.ranges = ranges
        self.memo: dict = {}

    def __call__(self, e: Expr) -> Expr:
        out = self.memo.get(id(e))
        if out is None:
            kids = tuple(self(k) for k in children(e))
            out = self.visit(rebuild(e, kids))
            self.memo[id(e)] = out
        return out

    def visit(self, e: Expr) -> Expr:
        if isinstance(e, BinOp):
            return self.binop(e)
        if isinstance(e, Cmp):
            return self.cmp(e)
        if isinstance(e, Logic):
            return self.logic(e)
        if isinstance(e, Not):
            if isinstance(e.a, Const):
                return const(not e.a.value, "bool")
            if isinstance(e.a, Not):
                return e.a.a
            return e
        if isinstance(e, Select):
            if isinstance(e.cond, Const):
                return e.t if e.cond.value else e.f
            return e
        if isinstance(e, Cast):
            if isinstance(e.value, Const) and not (is_int(e.dtype) and is_float(e.value.dtype)):
                return const(e.value.value, e.dtype)
            return e
        return e

    def binop(self, e: BinOp) -> Expr:
        a, b, op, dt = e.a, e.b, e.op, e.dtype
        if isinstance(a, Const) and isinstance(b, Const):
            folded = _fold_binop(e)
            if folded is not None:
                return folded
        if not is_int(dt):
            if op is BinOpKind.MUL and isinstance(b, Const) and b.value == 1:
                return a
            if op is BinOpKind.MUL and isinstance(a, Const) and a.value == 1:
                return b
            return e
        if op in (BinOpKind.ADD, BinOpKind.SUB, BinOpKind.MUL):
            if dt != "int64" and (not _fits(*bound(a, self.ranges), dt) or not _fits(*bound(b, self.ranges), dt)):
                return e
            lin = linear(e)
            return lin.to_expr()
        if op in (BinOpKind.FLOORDIV, BinOpKind.DIV, BinOpKind.FLOORMOD) and isinstance(b, Const) \
                and b.value > 0 and (dt == "int64" or _fits(*bound(a, self.ranges), dt)):
            out = self.divmod(a, b.value, op is BinOpKind.FLOORMOD, dt)
            return e if out is None else out
        if op in (BinOpKind.MIN, BinOpKind.MAX) and (dt == "int64" or (
                _fits(*bound(a, self.ranges), dt) and _fits(*bound(b, self.ranges), dt))):
            lo, hi = linear_bound(linear(a).add(linear(b), -1), self.ranges)
            if hi <= 0:
                return a if op is BinOpKind.MIN else b
            if lo >= 0:
                return b if op is BinOpKind.MIN else a
        return e

    def divmod(self, a: Expr, c: int, is_mod: bool, dt: str) -> Expr | None:
        if c == 1:
            return const(0, dt) if is_mod else a
        lin = linear(a)
        q = Linear(dt, k=lin.const // c)
        r = Linear(dt, k=lin.const % c)
        for k, (atom, coeff) in lin.terms.items():
            if coeff % c == 0:
                q.terms[k] = [atom, coeff // c]
            else:
                r.terms[k] = [atom, coeff]
        lo, hi = linear_bound(r, self.ranges)
        if lo == -INF or hi == INF:
            return None
        m = _fdiv(lo, c)
        if _fdiv(hi, c) != m:
            if not q.terms and not r.terms:
                return None
            # the remainder part straddles a multiple of c: only the constant split helps
            if not q.terms:
                return None
            rest = BinOp(BinOpKind.FLOORMOD if is_mod else BinOpKind.FLOORDIV, r.to_expr(), const(c, dt), dt)
            if is_mod:
                return rest
            return BinOp(BinOpKind.ADD, q.to_expr(), rest, dt) if q.terms or q.const else rest
        if is_mod:
            return r.add(Linear(dt, k=m * c), -1).to_expr()
        return q.add(Linear(dt, k=m)).to_expr()

    def cmp(self, e: Cmp) -> Expr:
        a, b = e.a, e.b
        if isinstance(a, Const) and isinstance(b, Const):
            return const(_CMP[e.op](a.value, b.value), "bool")
        if is_int(a.dtype) and (a.dtype == "int64" or (_fits(*bound(a, self.ranges), a.dtype)
                                                        and _fits(*bound(b, self.ranges), a.dtype))):
            lo, hi = linear_bound(linear(a).add(linear(b), -1), self.ranges)
            decided = {
                CmpKind.LT: (hi < 0, lo >= 0), CmpKind.LE: (hi <= 0, lo > 0),
                CmpKind.GT: (lo > 0, hi <= 0), CmpKind.GE: (lo >= 0, hi < 0),
                CmpKind.EQ: (lo == hi == 0, lo > 0 or hi < 0),
                CmpKind.NE: (lo > 0 or hi < 0, lo == hi == 0),
            }[e.op]
            if decided[0]:
                return const(True, "bool")
            if decided[1]:
                return const(False, "bool")
        return e

    def logic(self, e: Logic) -> Expr:
        a, b = e.a, e.b
        is_and = e.op is LogicKind.AND
        for x, y in ((a, b), (b, a)):
            if isinstance(x, Const):
                if bool(x.value) == is_and:
                    return y
                return const(not is_and, "bool")
        return e


def simplify(e: Expr, ranges: Ranges | None = None) -> Expr:
    """Simplify an expression given inclusive variable ranges."""
    return _Simplifier(ranges or {})(e)


# ---------------------------------------------------------------- statement simplifier

def simplify_stmt(s: Stmt, ranges: Ranges | None = None) -> Stmt | None:
    """Simplify a loop-IR statement: fold, prove guards, drop unit and empty loops."""
    ranges = dict(ranges or {})
    if isinstance(s, Seq):
        return seq([x for x in (simplify_stmt(x, ranges) for x in s.stmts) if x is not None]) \
            if s.stmts else None
    if isinstance(s, For):
        ext = simplify(s.extent, ranges)
        if isinstance(ext, Const) and ext.value <= 0:
            return None
        if isinstance(ext, Const) and ext.value == 1 and not s.pragmas:
            return simplify_stmt(substitute_stmt(s.body, {s.var: const(0, s.var.dtype)}), ranges)
        hi = bound(ext, ranges)[1]
        ranges[s.var] = (0, hi - 1)
        body = simplify_stmt(s.body, ranges)
        if body is None:
            return None
        return For(s.var, ext, s.kind, body, s.pragmas)
    if isinstance(s, Store):
        return Store(s.buffer, simplify(s.index, ranges), simplify(s.value, ranges))
    if isinstance(s, IfThenElse):
        c = simplify(s.cond, ranges)
        if isinstance(c, Const):
            branch = s.then if c.value else s.orelse
            return simplify_stmt(branch, ranges) if branch is not None else None
        then = simplify_stmt(s.then, ranges)
        orelse = simplify_stmt(s.orelse, ranges) if s.orelse is not None else None
        if then is None and orelse is None:
            return None
        if then is None:
            return IfThenElse(simplify(Not(c)), orelse)
        return IfThenElse(c, then, orelse)
    if isinstance(s, Allocate):
        body = simplify_stmt(s.body, ranges)
        return Allocate(s.buffer, body) if body is not None else None
    if isinstance(s, Comment):
        return s
    raise TypeError(f"simplify_stmt: unknown statement {type(s).__name__}")


def substitute_stmt(s: Stmt, mapping: dict) -> Stmt:
    """Replace Vars by expressions throughout a statement."""
    from .expr import substitute
    if isinstance(s, Seq):
        return Seq([substitute_stmt(x, mapping) for x in s.stmts])
    if isinstance(s, For):
        return For(s.var, substitute(s.extent, mapping), s.kind, substitute_stmt(s.body, mapping), s.pragmas)
    if isinstance(s, Store):
        return Store(s.buffer, substitute(s.index, mapping), substitute(s.value, mapping))
    if isinstance(s, IfThenElse):
        return IfThenElse(substitute(s.cond, mapping), substitute_stmt(s.then, mapping),
                          substitute_stmt(s.orelse, mapping) if s.orelse is not None else None)
    if isinstance(s, Allocate):
        return Allocate(s.buffer, substitute_stmt(s.body, mapping))
    return s


def simplify_func(f: LoweredFunc) -> LoweredFunc:
    """Simplify a lowered function's body."""
    body = simplify_stmt(f.body) or Seq([])
    return LoweredFunc(f.name, f.args, body, f.attrs)
