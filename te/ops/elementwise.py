"""Elementwise operators: numpy-broadcasting binary ops, unary math, casts and activations.

Binary operators follow numpy's broadcasting rules and accept Python numbers for either
operand; they are tagged "broadcast".  Unary operators and activations are tagged
"elemwise".  Both use the injective schedule (te/ops/injective.py), which inlines chains of
them into one loop nest.  exp, tanh, erf and sigmoid use the vectorizable approximations of
te/ops/fastmath.py.

Floating-point `te.max_of(a, b)` is `a > b ? a : b` in the code generator (as x86's maxps): a
NaN in the first operand yields the second one.  The activations put their constant first
(`max_of(0, x)`), so a NaN input stays NaN at no extra cost, as in ONNX Runtime; maximum and
minimum propagate a NaN from either operand, as numpy's do.  Integer division is floor
division (numpy's `//`), as in te; trunc_divide and fmod round toward zero (C, ONNX Div and
Mod with fmod=1); mod is numpy's for floats too; power is exact on integers.
"""
from __future__ import annotations

import math
from typing import Callable, Union

import te
from te.expr import BYTE_CODED

from .fastmath import fast_erf, fast_exp, fast_sigmoid, fast_tanh

Operand = Union[te.Tensor, int, float, bool]
SQRT1_2 = 0.7071067811865476
SQRT_2_OVER_PI = 0.7978845608028654


# ---------------------------------------------------------------- broadcasting

def broadcast_shape(*shapes: tuple) -> tuple[int, ...]:
    """The numpy broadcast of shapes; raises ValueError naming them when they do not broadcast."""
    ndim = max((len(s) for s in shapes), default=0)
    out = []
    for d in range(ndim):
        dims = {s[len(s) - ndim + d] for s in shapes if len(s) - ndim + d >= 0}
        dims.discard(1)
        if len(dims) > 1:
            raise ValueError(f"shapes {', '.join(map(str, shapes))} do not broadcast (axis {d - ndim})")
        out.append(dims.pop() if dims else 1)
    return tuple(out)


def _shape(x: Operand) -> tuple:
    return tuple(x.shape) if isinstance(x, te.Tensor) else ()


def broadcast_at(x: Operand, out_shape: tuple, indices: tuple):
    """The element of x (tensor or number) that numpy broadcasting pairs with out[indices].

    A dimension of 1 is read at 0 where out's is wider, and at out's own index where out's is 1
    too: the same element, but the index stays the output's loop variable, so a producer
    computed at a tile of this op's loops (an int8 conv's accumulator on a 1 x 1 map, fused with
    its requantising epilogue) is still bounded by the tile, not by one constant element."""
    if not isinstance(x, te.Tensor):
        return x
    lead = len(out_shape) - x.ndim
    return x[tuple(0 if n == 1 and out_shape[lead + d] != 1 else indices[lead + d] for d, n in enumerate(x.shape))]


def _binary(name: str, fn: Callable, tag: str = "broadcast") -> Callable:
    def op(a: Operand, b: Operand, name: str = name) -> te.Tensor:
        if not isinstance(a, te.Tensor) and not isinstance(b, te.Tensor):
            raise TypeError(f"{name}: at least one operand must be a tensor")
        shape = broadcast_shape(_shape(a), _shape(b))
        return te.compute(shape, lambda *i: fn(broadcast_at(a, shape, i), broadcast_at(b, shape, i)),
                          name=name, tag=tag)
    op.__name__ = name
    op.__doc__ = f"Elementwise {name} of two tensors (or a tensor and a number), numpy broadcasting."
    return op


def _floor_div(a, b):
    q = te.expr.convert(a) / b if isinstance(a, (int, float)) else a / b
    return te.floor(q) if te.expr.is_float(q.dtype) else q


def _signs_differ(a, b):
    return te.any(te.all(a < 0, b > 0), te.all(a > 0, b < 0))


