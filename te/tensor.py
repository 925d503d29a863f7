"""Tensors and the operations that produce them: placeholder, compute, reduce_axis."""
from __future__ import annotations

import enum
import inspect
from dataclasses import dataclass, field
from typing import Callable, Sequence

from .expr import (INDEX_DTYPE, Expr, Reduce, TensorLoad, Var, check_dtype, const, convert, walk,
                   widen)


class IterKind(enum.Enum):
    DATA_PAR = "data_par"
    REDUCE = "reduce"


@dataclass(eq=False)
class IterVar:
    """A loop variable of a stage; `dom` is (min, extent) for root and reduce axes, None for derived ones."""
    var: Var
    dom: tuple[int, int] | None
    kind: IterKind = IterKind.DATA_PAR

    @property
    def name(self) -> str:
        return self.var.name

    def __repr__(self) -> str:
        dom = f", dom={self.dom}" if self.dom else ""
        return f"IterVar({self.name}{dom}, {self.kind.value})"

    # iter vars are used inside expressions as their variable
    def __getattr__(self, item):
        if item.startswith("__"):
            raise AttributeError(item)
        return getattr(self.var, item)

    def __add__(self, o): return self.var + o
    def __radd__(self, o): return o + self.var
    def __sub__(self, o): return self.var - o
    def __rsub__(self, o): return o - self.var
    def __mul__(self, o): return self.var * o
    def __rmul__(self, o): return o * self.var
    def __floordiv__(self, o): return self.var // o
    def __mod__(self, o): return self.var % o
    def __lt__(self, o): return self.var < o
    def __le__(self, o): return self.var <= o
    def __gt__(self, o): return self.var > o
    def __ge__(self, o): return self.var >= o
    def __neg__(self): return -self.var
    __hash__ = object.__hash__


def _as_index(x) -> Expr:
    if isinstance(x, IterVar):
        return x.var
    e = convert(x, INDEX_DTYPE)
    if e.dtype == "bool" or e.dtype.startswith("float"):
        raise TypeError(f"index {e} has dtype {e.dtype}; indices must be integers")
    return e


class Operation:
    """Base of operations; an operation has a name and one or more output tensors."""
    name: str
    num_outputs: int = 1

    def output(self, i: int = 0) -> "Tensor":
        """The i-th output tensor."""
        return self.outputs[i]

    @property
    def input_tensors(self) -> list["Tensor"]:
        return []

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name})"


class PlaceholderOp(Operation):
    """An input of the computation: memory the caller passes in."""

    def __init__(self, name: str, shape: tuple[int, ...], dtype: str):
        self.name = name
        self.shape = shape
        self.dtype = dtype
        self.outputs = [Tensor(self, 0, shape, dtype)]


class ComputeOp(Operation):
    """A tensor defined pointwise by an expression of its axes (optionally a reduction)."""

    def __init__(self, name: str, shape: tuple[int, ...], axis: tuple[IterVar, ...],
                 body: tuple[Expr, ...], tag: str = "", attrs: dict | None = None):
        self.name = name
        self.shape = shape
        self.axis = axis
        self.body = body
        self.tag = tag
        self.attrs = dict(attrs or {})
        reduces = [b for b in body if isinstance(b, Reduce)]
        self.reduce_axis = tuple(reduces[0].axis) if reduces else ()
        self.num_outputs = len(body)
        self.outputs = [Tensor(self, i, shape, b.dtype) for i, b in enumerate(body)]

    @property
    def input_tensors(self) -> list["Tensor"]:
        seen: dict[int, Tensor] = {}
        for b in self.body:
            for x in walk(b):
                if isinstance(x, TensorLoad):
                    seen.setdefault(id(x.tensor), x.tensor)
        return list(seen.values())


class Tensor:
    """An n-dimensional value produced by an operation; index it to read an element."""

    def __init__(self, op: Operation, value_index: int, shape: tuple[int, ...], dtype: str):
        self.op = op
        self.value_index = value_index
        self.shape = tuple(shape)
        self.dtype = dtype

    @property
    def name(self) -> str:
        return self.op.name if self.op.num_outputs == 1 else f"{self.op.name}.v{self.value_index}"

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __getitem__(self, indices) -> TensorLoad:
        if not isinstance(indices, tuple):
            indices = (indices,)
        if len(indices) != len(self.shape):
            raise IndexError(f"tensor {self.name} has {len(self.shape)} dimensions "
                             f"{self.shape}, indexed with {len(indices)}")
        return TensorLoad(self, tuple(_as_index(i) for i in indices), self.dtype)

    def __repr__(self) -> str:
        return f"Tensor({self.name}, shape={self.shape}, dtype={self.dtype})"


