"""te.ops elementwise, activations, fast math and the injective schedule, against numpy."""
from __future__ import annotations

import math

import numpy as np
import pytest

import te
from te import ops
from te.ops.fastmath import fast_erf, fast_exp, fast_sigmoid, fast_tanh
from te.ops.injective import vector_lanes

from .build_run import build_run

ELEM = dict(rtol=1e-5, atol=1e-6)
_erf = np.vectorize(math.erf)


BINARY = {
    "add": np.add, "subtract": np.subtract, "multiply": np.multiply, "divide": np.divide,
    "maximum": np.maximum, "minimum": np.minimum, "power": np.power,
}


@pytest.mark.parametrize("name", sorted(BINARY))
@pytest.mark.parametrize("shapes", [((3, 1, 5), (4, 1)), ((2, 16), (16,)), ((4, 5), None)])
def test_binary_broadcast(name, shapes, rand):
    sa, sb = shapes
    a_np = rand(sa, low=0.5, high=2.0)
    b_np = rand(sb, low=0.5, high=2.0) if sb is not None else np.float32(1.5)
    a = te.placeholder(sa, name="a")
    if sb is None:
        out = getattr(ops, name)(a, 1.5)
        got = build_run(out, [a], [a_np])
    else:
        b = te.placeholder(sb, name="b")
        out = getattr(ops, name)(a, b)
        got = build_run(out, [a, b], [a_np, b_np])
    np.testing.assert_allclose(got, BINARY[name](a_np, b_np), **ELEM)


def test_scalar_on_the_left(rand):
    a_np = rand((3, 7), low=0.5, high=2.0)
    a = te.placeholder((3, 7), name="a")
    np.testing.assert_allclose(build_run(ops.subtract(2.0, a), [a], [a_np]), 2.0 - a_np, **ELEM)
    np.testing.assert_allclose(build_run(ops.divide(1.0, a), [a], [a_np]), 1.0 / a_np, **ELEM)


@pytest.mark.parametrize("name", ["equal", "not_equal", "less", "less_equal", "greater", "greater_equal"])
def test_compare(name, rng):
    a_np = rng.integers(0, 3, (4, 6)).astype(np.float32)
    b_np = rng.integers(0, 3, (6,)).astype(np.float32)
    a, b = te.placeholder((4, 6), name="a"), te.placeholder((6,), name="b")
    out = getattr(ops, name)(a, b)
    assert out.dtype == "bool"
    np.testing.assert_array_equal(build_run(out, [a, b], [a_np, b_np]), getattr(np, name)(a_np, b_np))


def test_integer_ops(rand):
    a_np = rand((5, 8), "int32", low=-20, high=20)
    b_np = rand((8,), "int32", low=1, high=6)
    a, b = te.placeholder((5, 8), "int32", "a"), te.placeholder((8,), "int32", "b")
    for fn, ref in ((ops.add, np.add), (ops.multiply, np.multiply), (ops.floor_divide, np.floor_divide),
                    (ops.mod, np.mod), (ops.maximum, np.maximum)):
        np.testing.assert_array_equal(build_run(fn(a, b), [a, b], [a_np, b_np]), ref(a_np, b_np))


SIGNED_PAIRS = (np.array([-7, 7, -7, 7, 0, 5, -6, 9, -1], np.int64),
                np.array([2, 2, -2, -2, 3, 0, 4, -3, 5], np.int64))


@pytest.mark.parametrize("dtype", ["int8", "int32", "int64", "uint8"])
def test_truncating_division_and_fmod(dtype):
    a_np, b_np = (v.astype(dtype) for v in SIGNED_PAIRS)
    a, b = te.placeholder(a_np.shape, dtype, "a"), te.placeholder(b_np.shape, dtype, "b")
    nz = b_np != 0
    with np.errstate(all="ignore"):
        want_div = np.where(nz, np.trunc(a_np / np.where(nz, b_np, 1)), 0).astype(dtype)
        np.testing.assert_array_equal(build_run(ops.trunc_divide(a, b), [a, b], [a_np, b_np]), want_div)
        np.testing.assert_array_equal(build_run(ops.fmod(a, b), [a, b], [a_np, b_np]), np.fmod(a_np, b_np))
        np.testing.assert_array_equal(build_run(ops.mod(a, b), [a, b], [a_np, b_np]), np.mod(a_np, b_np))


