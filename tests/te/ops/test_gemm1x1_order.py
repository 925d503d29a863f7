"""The untuned 1x1 GEMM conv's tile order per target (matmul_defaults.streams_planes): on one thread,
ResNet-50's 1x1 convs whose output planes spill the L2 while their input stays in it stream the
planes (rows_outer), on Emerald Rapids, Zen 4 and an AVX2 core alike where the sizes say so; on
two threads the model's order stays; and the order picked matches numpy."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import te
from te import ops
from te.ops import registry
from te.ops.matmul_defaults import streams_planes, tile_order
from te.ops.registry import ConvWorkload
from te.target import host, parse

from .conv_reference import conv_ref


def _on(spec: str | None, threads: int):
    return dataclasses.replace(parse(spec), threads=threads)


EMERALD = _on("llvm -mcpu=sapphirerapids -l1d=48K -l2=2M -l3=150M", 1)
ZEN4 = _on("llvm -mcpu=znver4 -l1d=32K -l2=1M -l3=32M", 1)
AVX2 = _on("llvm -mcpu=haswell -l1d=32K -l2=256K -l3=8M", 1)
EMERALD_2 = dataclasses.replace(EMERALD, threads=2)
GEMM = registry.IMPLEMENTATIONS["conv2d.gemm1x1"]


def _untuned(C: int, H: int, K: int, stride: int, residual: bool, target):
    """(schedule, inputs, output, order) of the untuned 1x1 GEMM conv + bias (+ residual) + Relu."""
    wl = ConvWorkload((1, C, H, H), (K, C, 1, 1), (stride, stride), (0, 0, 0, 0))
    cfg = GEMM.config(wl, target)
    x, w = GEMM.placeholders(wl, cfg, target, False)
    b = te.placeholder((K,), name="b")
    y = GEMM.compute([x, w, b], wl, cfg, target)
    r = te.placeholder(y.shape, name="r")
    z = ops.relu(ops.add(y, r) if residual else y)
    s = ops.schedule([z], target, anchor_schedule=lambda s, out, final: GEMM.schedule(s, out, final, cfg, target))
    ins = [x, w, b, r] if residual else [x, w, b]
    return s, ins, z, tile_order(cfg, s, y, z, target)


@pytest.mark.parametrize("conv, emerald, zen4, avx2, emerald_2", [
    # (C, H, K, stride, residual).  128 -> 512 at 28x28 + Sum: 0.4 MiB of input, 2 x 1.5 MiB out
    ((128, 28, 512, 1, True), "rows_outer", "rows_outer", "cols_outer", "cols_outer"),
    # 64 -> 256 at 56x56: its 0.8 MiB input spills Zen 4's 1 MiB L2 (75% of it), not 2 MiB
    ((64, 56, 256, 1, False), "rows_outer", "cols_outer", "cols_outer", "cols_outer"),
    # 256 -> 64 at 56x56: 3.1 MiB of input, re-read per row tile: never streamed (AVX2's 4 x 3
    # tile does not divide the pixels, so it packs them per column block)
    ((256, 56, 64, 1, False), "cols_outer", "cols_outer", "panels", "cols_outer"),
    # 64 -> 64 at 56x56: 0.8 MiB of output stays in a 2 MiB L2
    ((64, 56, 64, 1, False), "cols_outer", "cols_outer", "panels", "cols_outer"),
])
def test_untuned_order_per_target(conv, emerald, zen4, avx2, emerald_2):
    picks = [_untuned(*conv, t)[3] for t in (EMERALD, ZEN4, AVX2, EMERALD_2)]
    assert picks == [emerald, zen4, avx2, emerald_2]


def test_streams_planes_needs_the_output_to_spill_and_b_to_stay():
    c = EMERALD.caches
    assert streams_planes(3 << 20, 1 << 20, c)
    assert not streams_planes(1 << 20, 1 << 20, c)         # the output stays in L2
    assert not streams_planes(3 << 20, 2 << 20, c)         # B spills: rows_outer re-reads it from L3


@pytest.mark.parametrize("conv", [(128, 28, 512, 1, True), (64, 56, 256, 1, False), (64, 28, 128, 2, False)])
def test_streamed_order_matches_numpy(conv, rand):
    """The host's untuned kernel on one thread (rows_outer where this machine's L2 says so) against
    numpy."""
    C, H, K, stride, residual = conv
    target = dataclasses.replace(host(), threads=1)
    s, ins, z, _ = _untuned(*conv, target)
    a, w, bias = rand((1, C, H, H)), rand((K, C, 1, 1)), rand((K,))
    args = [a, w, bias]
    ref = conv_ref(a, w, strides=(stride, stride)) + bias[None, :, None, None]
    if residual:
        args.append(rand(tuple(z.shape)))
        ref = ref + args[-1]
    out = np.zeros(z.shape, np.float32)
    te.build(s, ins + [z], target=target)(*args, out)
    np.testing.assert_allclose(out, np.maximum(ref, 0), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("spec", ["llvm -mcpu=skylake-avx512", None])
@pytest.mark.parametrize("order", ["rows_outer", "cols_outer"])
def test_the_epilogue_prefetches_the_next_tiles_residual(order, spec, rand):
    """Each row of a register tile's epilogue prefetches the same row of the next tile's residual:
    bn pixels on (rows_outer) or bm channel planes on (cols_outer), a row's whole lines (a 6 x 2
    vector tile: 128 bytes a row with AVX-512, 64 with AVX2); the answers stay numpy's."""
    import autotune
    C, H, K = 64, 16, 96
    target = _on(spec, 1)
    bn, bm = 2 * target.lanes(), 6
    wl = ConvWorkload((1, C, H, H), (K, C, 1, 1), (1, 1), (0, 0, 0, 0))
    sp = autotune.create_task(GEMM.template, GEMM.args(wl), target).config_space
    cfg = sp.default_with({"tile_order": order, "pack_input": False, "bn": bn, "tile_y": [-1, bm]})
    assert sp.valid(cfg.index)
    x, w = GEMM.placeholders(wl, cfg, target, False)
    b = te.placeholder((K,), name="b")
    y = GEMM.compute([x, w, b], wl, cfg, target)
    r = te.placeholder(y.shape, name="r")
    z = ops.relu(ops.add(y, r))
    s = ops.schedule([z], target, anchor_schedule=lambda s, out, final: GEMM.schedule(s, out, final, cfg, target))
    plane, row = 4 * H * H, 4 * bn
    func = te.lower(s, [x, w, b, r, z])
    ahead = row if order == "rows_outer" else bm * plane
    assert f"'prefetch_ahead', ('r', {ahead}, {row}, 3, {plane})" in repr(func)
    f = te.build(func, target=target)
    assert f.get_source("llvm").count("call void @llvm.prefetch") == bm * row // 64   # a call a line, the rows unrolled
    a, wa, ba, ra = rand((1, C, H, H)), rand((K, C, 1, 1)), rand((K,)), rand(tuple(z.shape))
    out = np.zeros(z.shape, np.float32)
    f(a, wa, ba, ra, out)
    np.testing.assert_allclose(out, np.maximum(conv_ref(a, wa) + ba[None, :, None, None] + ra, 0), rtol=1e-4, atol=1e-4)
