"""Every supported dtype, checked against numpy's semantics (wrap-around, floor div/mod, casts)."""
from __future__ import annotations

import numpy as np
import pytest

import te

FLOATS = ["float32", "float64"]
SIGNED = ["int8", "int16", "int32", "int64"]
UNSIGNED = ["uint8", "uint16", "uint32", "uint64"]
INTS = SIGNED + UNSIGNED
ALL = FLOATS + INTS + ["bool"]


def build1(fn, dtypes, n, out_names=("C",), vectorize=False, split=None):
    """Placeholders X0.. of the given dtypes (1-D, length n) and compute outputs fn(*loads)."""
    X = [te.placeholder((n,), dt, name=f"X{k}") for k, dt in enumerate(dtypes)]
    C = te.compute((n,), lambda i: fn(*[x[i] for x in X]), name=out_names[0])
    outs = C if isinstance(C, list) else [C]
    s = te.create_schedule(outs[0].op)
    ax = outs[0].op.axis[0]
    if split:
        ax = s[outs[0]].split(ax, factor=split)[1]
    if vectorize:
        s[outs[0]].vectorize(ax)
    f = te.build(s, X + outs)

    def call(*arrays):
        res = [np.zeros(t.shape, np.dtype(t.dtype)) for t in outs]
        f(*arrays, *res)
        return res[0] if len(res) == 1 else res
    return call, outs


def _tol(dtype):
    return dict(rtol=1e-6, atol=1e-6) if dtype == "float32" else dict(rtol=1e-13, atol=0)


# ------------------------------------------------------------------ elementwise arithmetic

@pytest.mark.parametrize("vectorize", [False, True], ids=["scalar", "vector"])
@pytest.mark.parametrize("dtype", FLOATS + INTS)
def test_add_sub_mul_every_dtype(dtype, vectorize, rand):
    n = 32
    call, outs = build1(lambda a, b: (a + b, a - b, a * b, te.max_of(a, b), te.min_of(a, b)),
                        [dtype, dtype], n, vectorize=vectorize)
    assert all(t.dtype == dtype for t in outs)
    a, b = rand(n, dtype), rand(n, dtype)
    with np.errstate(over="ignore"):
        want = [a + b, a - b, a * b, np.maximum(a, b), np.minimum(a, b)]
    for got, w in zip(call(a, b), want):
        assert got.dtype == np.dtype(dtype)
        if dtype in FLOATS:
            np.testing.assert_allclose(got, w, **_tol(dtype))
        else:
            np.testing.assert_array_equal(got, w)


@pytest.mark.parametrize("dtype", INTS)
def test_integer_wraparound_matches_numpy(dtype, rng):
    n = 32
    info = np.iinfo(dtype)
    a = rng.integers(info.min, int(info.max) + 1, size=n, dtype=dtype)
    b = rng.integers(info.min, int(info.max) + 1, size=n, dtype=dtype)
    call, _ = build1(lambda x, y: (x + y, x - y, x * y), [dtype, dtype], n)
    with np.errstate(over="ignore"):
        want = [a + b, a - b, a * b]
    for got, w in zip(call(a, b), want):
        np.testing.assert_array_equal(got, w)


@pytest.mark.parametrize("dtype", INTS)
def test_integer_constants_wrap(dtype):
    """Constant folding of narrow integer types must wrap like the hardware does."""
    n = 8
    big = int(np.iinfo(dtype).max)
    call, _ = build1(lambda x: (x + big) + big, [dtype], n)
    a = np.arange(n).astype(dtype)
    with np.errstate(over="ignore"):
        want = (a + np.array(big, dtype)) + np.array(big, dtype)
    np.testing.assert_array_equal(call(a), want)


@pytest.mark.parametrize("dtype", FLOATS)
def test_float_true_division(dtype, rand):
    n = 16
    call, _ = build1(lambda a, b: a / b, [dtype, dtype], n, vectorize=True)
    a, b = rand(n, dtype), rand(n, dtype, low=0.5, high=2)
    np.testing.assert_allclose(call(a, b), a / b, **_tol(dtype))


