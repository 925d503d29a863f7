"""Masked vector accesses (a clamped pack's `rest + min(base + lane, hi)`, a store under a guard that
does not divide the vectors) take the plain load or store wherever every lane is on: AVX2 has no
masked load or store of bytes or int16, so there LLVM runs one lane by lane (the int8 1x1 conv's
pack on odd maps ran 3x slower, its uint8 output stores as slow)."""
from __future__ import annotations

import numpy as np
import pytest

import te
from te.codegen_llvm import codegen
from te.ops import int8_conv2d as ic
from te.ops.registry import ConvWorkload
from te.target import Target, host

AVX2 = Target("haswell")
needs_avx2 = pytest.mark.skipif("avx2" not in host().feature_set, reason="this CPU lacks AVX2")


def _pack(hw: tuple, dtype: str):
    """The int8 1x1 conv's input pack for vpmaddwd (2 channels side by side) on an hw map, padded."""
    C = 5
    wl = ConvWorkload((1, C, *hw), (8, C, 1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1, "uint8")
    g = wl.geometry
    x = te.placeholder(wl.x_shape, "uint8", name="x")
    xp = ic.pack_input(x, g, 2, 8, "c", dtype=dtype)
    s = te.create_schedule(xp.op)
    ic._schedule_pack(s, xp, g.flops, AVX2)
    return s, x, xp


@pytest.mark.parametrize("dtype", ["uint8", "int16"])
def test_a_clamped_pack_loads_whole_vectors_and_masks_only_the_edge(dtype):
    s, x, xp = _pack((5, 13), dtype)                # 65 pixels: vectors of 8, the last clamped
    ir_text = str(codegen([te.lower(s, [x, xp], "pack")], AVX2).module)
    assert "= load <8 x i8>" in ir_text and "llvm.masked.load.v8i8" in ir_text


@needs_avx2
@pytest.mark.parametrize("hw", [(5, 13), (8, 8), (1, 3)])
def test_a_clamped_pack_on_avx2_equals_numpy(hw):
    s, x, xp = _pack(hw, "int16")
    f = te.build(s, [x, xp], target=AVX2)
    xv = np.random.default_rng(0).integers(0, 256, x.shape, dtype=np.uint8)
    out = np.full(xp.shape, 7, np.int16)
    f(xv, out)
    P = hw[0] * hw[1]
    want = np.zeros((1, 6, xp.shape[2]), np.int16)
    want[:, :5, :P] = xv.reshape(1, 5, P)
    want[:, :5, P:] = xv.reshape(1, 5, P)[:, :, -1:]          # the padding pixels read the last one
    want = want.reshape(1, 3, 2, xp.shape[2]).transpose(0, 1, 3, 2)
    np.testing.assert_array_equal(out, want)


@pytest.mark.parametrize("n", [45, 7])
def test_a_guarded_byte_store_is_plain_where_every_lane_is_on(n):
    """B = A + 1 (uint8) in vectors of 8 over n elements: plain stores and loads for the whole vectors,
    masked ones in the last, and the bytes past n (canaries) untouched."""
    A = te.placeholder((n,), "uint8", name="A")
    B = te.compute((n,), lambda i: A[i] + te.const(1, "uint8"), name="B")
    s = te.create_schedule(B.op)
    _, xi = s[B].split(B.op.axis[0], factor=8)
    s[B].vectorize(xi)
    ir_text = str(codegen([te.lower(s, [A, B], "k")], AVX2).module)
    assert "llvm.masked.store.v8i8" in ir_text and "store <8 x i8>" in ir_text
    assert "llvm.masked.load.v8i8" in ir_text and "= load <8 x i8>" in ir_text
    if "avx2" not in host().feature_set:
        return
    f = te.build(s, [A, B], target=AVX2)
    a = np.arange(n, dtype=np.uint8)
    buf = np.full(n + 32, 7, np.uint8)
    f(a, buf[:n])
    np.testing.assert_array_equal(buf[:n], a + 1)
    assert (buf[n:] == 7).all()


@pytest.mark.parametrize("shape, before, after", [
    ((1, 3, 5, 7), (0, 0, 1, 1), (0, 0, 1, 1)),       # a 3x3 conv's pad: one vector, both edges
    ((1, 2, 9, 40), (0, 0, 2, 3), (0, 0, 2, 4)),      # rows of 47: three vectors, the last partial
    ((2, 3, 17), (0, 1, 5), (0, 1, 0)),               # the left edge only (no max on the right)
])
def test_a_pad_stage_loads_vectors_not_lanes(shape, before, after):
    """te.ops.pad reads X[min(max(x - b, 0), W - 1)] under the select that zeroes the lanes
    outside: vectorized along x, one masked load with the edge element broadcast, not a per-lane
    gather (a 3x3 conv's pad stage ran 4x slower so), and numpy's pad to the bit."""
    X = te.placeholder(shape, name="X")
    P = te.ops.pad(X, before, after, name="P")
    s = te.create_schedule([P.op])
    _, xi = s[P].split(s[P].op.axis[-1], factor=16)
    s[P].vectorize(xi)
    func = te.lower(s, [X, P], "pad")
    ir_text = str(codegen([func], Target("skylake-avx512")).module)
    assert "llvm.masked.load.v16f32" in ir_text and "insertelement <16 x float>" not in ir_text.replace(
        "insertelement <16 x float> poison", "")
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    out = np.full(P.shape, 7, np.float32)
    te.build(func)(x, out)
    np.testing.assert_array_equal(out, np.pad(x, list(zip(before, after))))
