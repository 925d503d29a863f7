"""Vectorized loops wider than a register whose width is not a power of two, split into
register-wide pieces before codegen.

LLVM splits a vector of a power-of-two number of registers (<64 x float> on AVX-512 is four zmm)
into registers one to one, but it legalises other widths by widening and reassembling them lane
by lane through the stack: a matmul whose column block was 48 floats (three zmm) ran 4.7x slower
than with 32 or 64, its inner loop full of vinsertps, and a <55 x float> broadcast took eight
inserts.  A vectorized loop of extent 48 becomes here an unrolled loop of three vectorized loops
of 16, one of 55 the same plus a vectorized loop of the last 7 (narrower than a register, which
LLVM widens to one).  Loops of a power-of-two extent, and loops no wider than a register, are
left as they are.
"""
from __future__ import annotations

from typing import Iterator

from .expr import DTYPE_BITS, INDEX_DTYPE, Cast, Const, Expr, Load, Var, children
from .schedule import ForKind
from .simplify import substitute_stmt
from .stmt import Allocate, For, IfThenElse, LoweredFunc, Seq, Stmt, Store, seq, walk_stmt

# te computes on half-precision storage types in float32
COMPUTE_BITS = {"float16": 32, "bfloat16": 32}


def split_wide_vectors(func: LoweredFunc, vector_bits: int) -> LoweredFunc:
    """func with every vectorized loop wider than a register, of a width that is not a power of
    two, split into an unrolled loop over register-wide vectorized pieces."""
    body = _split(func.body, vector_bits)
    return func if body is func.body else LoweredFunc(func.name, func.args, body, func.attrs)


def pieces(extent: int, lanes: int) -> tuple[int, int] | None:
    """How a vectorized loop of extent is split for registers of lanes elements: (whole registers,
    lanes left over); None to leave it whole (a power of two, or no wider than a register)."""
    if extent <= lanes or extent & (extent - 1) == 0:
        return None
    return extent // lanes, extent % lanes


def _value_bits(body: Stmt) -> int:
    """The widest element, in bits, the loop's stores and loaded or converted values compute in
    (index arithmetic is not counted: it is scalar)."""
    bits = 8
    for s in walk_stmt(body):
        if not isinstance(s, Store):
            continue
        dtypes = [s.buffer.dtype] + [e.dtype for e in _value_exprs(s.value) if isinstance(e, (Load, Cast))]
        bits = max(bits, *(COMPUTE_BITS.get(d, DTYPE_BITS.get(d, 32)) for d in dtypes))
    return bits


def _value_exprs(e: Expr) -> Iterator[Expr]:
    """The sub-expressions of a stored value, not descending into load indices."""
    stack = [e]
    while stack:
        x = stack.pop()
        yield x
        if not isinstance(x, Load):
            stack.extend(children(x))


def _pieces(s: For, lanes: int, whole: int, rest: int) -> Stmt:
    """s as `whole` register-wide vectorized loops (one unrolled loop over them), then one
    vectorized loop of the `rest` lanes left."""
    outer, inner = Var(f"{s.var.name}.piece"), Var(f"{s.var.name}.lane")
    parts = [For(outer, Const(whole, INDEX_DTYPE), ForKind.UNROLLED,
                 For(inner, Const(lanes, INDEX_DTYPE), ForKind.VECTORIZED,
                     substitute_stmt(s.body, {s.var: outer * lanes + inner})))]
    if rest:
        tail = Var(f"{s.var.name}.rest")
        parts.append(For(tail, Const(rest, INDEX_DTYPE), ForKind.VECTORIZED if rest > 1 else ForKind.SERIAL,
                         substitute_stmt(s.body, {s.var: tail + whole * lanes})))
    return seq(parts)


def _split(s: Stmt, vector_bits: int) -> Stmt:
    if isinstance(s, For):
        if s.kind is ForKind.VECTORIZED and isinstance(s.extent, Const) and not s.pragmas:
            lanes = vector_bits // _value_bits(s.body)
            split = pieces(s.extent.value, lanes)
            if split is not None:
                return _pieces(s, lanes, *split)
        body = _split(s.body, vector_bits)
        return s if body is s.body else For(s.var, s.extent, s.kind, body, s.pragmas)
    if isinstance(s, Allocate):
        body = _split(s.body, vector_bits)
        return s if body is s.body else Allocate(s.buffer, body)
    if isinstance(s, IfThenElse):
        then = _split(s.then, vector_bits)
        orelse = None if s.orelse is None else _split(s.orelse, vector_bits)
        return s if then is s.then and orelse is s.orelse else IfThenElse(s.cond, then, orelse)
    if isinstance(s, Seq):
        stmts = [_split(x, vector_bits) for x in s.stmts]
        return s if all(a is b for a, b in zip(stmts, s.stmts)) else Seq(stmts)
    return s