FLOAT_EDGES = (
    np.array([0., -0., -3., 3., -1., 1., np.inf, -np.inf, 1., 1., 5., -4.3, 7.2, 4.3, 1e10, 1e-30]),
    np.array([-2., 2., np.inf, np.inf, -np.inf, -np.inf, 2., 2., 0., -0., 0.1, 2.1, -3.4, -2.1, 3., 7.]))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", ["mod", "fmod"])
def test_float_mod_matches_numpy_on_edge_cases(name, dtype):
    a_np, b_np = (v.astype(dtype) for v in FLOAT_EDGES)
    a, b = te.placeholder(a_np.shape, dtype, "a"), te.placeholder(b_np.shape, dtype, "b")
    got = build_run(getattr(ops, name)(a, b), [a, b], [a_np, b_np])
    with np.errstate(all="ignore"):
        want = getattr(np, name)(a_np, b_np)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=0, equal_nan=True)


@pytest.mark.parametrize("dtype", ["int32", "int64", "uint8"])
def test_integer_power_is_exact(dtype):
    base = np.array([1, 2, 3, -2, 0, 0, -1, -1, 1, 2, 3, 7, 5], np.int64)
    expo = np.array([4, 5, 6, 3, 0, 70, 63, -3, -5, -1, 39, 22, 27], np.int64)
    if dtype == "uint8":
        base, expo = np.abs(base), np.abs(expo)
    a_np, b_np = base.astype(dtype), expo.astype(dtype)
    a, b = te.placeholder(a_np.shape, dtype, "a"), te.placeholder(b_np.shape, dtype, "b")
    got = build_run(ops.power(a, b), [a, b], [a_np, b_np])
    # numpy's wrapping powers; a negative exponent truncates 1 / a**-b toward zero (C)
    want = [int(x) ** int(y) if y >= 0 else int(1 / int(x) ** -int(y)) for x, y in zip(a_np, b_np)]
    np.testing.assert_array_equal(got, np.array([w % (1 << 64) for w in want], np.uint64).astype(dtype))


def test_where_and_logic(rand):
    c_np = rand((4, 1), "bool")
    x_np, y_np = rand((4, 9)), rand((9,))
    c, x, y = te.placeholder((4, 1), "bool", "c"), te.placeholder((4, 9), name="x"), te.placeholder((9,), name="y")
    np.testing.assert_array_equal(build_run(ops.where(c, x, y), [c, x, y], [c_np, x_np, y_np]),
                                  np.where(c_np, x_np, y_np))
    d_np = rand((4, 9), "bool")
    d = te.placeholder((4, 9), "bool", "d")
    np.testing.assert_array_equal(build_run(ops.logical_and(c, d), [c, d], [c_np, d_np]), c_np & d_np)
    np.testing.assert_array_equal(build_run(ops.logical_not(d), [d], [d_np]), ~d_np)
    np.testing.assert_array_equal(build_run(ops.logical_xor(c, d), [c, d], [c_np, d_np]), c_np ^ d_np)


UNARY = {
    "negative": (np.negative, -2, 2), "abs": (np.abs, -2, 2), "sqrt": (np.sqrt, 0.01, 4),
    "rsqrt": (lambda v: 1 / np.sqrt(v), 0.01, 4), "exp": (np.exp, -20, 20), "log": (np.log, 0.01, 10),
    "reciprocal": (np.reciprocal, 0.5, 3), "floor": (np.floor, -5, 5), "ceil": (np.ceil, -5, 5),
    "round": (np.round, -5, 5), "sign": (np.sign, -2, 2), "erf": (_erf, -4, 4),
    "sin": (np.sin, -7, 7), "cos": (np.cos, -7, 7), "sinh": (np.sinh, -5, 5), "cosh": (np.cosh, -5, 5),
    "softsign": (lambda v: v / (1 + np.abs(v)), -5, 5),
}


