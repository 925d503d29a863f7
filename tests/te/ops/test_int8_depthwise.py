"""The int8 depthwise conv on float32 FMAs (te/ops/int8_depthwise.py): exactly the int64 conv at
every stride and padding the fp32 kernel takes, worst-case products included; chosen over the
reference kernel; the requantising epilogue fused after it."""
from __future__ import annotations

import numpy as np
import pytest

import te
from te import ops
from te.ops import int8_depthwise as idw
from te.ops import registry
from te.ops.implementations import _conv, _depthwise
from te.ops.int8_grouped import block_diagonal_numpy
from te.target import host

from .test_int8_conv2d import conv_int64

HOST = host()
NAME = "conv2d.int8_depthwise_f32"


def depthwise_int64(x, w, strides, pads, dilation):
    """The int32 sum of products of a depthwise conv (groups == channels), in int64: the dense conv of
    its diagonal weight (the block-diagonal weight of one channel per group)."""
    return conv_int64(x, block_diagonal_numpy(w, x.shape[1]), strides, pads, dilation)


def _data(rng, wl):
    x = rng.integers(0, 256, wl.x_shape).astype(np.uint8)
    w = rng.integers(-128, 128, wl.w_shape).astype(np.int8)
    x[:, 0], w[0] = 255, -128            # the largest products, summed over every tap of channel 0
    return x, w


CASES = [  # x, w, strides, padding
    ((1, 24, 14, 14), (24, 1, 3, 3), (1, 1), (1, 1, 1, 1)),      # stride 1: the flat plane
    ((1, 16, 15, 17), (16, 1, 3, 3), (2, 2), (1, 1, 1, 1)),      # stride 2, odd map
    ((2, 8, 9, 40), (8, 1, 5, 5), (1, 1), (2, 2, 2, 2)),         # 5x5, 2 images, rows wider than a vector
    ((1, 12, 11, 13), (12, 1, 3, 3), (1, 1), (0, 1, 2, 0)),      # uneven padding
]


@pytest.mark.parametrize("case", CASES)
def test_int8_depthwise_equals_the_int64_conv(rng, case):
    wl = _conv(*case, (1, 1), groups=case[0][1], dtype="uint8")
    assert registry.select(wl, HOST).name == NAME
    impl = registry.IMPLEMENTATIONS[NAME]
    cfg = impl.config(wl, HOST)
    assert impl.pack_weight(np.zeros(wl.w_shape, np.int8), wl, cfg, HOST) is None    # read as it is
    s, args = impl.instantiate(cfg, impl.args(wl), HOST)
    f = te.build(s, args, target=HOST)
    x, w = _data(rng, wl)
    y = np.zeros(args[-1].shape, np.int32)
    f(x, w, y)
    np.testing.assert_array_equal(y, depthwise_int64(x, w, wl.strides, wl.padding, wl.dilation))


def test_requantising_epilogue_fuses_after_the_int8_depthwise(rng):
    wl = _conv((1, 32, 12, 12), (32, 1, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1), groups=32, dtype="uint8")
    impl = registry.IMPLEMENTATIONS[NAME]
    cfg = impl.config(wl, HOST)
    x, wp = impl.placeholders(wl, cfg, HOST, False)
    acc = impl.compute([x, wp], wl, cfg, HOST, name="qdw")
    scale = 1 / 700
    q = te.compute(acc.shape, lambda *i: te.min_of(te.max_of(te.round(acc[i].astype("float32") * scale), 0.0), 255.0),
                   tag="elemwise")
    y = ops.cast(q, "uint8")
    s = ops.schedule([y], HOST, anchor_schedule=lambda s, out, final: impl.schedule(s, out, final, cfg, HOST))
    f = te.build(s, [x, wp, y], target=HOST)
    xv, wv = _data(rng, wl)
    out = np.zeros(y.shape, np.uint8)
    f(xv, wv, out)
    ref = depthwise_int64(xv, wv, wl.strides, wl.padding, wl.dilation).astype(np.float32) * np.float32(scale)
    np.testing.assert_array_equal(out, np.clip(np.round(ref), 0, 255).astype(np.uint8))


def test_windows_float32_cannot_sum_exactly_stay_on_the_reference_kernel():
    # 514 taps of 255 x -128 still sum within float32's exact integers (up to 2**24), 515 would not
    assert idw.MAX_TAPS == 514 and 514 * idw.MAX_PRODUCT <= 2 ** 24 < 515 * idw.MAX_PRODUCT
    big = _conv((1, 4, 30, 30), (4, 1, 23, 23), (1, 1), (0, 0, 0, 0), (1, 1), groups=4, dtype="uint8")
    assert registry.IMPLEMENTATIONS[NAME].match(big, HOST) is None
    assert registry.select(big, HOST).name == "conv2d.int8_reference"
    dense = _conv((1, 4, 8, 8), (8, 4, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1), groups=1, dtype="uint8")
    assert registry.IMPLEMENTATIONS[NAME].match(dense, HOST) is None
    with pytest.raises(ValueError, match="int8_reference"):
        idw.depthwise_conv2d_int8(te.placeholder((1, 4, 30, 30), "uint8"), te.placeholder((4, 1, 23, 23), "int8"),
                                  big.geometry)


@pytest.mark.parametrize("strides", [(1, 1), (2, 2)])
def test_int8_depthwise_reads_through_a_channel_shuffle(rng, strides):
    # ShuffleNet's shuffle of G groups folded into the conv: channel c reads x's (c % G) * (C / G) + c // G
    G, C = 4, 24
    wl = _depthwise((1, C, 13, 14), (C, 1, 3, 3), strides, (1, 1, 1, 1), (1, 1), "uint8", shuffle=G)
    assert registry.select(wl, HOST).name == NAME
    impl = registry.IMPLEMENTATIONS[NAME]
    s, args = impl.instantiate(impl.config(wl, HOST), impl.args(wl), HOST)
    f = te.build(s, args, target=HOST)
    x, w = _data(rng, wl)
    y = np.zeros(args[-1].shape, np.int32)
    f(x, w, y)
    shuffled = x.reshape(1, G, C // G, 13, 14).transpose(0, 2, 1, 3, 4).reshape(x.shape)
    np.testing.assert_array_equal(y, depthwise_int64(shuffled, w, wl.strides, wl.padding, wl.dilation))
