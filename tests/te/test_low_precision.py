"""float16 and bfloat16 as storage types: loads, stores and casts convert, arithmetic is float32."""
from __future__ import annotations

import ml_dtypes  # noqa: F401  (numpy's 'bfloat16')
import numpy as np
import pytest

import te
from te.target import enabled_features, host

LOW = ("float16", "bfloat16")
# edge values: the largest finite fp16, overflow to inf, a fp16 subnormal, inf, NaN, ties
SPECIAL = np.array([65504.0, 70000.0, 1e-6, -0.0, np.inf, -np.inf, np.nan, 1.00048828125, 3.0e38],
                   np.float32)


def _same(got: np.ndarray, want: np.ndarray) -> bool:
    """Bit-for-bit equal, every NaN counted alike."""
    g, w = got.astype(np.float32), want.astype(np.float32)
    return bool(np.all((g == w) | (np.isnan(g) & np.isnan(w))) and np.array_equal(np.signbit(g), np.signbit(w)))


@pytest.mark.parametrize("dtype", LOW)
@pytest.mark.parametrize("lanes", [1, 16])
@pytest.mark.filterwarnings("ignore:overflow encountered in cast")
def test_convert_at_the_edges_rounds_as_numpy(dtype, lanes, rand):
    A = te.placeholder((4, 64), dtype, name="A")
    B = te.placeholder((4, 64), "float32", name="B")
    C = te.compute((4, 64), lambda i, j: (A[i, j] * 2.0 + B[i, j]).astype(dtype), name="C")
    D = te.compute((4, 64), lambda i, j: B[i, j].astype(dtype), name="D")
    s = te.create_schedule([C.op, D.op])
    if lanes > 1:
        for t in (C, D):
            _, ji = s[t].split(t.op.axis[1], factor=lanes)
            s[t].vectorize(ji)
    f = te.build(s, [A, B, C, D])
    b = rand((4, 64)) * 100
    b[0, :len(SPECIAL)] = SPECIAL
    a = (rand((4, 64)) * 10).astype(dtype)
    c, d = np.zeros((4, 64), dtype), np.zeros((4, 64), dtype)
    f(a, b, c, d)
    assert _same(d, b.astype(dtype))                                  # fp32 -> fp16/bf16, ties to even
    assert _same(c, (a.astype(np.float32) * 2 + b).astype(dtype))     # fp16/bf16 -> fp32 is exact


def test_arithmetic_reductions_and_math_are_float32():
    A = te.placeholder((8, 16), "float16", name="A")
    k = te.reduce_axis((0, 16), name="k")
    assert (A[0, 0] + A[0, 1]).dtype == "float32"
    assert (A[0, 0] * 2.0).dtype == "float32" and (A[0, 0] > 0).a.dtype == "float32"
    assert te.exp(A[0, 0]).dtype == "float32"
    S = te.compute((8,), lambda i: te.sum(A[i, k], axis=k), name="S")
    assert S.dtype == "float32"
    # casts between a 16-bit float and anything but float32 go through float32
    cast = A[0, 0].astype("int32")
    assert cast.dtype == "int32" and cast.value.dtype == "float32"
    assert te.placeholder((2,), "bfloat16")[0].astype("float16").value.dtype == "float32"


@pytest.mark.parametrize("dtype", LOW)
def test_integer_casts_and_sums(dtype, rand):
    A = te.placeholder((8, 32), dtype, name="A")
    k = te.reduce_axis((0, 32), name="k")
    S = te.compute((8,), lambda i: te.sum(A[i, k], axis=k), name="S")
    I = te.compute((8, 32), lambda i, j: A[i, j].astype("int32"), name="I")
    H = te.compute((8, 32), lambda i, j: I[i, j].astype(dtype), name="H")
    f = te.build(te.create_schedule([S.op, H.op]), [A, S, I, H])
    a = (rand((8, 32)) * 50).astype(dtype)
    s, i, h = np.zeros(8, np.float32), np.zeros((8, 32), np.int32), np.zeros((8, 32), dtype)
    f(a, s, i, h)
    np.testing.assert_allclose(s, a.astype(np.float32).sum(1), rtol=1e-5, atol=1e-4)
    np.testing.assert_array_equal(i, a.astype(np.float32).astype(np.int32))
    assert _same(h, i.astype(np.float32).astype(dtype))


