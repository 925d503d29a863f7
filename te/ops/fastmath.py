"""Fast, vectorizable exp / tanh / erf / sigmoid written as tensor expressions.

LLVM scalarises vector `exp`, `tanh` and `erf` into one libm call per lane, which makes an
activation an order of magnitude slower than the memory it streams.  These versions are
plain arithmetic, selects, `floor` and a power of two, so a vectorized loop over them stays
in vector registers:

* exp: Cody-Waite range reduction x = n*ln2 + r with |r| <= ln2/2, a degree-5 polynomial
  for e**r and a scale by 2**n, te.ldexp: two powers of two built from exponent bits (pow(2, n)
  became one `vscalefps` on AVX-512 but an `ldexpf` call per lane elsewhere: softmax ran 20x
  slower on AVX2); it gives IEEE overflow to inf and underflow through the denormals.
* tanh: the odd/even rational approximation of Eigen on x clamped to +-7.9 (tanh rounds to
  within 3e-7 of +-1 there), one division and no exp.
* erf: the odd/even rational approximation Eigen and TVM use, on x clamped to [-4, 4]
  (erf(4) rounds to 1 in float32).
* sigmoid: 1 / (1 + e**-x).

They are float32 approximations (a float64 input gets float32 accuracy).  All stay within
4e-7 (relative) of the true function, map +-inf to the right limits and
propagate NaN: a clamp is written `min(c, max(-c, x))`, constant first, because the code
generator's max/min return their second operand when the comparison is unordered; exp, whose
clamped value feeds an integer conversion, ends with an explicit select instead.
"""
from __future__ import annotations

import te

LOG2E = 1.4426950408889634
LN2_HI = 0.693359375            # ln 2 split so that n * LN2_HI is exact for |n| < 2**9
LN2_LO = -2.12194440e-4
EXP_LO, EXP_HI = -104.0, 89.0   # e**-104 underflows to 0, e**89 overflows to inf in float32
# e**r = 1 + r + r**2 * P(r) on |r| <= ln2/2: a degree-5 fit of the relative error (max 1.7e-7)
EXP_POLY = (8.333838544785976e-3, 4.189858213067055e-2, 1.666688621044159e-1, 4.9999141693115234e-1)
# tanh(x) = x*P(x**2) / Q(x**2) on x clamped to +-7.905 (Eigen's float tanh; max rel error 4e-7)
TANH_CLAMP = 7.90531110763549805
TANH_NUM = (-2.76076847742355e-16, 2.00018790482477e-13, -8.60467152213735e-11,
            5.12229709037114e-08, 1.48572235717979e-05, 6.37261928875436e-04,
            4.89352455891786e-03)
TANH_DEN = (1.19825839466702e-06, 1.18534705686654e-04, 2.26843463243900e-03,
            4.89352518554385e-03)
ERF_CLAMP = 4.0
ERF_NUM = (-2.72614225801306e-10, 2.77068142495902e-08, -2.10102402082508e-06,
           -5.69250639462346e-05, -7.34990630326855e-04, -2.95459980854025e-03,
           -1.60960333262415e-02)
ERF_DEN = (-1.45660718464996e-05, -2.13374055278905e-04, -1.68282697438203e-03,
           -7.37332916720468e-03, -1.42647390514189e-02)


def _float(x) -> te.Expr:
    x = te.expr.convert(x, "float32")
    return x if te.expr.is_float(x.dtype) else x.astype("float32")


def _horner(x: te.Expr, coeffs) -> te.Expr:
    """coeffs[0]*x**(n-1) + ... + coeffs[-1], as a chain of fused multiply-adds."""
    p = te.const(coeffs[0], x.dtype)
    for c in coeffs[1:]:
        p = p * x + c
    return p


def _keep_nan(x: te.Expr, value: te.Expr) -> te.Expr:
    return te.if_then_else(x != x, x, value)


def fast_exp(x) -> te.Expr:
    """e**x from arithmetic that vectorizes (Cody-Waite reduction, polynomial, ldexp)."""
    return exp_poly(x)


def exp_poly(x, nonpositive: bool = False, keep_nan: bool = True) -> te.Expr:
    """e**x; `nonpositive` promises x <= 0 (or NaN) and saves the overflow handling, `keep_nan`
    False lets a NaN input give any value (for callers whose result is NaN anyway)."""
    x = _float(x)
    xc = te.max_of(x, EXP_LO)
    if not nonpositive:
        xc = te.min_of(xc, EXP_HI)
    n = te.floor(xc * LOG2E + 0.5)
    r = n * -LN2_HI + xc
    r = n * -LN2_LO + r
    p = _horner(r, EXP_POLY) * (r * r) + r + 1.0
    v = te.ldexp(p, n)          # n in [-150, 128]: within ldexp's two normal halves
    return _keep_nan(x, v) if keep_nan else v


def fast_sigmoid(x) -> te.Expr:
    """1 / (1 + e**-x) with the fast exp."""
    x = _float(x)
    return 1.0 / (fast_exp(-x) + 1.0)


def fast_tanh(x) -> te.Expr:
    """Hyperbolic tangent as a rational function of x on x clamped to +-7.9."""
    x = _float(x)
    # the constant first: `c > NaN ? c : NaN` keeps a NaN (the code generator's max/min)
    xc = te.min_of(te.const(TANH_CLAMP, x.dtype), te.max_of(te.const(-TANH_CLAMP, x.dtype), x))
    z = xc * xc
    return _horner(z, TANH_NUM) * xc / _horner(z, TANH_DEN)


def fast_erf(x) -> te.Expr:
    """The Gauss error function as x*P(x**2)/Q(x**2) on x clamped to [-4, 4]."""
    x = _float(x)
    xc = te.min_of(te.const(ERF_CLAMP, x.dtype), te.max_of(te.const(-ERF_CLAMP, x.dtype), x))   # NaN stays
    z = xc * xc
    return _horner(z, ERF_NUM) * xc / _horner(z, ERF_DEN)


__all__ = ["fast_exp", "fast_tanh", "fast_erf", "fast_sigmoid"]
