"""The stem conv (te.ops.conv_stem): few input channels, vectors along the output row.

Checked against a float64 numpy conv on small maps shaped like SqueezeNet's 3x3/2 stem and
ResNet's 7x7/2 stem (widths no tile divides), stride 1 and 2, padded, with a bias + ReLU
epilogue fused, on the host and on an AVX2 target, built through the registry as a model is."""
from __future__ import annotations

import numpy as np
import pytest

import te
from te.ops import registry
from te.ops.conv_stem import conv2d_stem, default_tile
from te.ops.elementwise import relu

from .conv_reference import conv_ref

AVX2 = te.target.parse("llvm -mcpu=haswell")
AVX512 = te.target.parse("llvm -mcpu=skylake-avx512")
STEM = registry.IMPLEMENTATIONS["conv2d.stem"]


def workload(x_shape, w_shape, strides, pads, dilation=(1, 1)) -> registry.ConvWorkload:
    return registry.ConvWorkload(x_shape, w_shape, strides, pads, dilation, 1)


def run_stem(wl: registry.ConvWorkload, target, rand, cfg=None) -> None:
    """Build wl by the stem implementation with a bias and a fused ReLU, run it, compare with numpy."""
    cfg = STEM.config(wl, target, cfg)
    x, w = STEM.placeholders(wl, cfg, target, prepacked=False)
    b = te.placeholder((wl.w_shape[0],), name="b")
    y = STEM.compute([x, w, b], wl, cfg, target)
    final = relu(y)
    s = te.create_schedule(final.op)
    STEM.schedule(s, y, final, cfg, target)
    f = te.build(s, [x, w, b, final], target=target)
    a, wv, bv = rand(wl.x_shape), rand(wl.w_shape), rand((wl.w_shape[0],))
    out = np.full(final.shape, np.nan, np.float32)
    f(a, wv, bv, out)
    ref = np.maximum(conv_ref(a, wv, wl.strides, wl.padding, wl.dilation) + bv[None, :, None, None], 0)
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)


CASES = [
    ((1, 3, 29, 37), (16, 3, 3, 3), (2, 2), (0, 0, 0, 0)),     # SqueezeNet's stem: 14 x 18 outputs
    ((1, 3, 21, 19), (8, 3, 3, 3), (1, 1), (1, 1, 1, 1)),      # stride 1, padded
    ((1, 3, 30, 35), (16, 3, 7, 7), (2, 2), (3, 3, 3, 3)),     # ResNet's stem: 15 x 18 outputs
    ((1, 1, 12, 13), (6, 1, 5, 5), (1, 2), (2, 1, 2, 0)),      # one channel, K no block divides, uneven
    ((1, 4, 17, 23), (8, 4, 3, 3), (2, 2), (2, 2, 2, 2), (2, 2)),   # dilated
]


@pytest.mark.parametrize("target", [te.target.host(), AVX2], ids=["host", "avx2"])
@pytest.mark.parametrize("case", CASES, ids=["squeeze", "s1pad", "resnet", "odd", "dilated"])
def test_stem_matches_numpy(case, target, rand):
    run_stem(workload(*case), target, rand)


def test_a_taller_two_vector_tile_matches_numpy(rand):
    """A tile the tuner may pick (4 channels x 2 rows x 2 vectors) over a row it overhangs."""
    from te.ops.conv_stem import schedule_conv2d_stem
    wl = workload(*CASES[0])
    x, w = te.placeholder(wl.x_shape, name="x"), te.placeholder(wl.w_shape, name="w")
    y = conv2d_stem(x, w, wl.geometry, bk=4, bh=2, bv=2)
    assert (y.op.attrs["bk"], y.op.attrs["bh"], y.op.attrs["bw"]) == (4, 2, 2 * te.target.host().lanes())
    s = te.create_schedule(y.op)
    schedule_conv2d_stem(s, y, None, te.target.host())
    a, wv = rand(wl.x_shape), rand(wl.w_shape)
    out = np.full(y.shape, np.nan, np.float32)
    te.build(s, [x, w, y])(a, wv, out)
    np.testing.assert_allclose(out, conv_ref(a, wv, wl.strides, wl.padding), rtol=1e-4, atol=1e-4)


