"""s[C].tensorize: int8 dot-product nests emitted as vpdpbusd, vpmaddwd and AMX tiles, checked
against numpy's int64 matmul; nests that are not what the intrinsic computes are ScheduleErrors."""
from __future__ import annotations

import numpy as np
import pytest

import te
from te import tensorize
from te.schedule import ScheduleError, replay
from te.target import Target, host

HOST = host().feature_set
needs = {name: pytest.mark.skipif(not set(tensorize.get(name).features) <= HOST,
                                   reason=f"this CPU lacks {name}")
         for name in ("vpdpbusd", "vpdpbusd.256", "pmaddwd", "pmaddwd.256", "amx")}


def packed_matmul(M: int, N: int, K: int, lanes: int, group: int):
    """A uint8 (M, K) times B int8 packed as (N/lanes, K/group, lanes, group) -> C int32."""
    A = te.placeholder((M, K), "uint8", name="A")
    B = te.placeholder((N // lanes, K // group, lanes, group), "int8", name="Bp")
    k = te.reduce_axis((0, K), name="k")
    C = te.compute((M, N), lambda i, j: te.sum(
        A[i, k].astype("int32") * B[j // lanes, k // group, j % lanes, k % group].astype("int32"), axis=k),
        name="C")
    return A, B, C


def pack(b: np.ndarray, lanes: int, group: int) -> np.ndarray:
    K, N = b.shape
    return np.ascontiguousarray(b.reshape(K // group, group, N // lanes, lanes).transpose(2, 0, 3, 1))


def operands(rng, M, N, K):
    a = rng.integers(0, 256, (M, K)).astype(np.uint8)
    b = rng.integers(-128, 128, (K, N)).astype(np.int8)
    return a, b, a.astype(np.int64) @ b.astype(np.int64)


def vector_schedule(C, lanes: int, group: int, intrin: str):
    s = te.create_schedule(C.op)
    i, j = C.op.axis
    jo, ji = s[C].split(j, factor=lanes)
    ko, ki = s[C].split(C.op.reduce_axis[0], factor=group)
    s[C].reorder(i, jo, ko, ji, ki)
    s[C].tensorize(ji, intrin)
    return s


@pytest.mark.parametrize("intrin,lanes,group", [
    pytest.param("vpdpbusd", 16, 4, marks=needs["vpdpbusd"]),
    pytest.param("vpdpbusd.256", 8, 4, marks=needs["vpdpbusd.256"]),
    pytest.param("pmaddwd", 16, 2, marks=needs["pmaddwd"]),
    pytest.param("pmaddwd.256", 8, 2, marks=needs["pmaddwd.256"])])
def test_vector_dot_matches_numpy(rng, intrin, lanes, group):
    M, N, K = 5, 32, 24
    A, B, C = packed_matmul(M, N, K, lanes, group)
    f = te.build(vector_schedule(C, lanes, group, intrin), [A, B, C])
    a, b, ref = operands(rng, M, N, K)
    # the extremes too: 255 x -128 in every product (what vpmaddubsw would saturate)
    a[0], b[:, 0] = 255, -128
    ref = a.astype(np.int64) @ b.astype(np.int64)
    c = np.zeros((M, N), np.int32)
    f(a, pack(b, lanes, group), c)
    np.testing.assert_array_equal(c, ref)
    op = "vpdpbusd" if group == 4 else "vpmaddwd"
    assert op in f.get_source("asm")


@needs["amx"]
@pytest.mark.parametrize("bm,bn,k_inside", [(32, 32, True), (16, 16, True), (16, 32, False)])
def test_amx_matches_numpy(rng, bm, bn, k_inside):
    M, N, K = 64, 64, 192
    A, B, C = packed_matmul(M, N, K, 16, 4)
    s = te.create_schedule(C.op)
    i, j = C.op.axis
    io, jo, ii, ji = s[C].tile(i, j, bm, bn)
    jb, j16 = s[C].split(ji, factor=16)
    ko, k64 = s[C].split(C.op.reduce_axis[0], factor=64)
    kq, k4 = s[C].split(k64, factor=4)
    if k_inside:            # C zeroed and kept in tiles over the whole reduction
        s[C].reorder(io, jo, ii, jb, j16, ko, kq, k4)
    else:                   # one tile step per region: C loaded and stored around it
        s[C].reorder(io, jo, ko, ii, jb, j16, kq, k4)
    s[C].tensorize(ii, "amx")
    f = te.build(s, [A, B, C])
    a, b, ref = operands(rng, M, N, K)
    c = np.zeros((M, N), np.int32)
    f(a, pack(b, 16, 4), c)
    np.testing.assert_array_equal(c, ref)
    assert "tdpbusd" in f.get_source("asm")


def test_unknown_intrinsic_is_a_schedule_error():
    A, B, C = packed_matmul(4, 16, 8, 16, 4)
    s = te.create_schedule(C.op)
    with pytest.raises(ScheduleError, match="unknown intrinsic 'vnni'.*known: amx"):
        s[C].tensorize(C.op.axis[1], "vnni")


def test_a_nest_of_the_wrong_layout_is_refused_when_lowered():
    # B row-major (K, N): the lanes would read B with stride 1, not 4
    A = te.placeholder((4, 8), "uint8", name="A")
    B = te.placeholder((8, 16), "int8", name="B")
    k = te.reduce_axis((0, 8), name="k")
    C = te.compute((4, 16), lambda i, j: te.sum(A[i, k].astype("int32") * B[k, j].astype("int32"), axis=k))
    s = vector_schedule(C, 16, 4, "vpdpbusd")
    with pytest.raises(ScheduleError, match="tensorize vpdpbusd at loop j.inner: vpdpbusd needs a loop of 16"):
        te.lower(s, [A, B, C])


def test_float_operands_are_refused():
    A = te.placeholder((4, 8), "float32", name="A")
    B = te.placeholder((1, 2, 16, 4), "float32", name="B")
    k = te.reduce_axis((0, 8), name="k")
    C = te.compute((4, 16), lambda i, j: te.sum(A[i, k] * B[j // 16, k // 4, j % 16, k % 4], axis=k))
    s = vector_schedule(C, 16, 4, "vpdpbusd")
    with pytest.raises(ScheduleError, match="not an int32 sum"):
        te.lower(s, [A, B, C])


def test_a_target_without_the_feature_is_refused():
    A, B, C = packed_matmul(4, 16, 8, 16, 4)
    s = vector_schedule(C, 16, 4, "vpdpbusd")
    with pytest.raises(ScheduleError, match="lacks avx512vnni.*dot_intrinsic"):
        te.build(s, [A, B, C], target=Target("haswell"))


def test_dot_intrinsic_follows_the_target_features():
    assert tensorize.dot_intrinsic(Target("haswell"), lanes=8) == "pmaddwd.256"
    assert tensorize.dot_intrinsic(Target("skylake-avx512")) == "pmaddwd"
    assert tensorize.dot_intrinsic(Target("cascadelake")) == "vpdpbusd"
    assert tensorize.dot_intrinsic(Target("haswell")) is None


def test_tensorize_replays_from_its_step():
    A, B, C = packed_matmul(4, 16, 8, 16, 4)
    s = vector_schedule(C, 16, 4, "vpdpbusd")
    A2, B2, C2 = packed_matmul(4, 16, 8, 16, 4)
    s2 = replay(te.create_schedule(C2.op), s.to_json())
    assert str(te.lower(s2, [A2, B2, C2])) == str(te.lower(s, [A, B, C]))
    assert "tensorize=vpdpbusd" in str(te.lower(s2, [A2, B2, C2]))


def test_amx_refused_by_linux_is_a_one_line_load_error(monkeypatch):
    from te import runtime
    monkeypatch.setattr(runtime, "_amx_granted", False)
    monkeypatch.setattr(runtime, "_arch_prctl_xtiledata", lambda: 22)
    with pytest.raises(runtime.LoadError, match=r"mm.so uses AMX tiles, but Linux refused.*Invalid argument"
                                                r".*-mattr=-amx-tile"):
        runtime.request_amx("mm.so")


@needs["amx"]
def test_amx_is_requested_once_and_granted_here():
    from te import runtime
    runtime.request_amx("this test")
    assert runtime._amx_granted


@pytest.mark.parametrize("intrin,lanes,group", [
    pytest.param("vpdpbusd", 16, 4, marks=needs["vpdpbusd"]),
    pytest.param("pmaddwd", 16, 2, marks=needs["pmaddwd"])])
def test_the_uint8_operand_may_be_the_vector(rng, intrin, lanes, group):
    # y[k, p] = sum_c w[k, c] x[c, p]: int8 weights broadcast, the uint8 input packed C/G x P x G
    Ko, C, P = 3, 8, 32
    W = te.placeholder((Ko, C), "int8", name="W")
    X = te.placeholder((C // group, P, group), "uint8", name="Xp")
    c = te.reduce_axis((0, C), name="c")
    Y = te.compute((Ko, P), lambda k, p: te.sum(W[k, c].astype("int32") * X[c // group, p, c % group].astype("int32"),
                                                axis=c), name="Y")
    f = te.build(vector_schedule(Y, lanes, group, intrin), [W, X, Y])
    w = rng.integers(-128, 128, (Ko, C)).astype(np.int8)
    x = rng.integers(0, 256, (C, P)).astype(np.uint8)
    y = np.zeros((Ko, P), np.int32)
    f(w, np.ascontiguousarray(x.reshape(C // group, group, P).transpose(0, 2, 1)), y)
    np.testing.assert_array_equal(y, w.astype(np.int64) @ x.astype(np.int64))


@pytest.mark.parametrize("intrin,lanes,dtypes", [
    pytest.param("pmaddwd.256", 8, ("int16", "int16"), marks=needs["pmaddwd.256"]),
    pytest.param("pmaddwd.256", 8, ("uint8", "int16"), marks=needs["pmaddwd.256"]),
    pytest.param("pmaddwd", 16, ("int16", "int16"), marks=needs["pmaddwd"])])
def test_vpmaddwd_takes_int16_factors_and_wraps_as_int32_does(rng, intrin, lanes, dtypes):
    # factors widened ahead (the AVX2 int8 kernels' packs); every -32768 pair makes vpmaddwd's
    # pair sum 2^31, which wraps exactly as the int32 sum of the two products does
    M, N, K = 3, 2 * lanes, 10
    A = te.placeholder((M, K), dtypes[0], name="A")
    B = te.placeholder((N // lanes, K // 2, lanes, 2), dtypes[1], name="Bp")
    k = te.reduce_axis((0, K), name="k")
    C = te.compute((M, N), lambda i, j: te.sum(
        A[i, k].astype("int32") * B[j // lanes, k // 2, j % lanes, k % 2].astype("int32"), axis=k), name="C")
    target = Target("haswell" if lanes == 8 else "skylake-avx512")
    f = te.build(vector_schedule(C, lanes, 2, intrin), [A, B, C], target=target)
    lo, hi = (0, 256) if dtypes[0] == "uint8" else (-32768, 32768)
    a = rng.integers(lo, hi, (M, K)).astype(dtypes[0])
    b = rng.integers(-32768, 32768, (K, N)).astype(np.int16)
    b[:, 0] = -32768
    if dtypes[0] == "int16":
        a[0] = -32768
    c = np.zeros((M, N), np.int32)
    f(a, pack(b, lanes, 2), c)
    want = (a.astype(np.int64) @ b.astype(np.int64) + 2**31) % 2**32 - 2**31      # int32 wrap-around
    np.testing.assert_array_equal(c, want)
    asm = f.get_source("asm")
    assert "vpmaddwd" in asm and "vpmovsxbw" not in asm           # no widening left in the loop


@needs["amx"]
def test_an_amx_library_records_its_features_and_loads(rng, tmp_path):
    M, N, K = 32, 32, 128
    A, B, C = packed_matmul(M, N, K, 16, 4)
    s = te.create_schedule(C.op)
    i, j = C.op.axis
    io, jo, ii, ji = s[C].tile(i, j, 32, 32)
    jb, j16 = s[C].split(ji, factor=16)
    ko, k64 = s[C].split(C.op.reduce_axis[0], factor=64)
    kq, k4 = s[C].split(k64, factor=4)
    s[C].reorder(io, jo, ii, jb, j16, ko, kq, k4)
    s[C].tensorize(ii, "amx")
    meta = te.build(s, [A, B, C], name="mm_amx").export_library(str(tmp_path / "amx.so"))
    assert {"amx-tile", "amx-int8"} <= set(meta["required_features"])
    lib = te.load_module(str(tmp_path / "amx.so"))
    a, b, ref = operands(rng, M, N, K)
    c = np.zeros((M, N), np.int32)
    lib["mm_amx"](a, pack(b, 16, 4), c)
    np.testing.assert_array_equal(c, ref)
