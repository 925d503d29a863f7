"""passes.fuse_conv_max_pool (opt-in): a stem Conv (+ Relu) and the MaxPool after it as one kernel
(te.ops.conv_pool), checked against ONNX Runtime on small maps shaped like SqueezeNet's 3x3/2 and
ResNet's 7x7/2 stems; pools with padding or a ceil-mode overhang, and a conv read elsewhere too,
stay apart."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import helper, numpy_helper

import frontends
from frontends import passes
from frontends.conv_pool import CONV_MAX_POOL, fuse_conv_max_pool
from frontends.profile import onnxruntime_session

from .onnx_helpers import tiny, vi


def stem_model(rng, size, k, conv_stride, conv_pad, pool_pad=0, ceil=0, relu=True, conv_output=False,
               bias=True, channels=16):
    """x (1, 3, size, size) -> Conv k x k (stride, pad, 16 outputs) -> Relu -> MaxPool 3x3/2."""
    w = numpy_helper.from_array(rng.standard_normal((channels, 3, k, k)).astype(np.float32), "w")
    b = numpy_helper.from_array(rng.standard_normal(channels).astype(np.float32), "b")
    nodes = [helper.make_node("Conv", ["x", "w", "b"] if bias else ["x", "w"], ["c"], kernel_shape=[k, k],
                              strides=[conv_stride] * 2, pads=[conv_pad] * 4)]
    if relu:
        nodes.append(helper.make_node("Relu", ["c"], ["a"]))
    nodes.append(helper.make_node("MaxPool", ["a" if relu else "c"], ["y"], kernel_shape=[3, 3], strides=[2, 2],
                                  pads=[pool_pad] * 4, ceil_mode=ceil))
    outputs = [vi("y", None)] + ([vi("a" if relu else "c", None)] if conv_output else [])
    return tiny(nodes, [vi("x", [1, 3, size, size])], outputs, [w, b] if bias else [w])


def check_against_ort(m, size, rng, fused: bool) -> None:
    g = fuse_conv_max_pool(passes.run_passes(frontends.from_onnx(m)))
    assert (CONV_MAX_POOL in [n.op for n in g.nodes]) == fused
    x = rng.standard_normal((1, 3, size, size)).astype(np.float32)
    want = onnxruntime_session(m).run(None, {"x": x})
    lib = frontends.build(fuse_conv_max_pool(frontends.from_onnx(m)))
    if fused:
        assert len(lib.plan.funcs) == 1                 # conv, activation and pool: one kernel
    got = lib.run(x=x)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("case", [
    dict(size=47, k=3, conv_stride=2, conv_pad=0),                       # SqueezeNet: 23 -> 11
    dict(size=47, k=3, conv_stride=2, conv_pad=0, ceil=1),               # ceil mode, no window overhangs
    dict(size=39, k=3, conv_stride=2, conv_pad=1, relu=False, bias=False),
], ids=["squeezenet", "ceil_exact", "no_relu_no_bias"])
def test_stem_and_max_pool_fuse_and_match_onnxruntime(case, rng):
    check_against_ort(stem_model(rng, **case), case["size"], rng, fused=True)


@pytest.mark.parametrize("case", [
    dict(size=44, k=7, conv_stride=2, conv_pad=3, pool_pad=1),           # ResNet: a padded pool
    dict(size=45, k=3, conv_stride=2, conv_pad=0, ceil=1),               # 22 -> 11: the last window overhangs
    dict(size=44, k=7, conv_stride=2, conv_pad=3),                       # a 7x7 stem: not a short reduction
], ids=["resnet_padded_pool", "ceil_overhang", "resnet_conv"])
def test_pools_past_the_map_and_7x7_stems_stay_apart(case, rng):
    """A pool's clamped rows would make every band compute the whole conv (pool_reads_inside); a
    7x7 stem runs unfused (conv_stem.short_reduction)."""
    check_against_ort(stem_model(rng, **case), case["size"], rng, fused=False)


def test_the_fused_node_counts_the_convs_flops(rng):
    from frontends.profile import node_flops
    m = stem_model(rng, 47, 3, 2, 0)
    before = frontends.from_onnx(m)
    fused = fuse_conv_max_pool(before)
    node = next(n for n in fused.nodes if n.op == CONV_MAX_POOL)
    assert node_flops(node, fused) == node_flops(before.nodes[0], before) > 0


def test_a_conv_read_elsewhere_stays_apart(rng):
    """The Relu's output is a model output too: the conv's map must be written, nothing fuses."""
    check_against_ort(stem_model(rng, 31, 3, 2, 0, conv_output=True), 31, rng, fused=False)


def test_a_conv_of_many_channels_stays_apart(rng):
    """A conv over 16 channels is no stem: the pass leaves it to the conv kernels."""
    m = stem_model(rng, 31, 3, 2, 0)
    m.graph.input[0].CopyFrom(vi("x", [1, 16, 31, 31]))
    w = rng.standard_normal((16, 16, 3, 3)).astype(np.float32)
    m.graph.initializer[0].CopyFrom(numpy_helper.from_array(w, "w"))
    ops = [n.op for n in fuse_conv_max_pool(passes.run_passes(frontends.from_onnx(m))).nodes]
    assert ops == ["Conv", "Relu", "MaxPool"]