def test_the_registry_takes_the_stem_up_to_a_7x7_filter():
    """SqueezeNet's 3x3 stem (27 terms) and ResNet's 7x7 (147) run as the stem untuned, the direct
    conv a candidate tuning times; an 11x11 stem (363) keeps the direct conv; a 16-channel conv
    never takes the stem."""
    squeeze = workload((1, 3, 224, 224), (64, 3, 3, 3), (2, 2), (0, 0, 0, 0))
    resnet = workload((1, 3, 224, 224), (64, 3, 7, 7), (2, 2), (3, 3, 3, 3))
    alexnet = workload((1, 3, 224, 224), (64, 3, 11, 11), (4, 4), (2, 2, 2, 2))
    deep = workload((1, 16, 56, 56), (64, 16, 3, 3), (2, 2), (1, 1, 1, 1))
    for target in (AVX512, AVX2):
        assert registry.select(squeeze, target).name == "conv2d.stem"
        assert registry.select(resnet, target).name == "conv2d.stem"
        assert "conv2d.direct" in [i.name for _, i in registry.candidates(resnet, target)]
        assert registry.select(alexnet, target).name == "conv2d.direct"
        assert "conv2d.stem" in [i.name for _, i in registry.candidates(alexnet, target)]
        assert "conv2d.stem" not in [i.name for _, i in registry.candidates(deep, target)]


def test_default_tile_fits_the_registers():
    """8 channels x 2 rows on AVX-512 (16 of its 28 accumulators), 4 x 2 on AVX2's 12."""
    g = workload((1, 3, 224, 224), (64, 3, 3, 3), (2, 2), (0, 0, 0, 0)).geometry
    assert default_tile(g, AVX512) == (8, 2, 1)
    assert default_tile(g, AVX2) == (4, 2, 1)
    for target in (AVX512, AVX2):
        bk, bh, bv = default_tile(g, target)
        assert bk * bh * bv <= target.acc_vectors


def test_many_channels_are_refused_in_one_line():
    x, w = te.placeholder((1, 16, 8, 8), name="x"), te.placeholder((8, 16, 3, 3), name="w")
    g = workload((1, 16, 8, 8), (8, 16, 3, 3), (1, 1), (0, 0, 0, 0)).geometry
    with pytest.raises(ValueError, match="at most 4 input channels") as e:
        conv2d_stem(x, w, g)
    assert "\n" not in str(e.value)


def test_the_tuner_task_builds_every_tile_height(rand):
    """create_task('conv2d_stem', ...) resolves to the stem; a config per tile_h it offers builds and
    matches numpy (what the tuner's builders run)."""
    import autotune
    args = ((1, 3, 19, 21), (8, 3, 3, 3), (2, 2), (1, 1, 1, 1), (1, 1), 1, "float32")
    task = autotune.create_task("conv2d_stem", args)
    assert task.implementation is STEM
    a, wv = rand(args[0]), rand(args[1])
    want = conv_ref(a, wv, args[2], args[3])
    sp, seen = task.config_space, set()
    for i in range(len(sp)):
        cfg = sp.get(i)
        if cfg["tile_h"].val in seen or not sp.valid(i):
            continue
        seen.add(cfg["tile_h"].val)
        s, tensors = task.instantiate(cfg, prepacked=True)
        assert task.pack_weight(wv, cfg) is wv          # read as it is: OIHW
        out = np.full(tensors[-1].shape, np.nan, np.float32)
        te.build(s, tensors)(a, wv, out)
        np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-4, err_msg=str(cfg))
    assert seen == {1, 2, 3, 4}
