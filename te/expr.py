"""Expression IR: small frozen nodes with operator overloading, in the style of TVM's tir.

Every node carries its dtype.  Python numbers mix freely with expressions and take the
expression's dtype.  `==` on expressions builds a comparison node whose truth value (for
dict and list look-ups only) is object identity, as in TVM.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Union

from .runtime import BYTE_CODED

# float16 and bfloat16 are storage types: tensors hold them, loads, stores and casts convert
# them, and arithmetic on them is done in float32 (binary ops, comparisons, math functions and
# reductions widen their operands), so a kernel computes in fp32 and converts at its edges.
STORAGE_FLOATS = ("float16", "bfloat16")
FLOAT_DTYPES = ("float32", "float64") + STORAGE_FLOATS
INT_DTYPES = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")
# Byte-coded types (te/native_call.py: float8, float4, int4, int2..., one element per byte holding its
# bit pattern): te computes nothing on them; a value of one casts to and from uint8 only (its
# bits), and te.ops.lowbit converts the bits to and from numbers.
DTYPES = FLOAT_DTYPES + INT_DTYPES + ("bool",) + BYTE_CODED
INDEX_DTYPE = "int64"

DTYPE_BITS = {"bool": 1, "int8": 8, "uint8": 8, "int16": 16, "uint16": 16, "int32": 32,
              "uint32": 32, "int64": 64, "uint64": 64, "float32": 32, "float64": 64,
              "float16": 16, "bfloat16": 16, **{t: 8 for t in BYTE_CODED}}


def is_float(dtype: str) -> bool:
    """True for floating-point dtypes."""
    return dtype in FLOAT_DTYPES


def is_int(dtype: str) -> bool:
    """True for integer dtypes (signed or unsigned, not bool)."""
    return dtype in INT_DTYPES


def is_unsigned(dtype: str) -> bool:
    """True for unsigned integer dtypes, bool and the byte-coded types (their bits are unsigned)."""
    return dtype.startswith("uint") or dtype == "bool" or dtype in BYTE_CODED


def widen(e: "Expr") -> "Expr":
    """e in float32 when it is a storage float (float16, bfloat16), else e: what arithmetic reads."""
    return cast("float32", e) if e.dtype in STORAGE_FLOATS else e


def check_dtype(dtype: str) -> str:
    """Return dtype if tilewise supports it, else raise a ValueError listing the supported ones."""
    dtype = str(dtype)
    if dtype not in DTYPES:
        raise ValueError(f"unsupported dtype {dtype!r}; tilewise supports {', '.join(DTYPES)}")
    return dtype


class BinOpKind(enum.Enum):
    ADD = "+"
    SUB = "-"
    MUL = "*"
    DIV = "/"          # true division (floats); floor division for integers
    FLOORDIV = "//"
    FLOORMOD = "%"
    MIN = "min"
    MAX = "max"


class CmpKind(enum.Enum):
    EQ = "=="
    NE = "!="
    LT = "<"
    LE = "<="
    GT = ">"
    GE = ">="


class LogicKind(enum.Enum):
    AND = "&&"
    OR = "||"


class MathFunc(enum.Enum):
    EXP = "exp"
    LOG = "log"
    SQRT = "sqrt"
    TANH = "tanh"
    SIGMOID = "sigmoid"
    ERF = "erf"
    ABS = "abs"
    FLOOR = "floor"
    CEIL = "ceil"
    ROUND = "round"
    POW = "pow"
    LDEXP = "ldexp"     # x * 2**n, n a float holding an integer (te.intrin.ldexp)
    SIN = "sin"
    COS = "cos"


ExprLike = Union["Expr", int, float, bool]


class Expr:
    """Base of all expression nodes; gives them arithmetic and comparison operators."""

    __slots__ = ()
    dtype: str
    __hash__ = object.__hash__

    def __add__(self, o): return binary(BinOpKind.ADD, self, o)
    def __radd__(self, o): return binary(BinOpKind.ADD, o, self)
    def __sub__(self, o): return binary(BinOpKind.SUB, self, o)
    def __rsub__(self, o): return binary(BinOpKind.SUB, o, self)
    def __mul__(self, o): return binary(BinOpKind.MUL, self, o)
    def __rmul__(self, o): return binary(BinOpKind.MUL, o, self)
    def __truediv__(self, o): return binary(BinOpKind.DIV, self, o)
    def __rtruediv__(self, o): return binary(BinOpKind.DIV, o, self)
    def __floordiv__(self, o): return binary(BinOpKind.FLOORDIV, self, o)
    def __rfloordiv__(self, o): return binary(BinOpKind.FLOORDIV, o, self)
    def __mod__(self, o): return binary(BinOpKind.FLOORMOD, self, o)
    def __rmod__(self, o): return binary(BinOpKind.FLOORMOD, o, self)
    def __neg__(self): return binary(BinOpKind.SUB, const(0, self.dtype), self)
    def __lt__(self, o): return compare(CmpKind.LT, self, o)
    def __le__(self, o): return compare(CmpKind.LE, self, o)
    def __gt__(self, o): return compare(CmpKind.GT, self, o)
    def __ge__(self, o): return compare(CmpKind.GE, self, o)
    def __eq__(self, o): return compare(CmpKind.EQ, self, o)  # type: ignore[override]
    def __ne__(self, o): return compare(CmpKind.NE, self, o)  # type: ignore[override]
    def __and__(self, o): return logic(LogicKind.AND, self, o)
    def __rand__(self, o): return logic(LogicKind.AND, o, self)
    def __or__(self, o): return logic(LogicKind.OR, self, o)
    def __ror__(self, o): return logic(LogicKind.OR, o, self)
    def __invert__(self): return Not(as_bool(self))

    def __bool__(self):
        raise TypeError("a symbolic expression has no Python truth value; "
                        "use te.if_then_else / te.all / te.any to branch on it")

    def astype(self, dtype: str) -> "Expr":
        """Cast this expression to dtype."""
        return cast(dtype, self)

    def same_as(self, other: Any) -> bool:
        """Identity comparison (what `is` means for IR nodes)."""
        return self is other

    def __str__(self) -> str:
        from .printer import expr_str
        return expr_str(self)

    __repr__ = __str__


@dataclass(frozen=True, eq=False, repr=False)
class Const(Expr):
    value: Any
    dtype: str


@dataclass(frozen=True, eq=False, repr=False)
class Var(Expr):
    name: str
    dtype: str = INDEX_DTYPE


@dataclass(frozen=True, eq=False, repr=False)
class BinOp(Expr):
    op: BinOpKind
    a: Expr
    b: Expr
    dtype: str


@dataclass(frozen=True, eq=False, repr=False)
class Cmp(Expr):
    op: CmpKind
    a: Expr
    b: Expr
    dtype: str = "bool"

    def __bool__(self):
        # Only identity: lets IR nodes be dict keys and list members.
        if self.op is CmpKind.EQ:
            return self.a is self.b
        if self.op is CmpKind.NE:
            return self.a is not self.b
        return Expr.__bool__(self)


@dataclass(frozen=True, eq=False, repr=False)
class Logic(Expr):
    op: LogicKind
    a: Expr
    b: Expr
    dtype: str = "bool"


@dataclass(frozen=True, eq=False, repr=False)
class Not(Expr):
    a: Expr
    dtype: str = "bool"


@dataclass(frozen=True, eq=False, repr=False)
class Select(Expr):
    cond: Expr
    t: Expr
    f: Expr
    dtype: str


@dataclass(frozen=True, eq=False, repr=False)
class Cast(Expr):
    value: Expr
    dtype: str


@dataclass(frozen=True, eq=False, repr=False)
class Call(Expr):
    func: MathFunc
    args: tuple
    dtype: str


@dataclass(frozen=True, eq=False, repr=False)
class TensorLoad(Expr):
    """Read of a te tensor at (multi-dimensional) indices; replaced by Load when lowering."""
    tensor: Any
    indices: tuple
    dtype: str


@dataclass(frozen=True, eq=False, repr=False)
class Load(Expr):
    """Read of a flat buffer in the loop IR."""
    buffer: Any
    index: Expr
    dtype: str


@dataclass(frozen=True, eq=False, repr=False)
class Reduce(Expr):
    """A commutative reduction over reduce axes; only allowed at the top of a compute body."""
    combiner: Any
    source: Expr
    axis: tuple
    condition: Expr | None
    dtype: str


# ---------------------------------------------------------------- constructors

def const(value: Any, dtype: str | None = None) -> Const:
    """A constant; dtype defaults to int64 for ints, float32 for floats, bool for bools."""
    if dtype is None:
        if isinstance(value, bool):
            dtype = "bool"
        elif isinstance(value, int):
            dtype = INDEX_DTYPE
        elif isinstance(value, float):
            dtype = "float32"
        else:
            raise TypeError(f"cannot make a constant from {value!r} ({type(value).__name__})")
    dtype = check_dtype(dtype)
    if dtype == "bool":
        value = bool(value)
    elif is_int(dtype):
        value = int(value)
    else:
        value = float(value)
    return Const(value, dtype)


def convert(value: ExprLike, dtype: str | None = None) -> Expr:
    """Turn a Python number into a Const (of dtype when given); leave expressions alone."""
    if isinstance(value, Expr):
        return value
    if isinstance(getattr(value, "var", None), Var):       # an IterVar stands for its variable
        return value.var
    if hasattr(value, "dtype") and hasattr(value, "item"):      # numpy scalar
        return const(value.item(), dtype or str(value.dtype))
    if isinstance(value, (bool, int, float)):
        if dtype is not None and isinstance(value, float) and not is_float(dtype):
            dtype = "float32"
        return const(value, dtype)
    if hasattr(value, "op") and hasattr(value, "shape"):
        raise TypeError(f"tensor {getattr(value, 'name', value)!r} used as a value; index it, e.g. T[i, j]")
    raise TypeError(f"cannot use {value!r} ({type(value).__name__}) in an expression")


def _wider(a: str, b: str) -> str:
    """numpy's promotion of two dtypes (symmetric)."""
    if a == b:
        return a
    if is_float(a) != is_float(b):
        return a if is_float(a) else b
    if a == "bool":
        return b
    if b == "bool":
        return a
    if is_float(a):
        return a if DTYPE_BITS[a] >= DTYPE_BITS[b] else b
    ua, ub = is_unsigned(a), is_unsigned(b)
    if ua == ub:
        return a if DTYPE_BITS[a] >= DTYPE_BITS[b] else b
    signed, unsigned = (b, a) if ua else (a, b)
    if DTYPE_BITS[signed] > DTYPE_BITS[unsigned]:
        return signed
    return {8: "int16", 16: "int32", 32: "int64", 64: "int64"}[DTYPE_BITS[unsigned]]


