"""te.ops.conv_algorithm: the 3x3 conv's algorithm from its multiply-adds and its weights read cold."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import autotune
from te.caches import Caches, KiB, MiB
from te.ops import conv_algorithm as ca
from te.ops import registry
from te.ops.conv_algorithm import Algorithm
from te.ops.conv_geometry import geometry
from te.ops.registry import ConvWorkload
from te.target import parse

from .conv_reference import conv_ref

# (cpu, caches per core) of the targets the rule is written for
TARGETS = {"zen4": ("znver4", Caches(32 * KiB, 1 * MiB, 4 * MiB)),
           "icelake": ("icelake-server", Caches(48 * KiB, 1280 * KiB, 1536 * KiB)),
           "emerald": ("emeraldrapids", Caches(48 * KiB, 2 * MiB, 150 * MiB))}


def target(name: str, threads: int = 2):
    cpu, caches = TARGETS[name]
    return dataclasses.replace(parse(f"llvm -mcpu={cpu}"), threads=threads, caches=caches)


def conv(C: int, H: int, K: int | None = None) -> ConvWorkload:
    return ConvWorkload((1, C, H, H), (K or C, C, 3, 3), (1, 1), (1, 1, 1, 1))


@pytest.mark.parametrize("name", TARGETS)
@pytest.mark.parametrize("threads", [1, 2])
def test_resnet50_stages_pick_by_work_and_weight_bytes(name, threads):
    t = target(name, threads)
    picks = {(C, H): registry.select(conv(C, H), t).name for C, H in ((64, 56), (128, 28), (256, 14), (512, 7))}
    assert picks == {(64, 56): "conv2d.winograd", (128, 28): "conv2d.winograd",
                     # F(4x4)'s 9.4 MB of transformed weights, read from memory, cost more than
                     # the 1.36x multiply-adds it saves over F(2x2)
                     (256, 14): "conv2d.winograd_f2",
                     (512, 7): "conv2d.direct"}


def test_weight_bytes_decide_between_winograd_tiles():
    g = geometry((1, 256, 14, 14), (256, 256, 3, 3), (1, 1), 1)
    (f4, w4), (f2, w2), (fd, wd) = (ca.work(g, a) for a in Algorithm)
    assert (w4, w2, wd) == (4.0 * 256 * 256 * 36, 4.0 * 256 * 256 * 16, 4.0 * 256 * 256 * 9)
    assert f4 < f2 < fd == g.flops
    # without the weights' cost F(4x4) would win: it is the cold read that turns the choice
    t = target("emerald")
    compute = {a: ca.work(g, a)[0] / ca.EFFICIENCY[a] for a in Algorithm}
    assert min(compute, key=compute.get) is Algorithm.WINOGRAD_F4
    assert ca.choose(g, t) is Algorithm.WINOGRAD_F2


def test_fewer_lanes_favour_fewer_multiply_adds():
    # AVX2's 8 lanes double the multiply-adds' cycles against the same weight bytes
    g = geometry((1, 512, 7, 7), (512, 512, 3, 3), (1, 1), 1)
    assert ca.choose(g, target("emerald")) is Algorithm.DIRECT
    assert ca.choose(g, parse("llvm -mcpu=haswell")) is Algorithm.WINOGRAD_F2


def test_choose_among_given_options_and_refuse_none():
    g = geometry((1, 256, 14, 14), (256, 256, 3, 3), (1, 1), 1)
    assert ca.choose(g, target("zen4"), (Algorithm.WINOGRAD_F4, Algorithm.DIRECT)) is Algorithm.WINOGRAD_F4
    with pytest.raises(ValueError, match="no algorithm to choose from"):
        ca.choose(g, target("zen4"), ())


def test_small_maps_and_few_channels_keep_the_direct_conv():
    t = target("emerald")
    assert registry.select(conv(512, 7), t).name == "conv2d.direct"
    assert registry.select(conv(8, 28, 64), t).name == "conv2d.direct"


def test_the_picked_algorithm_matches_numpy():
    wl = conv(64, 13)           # picks F(2x2): more multiply-adds, fewer weight bytes than F(4x4)
    t = target("emerald")
    impl = registry.select(wl, t)
    assert impl.name == "conv2d.winograd_f2"
    task = autotune.create_task(impl.template, impl.args(wl))
    rng = np.random.default_rng(0)
    x = rng.standard_normal(wl.x_shape).astype(np.float32)
    w = (rng.standard_normal(wl.w_shape) * 0.1).astype(np.float32)
    out = np.zeros((1, 64, 13, 13), np.float32)
    task.build(task.config_space.get(task.config_space.default_index()))(x, w, out)
    np.testing.assert_allclose(out, conv_ref(x, w, pads=(1, 1, 1, 1)), rtol=1e-3, atol=1e-3)
