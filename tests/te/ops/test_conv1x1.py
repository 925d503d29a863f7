"""The 1x1 GEMM conv with its input read in place (no pack stage) or packed: both match numpy."""
from __future__ import annotations

import numpy as np
import pytest

import autotune
import te

from .conv_reference import conv_ref


@pytest.mark.parametrize("xs, ws, stride", [((1, 24, 16, 16), (40, 24, 1, 1), 1),
                                            ((1, 16, 24, 24), (19, 16, 1, 1), 1),
                                            ((1, 16, 16, 16), (24, 16, 1, 1), 2)])
def test_the_input_read_in_place_or_packed(xs, ws, stride, rng):
    args = (xs, ws, (stride, stride), (0, 0, 0, 0), (1, 1), 1, "float32")
    task = autotune.create_task("conv2d_1x1_gemm", args)
    sp = task.config_space
    x = rng.standard_normal(xs).astype(np.float32)
    w = rng.standard_normal(ws).astype(np.float32)
    want = conv_ref(x, w, (stride, stride))
    seen = set()
    for i in range(len(sp)):
        cfg = sp.get(i)
        pack = cfg["pack_input"].val if "pack_input" in cfg.values else True
        if (pack, cfg["bn"].val) in seen or not sp.valid(i):
            continue
        seen.add((pack, cfg["bn"].val))
        s, tensors = task.instantiate(cfg)
        stages = {t.op.name for t in tensors[-1].op.input_tensors[0].op.input_tensors}
        assert ("conv2d.packed" in stages) == pack
        out = np.zeros(tensors[-1].shape, np.float32)
        te.build(s, tensors)(x, w, out)
        np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-4, err_msg=str(cfg))
    packs = {p for p, _ in seen}
    assert packs == ({True} if stride == 2 else {True, False})


def test_the_untuned_kernel_reads_in_place_where_the_register_tile_divides_the_pixels():
    """gemm_defaults: with AVX-512 a 6 x 4 tile read in place where 64 divides the pixels (56x56),
    else panels two vectors wide (14x14, and every strided conv); with AVX2 a 4 x 3 tile."""
    from te.ops.conv2d import gemm_defaults, geometry
    from te.ops.matmul_defaults import register_tile_shape
    from te.target import parse
    avx512, avx2 = parse("llvm -mcpu=skylake-avx512"), parse("llvm -mcpu=haswell")
    assert register_tile_shape(avx512) == (6, 4) and register_tile_shape(avx2) == (4, 3)
    g56, g14 = (geometry((1, 256, hw, hw), (64, 256, 1, 1), (s, s), 0, (1, 1), 1) for hw, s in ((56, 1), (14, 1)))
    g56s2 = geometry((1, 256, 56, 56), (64, 256, 1, 1), (2, 2), 0, (1, 1), 1)
    assert gemm_defaults(g56, avx512) == (64, 6, False)
    assert gemm_defaults(g14, avx512) == (32, None, True)
    assert gemm_defaults(g56s2, avx512) == (32, None, True)
    assert gemm_defaults(geometry((1, 256, 48, 48), (64, 256, 1, 1), (1, 1), 0, (1, 1), 1), avx2) == (24, 4, False)
    task = autotune.create_task("conv2d_1x1_gemm", ((1, 256, 56, 56), (64, 256, 1, 1), (1, 1), (0, 0, 0, 0),
                                                    (1, 1), 1, "float32"), avx512)
    d = task.config_space.get(task.config_space.default_index())
    assert (d["bn"].val, d["tile_y"].size[-1], d["pack_input"].val) == (64, 6, False)


