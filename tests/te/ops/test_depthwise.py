"""The depthwise conv (te/ops/depthwise.py): stride 1 on the flattened padded plane, against numpy."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import autotune
import te
from te import ops
from te.ops import depthwise, registry
from te.ops.conv_geometry import geometry
from te.ops.registry import ConvWorkload
from te.codegen_llvm import codegen
from te.caches import Caches, KiB
from te.target import host

from .conv_reference import conv_ref


# (input, weight, pads (top, left, bottom, right), dilation): ShuffleNet's and MobileNet's maps,
# a multiplier, uneven pads, a 5x3 filter, dilation, no padding, a row wider than one run, an odd
# number of one-vector runs
@pytest.mark.parametrize("xs, ws, pads, dil", [((1, 6, 28, 28), (6, 1, 3, 3), (1, 1, 1, 1), (1, 1)),
                                               ((1, 5, 14, 14), (5, 1, 3, 3), (1, 1, 1, 1), (1, 1)),
                                               ((1, 8, 7, 7), (16, 1, 3, 3), (1, 1, 1, 1), (1, 1)),
                                               ((1, 4, 9, 13), (4, 1, 5, 3), (2, 1, 2, 0), (1, 1)),
                                               ((1, 8, 11, 11), (8, 1, 3, 3), (2, 2, 2, 2), (2, 2)),
                                               ((1, 5, 6, 6), (5, 1, 3, 3), (0, 0, 0, 0), (1, 1)),
                                               ((1, 3, 5, 70), (3, 1, 3, 3), (1, 1, 1, 1), (1, 1)),
                                               ((1, 4, 5, 12), (4, 1, 3, 3), (1, 1, 1, 1), (1, 1))])
def test_stride_1_matches_numpy_with_bias_and_activation(xs, ws, pads, dil, rng):
    conv = check_bias_relu(xs, ws, pads, dil, (1, 1), rng)
    assert "flat" in conv.op.attrs                     # stride 1 runs on the flat plane


def check_bias_relu(xs, ws, pads, dil, strides, rng, target=None) -> te.Tensor:
    """relu(depthwise conv + bias) for target (None: this machine) built here and run against
    numpy; returns the conv."""
    x = te.placeholder(xs, "float32", name="x")
    w = te.placeholder(ws, "float32", name="w")
    b = te.placeholder((ws[0],), "float32", name="b")
    conv = depthwise.depthwise_conv2d_nchw(x, w, bias=b, strides=strides, padding=pads, dilation=dil,
                                           target=target or host())
    y = ops.relu(conv)
    f = te.build(ops.schedule([y]), [x, w, b, y])
    xn, wn, bn = (rng.standard_normal(t.shape).astype(np.float32) for t in (x, w, b))
    out = np.zeros(y.shape, np.float32)
    f(xn, wn, bn, out)
    want = np.maximum(conv_ref(xn, wn, strides, pads, dil, groups=xs[1]) + bn[:, None, None], 0)
    np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-5)
    return conv


@pytest.mark.parametrize("OH, width", [(28, 29), (14, 15), (7, 8), (56, 57), (3, 70), (1, 5)])
def test_flat_runs_tile_the_plane_exactly(OH, width):
    """No run is cut short (that would mask every FMA), and a run is whole vectors or the plane."""
    lanes = host().lanes()
    Wp, chunk = depthwise.flat_layout(OH, width, 9, lanes)
    assert Wp >= width and (OH * Wp) % chunk == 0 and chunk <= depthwise.FLAT_CHUNK
    assert chunk % lanes == 0 or chunk == OH * Wp


def test_the_flat_kernel_gathers_nothing():
    """The pad's column is clamped from above only (one masked load), and the taps read whole runs."""
    x = te.placeholder((1, 4, 14, 14), "float32", name="x")
    w = te.placeholder((4, 1, 3, 3), "float32", name="w")
    y = depthwise.depthwise_conv2d_nchw(x, w, padding=1, target=host())
    func = te.lower(ops.schedule([y]), [x, w, y])
    assert "min(col, 13)" in str(func)
    ir = str(codegen([func], host()).module)
    assert "gather" not in ir and "llvm.fma" in ir


