"""The direct conv's split_c order (te/ops/conv_split_c.py): a 1x1 conv's input channels split among
the threads into partial maps the output stage adds; outputs against numpy, with the weights
packed inside the kernel and ahead of time; and where the untuned conv takes it."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import autotune
import te
from te import ops
from te.ops import registry
from te.ops.conv_geometry import geometry
from te.ops.direct_defaults import split_c_pays
from te.ops.registry import ConvWorkload
from te.target import host, parse

from .conv_reference import conv_ref

DIRECT = registry.IMPLEMENTATIONS["conv2d.direct"]


def two_threads(threads: int = 2):
    """The host with `threads` threads: the split's parts are the target's threads."""
    return dataclasses.replace(host(), threads=threads)


def run(wl: ConvWorkload, knobs: dict, prepacked: bool, rng, target, residual: bool = False) -> None:
    """The direct conv of wl (bias, a residual added with `residual`, Relu) with the default config
    updated by knobs, against numpy's."""
    task = autotune.create_task(DIRECT.template, DIRECT.args(wl), target)
    sp = task.config_space
    cfg = sp.default_with(knobs)
    x, w = DIRECT.placeholders(wl, cfg, target, prepacked)
    b = te.placeholder((wl.w_shape[0],), name="b")
    y = DIRECT.compute([x, w, b], wl, cfg, target, prepacked)
    assert y.op.attrs["parts"] == (target.threads if knobs.get("out_order") == "split_c" else 1)
    r = te.placeholder(y.shape, name="r")
    y = ops.relu(ops.add(y, r) if residual else y)
    s = ops.schedule([y], target, anchor_schedule=lambda s, out, final: DIRECT.schedule(s, out, final, cfg, target))
    f = te.build(s, [x, w, b, *([r] if residual else []), y], target=target)
    xa = rng.standard_normal(wl.x_shape).astype(np.float32)
    wa = rng.standard_normal(wl.w_shape).astype(np.float32)
    ba = rng.standard_normal(wl.w_shape[0]).astype(np.float32)
    ra = rng.standard_normal(y.shape).astype(np.float32)
    out = np.zeros(y.shape, np.float32)
    f(xa, DIRECT.pack_weight(wa, wl, cfg, target) if prepacked else wa, ba, *([ra] if residual else []), out)
    ref = conv_ref(xa, wa, wl.strides, wl.padding) + ba[None, :, None, None] + (ra if residual else 0)
    np.testing.assert_allclose(out, np.maximum(ref, 0), rtol=2e-4, atol=2e-3)


@pytest.mark.parametrize("prepacked", [False, True])
@pytest.mark.parametrize("threads", [2, 4])
@pytest.mark.parametrize("shape", [
    (1, 64, 14, 14, 32),        # one row of 14 per tile
    (1, 128, 7, 7, 48),         # the last channel block padded
    (2, 64, 7, 7, 32),          # two images: a part covers both
])
def test_split_c_matches_numpy(shape, threads, prepacked, rng):
    N, C, H, W, K = shape
    wl = ConvWorkload((N, C, H, W), (K, C, 1, 1), (1, 1), (0, 0, 0, 0))
    run(wl, {"out_order": "split_c"}, prepacked, rng, two_threads(threads))


def test_split_c_with_residual(rng):
    """The output stage adds the parts, the bias and a residual before the Relu (ResNet's Sum)."""
    wl = ConvWorkload((1, 256, 7, 7), (64, 256, 1, 1), (1, 1), (0, 0, 0, 0))
    run(wl, {"out_order": "split_c"}, True, rng, two_threads(2), residual=True)


def test_split_c_needs_threads_and_channels(rng):
    """On one thread, or with input channels the threads do not divide into pairs, the knob
    runs the unsplit conv."""
    wl = ConvWorkload((1, 64, 14, 14), (32, 64, 1, 1), (1, 1), (0, 0, 0, 0))
    run(wl, {"out_order": "split_c", "pack_at": "root"}, True, rng, two_threads(1))
    odd = ConvWorkload((1, 6, 14, 14), (32, 6, 1, 1), (1, 1), (0, 0, 0, 0))
    task = autotune.create_task(DIRECT.template, DIRECT.args(odd), two_threads(4))
    sp = task.config_space
    cfg = sp.default_with({"out_order": "split_c"})
    x, w = DIRECT.placeholders(odd, cfg, two_threads(4), True)
    y = DIRECT.compute([x, w], odd, cfg, two_threads(4), True)
    assert y.op.attrs["parts"] == 1