def _unify(a: ExprLike, b: ExprLike) -> tuple[Expr, Expr]:
    a = a.var if isinstance(getattr(a, "var", None), Var) else a
    b = b.var if isinstance(getattr(b, "var", None), Var) else b
    for x in (a, b):
        if isinstance(x, Expr) and x.dtype in BYTE_CODED:
            raise ValueError(f"{x.dtype} has no arithmetic or comparisons in te (it holds bit patterns); "
                             "convert it with te.ops.lowbit.convert first")
    if isinstance(a, Expr) and not isinstance(b, Expr):
        if isinstance(b, float) and not is_float(a.dtype):
            return cast("float32", a), const(b, "float32")
        a = widen(a)
        return a, convert(b, a.dtype)
    if isinstance(b, Expr) and not isinstance(a, Expr):
        if isinstance(a, float) and not is_float(b.dtype):
            return const(a, "float32"), cast("float32", b)
        b = widen(b)
        return convert(a, b.dtype), b
    a, b = convert(a), convert(b)
    dt = _wider(a.dtype, b.dtype)
    if dt in STORAGE_FLOATS:
        dt = "float32"
    return cast(dt, a), cast(dt, b)


def binary(op: BinOpKind, a: ExprLike, b: ExprLike) -> Expr:
    """Build a binary arithmetic node, promoting operand dtypes."""
    a, b = _unify(a, b)
    if a.dtype == "bool":
        a, b = cast("int32", a), cast("int32", b)
    if op is BinOpKind.DIV and not is_float(a.dtype):
        op = BinOpKind.FLOORDIV
    return BinOp(op, a, b, a.dtype)