def test_conversions_use_the_cpu_instructions():
    features = enabled_features(host())
    for dtype, feature, instr in [("float16", "f16c", "vcvtph2ps"), ("float16", "f16c", "vcvtps2ph"),
                                  ("bfloat16", "avx512bf16", "vcvtneps2bf16")]:
        if feature not in features:
            continue
        A = te.placeholder((64,), dtype, name="A")
        B = te.placeholder((64,), "float32", name="B")      # (a fp32 operand: LLVM cannot shrink it to fp16)
        C = te.compute((64,), lambda i: (A[i] * B[i]).astype(dtype), name="C")
        s = te.create_schedule(C.op)
        _, ji = s[C].split(C.op.axis[0], factor=16)
        s[C].vectorize(ji)
        assert instr in te.build(s, [A, B, C]).get_source("asm"), (dtype, instr)


@pytest.mark.parametrize("target", [None, "llvm -mcpu=x86-64"])
@pytest.mark.parametrize("lanes", [1, 8])
@pytest.mark.filterwarnings("ignore:overflow encountered in cast", "ignore:invalid value encountered in cast")
def test_conversions_without_the_instructions_round_as_numpy(target, lanes):
    """A target without F16C / AVX512-BF16 (x86-64 has neither) converts in integer arithmetic,
    not by compiler-rt calls the process may lack (a call to one was a segfault), bit for bit as
    numpy and ml_dtypes: every float16, and float32s around every rounding edge."""
    halves = np.arange(1 << 16, dtype=np.uint16).view(np.float16)
    rng = np.random.default_rng(5)
    steps = np.arange(1 << 16, dtype=np.uint32)
    near = lambda edges: rng.choice(np.array(edges, np.uint32), 1 << 16)    # noqa: E731
    bits = np.concatenate([rng.integers(0, 1 << 32, 1 << 16, dtype=np.uint32),
                           (steps << 16) + near([0, 0x7FFF, 0x8000, 0x8001]),          # bfloat16 ties
                           (steps << 13) + 0x38000000 + near([0, 0xFFF, 0x1000, 0x1001])])  # float16 ties
    floats = np.concatenate([bits.view(np.float32), SPECIAL])
    n = 1 << 16
    floats = np.resize(floats, (floats.size + n - 1) // n * n)
    for src, dst, x in [("float16", "float32", halves), ("float32", "float16", floats),
                        ("float32", "bfloat16", floats), ("float16", "bfloat16", halves),
                        ("bfloat16", "float16", floats.astype("bfloat16"))]:
        A = te.placeholder((x.size,), src, name="A")
        B = te.compute((x.size,), lambda i: A[i].astype(dst), name="B")
        s = te.create_schedule(B.op)
        if lanes > 1:
            _, ji = s[B].split(B.op.axis[0], factor=lanes)
            s[B].vectorize(ji)
        f = te.build(s, [A, B], target=target)
        assert "call" not in f.get_source("asm"), (src, dst, "a compiler-rt call")
        out = np.zeros(x.size, dst)
        f(x, out)
        want = x.astype(np.float32).astype(dst)
        quiet = np.isnan(want.astype(np.float32))         # NaN payloads: F16C keeps them, numpy too
        assert _same(out[~quiet], want[~quiet]), (src, dst)
        assert np.isnan(out[quiet].astype(np.float32)).all(), (src, dst)


@pytest.mark.parametrize("dtype", LOW)
def test_exported_library_takes_16_bit_arrays(dtype, tmp_path, rand):
    A = te.placeholder((32,), dtype, name="A")
    C = te.compute((32,), lambda i: (A[i] + 1.0).astype(dtype), name="C")
    te.build(te.create_schedule(C.op), [A, C], name="inc").export_library(tmp_path / "inc.so")
    m = te.runtime.load_module(tmp_path / "inc.so")
    assert m["inc"].arg_specs[0][2] == np.dtype(dtype)
    a, c = rand(32).astype(dtype), np.zeros(32, dtype)
    m(a, c)
    assert _same(c, (a.astype(np.float32) + 1).astype(dtype))
    with pytest.raises(ValueError, match=f"expected dtype {dtype}"):
        m(a.astype(np.float32), c)
