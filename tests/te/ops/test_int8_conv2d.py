"""The int8 conv implementations (1x1 GEMM and direct; VNNI and vpmaddwd): u8 x s8 -> s32 equal
to numpy int64 arithmetic, padding reading 0, weights packed by pack_weight or in the kernel."""
from __future__ import annotations

import numpy as np
import pytest

import te
from te import ops
from te.ops import registry
from te.ops.implementations import _conv
from te.target import Target, host

HOST = host()


def conv_int64(x, w, strides, pads, dilation):
    """The int32 sum of products of the contract, in int64."""
    N, C, H, W = x.shape
    K, _, R, S = w.shape
    (sh, sw), (pt, pl, pb, pr), (dh, dw) = strides, pads, dilation
    xp = np.pad(x.astype(np.int64), ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    OH = (H + pt + pb - (R - 1) * dh - 1) // sh + 1
    OW = (W + pl + pr - (S - 1) * dw - 1) // sw + 1
    out = np.zeros((N, K, OH, OW), np.int64)
    for r in range(R):
        for s in range(S):
            patch = xp[:, :, r * dh:r * dh + (OH - 1) * sh + 1:sh, s * dw:s * dw + (OW - 1) * sw + 1:sw]
            out += np.einsum("nchw,kc->nkhw", patch, w[:, :, r, s].astype(np.int64))
    return out


def check(rng, wl, target, name, prepacked=True, extremes=True):
    impl = registry.IMPLEMENTATIONS[name]
    assert impl.match(wl, target) is not None, f"{name} does not take {wl}"
    cfg = impl.config(wl, target)
    s, args = impl.instantiate(cfg, impl.args(wl), target, prepacked=prepacked)
    f = te.build(s, args, target=target)
    x = rng.integers(0, 256, wl.x_shape).astype(np.uint8)
    w = rng.integers(-128, 128, wl.w_shape).astype(np.int8)
    if extremes:
        x[:, 0], w[0] = 255, -128
    y = np.zeros(args[-1].shape, np.int32)
    f(x, impl.pack_weight(w, wl, cfg, target) if prepacked else w, y)
    np.testing.assert_array_equal(y, conv_int64(x, w, wl.strides, wl.padding, wl.dilation), err_msg=name)


CASES = [  # x, w, strides, padding, dilation
    ((1, 8, 6, 20), (12, 8, 1, 1), (1, 1), (0, 0, 0, 0), (1, 1)),      # 1x1 GEMM, 120 pixels
    ((1, 8, 9, 14), (16, 8, 1, 1), (2, 2), (0, 0, 0, 0), (1, 1)),      # 1x1 GEMM, strided
    ((2, 6, 5, 7), (8, 6, 1, 1), (1, 1), (0, 0, 0, 0), (1, 1)),        # 1x1, 2 images, C by 2 only
    ((1, 8, 9, 18), (4, 8, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1)),       # 3x3 padded
    ((2, 5, 11, 13), (6, 5, 3, 3), (2, 2), (1, 0, 1, 2), (1, 1)),      # strided, uneven padding, C odd
    ((1, 4, 12, 17), (8, 4, 3, 2), (1, 2), (2, 1, 0, 1), (2, 2)),      # dilated, rectangular
    ((1, 3, 16, 16), (8, 3, 7, 7), (2, 2), (3, 3, 3, 3), (1, 1)),      # a stem: 3 channels, 7x7/2
    ((1, 10, 11, 13), (12, 10, 1, 1), (1, 1), (0, 0, 0, 0), (1, 1)),   # 1x1, 143 pixels: a clamped last vector
]


@pytest.mark.parametrize("family,case", [("vnni", c) for c in CASES] + [("pmaddwd", CASES[2]), ("pmaddwd", CASES[5])])
def test_int8_conv_matches_int64(rng, family, case):
    wl = _conv(*case, groups=1, dtype="uint8")
    kind = "gemm1x1" if case[1][2:] == (1, 1) and not any(case[3]) else "direct"
    name = f"conv2d.int8_{kind}_{family}"
    if registry.IMPLEMENTATIONS[name].match(wl, HOST) is None:
        pytest.skip(f"{name} does not run on this CPU")
    check(rng, wl, HOST, name)


@pytest.mark.parametrize("name", ["conv2d.int8_gemm1x1_vnni", "conv2d.int8_direct_vnni"])
def test_weights_packed_inside_the_kernel(rng, name):
    impl = registry.IMPLEMENTATIONS[name]
    case = CASES[0] if "gemm" in name else CASES[4]
    wl = _conv(*case, groups=1, dtype="uint8")
    if impl.match(wl, HOST) is None:
        pytest.skip(f"{name} does not run on this CPU")
    check(rng, wl, HOST, name, prepacked=False)


def test_avx2_target_runs_the_vpmaddwd_direct_conv(rng):
    wl = _conv(*CASES[4], groups=1, dtype="uint8")
    tgt = Target("haswell")
    assert registry.select(wl, tgt).name == "conv2d.int8_direct_pmaddwd"
    check(rng, wl, tgt, "conv2d.int8_direct_pmaddwd")


@pytest.mark.skipif("avx2" not in HOST.feature_set, reason="this CPU lacks AVX2")
@pytest.mark.parametrize("case", CASES)
def test_avx2_int8_convs_match_int64(rng, case):
    # vpmaddwd on int16: the weight packed as int16, the input widened in the kernel's pack
    wl = _conv(*case, groups=1, dtype="uint8")
    tgt = Target("haswell")
    impl = registry.select(wl, tgt)
    assert impl.name.endswith("_pmaddwd")
    cfg = impl.config(wl, tgt)
    assert impl.pack_weight(np.zeros(wl.w_shape, np.int8), wl, cfg, tgt).dtype == np.int16
    check(rng, wl, tgt, impl.name)
    check(rng, wl, tgt, impl.name, prepacked=False)


def test_avx2_default_tile_is_one_pixel_vector_by_eight_channels():
    from te.ops import int8_conv2d as ic
    from te.ops.knobs import FallbackConfig
    cfg = FallbackConfig()
    ic.define_knobs(cfg, _conv((1, 64, 56, 56), (64, 64, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1)).geometry, 8, 2,
                    Target("haswell"))
    assert (cfg["tile_ow"].val, cfg["tile_k"].val) == (8, 8)


def test_grouped_int8_convs_are_left_to_the_grouped_kernels_and_the_reference():
    # the one-group kernels refuse them: depthwise (int8_depthwise.py), 2..8 groups (int8_grouped.py)
    def picks(groups, w_shape):
        wl = _conv((1, 32, 8, 8), w_shape, (1, 1), (1, 1, 1, 1), (1, 1), groups=groups, dtype="uint8")
        return [i.name for _, i in registry.candidates(wl, HOST) if i.name.startswith("conv2d.int8_")]
    assert picks(32, (32, 1, 3, 3)) == ["conv2d.int8_depthwise_f32", "conv2d.int8_reference"]
    assert picks(4, (16, 8, 3, 3)) == ["conv2d.int8_grouped_dense", "conv2d.int8_reference"]
    assert picks(16, (32, 2, 3, 3)) == ["conv2d.int8_reference"]


@pytest.mark.parametrize("case", [CASES[3], ((1, 128, 6, 10), (32, 128, 1, 1), (1, 1), (0, 0, 0, 0), (1, 1))])
def test_a_relu_requantising_epilogue_fuses_into_the_conv(rng, case):
    wl = _conv(*case, groups=1, dtype="uint8")
    impl = next((i for _, i in registry.candidates(wl, HOST) if i.name.startswith("conv2d.int8_")), None)
    if impl is None:
        pytest.skip("no int8 conv here")
    check_requantising_epilogue(rng, wl, impl, HOST, 0.002)


def check_requantising_epilogue(rng, wl, impl, target, scale: float):
    """impl's conv with int32 * scale, rounded and saturated to uint8, fused after it: equal to numpy."""
    cfg = impl.config(wl, target)
    x, wp = impl.placeholders(wl, cfg, target, True)
    acc = impl.compute([x, wp], wl, cfg, target, prepacked=True, name="qconv")
    q = te.compute(acc.shape, lambda *i: te.min_of(te.max_of(te.round(acc[i].astype("float32") * scale), 0.0), 255.0),
                   tag="elemwise")
    y = ops.cast(q, "uint8")
    s = ops.schedule([y], target, anchor_schedule=lambda s, out, final: impl.schedule(s, out, final, cfg, target))
    f = te.build(s, [x, wp, y], target=target)
    xv = rng.integers(0, 256, wl.x_shape).astype(np.uint8)
    wv = rng.integers(-128, 128, wl.w_shape).astype(np.int8)
    out = np.zeros(y.shape, np.uint8)
    f(xv, impl.pack_weight(wv, wl, cfg, target), out)
    ref = conv_int64(xv, wv, wl.strides, wl.padding, wl.dilation).astype(np.float32) * np.float32(scale)
    np.testing.assert_array_equal(out, np.clip(np.round(ref), 0, 255).astype(np.uint8))


@pytest.mark.parametrize("case", [((1, 128, 6, 20), (48, 128, 1, 1), (1, 1)), ((2, 256, 7, 7), (40, 256, 1, 1), (1, 1)),
                                  ((1, 128, 13, 12), (32, 128, 1, 1), (2, 2))])
def test_amx_1x1_conv_matches_int64(rng, case):
    wl = _conv(*case, (0, 0, 0, 0), (1, 1), groups=1, dtype="uint8")
    if not {"amx-tile", "amx-int8"} <= HOST.feature_set:
        pytest.skip("no AMX here")
    assert registry.select(wl, HOST).name == "conv2d.int8_gemm1x1_amx"
    check(rng, wl, HOST, "conv2d.int8_gemm1x1_amx")


def test_amx_1x1_conv_leaves_64_channels_to_vnni():
    wl = _conv((1, 64, 8, 8), (32, 64, 1, 1), (1, 1), (0, 0, 0, 0), (1, 1), groups=1, dtype="uint8")
    assert registry.IMPLEMENTATIONS["conv2d.int8_gemm1x1_amx"].match(wl, Target("sapphirerapids")) is None


@pytest.mark.parametrize("case", [((1, 64, 5, 40), (24, 64, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1)),
                                  ((2, 128, 8, 7), (32, 128, 3, 2), (2, 1), (2, 0, 1, 1), (1, 2)),
                                  # column strides: the input read by column phase, taps past S zero
                                  ((1, 64, 11, 35), (32, 64, 3, 3), (2, 2), (1, 1, 1, 1), (1, 1)),
                                  ((1, 64, 9, 23), (16, 64, 5, 5), (1, 3), (0, 2, 1, 1), (2, 1)),
                                  # channels padded to whole tiles with zeros (48 -> 64, 96 -> 128)
                                  ((1, 48, 6, 19), (32, 48, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1)),
                                  ((1, 96, 5, 9), (16, 96, 3, 1), (2, 1), (1, 0, 1, 0), (1, 1))])
def test_amx_direct_conv_matches_int64(rng, case):
    wl = _conv(*case, groups=1, dtype="uint8")
    if not {"amx-tile", "amx-int8"} <= HOST.feature_set:
        pytest.skip("no AMX here")
    assert registry.select(wl, HOST).name == "conv2d.int8_direct_amx"
    check(rng, wl, HOST, "conv2d.int8_direct_amx")


@pytest.mark.parametrize("C,strides,dilation", [(64, (1, 2), (1, 2)),   # column stride and dilation
                                               (32, (1, 1), (1, 1)),   # padded to twice its channels
                                               (96, (2, 2), (1, 1))])  # padded, and a column stride
def test_amx_direct_conv_leaves_to_vnni(C, strides, dilation):
    wl = _conv((1, C, 9, 23), (16, C, 3, 3), strides, (1, 1, 1, 1), dilation, groups=1, dtype="uint8")
    assert registry.IMPLEMENTATIONS["conv2d.int8_direct_amx"].match(wl, Target("sapphirerapids")) is None


@pytest.mark.parametrize("name,case", [("conv2d.int8_direct_amx", ((1, 96, 5, 9), (24, 96, 3, 2), (1, 1), (1, 0, 1, 1), (1, 1))),
                                       ("conv2d.int8_gemm1x1_amx", ((1, 128, 3, 7), (24, 128, 1, 1), (1, 1), (0, 0, 0, 0), (1, 1)))])
def test_amx_convs_pack_a_weight_that_is_not_a_constant(rng, name, case):
    # a template built on its own (the tuner's space, a task's build) passes the weight as it is
    wl = _conv(*case, groups=1, dtype="uint8")
    if not {"amx-tile", "amx-int8"} <= HOST.feature_set:
        pytest.skip("no AMX here")
    check(rng, wl, HOST, name, prepacked=False)


@pytest.mark.parametrize("name", ["conv2d.int8_direct_amx", "conv2d.int8_gemm1x1_amx"])
def test_amx_conv_task_counts_its_operations(name):
    # the model's task extraction (tilewise build/bench/tune) asks every task its FLOPs and space
    import autotune
    impl = registry.IMPLEMENTATIONS[name]
    kernel = (3, 3) if "direct" in name else (1, 1)
    wl = _conv((1, 128, 8, 8), (32, 128, *kernel), (1, 1), (0, 0, 0, 0), (1, 1), groups=1, dtype="uint8")
    task = autotune.create_task(impl.template, impl.args(wl), Target("sapphirerapids"))
    assert task.flops == wl.geometry.flops and len(task.config_space) > 1


def test_a_stem_of_one_channel_group_defaults_to_one_pixel_vector_by_many_channels():
    from te.ops import int8_conv2d as ic
    from te.ops.knobs import FallbackConfig
    stem, wide = FallbackConfig(), FallbackConfig()
    ic.define_knobs(stem, _conv((1, 3, 224, 224), (64, 3, 7, 7), (2, 2), (3, 3, 3, 3), (1, 1)).geometry, 16, 4,
                    Target("sapphirerapids"))
    ic.define_knobs(wide, _conv((1, 16, 55, 55), (64, 16, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1)).geometry, 16, 4,
                    Target("sapphirerapids"))
    assert (stem["tile_ow"].val, stem["tile_k"].val) == (16, 16)
    assert wide["tile_ow"].val == 64
