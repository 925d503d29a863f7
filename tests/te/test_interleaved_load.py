"""Interleaving loads: a vector whose lane l reads base + s * (l % A) + (l // A) (the int8 1x1
conv's input pack, 4 channels side by side) is A vector loads and a shuffle, not a load per lane,
and gives the same values as the loop, also under a lane mask and at a clamped edge."""
from __future__ import annotations

import numpy as np
import pytest

import te
from te.codegen_llvm import codegen
from te.expr import Const, Load, Var
from te.ops import int8_conv2d as ic
from te.ops.registry import ConvWorkload
from te.schedule import ForKind
from te.stmt import Buffer, For, IfThenElse, LoweredFunc, Store
from te.target import host

HOST = host()


def scalar_loads(ir_text: str, ty: str = "i8") -> int:
    return sum(1 for line in ir_text.splitlines() if f"= load {ty}," in line)


@pytest.mark.parametrize("hw,group", [((7, 9), 4), ((8, 8), 4), ((5, 13), 2), ((6, 10), 2)])
def test_the_1x1_pack_is_vector_loads_and_a_shuffle(hw, group):
    C = 4 * group + 1                              # a channel group padded with zeros
    wl = ConvWorkload((1, C, *hw), (8, C, 1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1, "uint8")
    g = wl.geometry
    x = te.placeholder(wl.x_shape, "uint8", name="x")
    xp = ic.pack_input(x, g, group, 16, "c")
    s = te.create_schedule(xp.op)
    ic._schedule_pack(s, xp, g.flops, HOST)
    ir_text = str(codegen([te.lower(s, [x, xp], "pack")], HOST).module)
    assert "shufflevector" in ir_text and scalar_loads(ir_text) <= 2 * group     # the clamped edges only
    f = te.build(s, [x, xp], target=HOST)
    xv = np.random.default_rng(0).integers(0, 256, x.shape, dtype=np.uint8)
    out = np.full(xp.shape, 7, np.uint8)
    f(xv, out)
    P = hw[0] * hw[1]
    want = np.zeros((1, xp.shape[1] * group, xp.shape[2]), np.uint8)
    want[:, :C, :P] = xv.reshape(1, C, P)
    want = want.reshape(1, xp.shape[1], group, xp.shape[2]).transpose(0, 1, 3, 2)
    # the padding pixels feed output columns that are never stored: only the real ones count
    # (the padding channels do: they must be 0)
    np.testing.assert_array_equal(out[:, :, :P], want[:, :, :P])


def test_an_interleaving_load_under_a_mask_reads_only_live_lanes():
    """lane l of vector o reads A[(l % 4) * 40 + o * 8 + l // 4] where o * 32 + l < 90; the lanes
    that are off store nothing (canaries stay)."""
    src = Buffer("A", (160,), "float32")
    dst = Buffer("B", (96,), "float32")
    o, i = Var("o", "int64"), Var("i", "int64")
    at = o * 32 + i
    body = IfThenElse(at < 90, Store(dst, at, Load(src, (i % 4) * 40 + o * 8 + i // 4, "float32")))
    func = LoweredFunc("inter", [src, dst], For(o, Const(3, "int64"), ForKind.SERIAL,
                                                For(i, Const(32, "int64"), ForKind.VECTORIZED, body)))
    ir_text = str(codegen([func], HOST).module)
    assert "llvm.masked.load" in ir_text and scalar_loads(ir_text, "float") == 0
    f = te.build(func)
    a = np.random.default_rng(1).standard_normal(160).astype(np.float32)
    out = np.full(96, -1.0, np.float32)
    f(a, out)
    lanes = np.arange(96)
    want = np.where(lanes < 90, a[np.minimum((lanes % 4) * 40 + lanes // 32 * 8 + lanes % 32 // 4, 159)], -1.0)
    np.testing.assert_array_equal(out, want)
