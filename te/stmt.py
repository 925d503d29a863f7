"""Loop IR: the statements that lowering produces and codegen consumes."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

from .expr import Expr, Var, children as expr_children
from .schedule import ForKind


@dataclass(eq=False)
class Buffer:
    """A flat, typed region of memory: an argument, or an allocation of the function."""
    name: str
    shape: tuple[int, ...]
    dtype: str
    scope: str = "global"

    @property
    def size(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n

    def __repr__(self) -> str:
        return f"Buffer({self.name}, {self.shape}, {self.dtype})"


class Stmt:
    """Base of loop-IR statements."""

    def __str__(self) -> str:
        from .printer import stmt_str
        return stmt_str(self)


@dataclass(eq=False)
class For(Stmt):
    var: Var
    extent: Expr
    kind: ForKind
    body: Stmt
    pragmas: tuple = ()


@dataclass(eq=False)
class Store(Stmt):
    buffer: Buffer
    index: Expr
    value: Expr


@dataclass(eq=False)
class Allocate(Stmt):
    buffer: Buffer
    body: Stmt


@dataclass(eq=False)
class IfThenElse(Stmt):
    cond: Expr
    then: Stmt
    orelse: Stmt | None = None


@dataclass(eq=False)
class Seq(Stmt):
    stmts: list[Stmt] = field(default_factory=list)


@dataclass(eq=False)
class Comment(Stmt):
    """A marker kept for printing (e.g. which stage a nest produces); generates no code."""
    text: str


def seq(stmts: list[Stmt]) -> Stmt:
    """A Seq, flattened; a single statement stays itself."""
    flat: list[Stmt] = []
    for s in stmts:
        if isinstance(s, Seq):
            flat.extend(s.stmts)
        elif s is not None:
            flat.append(s)
    return flat[0] if len(flat) == 1 else Seq(flat)


def stmt_children(s: Stmt) -> list[Stmt]:
    """The statements directly inside s."""
    if isinstance(s, (For, Allocate)):
        return [s.body]
    if isinstance(s, IfThenElse):
        return [s.then] + ([s.orelse] if s.orelse is not None else [])
    if isinstance(s, Seq):
        return list(s.stmts)
    return []


def walk_stmt(s: Stmt) -> Iterator[Stmt]:
    """Every statement under s, pre-order."""
    stack = [s]
    while stack:
        x = stack.pop()
        yield x
        stack.extend(reversed(stmt_children(x)))


def stmt_exprs(s: Stmt) -> list[Expr]:
    """The expressions a statement holds itself (not those of nested statements)."""
    if isinstance(s, For):
        return [s.extent]
    if isinstance(s, Store):
        return [s.index, s.value]
    if isinstance(s, IfThenElse):
        return [s.cond]
    return []


def all_exprs(e: Expr) -> Iterator[Expr]:
    """Every sub-expression (pre-order, with repeats)."""
    stack = [e]
    while stack:
        x = stack.pop()
        yield x
        stack.extend(expr_children(x))


@dataclass(eq=False)
class LoweredFunc:
    """A lowered kernel: its name, argument buffers and loop-IR body."""
    name: str
    args: list[Buffer]
    body: Stmt
    attrs: dict = field(default_factory=dict)

    def __str__(self) -> str:
        from .printer import func_str
        return func_str(self)


# A parallel loop of at most this many iterations gives each its own slice of a hoisted buffer:
# the per-thread shares a kernel splits its work into (a buffer per thread, as the direct conv's
# padded input), not per-item work, whose large buffers would multiply the workspace.
PER_ITERATION_MAX = 64


def hoist_scratch(func: LoweredFunc, min_bytes: int) -> LoweredFunc:
    """func with its large allocations turned into extra arguments.

    A kernel allocates such buffers on the heap at every call; a model instead passes them in
    from its workspace, planned with the other intermediates (no allocation, no page faults per
    run).  A buffer allocated inside a parallel loop of a constant PER_ITERATION_MAX iterations or
    fewer becomes one buffer of that many slices (64-byte aligned), iteration i using slice i;
    inside longer parallel loops allocations stay.  The new arguments come last, in order;
    attrs["scratch"] counts them.
    """
    import numpy as np

    from .expr import Const
    hoisted: list[Buffer] = []

    def go(st: Stmt, par: tuple[Var, int] | None, in_parallel: bool) -> Stmt:
        if isinstance(st, Allocate):
            b = st.buffer
            item = np.dtype(b.dtype).itemsize
            nbytes = b.size * item
            if not in_parallel and nbytes > min_bytes:
                hoisted.append(b)
                return go(st.body, par, in_parallel)
            if par is not None and nbytes > min_bytes:
                var, n = par
                slot = -(-nbytes // 64) * 64 // item
                whole = Buffer(b.name, (n * slot,), b.dtype, b.scope)
                hoisted.append(whole)
                return rebase(go(st.body, par, in_parallel), b, whole, var * slot)
            return Allocate(b, go(st.body, par, in_parallel))
        if isinstance(st, For):
            if st.kind is ForKind.PARALLEL and not in_parallel:
                n = st.extent.value if isinstance(st.extent, Const) else None
                par = (st.var, n) if n is not None and n <= PER_ITERATION_MAX else None
            return For(st.var, st.extent, st.kind, go(st.body, par, in_parallel or st.kind is ForKind.PARALLEL),
                       st.pragmas)
        if isinstance(st, IfThenElse):
            return IfThenElse(st.cond, go(st.then, par, in_parallel),
                              None if st.orelse is None else go(st.orelse, par, in_parallel))
        if isinstance(st, Seq):
            return Seq([go(x, par, in_parallel) for x in st.stmts])
        return st
    body = go(func.body, None, False)
    if not hoisted:
        return func
    return LoweredFunc(func.name, list(func.args) + hoisted, body, dict(func.attrs, scratch=len(hoisted)))


def rebase(st: Stmt, old: Buffer, new: Buffer, offset: Expr) -> Stmt:
    """st with every load and store of buffer `old` made on `new`, `offset` elements further."""
    from .expr import Load, transform

    def e(x: Expr) -> Expr:
        return transform(x, lambda y: Load(new, y.index + offset, y.dtype)
                         if isinstance(y, Load) and y.buffer is old else None)
    if isinstance(st, Seq):
        return Seq([rebase(x, old, new, offset) for x in st.stmts])
    if isinstance(st, For):
        return For(st.var, e(st.extent), st.kind, rebase(st.body, old, new, offset), st.pragmas)
    if isinstance(st, Store):
        return Store(new if st.buffer is old else st.buffer,
                     e(st.index) + offset if st.buffer is old else e(st.index), e(st.value))
    if isinstance(st, IfThenElse):
        return IfThenElse(e(st.cond), rebase(st.then, old, new, offset),
                          None if st.orelse is None else rebase(st.orelse, old, new, offset))
    if isinstance(st, Allocate):
        return Allocate(st.buffer, rebase(st.body, old, new, offset))
    return st