@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary(name, rand):
    ref, lo, hi = UNARY[name]
    a_np = rand((3, 50), low=lo, high=hi)
    a = te.placeholder((3, 50), name="a")
    got = build_run(getattr(ops, name)(a), [a], [a_np])
    np.testing.assert_allclose(got, ref(a_np.astype(np.float64)), **ELEM)


def test_cast(rand):
    a_np = rand((4, 20), low=-10, high=10)
    a = te.placeholder((4, 20), name="a")
    np.testing.assert_array_equal(build_run(ops.cast(a, "int32"), [a], [a_np]), a_np.astype(np.int32))
    i_np = rand((4, 20), "int8")
    i = te.placeholder((4, 20), "int8", "i")
    np.testing.assert_array_equal(build_run(ops.cast(i, "float32"), [i], [i_np]), i_np.astype(np.float32))


def _sigmoid(v):
    return 1 / (1 + np.exp(-v))


ACTIVATIONS = {
    "relu": (lambda x: ops.relu(x), lambda v: np.maximum(v, 0)),
    "leaky_relu": (lambda x: ops.leaky_relu(x, 0.1), lambda v: np.where(v > 0, v, 0.1 * v)),
    "clip": (lambda x: ops.clip(x, -0.5, 0.7), lambda v: np.clip(v, -0.5, 0.7)),
    "relu6": (lambda x: ops.relu6(x), lambda v: np.clip(v, 0, 6)),
    "sigmoid": (lambda x: ops.sigmoid(x), _sigmoid),
    "tanh": (lambda x: ops.tanh(x), np.tanh),
    "gelu": (lambda x: ops.gelu(x), lambda v: 0.5 * v * (1 + _erf(v / math.sqrt(2)))),
    "gelu_tanh": (lambda x: ops.gelu(x, approximate="tanh"),
                  lambda v: 0.5 * v * (1 + np.tanh(math.sqrt(2 / math.pi) * (v + 0.044715 * v ** 3)))),
    "elu": (lambda x: ops.elu(x, 0.7), lambda v: np.where(v > 0, v, 0.7 * (np.exp(v) - 1))),
    "hard_sigmoid": (lambda x: ops.hard_sigmoid(x), lambda v: np.clip(0.2 * v + 0.5, 0, 1)),
    "hard_swish": (lambda x: ops.hard_swish(x), lambda v: v * np.clip(v + 3, 0, 6) / 6),
    "softplus": (lambda x: ops.softplus(x), lambda v: np.logaddexp(0, v)),
    "silu": (lambda x: ops.silu(x), lambda v: v * _sigmoid(v)),
    "swish": (lambda x: ops.swish(x, 0.5), lambda v: v * _sigmoid(0.5 * v)),
    "selu": (lambda x: ops.selu(x), lambda v: np.where(v > 0, 1.0507009873554805 * v,
                                                       1.0507009873554805 * 1.6732632423543772 * np.expm1(v))),
    "celu": (lambda x: ops.celu(x, 2.0), lambda v: np.maximum(v, 0) + np.minimum(0, 2.0 * np.expm1(v / 2.0))),
    "thresholded_relu": (lambda x: ops.thresholded_relu(x, 1.5), lambda v: np.where(v > 1.5, v, 0)),
    "shrink": (lambda x: ops.shrink(x, 0.3, 1.0), lambda v: np.where(v < -1, v + 0.3, np.where(v > 1, v - 0.3, 0))),
    "mish": (lambda x: ops.mish(x), lambda v: v * np.tanh(np.logaddexp(0, v))),
}


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation(name, rand):
    make, ref = ACTIVATIONS[name]
    a_np = rand((2, 3, 40), low=-8, high=8)
    a = te.placeholder(a_np.shape, name="a")
    got = build_run(make(a), [a], [a_np])
    np.testing.assert_allclose(got, ref(a_np.astype(np.float64)), **ELEM)


