"""Grouped 1x1 convs as one GEMM per group (te/ops/grouped_conv.py) against numpy."""
from __future__ import annotations

import numpy as np
import pytest

import autotune
import te
from te import ops
from te.ops import grouped_conv, registry
from te.ops.conv_geometry import geometry
from te.ops.registry import ConvWorkload
from te.target import host, parse

from .conv_reference import conv_ref

IMPL = "conv2d.grouped_gemm1x1"
AVX512 = "llvm -mcpu=skylake-avx512"


def _workload(xs, ws, groups, stride=1):
    return ConvWorkload(xs, ws, (stride, stride), (0, 0, 0, 0), (1, 1), groups)


def _run(task, cfg, x, w, bias=None, prepacked=False):
    s, tensors = task.instantiate(cfg, prepacked=prepacked)
    out = np.zeros(tensors[-1].shape, np.float32)
    if prepacked:
        w = task.pack_weight(w, cfg)
    te.build(s, tensors, target=task.target)(x, w, *([] if bias is None else [bias]), out)
    return out


# (target, input, weight, groups, stride): ShuffleNet's channels per group (34 rows: no tile of 4
# divides them), pixels the tile does not divide (a packed, padded input), a strided conv, few input
# channels, 784 pixels (with AVX-512 a tile of 7 vectors of 16, wider than one loop may be
# vectorized: unrolled vector by vector; AVX2's widest tile, 8 vectors of 8, is not)
@pytest.mark.parametrize("target, xs, ws, groups, stride", [
    (None, (1, 136, 14, 14), (136, 34, 1, 1), 4, 1),
    (None, (1, 24, 16, 16), (112, 6, 1, 1), 4, 1),
    (None, (1, 32, 7, 7), (48, 16, 1, 1), 2, 1),
    (None, (1, 24, 12, 12), (30, 8, 1, 1), 3, 2),
    (None, (1, 8, 28, 28), (8, 4, 1, 1), 2, 1),
    (AVX512, (1, 8, 28, 28), (8, 4, 1, 1), 2, 1),
])
def test_every_tile_matches_numpy(target, xs, ws, groups, stride, rng):
    target = parse(target)
    wl = _workload(xs, ws, groups, stride)
    impl = registry.IMPLEMENTATIONS[IMPL]
    task = autotune.create_task(impl.template, impl.args(wl), target)
    assert task.implementation is impl
    sp = task.config_space
    tiles = {}
    for i in range(len(sp)):
        cfg = sp.get(i)
        tile = (cfg["tile_rows"].val, cfg["tile_cols"].val)
        if not sp.valid(i) or tile in tiles or cfg["unroll_k"].val != 2 and len(tiles) > 2:
            continue
        tiles[tile] = cfg
    assert len(tiles) >= 3
    if xs[2] == 28:
        assert any(bn > grouped_conv.MAX_LANES for _, bn in tiles) == (target.lanes() == 16)
    x = rng.standard_normal(xs).astype(np.float32)
    w = rng.standard_normal(ws).astype(np.float32)
    want = conv_ref(x, w, (stride, stride), groups=groups)
    for cfg in tiles.values():
        np.testing.assert_allclose(_run(task, cfg, x, w), want, rtol=1e-4, atol=1e-4, err_msg=str(cfg))
    d = sp.get(sp.default_index())
    np.testing.assert_allclose(_run(task, d, x, w, prepacked=True), want, rtol=1e-4, atol=1e-4)


def test_the_registry_prefers_it_for_grouped_1x1_convs_only():
    t = host()
    assert registry.select(_workload((1, 136, 28, 28), (136, 34, 1, 1), 4), t).name == IMPL
    assert registry.select(_workload((1, 32, 28, 28), (32, 1, 1, 1), 32), t).name == "conv2d.depthwise"
    assert registry.select(_workload((1, 64, 28, 28), (64, 64, 1, 1), 1), t).name != IMPL
    padded = ConvWorkload((1, 136, 28, 28), (136, 34, 1, 1), (1, 1), (1, 1, 1, 1), (1, 1), 4)
    assert IMPL not in [i.name for _, i in registry.candidates(padded, t)]


def test_bias_and_epilogue_fuse_into_the_tile(rng):
    g = geometry((1, 68, 14, 14), (68, 17, 1, 1), groups=4)
    x = te.placeholder((1, 68, 14, 14), "float32", name="x")
    w = te.placeholder((68, 17, 1, 1), "float32", name="w")
    b = te.placeholder((68,), "float32", name="b")
    y = ops.relu(grouped_conv.grouped_conv1x1(x, w, g, b, target=host()))
    s = ops.schedule([y])
    xn, wn, bn = (rng.standard_normal(t.shape).astype(np.float32) for t in (x, w, b))
    out = np.zeros(y.shape, np.float32)
    te.build(s, [x, w, b, y])(xn, wn, bn, out)
    want = np.maximum(conv_ref(xn, wn, groups=4) + bn[:, None, None], 0)
    np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-4)


def test_default_tiles_fit_the_registers_and_divide_the_group():
    t = host()
    for Kg, P, Cg in [(34, 784, 34), (68, 196, 68), (136, 49, 136), (28, 3136, 6), (5, 9, 3)]:
        bm, bn = grouped_conv.default_tile(Kg, P, Cg, t)
        assert Kg % bm == 0 and bn % t.lanes() == 0
        assert grouped_conv.fits_registers(bm, bn // t.lanes(), t)


def test_a_conv_that_is_not_grouped_1x1_is_refused_by_name():
    g = geometry((1, 8, 6, 6), (8, 4, 3, 3), groups=2)
    x = te.placeholder((1, 8, 6, 6), "float32", name="x")
    w = te.placeholder((8, 4, 3, 3), "float32", name="w")
    with pytest.raises(ValueError, match="not a grouped 1x1"):
        grouped_conv.grouped_conv1x1(x, w, g, name="c7")
