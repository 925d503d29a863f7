"""Conversions to and from the byte-coded types: float8 (e4m3fn, e4m3fnuz, e5m2, e5m2fnuz,
e8m0fnu), float4_e2m1fn, int4, uint4, int2, uint2.

te holds these one element per byte as their bit pattern (te/expr.py's BYTE_CODED, ml_dtypes'
layout) and computes nothing on them: `convert` reads the bits (a cast to uint8) and turns them
into numbers, or numbers into bits, with ml_dtypes' rules, which onnx's Cast follows:

* every format's values come from ml_dtypes' own table of its codes (`Format`), so a decode is the
  code's exponent and mantissa scaled exactly in float64, and an encode counts the midpoints
  between consecutive values below |x| (round to nearest, ties to the even code);
* float8 `saturate` clips to the largest finite value first (onnx's saturate_cast); without it an
  overflow is what ml_dtypes gives (NaN, or infinity for e5m2); float4 always saturates;
* float8_e8m0fnu (a power of two) rounds by `round_mode` ("up", "down", "nearest": onnx's
  to_float8e8m0);
* int4/uint4/int2/uint2 from a float truncate toward zero, a value outside the type becoming 0
  (ml_dtypes' conversion); from an integer they keep its low bits.

A conversion kernel makes up to 254 compares per element: these are edge conversions (a model's
inputs and outputs, its quantisation boundaries), not arithmetic.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

import te
from te.expr import BYTE_CODED, is_float

__all__ = ["convert", "Format", "ROUND_MODES"]

TAG = "elemwise"
RANK_TAG = "lowbit_rank"        # no schedule of its own: a root stage the encoder reads, not inlined
INT_FORMATS = {"int4": (4, True), "uint4": (4, False), "int2": (2, True), "uint2": (2, False)}
ROUND_MODES = ("up", "down", "nearest")


@dataclass(frozen=True)
class Format:
    """A float format as ml_dtypes' table of its codes says."""
    bits: int                    # bits of a code (8, or 4 for float4)
    exp_bits: int
    man_bits: int
    bias: int
    values: tuple                # the finite non-negative values, by code 0, 1, ...
    specials: tuple              # (code, value) of every NaN/infinity code
    nan_code: int                # what NaN encodes to
    over_codes: tuple            # what +overflow and -overflow encode to without saturation
    neg_zero_code: int           # what -0.0 (and a negative value rounding to 0) encodes to
    signed: bool

    @property
    def max_code(self) -> int:
        return len(self.values) - 1


@functools.cache
def format_of(dtype: str) -> Format:
    """The Format of a byte-coded float type, read from ml_dtypes."""
    import ml_dtypes
    dt = np.dtype(getattr(ml_dtypes, dtype))
    info = ml_dtypes.finfo(dt)
    bits = 4 if dtype == "float4_e2m1fn" else 8
    signed = dtype != "float8_e8m0fnu"
    codes = np.arange(1 << bits, dtype=np.uint8)
    with np.errstate(all="ignore"):
        vals = codes.view(dt).astype(np.float64)
        enc = lambda v: int(np.array([v], np.float32).astype(dt).view(np.uint8)[0])   # noqa: E731
        half = 1 << (bits - 1) if signed else 1 << bits
        finite = [float(v) for v in vals[:half] if np.isfinite(v)]
        return Format(bits, int(info.nexp), int(info.nmant), 1 - int(info.minexp) if signed else 127,
                      tuple(finite), tuple((int(c), float(v)) for c, v in zip(codes, vals) if not np.isfinite(v)),
                      enc(np.nan), (enc(3e38), enc(-3e38)), enc(-0.0), signed)


def _const(v, dtype: str):
    return te.const(v, dtype)


