"""direct_defaults.pair_block: on a 16-register target a spatial conv over rows of 12 or more takes
two channel vectors x a 1 x 4-6 tile, its taps unrolled, 8 channels a reduction step, except
where its tile would pad the row of a conv the one-vector tiles run chunks_outer."""
from __future__ import annotations

import numpy as np
import pytest

import te
from autotune import create_task
from te import ops
from te.ops.conv2d import default_ocb, default_tiles, geometry, pair_block
from te.ops.direct_defaults import pair_block_width

from .conv_reference import conv_ref

AVX2 = te.target.parse("llvm -mcpu=haswell")
AVX512 = te.target.parse("llvm -mcpu=skylake-avx512")


def test_spatial_convs_on_rows_of_12_or_more_take_the_pair_block():
    s2_56 = geometry((1, 128, 56, 56), (128, 128, 3, 3), (2, 2), 1)        # ResNet-50's, 28 wide out
    assert pair_block(s2_56, AVX2)
    assert default_ocb(s2_56, AVX2) == 16 and default_tiles(s2_56, 16, AVX2) == (1, 4)
    alex = geometry((1, 96, 26, 26), (256, 48, 5, 5), (1, 1), 2, groups=2)  # AlexNet's grouped 5x5
    zf = geometry((1, 96, 54, 54), (256, 96, 5, 5), (2, 2), 0)              # ZFNet's, 25 wide out
    for g, width in ((alex, 4), (zf, 5)):
        assert pair_block(g, AVX2) and default_tiles(g, 16, AVX2) == (1, width)
    for g in (geometry((1, 512, 14, 14), (512, 512, 3, 3), (1, 1), 1),    # 14 wide, chunks_outer: 1 x 5 would pad
              geometry((1, 64, 7, 7), (64, 64, 3, 3), (1, 1), 1),         # 7 wide
              geometry((1, 256, 56, 56), (512, 256, 1, 1), (2, 2))):      # a 1x1 conv
        assert not pair_block(g, AVX2) and default_ocb(g, AVX2) == 8
    assert not pair_block(s2_56, AVX512)                                  # 32 registers: its own tiles


@pytest.mark.parametrize("ow, width", [(12, 4), (25, 5), (26, 4), (28, 4), (54, 6), (109, 5)])
def test_the_pair_width_pads_the_row_least(ow, width):
    g = geometry((1, 16, ow + 2, ow + 2), (32, 16, 3, 3), (1, 1), 0)
    assert g.OW == ow and pair_block_width(g) == width


@pytest.mark.parametrize("xs, ws, stride, pad, groups, tile", [
    ((1, 24, 58, 58), (32, 24, 3, 3), 2, 0, 1, 4),          # 28 x 28 out, 4 tiles a row
    ((1, 16, 26, 26), (32, 8, 5, 5), 1, 2, 2, 4),           # grouped, 26 wide: the last tile pads
    ((1, 8, 53, 53), (16, 8, 5, 5), 2, 0, 1, 5),            # 25 wide
])
def test_the_pair_block_config_and_its_result(xs, ws, stride, pad, groups, tile):
    """The untuned config unrolls the taps and steps 8 channels; built for AVX2 (every CPU this
    project meets has it) the conv matches numpy, bias and ReLU fused."""
    rng = np.random.default_rng(3)
    task = create_task("conv2d_nchw", (xs, ws, (stride, stride), (pad,) * 4, (1, 1), groups, "float32"), AVX2)
    cfg = task.config_space.get(task.config_space.default_index()).to_json()
    assert (cfg["tile_oc"], cfg["tile_ow"], cfg["tile_oh"]) == (16, [-1, tile], [-1, 1])
    assert cfg["unroll_kw"] and cfg["tile_ic"] == [-1, 8]
    x = rng.standard_normal(xs).astype(np.float32)
    w = rng.standard_normal(ws).astype(np.float32)
    b = rng.standard_normal(ws[0]).astype(np.float32)
    X, W, B = te.placeholder(xs, name="x"), te.placeholder(ws, name="w"), te.placeholder((ws[0],), name="b")
    Y = ops.relu(ops.conv2d(X, W, strides=stride, padding=pad, groups=groups, bias=B, target=AVX2))
    out = np.zeros(Y.shape, np.float32)
    te.build(ops.schedule([Y], AVX2), [X, W, B, Y], target=AVX2)(x, w, b, out)
    ref = np.maximum(conv_ref(x, w, (stride, stride), (pad,) * 4, groups=groups) + b[None, :, None, None], 0)
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)
