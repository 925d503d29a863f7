"""Loop peeling of vector tails: whole vectors in a loop with no lane guard, then one masked step.

A vectorized loop over an axis its width does not divide (197 in vectors of 16) carries the
split's guard `o*16 + v < 197` on every step; codegen makes that a mask, tests whether all of
its lanes are on and branches (te/codegen_vector.py), some ten instructions a step, which
dominate a reduction's one-instruction step.  `peel_vector_tails` splits the serial loop `o`
whose last iteration is the only one that turns lanes off into a loop of E-1 iterations, where
the simplifier proves the guard and drops it, and the last iteration (o = E-1) after it, guarded
as before: LLVM's and TVM's loop peeling.  The iterations run in the same order doing the same
arithmetic per lane, so results (a reduction's order of addition included) are unchanged.
"""
from __future__ import annotations

from .expr import Const, Expr, Logic, LogicKind, Var, const, free_vars
from .schedule import ForKind
from .simplify import Ranges, bound, simplify_stmt, substitute_stmt
from .stmt import Allocate, For, IfThenElse, LoweredFunc, Seq, Stmt, seq


def peel_vector_tails(f: LoweredFunc) -> LoweredFunc:
    """f with each serial loop whose last iteration alone turns vector lanes off peeled (module doc)."""
    body = _peel(f.body, {})
    return LoweredFunc(f.name, f.args, body, f.attrs)


def _peel(s: Stmt, ranges: Ranges) -> Stmt:
    """s with its peelable loops peeled; ranges holds the enclosing loops' variables."""
    if isinstance(s, Seq):
        return seq([_peel(x, ranges) for x in s.stmts])
    if isinstance(s, Allocate):
        return Allocate(s.buffer, _peel(s.body, ranges))
    if isinstance(s, IfThenElse):
        return IfThenElse(s.cond, _peel(s.then, ranges),
                          _peel(s.orelse, ranges) if s.orelse is not None else None)
    if not isinstance(s, For) or s.kind is ForKind.VECTORIZED:
        return s                    # a lane guard inside a vector loop is peeled from a loop outside it
    peeled = _peel_loop(s, ranges)
    if peeled is None:
        return For(s.var, s.extent, s.kind, _peel(s.body, {**ranges, s.var: (0, bound(s.extent, ranges)[1] - 1)}),
                   s.pragmas)
    main, last = peeled
    if isinstance(main, For) and main.var is s.var:
        # its body only: the main loop is not peeled again
        main = For(main.var, main.extent, main.kind, _peel(main.body, {**ranges, s.var: (0, main.extent.value - 1)}),
                   main.pragmas)
    else:
        main = _peel(main, ranges)  # one iteration, the variable substituted
    return seq([main, _peel(last, ranges)])


def _peel_loop(s: For, ranges: Ranges) -> tuple[Stmt, Stmt] | None:
    """(the loop's first E-1 iterations, its last one) when in the first ones the simplifier
    proves a lane condition that depends on the loop's variable; None for any other loop."""
    if s.kind is not ForKind.SERIAL or s.pragmas or not isinstance(s.extent, Const) or s.extent.value < 2:
        return None                 # parallel loops keep their iterations; unrolled ones fold the guard per copy
    terms = _lane_terms(s.body, s.var)
    if not terms:
        return None
    n = s.extent.value
    main = simplify_stmt(For(s.var, const(n - 1, s.extent.dtype), s.kind, s.body, s.pragmas), ranges)
    if main is None or len(_lane_terms(main, s.var)) >= len(terms):
        return None                 # no lane condition is proved in the first iterations: nothing to gain
    last = simplify_stmt(substitute_stmt(s.body, {s.var: const(n - 1, s.var.dtype)}), ranges)
    return main, last if last is not None else seq([])


def _lane_terms(s: Stmt, var: Var, lanes: frozenset = frozenset()) -> list[Expr]:
    """The terms of the guards in s (the conditions they AND together), inside a vectorized loop,
    that depend on a lane variable and on var: each a lane mask that peeling var may prove."""
    out: list[Expr] = []
    if isinstance(s, Seq):
        for x in s.stmts:
            out += _lane_terms(x, var, lanes)
    elif isinstance(s, Allocate):
        out += _lane_terms(s.body, var, lanes)
    elif isinstance(s, For):
        out += _lane_terms(s.body, var, lanes | {s.var} if s.kind is ForKind.VECTORIZED else lanes)
    elif isinstance(s, IfThenElse):
        out += [c for c in _conjuncts(s.cond) if var in free_vars(c) and free_vars(c) & lanes]
        out += _lane_terms(s.then, var, lanes)
        if s.orelse is not None:
            out += _lane_terms(s.orelse, var, lanes)
    return out


def _conjuncts(c: Expr) -> list[Expr]:
    if isinstance(c, Logic) and c.op is LogicKind.AND:
        return _conjuncts(c.a) + _conjuncts(c.b)
    return [c]