def test_the_reduction_unroll_is_2_in_place_and_4_packed():
    """gemm_tile_k: the untuned 1x1 GEMM unrolls its reduction by 2 where it reads its input in
    place (56x56, AVX-512 and AVX2 alike), by matmul's 4 where it packs it (28x28, strided);
    the standalone op (te.ops.conv2d) and the registry's template agree, and tuning still has 1-16."""
    from te.target import parse
    cases = [((1, 256, 56, 56), (64, 256, 1, 1), (1, 1), "llvm -mcpu=skylake-avx512", 2),
             ((1, 256, 48, 48), (64, 256, 1, 1), (1, 1), "llvm -mcpu=haswell", 2),
             ((1, 512, 28, 28), (128, 512, 1, 1), (1, 1), "llvm -mcpu=skylake-avx512", 4),
             ((1, 256, 56, 56), (512, 256, 1, 1), (2, 2), "llvm -mcpu=skylake-avx512", 4)]
    for xs, ws, stride, tgt, want in cases:
        target = parse(tgt)
        task = autotune.create_task("conv2d_1x1_gemm", (xs, ws, stride, (0, 0, 0, 0), (1, 1), 1, "float32"), target)
        space = task.config_space
        assert space.get(space.default_index())["tile_k"].size[-1] == want
        assert {1, 2, 4, 8, 16} <= {e.size[-1] for e in space.space_map["tile_k"].entities}
        y = te.ops.conv2d(te.placeholder(xs, name="x"), te.placeholder(ws, name="w"), strides=stride, target=target)
        assert y.op.attrs["tile_k"] == (want if want == 2 else None)


@pytest.mark.parametrize("target, xs, ws, stride, vectors, rows", [
    # tiles sized for AVX-512's 32 registers: 6, 14 and 7 rows of 2, 1 and 2 vectors
    ("llvm -mcpu=skylake-avx512", (1, 24, 16, 16), (40, 24, 1, 1), 1, 2, 6),
    ("llvm -mcpu=skylake-avx512", (1, 16, 24, 24), (19, 16, 1, 1), 1, 1, 14),
    ("llvm -mcpu=skylake-avx512", (1, 16, 17, 17), (24, 16, 1, 1), 2, 2, 7),
    # the host's: at most 12 accumulators, which fit AVX2's 16 registers as well
    (None, (1, 24, 16, 16), (40, 24, 1, 1), 1, 2, 6),
    (None, (1, 16, 24, 24), (19, 16, 1, 1), 1, 1, 12),
    (None, (1, 16, 17, 17), (24, 16, 1, 1), 2, 1, 7),
])
def test_panels_packed_per_column_block_with_epilogue(target, xs, ws, stride, vectors, rows, rand):
    """tile_order "panels": each column block packs its own panel inside the parallel loop; with padded
    pixels, padded row tiles (rows that do not divide the output channels) and a fused residual
    add + ReLU it matches numpy."""
    from te import ops
    from te.ops import registry
    from te.schedule import AttachType
    from te.target import parse
    target = parse(target)
    args = (xs, ws, (stride, stride), (0, 0, 0, 0), (1, 1), 1, "float32")
    task = autotune.create_task("conv2d_1x1_gemm", args, target)
    sp = task.config_space
    cfg = sp.default_with({"tile_order": "panels", "bn": vectors * target.lanes(), "tile_y": [-1, rows],
                          **({"pack_input": True} if stride == 1 else {})})
    assert sp.valid(cfg.index) and ws[0] % rows != 0
    wl = task.implementation.workload(task.args)
    choice = registry.Choice(task.implementation, wl, task.target, cfg)
    x, w = te.placeholder(xs, name="x"), te.placeholder(ws, name="w")
    b = te.placeholder((ws[0],), name="b")
    y = choice.compute([x, w, b], name="conv")
    r = te.placeholder(y.shape, name="r")
    z = ops.relu(ops.add(y, r))
    s = ops.schedule([z], target, anchor_schedule=choice.schedule)
    packed = next(st for st in s.stages if st.op.name == "conv.packed")
    assert packed.attach_type is AttachType.SCOPE         # inside the loop over column blocks
    f = te.build(s, [x, w, b, r, z], target=target)
    a, wv, bv, rv = rand(xs), rand(ws), rand((ws[0],)), rand(y.shape)
    out = np.zeros(z.shape, np.float32)
    f(a, wv, bv, rv, out)
    want = np.maximum(conv_ref(a, wv, (stride, stride)) + bv[None, :, None, None] + rv, 0)
    np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-4)


