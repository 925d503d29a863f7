"""Storage-float conversions a target has no instruction for, in integer arithmetic.

LLVM lowers `fptrunc float -> bfloat` without AVX512-BF16, and half <-> float without F16C, to
calls of compiler-rt's `__truncsfbf2`, `__truncsfhf2` and `__extendhfsf2`, one per lane. Neither
the JIT's process nor the C compilers an exported library may meet (GCC before 13 lacks the
bfloat16 one) is sure to define them, and a call to an unresolved symbol is a signal death, not an
error. So the code generator spells those conversions out here, lane-parallel (they vectorize like
any other integer arithmetic), rounding as the hardware and ml_dtypes / numpy do: to nearest even,
overflow to infinity, subnormal halves kept, NaN stays a quiet NaN of the same sign.
"""
from __future__ import annotations

from llvmlite import ir

from .llvm_types import I32

I16 = ir.IntType(16)
F32 = ir.FloatType()


def _like(v: ir.Value, elem: ir.Type) -> ir.Type:
    return ir.VectorType(elem, v.type.count) if isinstance(v.type, ir.VectorType) else elem


def _c(ty: ir.Type, value) -> ir.Constant:
    if isinstance(ty, ir.VectorType):
        return ir.Constant(ty, [ir.Constant(ty.element, value)] * ty.count)
    return ir.Constant(ty, value)


def float_to_bfloat(b: ir.IRBuilder, v: ir.Value, to: ir.Type) -> ir.Value:
    """float32 -> bfloat16: the upper 16 bits rounded to nearest even; a NaN becomes the quiet
    NaN 0x7FC0 with its sign (ml_dtypes' result)."""
    i32 = _like(v, I32)
    bits = b.bitcast(v, i32)
    high = b.lshr(bits, _c(i32, 16))
    odd = b.and_(high, _c(i32, 1))
    rounded = b.lshr(b.add(b.add(bits, _c(i32, 0x7FFF)), odd), _c(i32, 16))
    nan = b.or_(b.and_(high, _c(i32, 0x8000)), _c(i32, 0x7FC0))
    out = b.select(b.fcmp_unordered("uno", v, v), nan, rounded)
    return b.bitcast(b.trunc(out, _like(v, I16)), to)


def float_to_half(b: ir.IRBuilder, v: ir.Value, to: ir.Type) -> ir.Value:
    """float32 -> float16 as F16C's vcvtps2ph rounds: to nearest even, past 65504 + half an ulp
    to infinity, below 2^-14 to a subnormal (added to 0.5, whose low mantissa bits are then the
    subnormal rounded by the float adder), NaN quiet with its top payload bits and sign."""
    i32 = _like(v, I32)
    bits = b.bitcast(v, i32)
    sign = b.and_(b.lshr(bits, _c(i32, 16)), _c(i32, 0x8000))
    mag = b.and_(bits, _c(i32, 0x7FFFFFFF))
    # normal: rebias the exponent (127 -> 15), round to nearest even at bit 13
    odd = b.and_(b.lshr(mag, _c(i32, 13)), _c(i32, 1))
    normal = b.lshr(b.add(b.add(mag, _c(i32, (15 - 127) << 23)),
                          b.add(odd, _c(i32, 0xFFF))), _c(i32, 13))
    # subnormal: |v| + 0.5 leaves |v| / 2^-24 rounded in the mantissa's low bits
    absv = b.bitcast(mag, v.type)
    sub = b.sub(b.bitcast(b.fadd(absv, _c(v.type, 0.5)), i32), _c(i32, 0x3F000000))
    nan = b.or_(_c(i32, 0x7E00), b.lshr(b.and_(mag, _c(i32, 0x7FFFFF)), _c(i32, 13)))
    out = b.select(b.icmp_unsigned("<", mag, _c(i32, 0x38800000)), sub, normal)
    out = b.select(b.icmp_unsigned(">=", mag, _c(i32, 0x477FF000)), _c(i32, 0x7C00), out)
    out = b.select(b.icmp_unsigned(">", mag, _c(i32, 0x7F800000)), nan, out)
    return b.bitcast(b.trunc(b.or_(out, sign), _like(v, I16)), to)


def half_to_float(b: ir.IRBuilder, v: ir.Value) -> ir.Value:
    """float16 -> float32, exact: the exponent rebiased (15 -> 127), infinities and NaNs kept,
    subnormals normalized by the float subtraction of 2^-14 from a number built above it."""
    i32 = _like(v, I32)
    h = b.zext(b.bitcast(v, _like(v, I16)), i32)
    shifted = b.shl(b.and_(h, _c(i32, 0x7FFF)), _c(i32, 13))
    exp = b.and_(shifted, _c(i32, 0x0F800000))
    normal = b.add(shifted, _c(i32, (127 - 15) << 23))
    special = b.add(normal, _c(i32, (128 - 16) << 23))
    f = _like(v, F32)
    tiny = b.bitcast(b.fsub(b.bitcast(b.add(normal, _c(i32, 1 << 23)), f), _c(f, 2.0 ** -14)), i32)
    out = b.select(b.icmp_unsigned("==", exp, _c(i32, 0x0F800000)), special, normal)
    out = b.select(b.icmp_unsigned("==", exp, _c(i32, 0)), tiny, out)
    return b.bitcast(b.or_(out, b.shl(b.and_(h, _c(i32, 0x8000)), _c(i32, 16))), f)