def _trunc_div(a, b):
    """Integer division rounding toward zero (C, ONNX Div); true division for floats."""
    a, b = te.expr._unify(a, b)
    if te.expr.is_float(a.dtype) or te.expr.is_unsigned(a.dtype):
        return a / b
    q = a // b                      # floor; the remainder tells whether it was inexact
    return te.if_then_else(te.all(a % b != 0, _signs_differ(a, b)), q + 1, q)


def _trunc(v):
    return te.if_then_else(v < 0.0, te.ceil(v), te.floor(v))


def _fmod(a, b):
    """C's fmod: the remainder of the division rounded toward zero, with the sign of a."""
    a, b = te.expr._unify(a, b)
    dt = a.dtype
    if not te.expr.is_float(dt):
        if te.expr.is_unsigned(dt):
            return a % b
        r = a % b                   # floor remainder: the sign of b
        return te.if_then_else(te.all(r != 0, _signs_differ(a, b)), r - b, r)
    # float32 in float64: the quotient's rounding cannot pick a wrong integer part; the
    # product is exact as an FMA (a + (-t) * b); one step corrects a float64 quotient's rounding
    wa, wb = (a.astype("float64"), b.astype("float64")) if dt == "float32" else (a, b)
    r = wa + (-_trunc(wa / wb)) * wb
    step = te.if_then_else(wa < 0.0, -te.abs(wb), te.abs(wb))
    r = te.if_then_else(te.all(r != 0.0, te.any(te.all(r < 0.0, wa > 0.0), te.all(r > 0.0, wa < 0.0))),
                        r + step, r)
    r = te.if_then_else(te.abs(r) >= te.abs(wb), r - step, r)
    # a finite divided by an infinite b leaves a (the product above would be inf * 0)
    r = te.if_then_else(te.all(te.abs(wb) == math.inf, te.abs(wa) < math.inf), wa, r)
    return r.astype(dt) if dt == "float32" else r


def _mod(a, b):
    """numpy's mod (Python's %): the remainder of floor division, with the sign of b."""
    a, b = te.expr._unify(a, b)
    if not te.expr.is_float(a.dtype):
        return a % b
    m = _fmod(a, b)
    return te.if_then_else(te.all(m != 0.0, te.any(te.all(m < 0.0, b > 0.0), te.all(m > 0.0, b < 0.0))),
                           m + b, m)


POW_BITS = 6       # exponents below 64 cover every integer power that does not overflow int64