def test_strided_direct_1x1_subsamples_where_that_moves_its_reads_closer():
    """te.ops.conv2d.subsamples: ResNet-50's 512 -> 1024 projection at 28x28 reads 0.8 MiB of rows,
    0.2 MiB subsampled: beyond a 1 MiB L2 against within it subsamples; with a 2 MiB L2 both stay."""
    import dataclasses
    from te.caches import Caches, KiB, MiB
    from te.ops.conv2d import geometry, subsamples
    from te.target import parse
    avx512 = parse("llvm -mcpu=skylake-avx512")
    zen4 = dataclasses.replace(avx512, caches=Caches(32 * KiB, 1 * MiB, 4 * MiB))
    emerald = dataclasses.replace(avx512, caches=Caches(48 * KiB, 2 * MiB, 150 * MiB))
    proj = geometry((1, 512, 28, 28), (1024, 512, 1, 1), (2, 2), 0, (1, 1), 1)
    assert subsamples(proj, zen4) and not subsamples(proj, emerald)
    assert not subsamples(geometry((1, 512, 28, 28), (1024, 512, 1, 1), (1, 1), 0, (1, 1), 1), zen4)
    assert not subsamples(geometry((1, 512, 28, 28), (1024, 512, 3, 3), (2, 2), 1, (1, 1), 1), zen4)


@pytest.mark.parametrize("hw, bw", [(14, None), (13, 4)])
def test_strided_direct_1x1_reads_its_input_subsampled(hw, bw, rand):
    """Where it subsamples (here: with caches too small for the rows it reads), the direct conv
    reads a dense map of the pixels, zeros past its edge where the tile pads the output."""
    import dataclasses
    from te import ops
    from te.caches import Caches, KiB
    from te.ops.conv2d import conv2d_nchw, geometry, subsamples
    from te.target import host
    target = dataclasses.replace(host(), caches=Caches(4 * KiB, 24 * KiB, 64 * KiB))
    xs, ws = (1, 64, hw, hw), (40, 64, 1, 1)
    g = geometry(xs, ws, (2, 2), 0, (1, 1), 1)
    assert subsamples(g, target)
    x, w = te.placeholder(xs, name="x"), te.placeholder(ws, name="w")
    y = conv2d_nchw(x, w, g, bw=bw, name="conv", target=target)
    sub = next(t for t in te.create_schedule(y.op).stages if t.op.name == "conv.pad")
    ow = -(-g.OW // bw) * bw if bw else g.OW
    assert tuple(sub.op.output(0).shape)[1:] == (64, g.OH, ow)
    a, wv = rand(xs), rand(ws)
    out = np.zeros(y.shape, np.float32)
    te.build(ops.schedule([y], target), [x, w, y], target=target)(a, wv, out)
    np.testing.assert_allclose(out, conv_ref(a, wv, (2, 2)), rtol=1e-4, atol=1e-4)


def test_avx2_register_tile_read_in_place_matches_numpy(rand):
    """The AVX2 default (a 4 x 3 tile, 24 pixels a block, read in place) builds and matches numpy."""
    from te import ops
    from te.target import parse
    avx2 = parse("llvm -mcpu=haswell")
    x, w = te.placeholder((1, 16, 24, 24), name="x"), te.placeholder((10, 16, 1, 1), name="w")
    y = ops.conv2d(x, w, target=avx2)
    assert (y.op.attrs["bn"], y.op.attrs["bm"]) == (24, 4)
    assert not any(t.op.name.endswith(".packed") for t in y.op.input_tensors[0].op.input_tensors)
    a, b = rand((1, 16, 24, 24)), rand((10, 16, 1, 1))
    out = np.zeros(y.shape, np.float32)
    te.build(ops.schedule([y], avx2), [x, w, y], target=avx2)(a, b, out)
    np.testing.assert_allclose(out, conv_ref(a, b), rtol=1e-4, atol=1e-4)