def test_untuned_split_where_it_pays():
    """With Emerald Rapids' 2 MiB L2, where the rule was measured: ResNet-50's 1024 -> 256 and
    1024 -> 512 at 14x14 and 2048 -> 512 at 7x7 split on two threads, not on one; 256 -> 1024 (the
    output four times the input), 256 -> 64 at 56x56 and SqueezeNet's 512 -> 64 at 13x13 (inputs
    larger than their weights) do not; Inception's 528 -> 256 at 13x13 does only where its share
    fills more than half the L2 (Zen 4's 1 MiB: crowds_l2)."""
    emerald = parse("llvm -mcpu=sapphirerapids -l1d=48K -l2=2M -l3=150M")
    zen4 = parse("llvm -mcpu=znver4 -l1d=32K -l2=1M -l3=32M")

    def pays(C, H, K, threads, target=emerald):
        g = geometry((1, C, H, H), (K, C, 1, 1), (1, 1), 0)
        return split_c_pays(g, dataclasses.replace(target, threads=threads))
    assert pays(1024, 14, 256, 2) and pays(2048, 7, 512, 2) and pays(1024, 14, 256, 4)
    assert pays(1024, 14, 512, 2) and not pays(1024, 14, 512, 1)   # at even bytes, its input crowding the L2
    assert not pays(1024, 14, 256, 1)
    assert not pays(256, 14, 1024, 2)
    assert not pays(256, 56, 64, 2) and not pays(512, 13, 64, 2)
    assert not pays(1024, 14, 256, 32)         # 32 channels a part: the partial maps would dominate
    assert not pays(528, 13, 256, 2)           # partial maps about as costly as the remote input
    assert pays(528, 13, 256, 2, zen4)         # ... and its share (0.6 MB) crowding a 1 MiB L2
    assert not pays(992, 7, 128, 2)            # DenseNet's: too short a kernel


def test_strided_projections_split_where_their_weights_outweigh_the_rows_read():
    """ResNet-50's 512 -> 1024 and 1024 -> 2048 stride-2 projections split their input channels on
    two threads (weights 2 and 8 MiB against 0.8 and 0.4 MB of rows read), not on one; its
    256 -> 512 at 56x56 (0.5 MiB against 1.6 MB) does not; a padded strided conv never."""
    def pays(C, H, K, threads, pad=0):
        return split_c_pays(geometry((1, C, H, H), (K, C, 1, 1), (2, 2), pad), two_threads(threads))
    assert pays(512, 28, 1024, 2) and pays(1024, 14, 2048, 2) and pays(512, 28, 1024, 4)
    assert not pays(512, 28, 1024, 1) and not pays(1024, 14, 2048, 1)
    assert not pays(256, 56, 512, 2)
    assert not pays(64, 28, 1024, 2)           # 32 channels a part
    assert not pays(512, 28, 1024, 2, pad=1)


def test_strided_projection_runs_direct_split_and_matches_numpy(rng):
    """On two threads the registry runs a weight-heavy strided 1x1 conv as the direct conv split by
    input channels (on one thread, as the GEMM), and its output matches numpy's."""
    from te.ops.conv2d import as_matmul
    wl = ConvWorkload((1, 256, 28, 28), (512, 256, 1, 1), (2, 2), (0, 0, 0, 0))
    # measured with AVX-512 (16 registers run every 1x1 as the GEMM: conv2d.as_matmul)
    avx512 = dataclasses.replace(parse("llvm -mcpu=sapphirerapids -l1d=48K -l2=2M -l3=150M"), threads=2)
    assert registry.select(wl, avx512).name == "conv2d.direct"
    assert registry.select(wl, dataclasses.replace(avx512, threads=1)).name == "conv2d.gemm1x1"
    assert as_matmul(wl.geometry) and not as_matmul(wl.geometry, avx512)
    task = autotune.create_task(DIRECT.template, DIRECT.args(wl), avx512)
    assert task.config_space.get(task.config_space.default_index())["out_order"].val == "split_c"
    run(wl, {"out_order": "split_c"}, True, rng, two_threads(2), residual=True)     # on this CPU