# ------------------------------------------------------------------ floor division and modulo

NUMS = [-128, -100, -9, -8, -7, -3, -1, 0, 1, 3, 7, 8, 9, 100, 127, -2, -5, 5, 6, -6, 2, 4, -4, 11,
        -11, 13, -13, 15, -15, 17, -17, 0]
DENS = [3, -3, 2, -2, 7, -7, 1, -1, 5, 8, -8, 4, 3, -4, 3, -3, 9, -9, 6, -6, 5, -5, 11, -11, 2,
        -2, 7, -7, 4, -4, 13, 1]


@pytest.mark.parametrize("vectorize", [False, True], ids=["scalar", "vector"])
@pytest.mark.parametrize("dtype", SIGNED)
def test_signed_floordiv_floormod_match_numpy(dtype, vectorize):
    a = np.array(NUMS, dtype)
    b = np.array(DENS, dtype)
    call, _ = build1(lambda x, y: (x // y, x % y, x / y), [dtype, dtype], len(a), vectorize=vectorize)
    q, r, q2 = call(a, b)
    np.testing.assert_array_equal(q, a // b)
    np.testing.assert_array_equal(r, a % b)
    np.testing.assert_array_equal(q2, a // b, err_msg="'/' on integers is floor division")


@pytest.mark.parametrize("divisor", [3, -3, 8, -8, 1, -1])
@pytest.mark.parametrize("dtype", SIGNED)
def test_signed_floordiv_floormod_by_constant(dtype, divisor):
    a = np.array(NUMS, dtype)
    call, _ = build1(lambda x: (x // divisor, x % divisor), [dtype], len(a), vectorize=True)
    q, r = call(a)
    d = np.array(divisor, dtype)
    with np.errstate(over="ignore"):        # int8: -128 // -1 wraps to -128 in numpy too
        np.testing.assert_array_equal(q, a // d)
        np.testing.assert_array_equal(r, a % d)


@pytest.mark.parametrize("dtype", UNSIGNED)
def test_unsigned_div_mod(dtype, rng):
    info = np.iinfo(dtype)
    a = rng.integers(0, int(info.max) + 1, size=32, dtype=dtype)
    b = rng.integers(1, min(int(info.max), 1000) + 1, size=32, dtype=dtype)
    a[:4] = [info.max, info.max, 0, 1 << (np.dtype(dtype).itemsize * 8 - 1)]
    b[:4] = [1, info.max, 7, 3]
    call, _ = build1(lambda x, y: (x // y, x % y, x // 3, x % 3), [dtype, dtype], 32, vectorize=True)
    q, r, q3, r3 = call(a, b)
    np.testing.assert_array_equal(q, a // b)
    np.testing.assert_array_equal(r, a % b)
    np.testing.assert_array_equal(q3, a // np.array(3, dtype))
    np.testing.assert_array_equal(r3, a % np.array(3, dtype))


@pytest.mark.parametrize("dtype", UNSIGNED)
def test_unsigned_comparisons_and_minmax_use_unsigned_order(dtype):
    top = int(np.iinfo(dtype).max)
    a = np.array([0, 1, top, top - 1, 100, 5, top // 2 + 1, 7], dtype)
    b = np.array([top, 0, 1, top, 99, 5, 3, top // 2 + 1], dtype)
    call, _ = build1(lambda x, y: (x < y, te.max_of(x, y), te.min_of(x, y)), [dtype, dtype], 8)
    lt, mx, mn = call(a, b)
    np.testing.assert_array_equal(lt, a < b)
    np.testing.assert_array_equal(mx, np.maximum(a, b))
    np.testing.assert_array_equal(mn, np.minimum(a, b))


@pytest.mark.parametrize("dtype", FLOATS)
def test_float_floordiv_floormod(dtype, rand):
    a = rand(32, dtype, low=-10, high=10)
    b = rand(32, dtype, low=0.5, high=3)
    b[::2] *= -1
    call, _ = build1(lambda x, y: (x // y, x % y), [dtype, dtype], 32)
    q, r = call(a, b)
    np.testing.assert_allclose(q, np.floor_divide(a, b))
    np.testing.assert_allclose(r, np.mod(a, b), atol=1e-5 if dtype == "float32" else 1e-12)


@pytest.mark.parametrize("dtype", SIGNED)
def test_signed_abs(dtype):
    lo = np.iinfo(dtype).min
    a = np.array([lo, -5, -1, 0, 1, 7, lo + 1, 100 if dtype != "int8" else 99], dtype)
    call, outs = build1(lambda x: te.abs(x), [dtype], 8)
    assert outs[0].dtype == dtype
    with np.errstate(over="ignore"):
        np.testing.assert_array_equal(call(a), np.abs(a))


@pytest.mark.parametrize("dtype", UNSIGNED)
def test_unsigned_abs_is_identity(dtype):
    top = int(np.iinfo(dtype).max)
    a = np.array([0, 1, top, top // 2 + 1, 200, 5, 17, top - 3], dtype)
    call, _ = build1(lambda x: te.abs(x), [dtype], 8)
    np.testing.assert_array_equal(call(a), a)


# ------------------------------------------------------------------ casts

CAST_DTYPES = FLOATS + INTS + ["bool"]


def _cast_source(src, dst, rng):
    n = 24
    if src == "bool":
        return rng.random(n) < 0.5
    if src in FLOATS:
        # stay inside the destination's range: out-of-range float->int casts are undefined (in C and LLVM)
        if dst in UNSIGNED:
            lo, hi = 0.0, 250.0
        elif dst in SIGNED:
            lo, hi = -120.0, 120.0
        else:
            lo, hi = -1000.0, 1000.0
        x = rng.uniform(lo, hi, n).astype(src)
        x[:4] = [0.0, 0.75, 1.0, 2.5]
        if dst not in UNSIGNED:
            x[4:7] = [-0.75, -1.5, -2.0]
        return x
    info = np.iinfo(src)
    x = rng.integers(info.min, int(info.max) + 1, size=n, dtype=src)
    x[:3] = [0, 1, info.max]
    return x


@pytest.mark.parametrize("dst", CAST_DTYPES)
@pytest.mark.parametrize("src", CAST_DTYPES)
def test_cast_matches_numpy_astype(src, dst, rng):
    x = _cast_source(src, dst, rng)
    call, outs = build1(lambda v: v.astype(dst), [src], len(x))
    assert outs[0].dtype == dst
    got = call(x)
    with np.errstate(all="ignore"):
        want = x.astype(dst)
    if dst in FLOATS:
        np.testing.assert_allclose(got, want, rtol=1e-7 if dst == "float32" else 0)
    else:
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("dst", INTS + FLOATS)
def test_cast_vectorized(dst, rng):
    # x * 1.5 below 120: inside every destination's range (out-of-range casts are undefined)
    x = rng.uniform(0, 80, 32).astype(np.float32)
    call, _ = build1(lambda v: (v * 1.5).astype(dst), ["float32"], 32, vectorize=True)
    np.testing.assert_allclose(call(x), (x * np.float32(1.5)).astype(dst), rtol=1e-6)


def test_cast_of_python_constant_wraps():
    call, _ = build1(lambda x: x + te.const(300, "int32").astype("int8"), ["int8"], 4)
    a = np.array([0, 1, -1, 5], np.int8)
    np.testing.assert_array_equal(call(a), a + np.int32(300).astype(np.int8))


# ------------------------------------------------------------------ bool

def test_bool_inputs_outputs_and_logic(rand):
    n = 40
    call, outs = build1(lambda p, q, x: (p & q, p | q, ~p, te.if_then_else(p, x, -x), x > 0.25),
                        ["bool", "bool", "float32"], n, vectorize=True)
    assert [t.dtype for t in outs] == ["bool", "bool", "bool", "float32", "bool"]
    p, q, x = rand(n, "bool"), rand(n, "bool"), rand(n)
    a, o, nt, sel, gt = call(p, q, x)
    np.testing.assert_array_equal(a, p & q)
    np.testing.assert_array_equal(o, p | q)
    np.testing.assert_array_equal(nt, ~p)
    np.testing.assert_allclose(sel, np.where(p, x, -x))
    np.testing.assert_array_equal(gt, x > 0.25)
    assert a.view(np.uint8).max() <= 1, "bools are stored as 0/1 bytes"


def test_bool_arithmetic_and_count(rand):
    n = 16
    P = te.placeholder((3, n), "bool", name="P")
    k = te.reduce_axis((0, n), name="k")
    C = te.compute((3,), lambda i: te.sum(P[i, k].astype("int32"), axis=k), name="C")
    s = te.create_schedule(C.op)
    f = te.build(s, [P, C])
    p = rand((3, n), "bool")
    c = np.zeros(3, np.int32)
    f(p, c)
    np.testing.assert_array_equal(c, p.sum(axis=1))


def test_bool_any_all_reduction(rand):
    n = 9
    P = te.placeholder((6, n), "bool", name="P")
    any_r = te.comm_reducer(lambda x, y: x | y, lambda t: te.const(False, t), name="any")
    all_r = te.comm_reducer(lambda x, y: x & y, lambda t: te.const(True, t), name="all")
    k1, k2 = te.reduce_axis((0, n), name="k1"), te.reduce_axis((0, n), name="k2")
    A = te.compute((6,), lambda i: any_r(P[i, k1], axis=k1), name="Any")
    L = te.compute((6,), lambda i: all_r(P[i, k2], axis=k2), name="All")
    s = te.create_schedule([A.op, L.op])
    f = te.build(s, [P, A, L])
    p = rand((6, n), "bool")
    p[0] = False
    p[1] = True
    a, l_ = np.zeros(6, bool), np.zeros(6, bool)
    f(p, a, l_)
    np.testing.assert_array_equal(a, p.any(axis=1))
    np.testing.assert_array_equal(l_, p.all(axis=1))


# ------------------------------------------------------------------ reductions per dtype

@pytest.mark.parametrize("dtype", FLOATS + INTS)
def test_reductions_every_dtype(dtype, rand):
    M, N = 5, 11
    A = te.placeholder((M, N), dtype, name="A")
    ks = [te.reduce_axis((0, N), name=f"k{t}") for t in range(3)]
    S = te.compute((M,), lambda i: te.sum(A[i, ks[0]], axis=ks[0]), name="S")
    X = te.compute((M,), lambda i: te.max(A[i, ks[1]], axis=ks[1]), name="X")
    Nn = te.compute((M,), lambda i: te.min(A[i, ks[2]], axis=ks[2]), name="N")
    s = te.create_schedule([S.op, X.op, Nn.op])
    f = te.build(s, [A, S, X, Nn])
    a = rand((M, N), dtype)
    if dtype in INTS:       # all-extreme rows check the identities of max and min
        info = np.iinfo(dtype)
        a[0] = info.min
        a[1] = info.max
    outs = [np.zeros(M, dtype) for _ in range(3)]
    f(a, *outs)
    with np.errstate(over="ignore"):
        want_sum = a.sum(axis=1, dtype=dtype)
    if dtype in FLOATS:
        np.testing.assert_allclose(outs[0], want_sum, rtol=1e-5, atol=1e-5)
    else:
        np.testing.assert_array_equal(outs[0], want_sum)
    np.testing.assert_array_equal(outs[1], a.max(axis=1))
    np.testing.assert_array_equal(outs[2], a.min(axis=1))


@pytest.mark.parametrize("dtype", ["int8", "uint8", "int32", "float64"])
def test_matmul_other_dtypes(dtype, rand):
    M, K, N = 7, 9, 16
    A = te.placeholder((M, K), dtype, name="A")
    B = te.placeholder((K, N), dtype, name="B")
    k = te.reduce_axis((0, K), name="k")
    acc = "float64" if dtype == "float64" else "int32"
    C = te.compute((M, N), lambda i, j: te.sum(A[i, k].astype(acc) * B[k, j].astype(acc), axis=k),
                   name="C")
    s = te.create_schedule(C.op)
    s[C].reorder(C.op.axis[0], k, C.op.axis[1])
    s[C].vectorize(C.op.axis[1])
    f = te.build(s, [A, B, C])
    a, b = rand((M, K), dtype), rand((K, N), dtype)
    c = np.zeros((M, N), acc)
    f(a, b, c)
    want = a.astype(acc) @ b.astype(acc)
    if dtype == "float64":
        np.testing.assert_allclose(c, want, rtol=1e-12)
    else:
        np.testing.assert_array_equal(c, want)


def test_mixed_dtype_expression(rand):
    n = 16
    call, outs = build1(lambda a, b, c: a.astype("float32") * b + c.astype("float32"),
                        ["int8", "float32", "uint16"], n)
    assert outs[0].dtype == "float32"
    a, b, c = rand(n, "int8"), rand(n), rand(n, "uint16", high=1000)
    np.testing.assert_allclose(call(a, b, c), a.astype(np.float32) * b + c.astype(np.float32), rtol=1e-6)


def test_index_arithmetic_into_int_tensor():
    n = 12
    C = te.compute((n,), lambda i: ((i - 6) // 4 * 10 + (i - 6) % 4).astype("int32"), name="C")
    f = te.build(te.create_schedule(C.op), [C])
    c = np.zeros(n, np.int32)
    f(c)
    i = np.arange(n) - 6
    np.testing.assert_array_equal(c, i // 4 * 10 + i % 4)


def test_narrow_int_overflow_not_folded_away():
    n = 20
    C = te.compute((n,), lambda i: te.if_then_else(i.astype("int8") + 120 > 0, 1, 0).astype("int32"),
                   name="C")
    D = te.compute((n,), lambda i: te.if_then_else((i * 100).astype("int8") >= 0, 1, 0).astype("int32"),
                   name="D")
    f = te.build(te.create_schedule([C.op, D.op]), [C, D])
    c, d = np.zeros(n, np.int32), np.zeros(n, np.int32)
    f(c, d)
    i = np.arange(n)
    with np.errstate(over="ignore"):
        np.testing.assert_array_equal(c, (i.astype(np.int8) + np.int8(120) > 0).astype(np.int32))
        np.testing.assert_array_equal(d, ((i * 100).astype(np.int8) >= 0).astype(np.int32))


# ------------------------------------------------------------------ traps (run in a child process)

_DIV_SCRIPT = """
import sys, numpy as np, te
dt, x, y = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
A = te.placeholder((4,), dt, name="A")
B = te.placeholder((4,), dt, name="B")
Q, R = te.compute((4,), lambda i: (A[i] // B[i], A[i] % B[i]), name="QR")
f = te.build(te.create_schedule(Q.op), [A, B, Q, R])
a, b = np.full(4, x, dt), np.full(4, y, dt)
q, r = np.zeros(4, dt), np.zeros(4, dt)
f(a, b, q, r)
with np.errstate(all="ignore"):
    assert np.array_equal(q, a // b), (q, a // b)
    assert np.array_equal(r, a % b), (r, a % b)
print("ok")
"""


def _run_div_child(dtype, x, y):
    import os
    import subprocess
    import sys
    env = dict(os.environ, TILEWISE_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-c", _DIV_SCRIPT, dtype, str(x), str(y)],
                          capture_output=True, text=True, timeout=120, env=env)


def test_division_child_process_harness_works():
    p = _run_div_child("int32", -7, 2)
    assert p.returncode == 0 and "ok" in p.stdout, p.stderr


@pytest.mark.parametrize("dtype", ["int8", "int32", "int64"])
def test_int_min_floordiv_minus_one_does_not_crash(dtype):
    p = _run_div_child(dtype, int(np.iinfo(dtype).min), -1)
    assert p.returncode == 0 and "ok" in p.stdout, f"exit {p.returncode}: {p.stderr[-500:]}"


@pytest.mark.parametrize("dtype", ["int32", "uint8"])
def test_integer_division_by_zero_does_not_crash(dtype):
    p = _run_div_child(dtype, 5, 0)
    assert p.returncode == 0 and "ok" in p.stdout, f"exit {p.returncode}: {p.stderr[-500:]}"
