"""A clamped vector load (`rest + min(base + lane, hi)`, a pack padded to whole vectors) is a plain
vector load wherever every lane is inside and the masked load only at the edge: AVX2 has no masked
load of bytes or int16, so there a masked load is lane by lane (the int8 1x1 conv's pack on odd
maps ran 3x slower)."""
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