def compare(op: CmpKind, a: ExprLike, b: ExprLike) -> Expr:
    """Build a comparison node (dtype bool)."""
    a, b = _unify(a, b)
    return Cmp(op, a, b)


def as_bool(x: ExprLike) -> Expr:
    """Convert to a bool expression (non-zero is true)."""
    x = convert(x, "bool") if not isinstance(x, Expr) else x
    if x.dtype == "bool":
        return x
    return Cmp(CmpKind.NE, x, const(0, x.dtype))


def logic(op: LogicKind, a: ExprLike, b: ExprLike) -> Expr:
    """Build a logical and/or node."""
    return Logic(op, as_bool(a), as_bool(b))


def cast(dtype: str, value: ExprLike) -> Expr:
    """Cast value to dtype (a no-op when it already has it)."""
    dtype = check_dtype(dtype)
    if not isinstance(value, Expr):
        return convert(value, dtype) if not isinstance(value, float) or is_float(dtype) else const(value, dtype)
    if value.dtype == dtype:
        return value
    if (dtype in BYTE_CODED or value.dtype in BYTE_CODED) and "uint8" not in (dtype, value.dtype):
        raise ValueError(f"cannot cast {value.dtype} to {dtype}: a byte-coded type casts to and from its bits "
                         "(uint8) only; convert its values with te.ops.lowbit.convert")
    if isinstance(value, Const):
        return const(value.value, dtype)
    if (dtype in STORAGE_FLOATS or value.dtype in STORAGE_FLOATS) and "float32" not in (dtype, value.dtype):
        # the code generator converts storage floats to and from float32 only
        return Cast(cast("float32", value), dtype)
    return Cast(value, dtype)


