"""int8 Winograd F(2x2, 3x3) on vpmaddwd (te/ops/int8_winograd.py): exactly the int64 conv, the
weight transformed at build time or in the kernel, on AVX2 and AVX-512BW; chosen over the
direct vpmaddwd conv only where there is no VNNI and its transforms pay."""
from __future__ import annotations

import numpy as np
import pytest

import te
from te.ops import int8_winograd as iw
from te.ops import registry
from te.ops.implementations import _conv
from te.target import Target, host

from .test_int8_conv2d import check, check_requantising_epilogue, conv_int64

HOST = host()
NAME = "conv2d.int8_winograd_pmaddwd"
needs_avx2 = pytest.mark.skipif("avx2" not in HOST.feature_set, reason="this CPU lacks AVX2")

CASES = [  # x, w, padding: odd maps (a half tile), channels not by pairs or vectors, uneven padding
    ((1, 32, 9, 11), (24, 32, 3, 3), (1, 1, 1, 1)),
    ((1, 37, 8, 13), (13, 37, 3, 3), (1, 0, 2, 1)),
    ((2, 40, 7, 12), (16, 40, 3, 3), (0, 0, 0, 0)),
]


@needs_avx2
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("prepacked", [True, False])
def test_int8_winograd_on_avx2_equals_the_int64_conv(rng, case, prepacked):
    wl = _conv(case[0], case[1], (1, 1), case[2], (1, 1), groups=1, dtype="uint8")
    tgt = Target("haswell")
    assert registry.select(wl, tgt).name == NAME
    check(rng, wl, tgt, NAME, prepacked=prepacked)        # with 255 x -128 products in every tile


@pytest.mark.skipif("avx512bw" not in HOST.feature_set, reason="this CPU lacks AVX-512BW")
def test_int8_winograd_on_avx512bw_without_vnni_equals_the_int64_conv(rng):
    wl = _conv((1, 48, 9, 20), (40, 48, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1), groups=1, dtype="uint8")
    tgt = Target("skylake-avx512")
    assert registry.select(wl, tgt).name == NAME
    check(rng, wl, tgt, NAME)


def test_the_largest_channel_count_keeps_four_times_the_result_in_int32():
    def geometry(C):
        return _conv((1, C, 8, 8), (8, C, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1), groups=1, dtype="uint8").geometry
    assert iw.fits(geometry(1827)) and not iw.fits(geometry(1828))
    # the bound is reached: all 255 times all -128, 9 taps, C channels, times 4
    assert 4 * 255 * 128 * 9 * 1827 < 2 ** 31 <= 4 * 255 * 128 * 9 * 1828


def test_weight_transform_is_an_exact_int16():
    g = _conv((1, 3, 8, 8), (5, 3, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1), groups=1, dtype="uint8").geometry
    w = np.full((5, 3, 3, 3), -128, np.int8)
    u = iw.transform_weight_numpy(w, g, 8)
    assert u.dtype == np.int16 and u.shape == (4, 4, 1, 2, 8, 2)
    assert u.min() == -1152 and u[..., 5:, :].max() == u[:, :, :, 1, :, 1].max() == 0     # padding zeros


@pytest.mark.parametrize("case,target,name", [
    (((1, 64, 28, 28), (64, 64, 3, 3), (1, 1), (1, 1, 1, 1)), "cascadelake", "conv2d.int8_direct_vnni"),
    (((1, 16, 28, 28), (64, 16, 3, 3), (1, 1), (1, 1, 1, 1)), "haswell", "conv2d.int8_direct_pmaddwd"),  # few channels
    (((1, 512, 7, 7), (512, 512, 3, 3), (1, 1), (1, 1, 1, 1)), "haswell", "conv2d.int8_direct_pmaddwd"),  # 7 wide
    (((1, 64, 28, 28), (64, 64, 3, 3), (2, 2), (1, 1, 1, 1)), "haswell", "conv2d.int8_direct_pmaddwd"),   # strided
    (((1, 64, 28, 28), (64, 64, 3, 3), (1, 1), (1, 1, 1, 1)), "haswell", NAME)])
def test_winograd_is_chosen_only_without_vnni_where_it_pays(case, target, name):
    wl = _conv(*case, (1, 1), groups=1, dtype="uint8")
    assert registry.select(wl, Target(target)).name == name


@needs_avx2
def test_a_requantising_epilogue_fuses_into_the_output_transform(rng):
    wl = _conv((1, 32, 10, 10), (16, 32, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1), groups=1, dtype="uint8")
    check_requantising_epilogue(rng, wl, registry.IMPLEMENTATIONS[NAME], Target("haswell"), 0.0005)


@needs_avx2
def test_tuning_task_of_the_int8_winograd_template_builds_sampled_configs(rng):
    import random

    import autotune
    impl, tgt = registry.IMPLEMENTATIONS[NAME], Target("haswell")
    wl = _conv((1, 32, 6, 10), (48, 32, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1), groups=1, dtype="uint8")
    task = autotune.create_task(impl.template, impl.args(wl), tgt)
    sp = task.config_space
    assert task.flops == wl.geometry.flops and len(sp) > 1
    x = rng.integers(0, 256, wl.x_shape).astype(np.uint8)
    w = rng.integers(-128, 128, wl.w_shape).astype(np.int8)
    for i in {sp.sample(random.Random(seed)) for seed in range(3)}:
        cfg = sp.get(i)
        s, args = impl.instantiate(cfg, impl.args(wl), tgt, prepacked=True)
        y = np.zeros(args[-1].shape, np.int32)
        te.build(s, args, target=tgt)(x, impl.pack_weight(w, wl, cfg, tgt), y)
        np.testing.assert_array_equal(y, conv_int64(x, w, wl.strides, wl.padding, wl.dilation), err_msg=str(cfg))