@pytest.mark.parametrize("stride, mult", [(1, 1), (2, 1), (1, 2)])
def test_a_channel_shuffle_is_read_through(stride, mult, rng):
    """shuffle=G reads channel c at (c % G) * (C / G) + c // G: the ONNX Reshape-Transpose-Reshape."""
    C, G = 12, 4
    x = te.placeholder((1, C, 10, 10), "float32", name="x")
    w = te.placeholder((C * mult, 1, 3, 3), "float32", name="w")
    y = depthwise.depthwise_conv2d_nchw(x, w, strides=(stride, stride), padding=1, target=host(), shuffle=G)
    f = te.build(ops.schedule([y]), [x, w, y])
    xn, wn = (rng.standard_normal(t.shape).astype(np.float32) for t in (x, w))
    out = np.zeros(y.shape, np.float32)
    f(xn, wn, out)
    shuffled = xn.reshape(1, G, C // G, 10, 10).transpose(0, 2, 1, 3, 4).reshape(1, C, 10, 10)
    np.testing.assert_allclose(out, conv_ref(shuffled, wn, (stride, stride), (1, 1, 1, 1), groups=C),
                               rtol=1e-4, atol=1e-5)


def test_a_shuffle_that_does_not_divide_the_channels_is_refused():
    x = te.placeholder((1, 10, 6, 6), "float32", name="x")
    w = te.placeholder((10, 1, 3, 3), "float32", name="w")
    with pytest.raises(ValueError, match="dw7: a channel shuffle of 4 groups"):
        depthwise.depthwise_conv2d_nchw(x, w, padding=1, name="dw7", shuffle=4)


def test_only_the_depthwise_kernel_runs_a_shuffled_workload_and_its_task_keeps_the_shuffle():
    wl = ConvWorkload((1, 8, 6, 6), (8, 1, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 8, shuffle=2)
    assert [i.name for _, i in registry.candidates(wl, host())] == ["conv2d.depthwise"]
    impl = registry.select(wl, host())
    task = autotune.create_task(impl.template, impl.args(wl))
    assert task.args[-1] == 2 and impl.workload(task.args) == wl
    plain = ConvWorkload((1, 8, 6, 6), (8, 1, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 8)
    assert len(impl.args(plain)) == 6          # unshuffled workloads keep their task keys


AVX512_TARGET = "llvm -mcpu=skylake-avx512 -l1d=48K -l2=2M -l3=8M"


@pytest.mark.parametrize("C, H, by_channel", [(144, 56, True),     # padded input 2.4 MiB: past L2
                                              (576, 14, True),     # rows of one vector (13 lanes)
                                              (192, 28, False),    # within L2, rows of 27 lanes
                                              (96, 112, True)])    # 5 MiB, rows in runs of 28
def test_stride_2_runs_by_channel_where_the_rule_says(C, H, by_channel):
    g = geometry((1, C, H, H), (C, 1, 3, 3), (2, 2), 1, (1, 1), C)
    assert depthwise.rows_by_channel(g, 2, te.target.parse(AVX512_TARGET)) == by_channel
    # 8 lanes: a 13-lane row is two vectors
    assert not depthwise.rows_by_channel(geometry((1, 576, 14, 14), (576, 1, 3, 3), (2, 2), 1, (1, 1), 576),
                                         2, te.target.parse("llvm -mcpu=haswell -l1d=48K -l2=2M -l3=8M"))


# (input, weight, pads, dilation): two images, rows of one vector (the per-channel kernel on AVX-512), a
# multiplier, uneven pads, a 5x3 filter, dilation
@pytest.mark.parametrize("xs, ws, pads, dil", [((2, 6, 14, 14), (6, 1, 3, 3), (1, 1, 1, 1), (1, 1)),
                                               ((1, 4, 16, 16), (8, 1, 3, 3), (0, 1, 1, 0), (1, 1)),
                                               ((1, 4, 13, 16), (4, 1, 5, 3), (2, 1, 2, 0), (1, 1)),
                                               ((1, 4, 16, 16), (4, 1, 3, 3), (2, 2, 2, 2), (2, 2))])
def test_stride_2_by_channel_matches_numpy_with_bias_and_activation(xs, ws, pads, dil, rng):
    conv = check_bias_relu(xs, ws, pads, dil, (2, 2), rng)
    if host().lanes() == 16:
        acc = depthwise.input_stage(conv, "depthwise.acc")
        assert depthwise.input_stage(acc, "depthwise.row_pad") is not None


def test_stride_2_by_channel_in_runs_matches_numpy(rng):
    """Rows of 40 outputs in two runs of 20, by channel (a 16 KiB L2 the padded input outgrows)."""
    tiny = dataclasses.replace(host(), caches=Caches(4 * KiB, 16 * KiB, 64 * KiB))
    conv = check_bias_relu((1, 3, 80, 80), (3, 1, 3, 3), (1, 1, 1, 1), (1, 1), (2, 2), rng, tiny)
    assert conv.op.attrs["lanes"] == 20


def test_stride_2_by_channel_every_config_matches_numpy(rng):
    """Row tiles that do not divide the map (7 rows in tiles of 2 or 4) and the taps not unrolled."""
    wl = ConvWorkload((1, 8, 14, 14), (8, 1, 3, 3), (2, 2), (1, 1, 1, 1), (1, 1), 8)
    impl = registry.IMPLEMENTATIONS["conv2d.depthwise"]
    task = autotune.create_task(impl.template, impl.args(wl), host())
    xn, wn = (rng.standard_normal(s).astype(np.float32) for s in (wl.x_shape, wl.w_shape))
    want = conv_ref(xn, wn, (2, 2), (1, 1, 1, 1), groups=8)
    for i in range(len(task.config_space)):
        s, tensors = task.instantiate(task.config_space.get(i))
        out = np.zeros(tensors[-1].shape, np.float32)
        te.build(s, tensors, target=host())(xn, wn, out)
        np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-5, err_msg=str(task.config_space.get(i)))
