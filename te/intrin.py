"""User-facing expression helpers: math functions, select, min/max and the standard reducers."""
from __future__ import annotations

from functools import reduce as _fold

from .expr import (BinOp, BinOpKind, Call, Expr, ExprLike, LogicKind, MathFunc, Select, as_bool,
                   binary, cast, const, convert, is_float, logic, max_value, min_value, widen, _unify)
from .tensor import CommReducer, IterVar


def _math(func: MathFunc, x: ExprLike) -> Expr:
    x = widen(convert(x, "float32"))
    if not is_float(x.dtype):
        if func is MathFunc.ABS:
            return Call(func, (x,), x.dtype)
        x = cast("float32", x)
    return Call(func, (x,), x.dtype)


def exp(x): """e ** x.""";                  return _math(MathFunc.EXP, x)
def log(x): """Natural logarithm.""";       return _math(MathFunc.LOG, x)
def sqrt(x): """Square root.""";            return _math(MathFunc.SQRT, x)
def tanh(x): """Hyperbolic tangent.""";     return _math(MathFunc.TANH, x)
def sigmoid(x): """1 / (1 + exp(-x)).""";   return _math(MathFunc.SIGMOID, x)
def erf(x): """The Gauss error function."""; return _math(MathFunc.ERF, x)
def abs(x): """Absolute value.""";          return _math(MathFunc.ABS, x)   # noqa: A001
def floor(x): """Round down.""";            return _math(MathFunc.FLOOR, x)
def ceil(x): """Round up.""";               return _math(MathFunc.CEIL, x)
def round(x): """Round half to even.""";    return _math(MathFunc.ROUND, x)  # noqa: A001
def sin(x): """Sine.""";                    return _math(MathFunc.SIN, x)
def cos(x): """Cosine.""";                  return _math(MathFunc.COS, x)


def power(x, y) -> Expr:
    """x ** y (floats)."""
    x, y = _unify(x, y)
    if not is_float(x.dtype):
        x, y = cast("float32", x), cast("float32", y)
    return Call(MathFunc.POW, (x, y), x.dtype)


def ldexp(x, n) -> Expr:
    """x * 2**n for a float n that holds an integer in [-252, 254] (floats; other n: undefined).

    Built from exponent bits as x * 2**(n - n // 2) * 2**(n // 2), two normal powers of two, so it
    vectorizes on every target: pow(2, n), which LLVM also turns into ldexp, is one vscalefps on
    AVX-512 but one libm ldexpf call per lane elsewhere (fastmath.exp_poly's scale on AVX2).
    Overflow gives inf; a result below the normal range is rounded twice (within one ulp of the
    denormal)."""
    x, n = _unify(x, n)
    if not is_float(x.dtype):
        x, n = cast("float32", x), cast("float32", n)
    return Call(MathFunc.LDEXP, (x, n), x.dtype)


def rsqrt(x) -> Expr:
    """1 / sqrt(x)."""
    x = convert(x, "float32")
    return const(1.0, x.dtype) / sqrt(x)


def if_then_else(cond, t, f) -> Expr:
    """cond ? t : f, elementwise."""
    t, f = _unify(t, f)
    return Select(as_bool(cond), t, f, t.dtype)


select = if_then_else


def all(*conds) -> Expr:  # noqa: A001
    """Logical and of all conditions."""
    return _fold(lambda a, b: logic(LogicKind.AND, a, b), [as_bool(convert(c)) for c in conds])


def any(*conds) -> Expr:  # noqa: A001
    """Logical or of any condition."""
    return _fold(lambda a, b: logic(LogicKind.OR, a, b), [as_bool(convert(c)) for c in conds])


class _Reducer(CommReducer):
    """A standard reducer that, called with two values instead of an axis, combines them elementwise."""

    def __call__(self, expr, axis=None, where=None):
        is_axis = isinstance(axis, IterVar) or (isinstance(axis, (list, tuple)) and axis
                                                and isinstance(axis[0], IterVar))
        if not is_axis:
            if axis is None:
                raise TypeError(f"te.{self.name} needs axis= (a reduce_axis) or a second value")
            a, b = _unify(expr, axis)
            return self.combine(a, b)
        return super().__call__(expr, axis, where)


sum = _Reducer("sum", lambda x, y: x + y, lambda dt: const(0, dt), "sum")  # noqa: A001
max = _Reducer("max", lambda x, y: binary(BinOpKind.MAX, x, y), min_value, "max")  # noqa: A001
min = _Reducer("min", lambda x, y: binary(BinOpKind.MIN, x, y), max_value, "min")  # noqa: A001
prod = _Reducer("prod", lambda x, y: x * y, lambda dt: const(1, dt), "prod")


def max_of(a, b) -> Expr:
    """Elementwise maximum of two values."""
    return binary(BinOpKind.MAX, a, b)


def min_of(a, b) -> Expr:
    """Elementwise minimum of two values."""
    return binary(BinOpKind.MIN, a, b)


__all__ = ["exp", "log", "sqrt", "tanh", "sigmoid", "erf", "abs", "floor", "ceil", "round", "sin",
           "cos", "power", "rsqrt", "if_then_else", "select", "all", "any", "sum", "max", "min",
           "prod", "max_of", "min_of", "BinOp"]