def _power(a, b):
    """a ** b; integers exactly (numpy: by squaring; a negative exponent truncates 1 / a**-b)."""
    a, b = te.expr._unify(a, b)
    if te.expr.is_float(a.dtype):
        return te.power(a, b)
    one, zero = te.const(1, a.dtype), te.const(0, a.dtype)
    e = b if te.expr.is_unsigned(b.dtype) else te.if_then_else(b < 0, zero - b, b)
    result, sq = None, a
    for j in range(POW_BITS):
        factor = te.if_then_else((e // (1 << j)) % 2 == 1, sq, one)
        result = factor if result is None else result * factor
        sq = sq * sq
    # 0 ** e is 0 for every e > 0, also when e's low bits are zero
    result = te.if_then_else(te.all(a == 0, e >= (1 << POW_BITS)), zero, result)
    if not te.expr.is_unsigned(b.dtype):
        unit = te.any(a == 1, a == zero - 1)
        result = te.if_then_else(te.all(b < 0, ~unit), zero, result)
    return result


def _nan_first(a: te.Expr | float, result: te.Expr) -> te.Expr:
    """result, or a where a float a is NaN (max_of/min_of already return a NaN second operand)."""
    if isinstance(a, te.Expr) and te.expr.is_float(a.dtype):
        return te.if_then_else(a != a, a, result)
    return result


add = _binary("add", lambda a, b: a + b)
subtract = _binary("subtract", lambda a, b: a - b)
multiply = _binary("multiply", lambda a, b: a * b)
divide = _binary("divide", lambda a, b: a / b)
floor_divide = _binary("floor_divide", _floor_div)
trunc_divide = _binary("trunc_divide", _trunc_div)
mod = _binary("mod", _mod)
fmod = _binary("fmod", _fmod)
power = _binary("power", _power)
maximum = _binary("maximum", lambda a, b: _nan_first(a, te.max_of(a, b)))
minimum = _binary("minimum", lambda a, b: _nan_first(a, te.min_of(a, b)))
equal = _binary("equal", lambda a, b: a == b)
not_equal = _binary("not_equal", lambda a, b: a != b)
less = _binary("less", lambda a, b: a < b)
less_equal = _binary("less_equal", lambda a, b: a <= b)
greater = _binary("greater", lambda a, b: a > b)
greater_equal = _binary("greater_equal", lambda a, b: a >= b)
logical_and = _binary("logical_and", lambda a, b: te.all(a, b))
logical_or = _binary("logical_or", lambda a, b: te.any(a, b))
logical_xor = _binary("logical_xor", lambda a, b: te.expr.as_bool(a) != te.expr.as_bool(b))


def where(cond: Operand, x: Operand, y: Operand, name: str = "where") -> te.Tensor:
    """cond ? x : y elementwise, the three broadcast together (numpy.where)."""
    shape = broadcast_shape(_shape(cond), _shape(x), _shape(y))
    return te.compute(shape, lambda *i: te.if_then_else(broadcast_at(cond, shape, i),
                                                          broadcast_at(x, shape, i),
                                                          broadcast_at(y, shape, i)),
                      name=name, tag="broadcast")


# ---------------------------------------------------------------- unary

def _unary(name: str, fn: Callable, doc: str) -> Callable:
    def op(x: te.Tensor, name: str = name) -> te.Tensor:
        return te.compute(x.shape, lambda *i: fn(x[i]), name=name, tag="elemwise")
    op.__name__ = name
    op.__doc__ = doc
    return op


def _fast(fast, exact, v):
    # the vectorizable approximations are float32 ones; float64 keeps libm's accuracy
    return exact(v) if v.dtype == "float64" else fast(v)


def _exp(v): return _fast(fast_exp, te.exp, v)              # noqa: E704
def _erf(v): return _fast(fast_erf, te.erf, v)              # noqa: E704
def _tanh(v): return _fast(fast_tanh, te.tanh, v)           # noqa: E704
def _sigmoid(v): return _fast(fast_sigmoid, te.sigmoid, v)  # noqa: E704


def _as_float(v):
    return v if te.expr.is_float(v.dtype) else v.astype("float32")


negative = _unary("negative", lambda v: -v, "-x elementwise.")
abs = _unary("abs", lambda v: te.abs(v), "|x| elementwise.")  # noqa: A001
sqrt = _unary("sqrt", lambda v: te.sqrt(v), "Square root elementwise.")
rsqrt = _unary("rsqrt", lambda v: te.rsqrt(v), "1 / sqrt(x) elementwise.")
exp = _unary("exp", lambda v: _exp(v), "e**x elementwise.")
log = _unary("log", lambda v: te.log(v), "Natural logarithm elementwise.")
reciprocal = _unary("reciprocal", lambda v: 1.0 / _as_float(v), "1 / x elementwise.")
floor = _unary("floor", lambda v: te.floor(v) if te.expr.is_float(v.dtype) else v,
               "Round down elementwise.")
ceil = _unary("ceil", lambda v: te.ceil(v) if te.expr.is_float(v.dtype) else v,
              "Round up elementwise.")
round = _unary("round", lambda v: te.round(v) if te.expr.is_float(v.dtype) else v,  # noqa: A001
               "Round half to even elementwise.")
sign = _unary("sign", lambda v: te.if_then_else(v > 0, te.const(1, v.dtype),
                                                te.if_then_else(v < 0, te.const(-1, v.dtype), v)),
              "-1, 0 or 1 by the sign of x (NaN stays NaN).")
logical_not = _unary("logical_not", lambda v: ~te.expr.as_bool(v), "not x elementwise (bool).")
erf = _unary("erf", lambda v: _erf(v), "The Gauss error function elementwise.")
sin = _unary("sin", lambda v: te.sin(_as_float(v)), "Sine elementwise.")
cos = _unary("cos", lambda v: te.cos(_as_float(v)), "Cosine elementwise.")


def cast(x: te.Tensor, dtype: str, name: str = "cast", saturate: bool = True, round_mode: str = "up") -> te.Tensor:
    """x converted to dtype elementwise (float -> int truncates toward zero); to or from a
    byte-coded type (float8, int4...) by te.ops.lowbit.convert, with its saturate and round_mode."""
    if x.dtype in BYTE_CODED or dtype in BYTE_CODED:
        from .lowbit import convert
        return convert(x, dtype, saturate, round_mode, name=name)
    return te.compute(x.shape, lambda *i: x[i].astype(dtype), name=name, tag="elemwise")


# ---------------------------------------------------------------- activations

def relu(x: te.Tensor, name: str = "relu") -> te.Tensor:
    """max(x, 0); NaN stays NaN."""
    return te.compute(x.shape, lambda *i: te.max_of(te.const(0, x.dtype), x[i]), name=name,
                      tag="elemwise")


def leaky_relu(x: te.Tensor, alpha: float = 0.01, name: str = "leaky_relu") -> te.Tensor:
    """x if x > 0 else alpha * x."""
    return te.compute(x.shape, lambda *i: te.if_then_else(x[i] > 0.0, x[i], x[i] * alpha),
                      name=name, tag="elemwise")


def clamp(v: te.Expr, a_min: float | None = None, a_max: float | None = None) -> te.Expr:
    """The expression v limited to [a_min, a_max] (either bound may be None); NaN stays NaN (the
    bound is the first operand of max/min, which return the second where either is NaN)."""
    if a_min is not None:
        v = te.max_of(te.expr.convert(a_min, v.dtype), v)
    if a_max is not None:
        v = te.min_of(te.expr.convert(a_max, v.dtype), v)
    return v


def clip(x: te.Tensor, a_min: float | None = None, a_max: float | None = None,
         name: str = "clip") -> te.Tensor:
    """x limited to [a_min, a_max] (either bound may be None); NaN stays NaN."""
    return te.compute(x.shape, lambda *i: clamp(x[i], a_min, a_max), name=name, tag="elemwise")


def relu6(x: te.Tensor, name: str = "relu6") -> te.Tensor:
    """min(max(x, 0), 6)."""
    return clip(x, 0.0, 6.0, name=name)


def sigmoid(x: te.Tensor, name: str = "sigmoid") -> te.Tensor:
    """1 / (1 + e**-x)."""
    return te.compute(x.shape, lambda *i: _sigmoid(x[i]), name=name,
                      tag="elemwise")


def tanh(x: te.Tensor, name: str = "tanh") -> te.Tensor:
    """Hyperbolic tangent."""
    return te.compute(x.shape, lambda *i: _tanh(x[i]), name=name, tag="elemwise")


def gelu(x: te.Tensor, approximate: str = "none", name: str = "gelu") -> te.Tensor:
    """x * Phi(x): exact (erf) with approximate="none", the tanh form with approximate="tanh"."""
    if approximate == "none":
        def body(*i):
            v = x[i]
            return v * 0.5 * (_erf(v * SQRT1_2) + 1.0)
    elif approximate == "tanh":
        def body(*i):
            v = x[i]
            return v * 0.5 * (_tanh((v * v * v * 0.044715 + v) * SQRT_2_OVER_PI) + 1.0)
    else:
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', not {approximate!r}")
    return te.compute(x.shape, body, name=name, tag="elemwise")


def elu(x: te.Tensor, alpha: float = 1.0, name: str = "elu") -> te.Tensor:
    """x if x > 0 else alpha * (e**x - 1)."""
    return te.compute(x.shape, lambda *i: te.if_then_else(
        x[i] > 0.0, x[i], (_exp(te.min_of(0.0, x[i])) - 1.0) * alpha), name=name, tag="elemwise")


def hard_sigmoid(x: te.Tensor, alpha: float = 0.2, beta: float = 0.5,
                 name: str = "hard_sigmoid") -> te.Tensor:
    """max(0, min(1, alpha * x + beta)) (ONNX HardSigmoid; PyTorch uses alpha=1/6)."""
    return te.compute(x.shape, lambda *i: te.min_of(1.0, te.max_of(0.0, x[i] * alpha + beta)),
                      name=name, tag="elemwise")


def hard_swish(x: te.Tensor, name: str = "hard_swish", alpha: float = 1.0 / 6.0) -> te.Tensor:
    """x * hard_sigmoid(x, alpha, 1/2), alpha 1/6: x * relu6(x + 3) / 6 (MobileNetV3), scaled before
    the product as ONNX's formula is, so it does not overflow near the largest floats."""
    return te.compute(x.shape, lambda *i: x[i] * te.min_of(1.0, te.max_of(0.0, x[i] * alpha + 0.5)),
                      name=name, tag="elemwise")


def softplus(x: te.Tensor, name: str = "softplus") -> te.Tensor:
    """log(1 + e**x), computed as max(x, 0) + log(1 + e**-|x|) so it never overflows."""
    return te.compute(x.shape, lambda *i: te.max_of(x[i], 0.0)
                      + te.log(_exp(-te.abs(x[i])) + 1.0), name=name, tag="elemwise")


def silu(x: te.Tensor, name: str = "silu") -> te.Tensor:
    """x * sigmoid(x) (swish)."""
    return te.compute(x.shape, lambda *i: x[i] * _sigmoid(x[i]), name=name, tag="elemwise")


def swish(x: te.Tensor, alpha: float = 1.0, name: str = "swish") -> te.Tensor:
    """x * sigmoid(alpha * x)."""
    return te.compute(x.shape, lambda *i: x[i] * _sigmoid(x[i] * alpha), name=name, tag="elemwise")


def selu(x: te.Tensor, alpha: float = 1.6732632423543772, gamma: float = 1.0507009873554805,
         name: str = "selu") -> te.Tensor:
    """gamma * (x if x > 0 else alpha * (e**x - 1))."""
    return te.compute(x.shape, lambda *i: te.if_then_else(
        x[i] > 0.0, x[i] * gamma, (_exp(x[i]) - 1.0) * (alpha * gamma)),
        name=name, tag="elemwise")


def celu(x: te.Tensor, alpha: float = 1.0, name: str = "celu") -> te.Tensor:
    """max(0, x) + min(0, alpha * (e**(x / alpha) - 1)), i.e. x if x > 0 else alpha * (e**(x / alpha) - 1)."""
    return te.compute(x.shape, lambda *i: te.if_then_else(
        x[i] > 0.0, x[i], (_exp(x[i] * (1.0 / alpha)) - 1.0) * alpha), name=name, tag="elemwise")


def thresholded_relu(x: te.Tensor, alpha: float = 1.0, name: str = "thresholded_relu") -> te.Tensor:
    """x if x > alpha else 0."""
    return te.compute(x.shape, lambda *i: te.if_then_else(x[i] > alpha, x[i], te.const(0, x.dtype)),
                      name=name, tag="elemwise")


def shrink(x: te.Tensor, bias: float = 0.0, lambd: float = 0.5, name: str = "shrink") -> te.Tensor:
    """x - bias if x > lambd, x + bias if x < -lambd, else 0 (ONNX Shrink)."""
    def body(*i):
        v = x[i]
        zero = te.const(0, x.dtype)
        return te.if_then_else(v < -lambd, v + te.expr.convert(bias, x.dtype),
                               te.if_then_else(v > lambd, v - te.expr.convert(bias, x.dtype), zero))
    return te.compute(x.shape, body, name=name, tag="elemwise")


def softsign(x: te.Tensor, name: str = "softsign") -> te.Tensor:
    """x / (1 + |x|)."""
    return te.compute(x.shape, lambda *i: x[i] / (te.abs(x[i]) + 1.0), name=name, tag="elemwise")


def mish(x: te.Tensor, name: str = "mish") -> te.Tensor:
    """x * tanh(softplus(x))."""
    return te.compute(x.shape, lambda *i: x[i] * _tanh(te.max_of(x[i], 0.0) + te.log(_exp(-te.abs(x[i])) + 1.0)),
                      name=name, tag="elemwise")


def sinh(x: te.Tensor, name: str = "sinh") -> te.Tensor:
    """(e**x - e**-x) / 2."""
    return te.compute(x.shape, lambda *i: (te.exp(x[i]) - te.exp(-x[i])) * 0.5, name=name, tag="elemwise")


def cosh(x: te.Tensor, name: str = "cosh") -> te.Tensor:
    """(e**x + e**-x) / 2."""
    return te.compute(x.shape, lambda *i: (te.exp(x[i]) + te.exp(-x[i])) * 0.5, name=name, tag="elemwise")


def isnan(x: te.Tensor, name: str = "isnan") -> te.Tensor:
    """True where x is NaN."""
    return te.compute(x.shape, lambda *i: x[i] != x[i], name=name, tag="elemwise")


def isinf(x: te.Tensor, detect_positive: bool = True, detect_negative: bool = True,
          name: str = "isinf") -> te.Tensor:
    """True where x is +inf (if detect_positive) or -inf (if detect_negative)."""
    def body(*i):
        hits = ([x[i] == math.inf] if detect_positive else []) + ([x[i] == -math.inf] if detect_negative else [])
        return te.any(*hits) if hits else te.const(False, "bool")
    return te.compute(x.shape, body, name=name, tag="elemwise")


def prelu(x: te.Tensor, slope: Operand, axis: int = 1, name: str = "prelu") -> te.Tensor:
    """x if x > 0 else slope * x; a 1-D slope runs along `axis` (channels), else slopes broadcast."""
    if isinstance(slope, te.Tensor) and slope.ndim == 1 and x.ndim > 1 and slope.shape[0] != 1:
        ax = axis % x.ndim
        if slope.shape[0] != x.shape[ax]:
            raise ValueError(f"{name}: slope of shape {slope.shape} does not match axis {axis} of "
                             f"{x.shape}")
        def at(i):
            return slope[i[ax]]
    else:
        shape = broadcast_shape(x.shape, _shape(slope))
        if shape != tuple(x.shape):
            raise ValueError(f"{name}: slope of shape {_shape(slope)} does not broadcast to {x.shape}")
        def at(i):
            return broadcast_at(slope, x.shape, i)
    return te.compute(x.shape, lambda *i: te.if_then_else(x[i] > 0.0, x[i], x[i] * at(i)),
                      name=name, tag="broadcast")


__all__ = ["broadcast_shape", "broadcast_at", "add", "subtract", "multiply", "divide",
           "floor_divide", "trunc_divide", "mod", "fmod", "power", "maximum", "minimum", "equal",
           "not_equal", "less", "less_equal", "greater", "greater_equal", "logical_and", "logical_or",
           "logical_xor", "where", "negative", "abs", "sqrt", "rsqrt", "exp", "log", "reciprocal",
           "floor", "ceil", "round", "sign", "logical_not", "erf", "sin", "cos", "cast", "relu",
           "leaky_relu", "clip", "relu6", "sigmoid", "tanh", "gelu", "elu", "hard_sigmoid",
           "hard_swish", "softplus", "silu", "swish", "selu", "celu", "thresholded_relu", "shrink",
           "softsign", "mish", "sinh", "cosh", "isnan", "isinf", "prelu"]