def min_value(dtype: str) -> Const:
    """The smallest value of dtype (-inf for floats)."""
    if is_float(dtype):
        return const(float("-inf"), dtype)
    if dtype == "bool":
        return const(False, dtype)
    bits = DTYPE_BITS[dtype]
    return const(0 if is_unsigned(dtype) else -(1 << (bits - 1)), dtype)


def max_value(dtype: str) -> Const:
    """The largest value of dtype (+inf for floats)."""
    if is_float(dtype):
        return const(float("inf"), dtype)
    if dtype == "bool":
        return const(True, dtype)
    bits = DTYPE_BITS[dtype]
    return const((1 << bits) - 1 if is_unsigned(dtype) else (1 << (bits - 1)) - 1, dtype)


# ---------------------------------------------------------------- tree walking

# Tree walks run a million times in a model's lowering and codegen (Inception-v1: 300k children()
# calls), so the node kinds dispatch on their exact type through a table rather than an isinstance
# chain: lowering a light model took 15% less CPU time.  No class derives from a node kind, so
# type(e) names its kind; a leaf (Const, Var) has no entry.
_CHILDREN = {
    BinOp: lambda e: (e.a, e.b), Cmp: lambda e: (e.a, e.b), Logic: lambda e: (e.a, e.b),
    Not: lambda e: (e.a,), Select: lambda e: (e.cond, e.t, e.f), Cast: lambda e: (e.value,),
    Call: lambda e: e.args, TensorLoad: lambda e: e.indices, Load: lambda e: (e.index,),
    Reduce: lambda e: (e.source,) + ((e.condition,) if e.condition is not None else ()),
}
_REBUILD = {
    BinOp: lambda e, k: BinOp(e.op, k[0], k[1], e.dtype), Cmp: lambda e, k: Cmp(e.op, k[0], k[1]),
    Logic: lambda e, k: Logic(e.op, k[0], k[1]), Not: lambda e, k: Not(k[0]),
    Select: lambda e, k: Select(k[0], k[1], k[2], e.dtype), Cast: lambda e, k: Cast(k[0], e.dtype),
    Call: lambda e, k: Call(e.func, tuple(k), e.dtype),
    TensorLoad: lambda e, k: TensorLoad(e.tensor, tuple(k), e.dtype),
    Load: lambda e, k: Load(e.buffer, k[0], e.dtype),
    Reduce: lambda e, k: Reduce(e.combiner, k[0], e.axis, k[1] if len(k) > 1 else None, e.dtype),
}


def _leaf(e: Expr) -> tuple:
    return ()


def children(e: Expr) -> tuple:
    """The sub-expressions of a node, in a fixed order."""
    return _CHILDREN.get(type(e), _leaf)(e)


def _same(kids, old) -> bool:
    """Whether every new child is the old one (so the node need not be rebuilt)."""
    for k, o in zip(kids, old):
        if k is not o:
            return False
    return True


def rebuild(e: Expr, kids: tuple) -> Expr:
    """A copy of e with new children (e itself when nothing changed)."""
    if _same(kids, children(e)):
        return e
    make = _REBUILD.get(type(e))
    if make is None:
        raise TypeError(f"rebuild: unknown node {type(e).__name__}")
    return make(e, kids)


def transform(e: Expr, fn) -> Expr:
    """Bottom-up rewrite: fn(node_with_rewritten_children) -> node or None (keep)."""
    memo: dict[int, Expr] = {}

    def go(x: Expr) -> Expr:
        key = id(x)
        out = memo.get(key)
        if out is not None:
            return out
        old = children(x)
        if old:
            kids = [go(k) for k in old]
            new = x if _same(kids, old) else _REBUILD[type(x)](x, kids)
        else:
            new = x
        out = fn(new)
        out = new if out is None else out
        memo[key] = out
        return out
    return go(e)


def substitute(e: Expr, mapping: dict) -> Expr:
    """Replace Vars by expressions (mapping keyed by Var)."""
    if not mapping:
        return e
    return transform(e, lambda x: mapping.get(x) if isinstance(x, Var) else None)


def walk(e: Expr, kids=children):
    """Yield every node of the tree (pre-order; shared nodes once); `kids` picks the
    sub-expressions to descend into (all of them by default)."""
    seen: set[int] = set()
    stack = [e]
    while stack:
        x = stack.pop()
        if id(x) in seen:
            continue
        seen.add(id(x))
        yield x
        stack.extend(kids(x))


def free_vars(e: Expr) -> set:
    """The Vars an expression reads."""
    return {x for x in walk(e) if isinstance(x, Var)}
