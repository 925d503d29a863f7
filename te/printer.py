"""Readable text for expressions and loop nests (what `print(te.lower(...))` shows)."""
from __future__ import annotations

from .expr import (BinOp, BinOpKind, Call, Cast, Cmp, Const, Expr, Load, Logic, Not, Reduce,
                   Select, TensorLoad, Var)

_PREC = {BinOpKind.ADD: 4, BinOpKind.SUB: 4, BinOpKind.MUL: 5, BinOpKind.DIV: 5,
         BinOpKind.FLOORDIV: 5, BinOpKind.FLOORMOD: 5}


def _prec(e: Expr) -> int:
    if isinstance(e, BinOp):
        return _PREC.get(e.op, 9)
    if isinstance(e, Cmp):
        return 3
    if isinstance(e, Logic):
        return 2
    return 9


def expr_str(e: Expr, parent_prec: int = 0) -> str:
    """Infix text of an expression, with only the parentheses it needs."""
    if isinstance(e, Const):
        if e.dtype == "float32":
            return f"{e.value!r}f"
        return repr(e.value)
    if isinstance(e, Var):
        return e.name
    if isinstance(e, BinOp):
        if e.op in (BinOpKind.MIN, BinOpKind.MAX):
            return f"{e.op.value}({expr_str(e.a)}, {expr_str(e.b)})"
        p = _prec(e)
        s = f"{expr_str(e.a, p)} {e.op.value} {expr_str(e.b, p + 1)}"
        return f"({s})" if p < parent_prec else s
    if isinstance(e, (Cmp, Logic)):
        p = _prec(e)
        s = f"{expr_str(e.a, p + 1)} {e.op.value} {expr_str(e.b, p + 1)}"
        return f"({s})" if p < parent_prec else s
    if isinstance(e, Not):
        return f"!{expr_str(e.a, 9)}"
    if isinstance(e, Select):
        return f"select({expr_str(e.cond)}, {expr_str(e.t)}, {expr_str(e.f)})"
    if isinstance(e, Cast):
        return f"{e.dtype}({expr_str(e.value)})"
    if isinstance(e, Call):
        return f"{e.func.value}({', '.join(expr_str(a) for a in e.args)})"
    if isinstance(e, TensorLoad):
        return f"{e.tensor.name}[{', '.join(expr_str(i) for i in e.indices)}]"
    if isinstance(e, Load):
        return f"{e.buffer.name}[{expr_str(e.index)}]"
    if isinstance(e, Reduce):
        axes = ", ".join(f"{a.name} in [{a.dom[0]}, {a.dom[0] + a.dom[1]})" for a in e.axis)
        where = f", where={expr_str(e.condition)}" if e.condition is not None else ""
        return f"{e.combiner.name}({expr_str(e.source)}, axis=[{axes}]{where})"
    return f"<{type(e).__name__}>"


def stmt_str(s, indent: int = 0) -> str:
    """Indented text of a loop-IR statement."""
    from .schedule import ForKind
    from .stmt import Allocate, Comment, For, IfThenElse, Seq, Store
    pad = "  " * indent
    if isinstance(s, Seq):
        return "".join(stmt_str(x, indent) for x in s.stmts)
    if isinstance(s, For):
        kind = "" if s.kind is ForKind.SERIAL else f"  # {s.kind.value}"
        prag = "".join(f" pragma({k}={v})" for k, v in s.pragmas)
        head = f"{pad}for {s.var.name} in range({expr_str(s.extent)}):{kind}{prag}\n"
        return head + stmt_str(s.body, indent + 1)
    if isinstance(s, Store):
        return f"{pad}{s.buffer.name}[{expr_str(s.index)}] = {expr_str(s.value)}\n"
    if isinstance(s, Allocate):
        b = s.buffer
        head = f"{pad}allocate {b.name}: {b.dtype}[{b.size}]  # {b.scope}, shape {b.shape}\n"
        return head + stmt_str(s.body, indent)
    if isinstance(s, IfThenElse):
        out = f"{pad}if {expr_str(s.cond)}:\n" + stmt_str(s.then, indent + 1)
        if s.orelse is not None:
            out += f"{pad}else:\n" + stmt_str(s.orelse, indent + 1)
        return out
    if isinstance(s, Comment):
        return f"{pad}# {s.text}\n"
    return f"{pad}<{type(s).__name__}>\n"


def func_str(f) -> str:
    """The whole lowered function: signature then body."""
    args = ", ".join(f"{b.name}: {b.dtype}{list(b.shape)}" for b in f.args)
    return f"def {f.name}({args}):\n" + stmt_str(f.body, 1)