def test_prelu(rand):
    x_np, s_np = rand((2, 5, 3, 4)), rand((5,))
    x, s = te.placeholder(x_np.shape, name="x"), te.placeholder((5,), name="s")
    got = build_run(ops.prelu(x, s), [x, s], [x_np, s_np])
    np.testing.assert_allclose(got, np.where(x_np > 0, x_np, x_np * s_np[:, None, None]), **ELEM)
    s2_np = rand((3, 4))     # ONNX-style: slope broadcast from the right
    s2 = te.placeholder((3, 4), name="s2")
    got = build_run(ops.prelu(x, s2), [x, s2], [x_np, s2_np])
    np.testing.assert_allclose(got, np.where(x_np > 0, x_np, x_np * s2_np), **ELEM)


def test_isnan_isinf():
    a_np = np.array([-np.inf, -1.0, 0.0, np.nan, 2.0, np.inf], np.float32)
    a = te.placeholder(a_np.shape, name="a")
    np.testing.assert_array_equal(build_run(ops.isnan(a), [a], [a_np]), np.isnan(a_np))
    np.testing.assert_array_equal(build_run(ops.isinf(a), [a], [a_np]), np.isinf(a_np))
    np.testing.assert_array_equal(build_run(ops.isinf(a, detect_positive=False), [a], [a_np]), a_np == -np.inf)


@pytest.mark.parametrize("fn,ref,lo,hi", [
    (fast_exp, np.exp, -87, 88), (fast_tanh, np.tanh, -12, 12), (fast_erf, _erf, -6, 6),
    (fast_sigmoid, _sigmoid, -80, 80)], ids=["exp", "tanh", "erf", "sigmoid"])
def test_fast_math_accuracy(fn, ref, lo, hi, rng):
    n = 1 << 16
    a_np = np.concatenate([rng.uniform(lo, hi, n - 4096), rng.uniform(-1, 1, 4096)]).astype(np.float32)
    a = te.placeholder((n,), name="a")
    out = te.compute((n,), lambda i: fn(a[i]), name="out")
    s = te.create_schedule(out.op)
    _, vi = s[out].split(out.op.axis[0], factor=16)
    s[out].vectorize(vi)
    got = np.zeros(n, np.float32)
    te.build(s, [a, out])(a_np, got)
    want = ref(a_np.astype(np.float64))
    tiny = np.abs(want) < 1e-30
    rel = np.abs(got - want)[~tiny] / np.abs(want)[~tiny]
    assert rel.max() < 1e-6
    assert np.all(np.abs(got[tiny]) < 1e-30)


@pytest.mark.parametrize("fn,special", [
    (fast_exp, {np.inf: np.inf, -np.inf: 0.0, 100.0: np.inf, -120.0: 0.0, 88.7: np.exp(np.float32(88.7))}),
    (fast_tanh, {np.inf: 1.0, -np.inf: -1.0, 50.0: 1.0, 0.0: 0.0}),
    (fast_erf, {np.inf: 1.0, -np.inf: -1.0, 10.0: 1.0}),
    (fast_sigmoid, {np.inf: 1.0, -np.inf: 0.0, 200.0: 1.0, -200.0: 0.0})],
    ids=["exp", "tanh", "erf", "sigmoid"])
def test_fast_math_special_values(fn, special):
    keys = list(special) + [np.nan]
    keys += [0.0] * (16 - len(keys))
    a_np = np.array(keys, np.float32)
    a = te.placeholder((16,), name="a")
    out = te.compute((16,), lambda i: fn(a[i]), name="out")
    s = te.create_schedule(out.op)
    s[out].vectorize(out.op.axis[0])
    got = np.zeros(16, np.float32)
    te.build(s, [a, out])(a_np, got)
    for k, (x, want) in enumerate(special.items()):
        np.testing.assert_allclose(got[k], want, rtol=1e-6)
    assert np.isnan(got[len(special)])


