"""direct_defaults.strided_pair_block: on a 16-register target a strided spatial conv over a wide
map takes two channel vectors x a 1 x 4 tile, its taps unrolled, 8 channels a reduction step."""
from __future__ import annotations

import numpy as np

import te
from autotune import create_task
from te import ops
from te.ops.conv2d import default_ocb, default_tiles, geometry, strided_pair_block

from .conv_reference import conv_ref

AVX2 = te.target.parse("llvm -mcpu=haswell")
AVX512 = te.target.parse("llvm -mcpu=skylake-avx512")


def test_only_strided_convs_on_wide_maps_take_the_pair_block():
    s2_56 = geometry((1, 128, 56, 56), (128, 128, 3, 3), (2, 2), 1)        # ResNet-50's, 28 wide out
    assert strided_pair_block(s2_56, AVX2)
    assert default_ocb(s2_56, AVX2) == 16 and default_tiles(s2_56, 16, AVX2) == (1, 4)
    for g in (geometry((1, 512, 28, 28), (512, 512, 3, 3), (2, 2), 1),    # 14 wide: a 1 x 4 tile pads
              geometry((1, 128, 28, 28), (128, 128, 3, 3), (1, 1), 1),    # stride 1: the taps share
              geometry((1, 256, 56, 56), (512, 256, 1, 1), (2, 2))):      # a 1x1 conv
        assert not strided_pair_block(g, AVX2) and default_ocb(g, AVX2) == 8
    assert not strided_pair_block(s2_56, AVX512)                           # 32 registers: its own tiles


def test_the_pair_block_config_and_its_result():
    """The untuned config unrolls the taps and steps 8 channels; built for AVX2 (every CPU this
    project meets has it) the conv matches numpy, bias and ReLU fused."""
    rng = np.random.default_rng(3)
    xs, ws = (1, 24, 58, 58), (32, 24, 3, 3)                                 # 28 x 28 out, 4 tiles a row
    task = create_task("conv2d_nchw", (xs, ws, (2, 2), (0, 0, 0, 0), (1, 1), 1, "float32"), AVX2)
    cfg = task.config_space.get(task.config_space.default_index()).to_json()
    assert (cfg["tile_oc"], cfg["tile_ow"], cfg["tile_oh"]) == (16, [-1, 4], [-1, 1])
    assert cfg["unroll_kw"] and cfg["tile_ic"] == [-1, 8]
    x = rng.standard_normal(xs).astype(np.float32)
    w = rng.standard_normal(ws).astype(np.float32)
    b = rng.standard_normal(ws[0]).astype(np.float32)
    X, W, B = te.placeholder(xs, name="x"), te.placeholder(ws, name="w"), te.placeholder((ws[0],), name="b")
    Y = ops.relu(ops.conv2d(X, W, strides=2, bias=B, target=AVX2))
    out = np.zeros(Y.shape, np.float32)
    te.build(ops.schedule([Y], AVX2), [X, W, B, Y], target=AVX2)(x, w, b, out)
    ref = np.maximum(conv_ref(x, w, (2, 2)) + b[None, :, None, None], 0)
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)