def _decode_float(b, f: Format, dtype_name: str):
    """The float64 value of code b (uint8)."""
    b = b.astype("int64")
    if dtype_name == "float8_e8m0fnu":            # 2^(b - 127)
        v = _pow2_biased(b)
    else:
        m = 1 << f.man_bits
        E = (b // m) % (1 << f.exp_bits)
        M = (b % m).astype("float64")
        sub = M * (2.0 ** (1 - f.bias - f.man_bits))
        norm = (M + float(m)) * _pow2(E) * (2.0 ** (-f.bias - f.man_bits))
        v = te.if_then_else(E == 0, sub, norm)
        v = te.if_then_else((b // (1 << (f.bits - 1))) % 2 == 1, -v, v)
    for code, value in f.specials:
        v = te.if_then_else(b == code, _const(value, "float64"), v)
    return v


def _pow2(e):
    """2^e as float64 for an int64 0 <= e < 64, exactly: a product over e's bits."""
    v = _const(1.0, "float64")
    for k in range(6):
        v = v * te.if_then_else((e // (1 << k)) % 2 == 1, _const(2.0 ** (1 << k), "float64"), _const(1.0, "float64"))
    return v


def _pow2_biased(e):
    """2^(e - 127) as float64 for an int64 0 <= e < 256 (e8m0's value), exactly."""
    scale = te.if_then_else(e < 64, _const(2.0 ** -127, "float64"),
                            te.if_then_else(e < 128, _const(2.0 ** -63, "float64"),
                                            te.if_then_else(e < 192, _const(2.0, "float64"),
                                                            _const(2.0 ** 65, "float64"))))
    return _pow2(e % 64) * scale


def _magnitude(x, f: Format, dtype_name: str, saturate: bool):
    """|x| as float64, clipped to the largest value when saturating (e8m0: the float32 onnx reads)."""
    x = x.astype("float64")
    a = te.if_then_else(x < 0.0, -x, x)
    if dtype_name == "float8_e8m0fnu":
        return a.astype("float32").astype("float64")
    return te.min_of(a, _const(f.values[-1], "float64")) if saturate else a


def _rank(a, f: Format, dtype_name: str):
    """How many of the format's rounding points |x| = a passes (int64): its magnitude's code.

    For e8m0, the powers of two 2^-126 ... 2^127 at most a: float32's exponent field of a."""
    one, zero = _const(1, "int64"), _const(0, "int64")
    if dtype_name == "float8_e8m0fnu":          # a loop over the powers: 254 unrolled compares build slowly
        r = te.reduce_axis((1, 255), "p")
        return te.sum(te.if_then_else(a >= _pow2_biased(r.var.astype("int64")), one, zero), axis=r)
    vals = f.values
    # a tie goes to the even code
    passed = [te.if_then_else(a >= t if (j + 1) % 2 == 0 else a > t, one, zero)
              for j, t in enumerate((lo + hi) / 2 for lo, hi in zip(vals, vals[1:]))]
    return _tree_sum(passed) if passed else zero


def _tree_sum(terms: list):
    """The sum of terms as a balanced tree of additions: the simplifier takes each addition's linear
    form, over its whole operand, so a chain of float8's 126 compares costs it 126^2 term visits
    where the tree costs 126 log 126 (tests/frontends/test_low_precision.py's 76 float8 node
    cases: 5.5 s of CPU simplifying as a chain, 0.6 s as a tree)."""
    while len(terms) > 1:
        terms = [terms[i] + terms[i + 1] if i + 1 < len(terms) else terms[i] for i in range(0, len(terms), 2)]
    return terms[0]


def _encode_float(x, a, k, f: Format, dtype_name: str, round_mode: str):
    """The code (int64) of x, given its magnitude a (_magnitude) and rank k (_rank)."""
    if dtype_name == "float8_e8m0fnu":
        return _encode_e8m0(a, k, round_mode)
    x = x.astype("float64")
    vals = f.values
    top = vals[-1] + (vals[-1] - vals[-2]) / 2
    over = a >= top if (f.max_code + 1) % 2 == 0 else a > top
    # a negative number: its sign bit, but -0.0 too (x == 0 and 1 / x < 0)
    neg = te.any(x < 0.0, te.all(x == 0.0, _const(1.0, "float64") / x < 0.0))
    sign = 1 << (f.bits - 1)
    code = te.if_then_else(neg, te.if_then_else(k == 0, _const(f.neg_zero_code, "int64"), k + sign), k)
    code = te.if_then_else(over, te.if_then_else(neg, _const(f.over_codes[1], "int64"),
                                                 _const(f.over_codes[0], "int64")), code)
    return te.if_then_else(x != x, _const(f.nan_code, "int64"), code)


def _encode_e8m0(a, e, round_mode: str, saturate: bool = True):
    """onnx's to_float8e8m0 of |x| = a (float32's value) with exponent field e: rounded by round_mode."""
    if round_mode not in ROUND_MODES:
        raise ValueError(f"round_mode {round_mode!r} is not one of {', '.join(ROUND_MODES)}")
    base = _pow2_biased(e)                              # |x| rounded down to a power of two
    if round_mode == "up":
        up = te.if_then_else(e == 0, a > 0.0, a > base)
    elif round_mode == "nearest":
        up = te.if_then_else(e == 0, a > 2.0 ** -127, a >= base * 1.5)
    else:
        up = te.const(False, "bool")
    if saturate:
        up = te.all(up, e < 254)
    code = e + te.if_then_else(up, _const(1, "int64"), _const(0, "int64"))
    return te.if_then_else(te.any(a != a, a > 3.5e38), _const(255, "int64"), code)


def _decode_int(b, bits: int, signed: bool):
    v = b.astype("int64") % (1 << bits)
    return te.if_then_else(v >= (1 << (bits - 1)), v - (1 << bits), v) if signed else v


def _encode_int(x, bits: int, signed: bool):
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    if is_float(x.dtype):
        # truncated toward zero; outside the type (and NaN) 0, as ml_dtypes converts
        xf = x.astype("float64")
        inside = te.all(xf > float(lo - 1), xf < float(hi + 1))
        t = te.if_then_else(inside, xf, _const(0.0, "float64")).astype("int64")
    else:
        t = x.astype("int64")
    m = 1 << bits
    return ((t % m) + m) % m                         # the low bits, two's complement


def convert(x: te.Tensor, dtype: str, saturate: bool = True, round_mode: str = "up",
            name: str = "convert") -> te.Tensor:
    """x converted to dtype where either is a byte-coded type (the module docstring's rules)."""
    src = x.dtype
    shape = tuple(x.shape)

    def value(i):
        """x[i] as a number (float64 for the float formats, int64 for the integer ones)."""
        v = x[i]
        if src in INT_FORMATS:
            return _decode_int(v.astype("uint8"), *INT_FORMATS[src])
        if src in BYTE_CODED:
            return _decode_float(v.astype("uint8"), format_of(src), src)
        return v

    if dtype in INT_FORMATS:
        return te.compute(shape, lambda *i: _encode_int(value(i), *INT_FORMATS[dtype]).astype("uint8").astype(dtype),
                          name=name, tag=TAG)
    if dtype not in BYTE_CODED:
        return te.compute(shape, lambda *i: value(i).astype(dtype), name=name, tag=TAG)
    f = format_of(dtype)
    # onnx saturates only float8 (e8m0 by its own rule); float4 has no infinity or NaN to overflow to
    sat = saturate and f.bits == 8
    clip = sat and dtype != "float8_e8m0fnu"
    # the magnitude and its rank, a long sum of compares reading it, in stages of their own: inlined,
    # the rank would repeat x's whole expression per compare, and the code reads the rank thrice
    mag = te.compute(shape, lambda *i: _magnitude(value(i), f, dtype, clip), name=f"{name}.abs", tag=RANK_TAG)
    rank = te.compute(shape, lambda *i: _rank(mag[i], f, dtype), name=f"{name}.rank", tag=RANK_TAG)

    def body(*i):
        v = value(i)
        a = mag[i]
        if dtype == "float8_e8m0fnu":
            code = _encode_e8m0(a, rank[i], round_mode, sat)
        else:
            code = _encode_float(v, a, rank[i], f, dtype, round_mode)
        return code.astype("uint8").astype(dtype)
    return te.compute(shape, body, name=name, tag=TAG)