@pytest.mark.parametrize("target, register", [("llvm -mcpu=skylake-avx512", "zmm"), ("llvm -mcpu=haswell", "ymm")])
def test_fast_math_has_no_libm_calls(target, register):
    """On AVX2 too: exp's 2**n is te.ldexp (exponent bits), not pow(2, n), which LLVM lowers to an
    ldexpf call per lane without AVX-512's vscalefps."""
    a = te.placeholder((64,), name="a")
    out = te.compute((64,), lambda i: fast_tanh(a[i]) + fast_erf(a[i]) + fast_sigmoid(a[i]), name="out")
    s = te.create_schedule(out.op)
    _, vi = s[out].split(out.op.axis[0], factor=16)
    s[out].vectorize(vi)
    asm = te.build(s, [a, out], target=target).get_source("asm")
    assert "call" not in asm and register in asm


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_ldexp_scales_by_powers_of_two_through_the_whole_range(dtype):
    n_np = np.arange(-252, 255, dtype=dtype)
    x_np = np.full_like(n_np, 1.5)
    x, n = te.placeholder(x_np.shape, dtype, name="x"), te.placeholder(n_np.shape, dtype, name="n")
    out = te.compute(x_np.shape, lambda i: te.ldexp(x[i], n[i]), name="out")
    s = te.create_schedule(out.op)
    _, vi = s[out].split(out.op.axis[0], factor=8)
    s[out].vectorize(vi)
    got = np.zeros_like(x_np)
    te.build(s, [x, n, out])(x_np, n_np, got)
    with np.errstate(over="ignore"):
        want = np.ldexp(x_np, n_np.astype(np.int64))    # float32: 1.5 * 2**128 and up overflow to inf
    normal = np.abs(want) >= np.finfo(dtype).tiny
    np.testing.assert_array_equal(got[normal], want[normal])
    assert np.all(np.abs(got[~normal] - want[~normal]) <= np.finfo(dtype).smallest_subnormal)   # within one


def test_chain_is_one_loop_nest(rand):
    a_np, b_np, c_np = rand((8, 64, 56)), rand((64, 1)), rand((56,))
    a, b, c = (te.placeholder(a_np.shape, name="a"), te.placeholder((64, 1), name="b"),
               te.placeholder((56,), name="c"))
    out = ops.gelu(ops.add(ops.multiply(a, b), c))
    s = ops.schedule([out])
    text = str(te.lower(s, [a, b, c, out]))
    assert text.count("produce") == 1 and "vectorized" in text and "parallel" in text
    got = np.zeros(out.shape, np.float32)
    te.build(s, [a, b, c, out])(a_np, b_np, c_np, got)
    v = a_np.astype(np.float64) * b_np + c_np
    np.testing.assert_allclose(got, 0.5 * v * (1 + _erf(v / math.sqrt(2))), **ELEM)


@pytest.mark.parametrize("n,lanes", [(56, 56), (112, "register"), (100, 50), (97, 1), (7, 7), (256, "register")])
def test_injective_vector_width(n, lanes, rand):
    """A short axis whole, else one register of the host's lanes where they divide it (16 with
    AVX-512, 8 with AVX2), else its largest divisor that fits; vectorized unless that is 1."""
    target = te.target.host()
    lanes = target.lanes() if lanes == "register" else lanes
    assert vector_lanes(n, target) == lanes
    a_np = rand((3, n))
    a = te.placeholder((3, n), name="a")
    out = ops.relu(a)
    s = ops.schedule([out])
    assert ("vectorized" in str(te.lower(s, [a, out]))) == (lanes > 1)
    np.testing.assert_array_equal(build_run(out, [a], [a_np]), np.maximum(a_np, 0))


def test_bad_broadcast():
    with pytest.raises(ValueError, match="do not broadcast"):
        ops.add(te.placeholder((3, 4), name="a"), te.placeholder((5,), name="b"))
    with pytest.raises(ValueError, match="approximate"):
        ops.gelu(te.placeholder((3,), name="a"), approximate="fast")