_name_counts: dict[str, int] = {}


def _shape(shape) -> tuple[int, ...]:
    if isinstance(shape, int):
        shape = (shape,)
    out = []
    for s in shape:
        if hasattr(s, "item"):
            s = s.item()
        if not isinstance(s, int) or isinstance(s, bool) or s < 0:
            raise ValueError(f"shape {tuple(shape)}: every extent must be a non-negative int (static shapes)")
        out.append(s)
    return tuple(out)


def placeholder(shape, dtype: str = "float32", name: str = "placeholder") -> Tensor:
    """An input tensor of the given static shape and dtype."""
    return PlaceholderOp(name, _shape(shape), check_dtype(dtype)).output(0)


def reduce_axis(dom, name: str = "rv") -> IterVar:
    """A reduction axis over dom = (min, max_exclusive) or an extent."""
    if isinstance(dom, int):
        dom = (0, dom)
    lo, hi = (int(d) for d in dom)
    if hi <= lo:
        raise ValueError(f"reduce_axis {name}: empty range {dom}")
    return IterVar(Var(name), (lo, hi - lo), IterKind.REDUCE)


def _axis_names(fcompute: Callable, ndim: int) -> list[str]:
    try:
        params = list(inspect.signature(fcompute).parameters.values())
    except (TypeError, ValueError):
        params = []
    if params and params[0].kind is inspect.Parameter.VAR_POSITIONAL:
        return [f"i{d}" for d in range(ndim)]
    names = [p.name for p in params]
    if len(names) != ndim:
        raise ValueError(f"compute of shape with {ndim} dimensions needs a function of {ndim} "
                         f"arguments, got {len(names)} ({', '.join(names)})")
    return names


def compute(shape, fcompute: Callable, name: str = "compute", tag: str = "",
            attrs: dict | None = None):
    """Define a tensor elementwise: out[i, j, ...] = fcompute(i, j, ...). Returns a Tensor (or a list for tuples)."""
    shape = _shape(shape)
    names = _axis_names(fcompute, len(shape))
    axis = tuple(IterVar(Var(n), (0, s)) for n, s in zip(names, shape))
    result = fcompute(*[a.var for a in axis])
    bodies = tuple(result) if isinstance(result, (tuple, list)) else (result,)
    bodies = tuple(convert(b) for b in bodies)
    _check_body(name, bodies)
    op = ComputeOp(name, shape, axis, bodies, tag, attrs)
    return op.outputs if len(bodies) > 1 else op.output(0)


def _check_body(name: str, bodies: Sequence[Expr]) -> None:
    for b in bodies:
        for x in walk(b):
            if isinstance(x, Reduce) and x is not b:
                raise ValueError(f"compute {name}: a reduction (te.sum/max/min) must be the whole "
                                 "body, not part of a larger expression; compute it in its own stage")
    reduces = [b for b in bodies if isinstance(b, Reduce)]
    if reduces and len(bodies) > 1:
        raise ValueError(f"compute {name}: several outputs are supported for elementwise bodies only")


@dataclass(eq=False)
class CommReducer:
    """A commutative reducer: combine(x, y) and the identity element per dtype."""
    name: str
    combine: Callable[[Expr, Expr], Expr]
    identity: Callable[[str], Expr]
    kind: str = field(default="custom")

    def __call__(self, expr, axis, where=None) -> Reduce:
        expr = widen(convert(expr))          # float16/bfloat16 accumulate in float32
        axes = tuple(axis) if isinstance(axis, (list, tuple)) else (axis,)
        for a in axes:
            if not isinstance(a, IterVar) or a.kind is not IterKind.REDUCE:
                raise TypeError(f"{self.name}: axis {a!r} is not a te.reduce_axis")
        cond = None if where is None else convert(where)
        return Reduce(self, expr, axes, cond, expr.dtype)


def comm_reducer(fcombine: Callable, fidentity: Callable, name: str = "reduce") -> CommReducer:
    """Make a custom commutative reducer, e.g. a product: comm_reducer(lambda x, y: x*y, lambda t: const(1, t))."""
    return CommReducer(name, fcombine, lambda dt: convert(fidentity(dt), dt))
