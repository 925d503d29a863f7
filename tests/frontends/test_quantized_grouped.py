"""Quantised depthwise and grouped convs (a MobileNetV2 block, a ShuffleNet unit) run on the int8
depthwise, grouped 1x1 and block-diagonal kernels and equal ONNX Runtime's int8 results within one
quantisation step."""
import numpy as np
import pytest
from onnx import helper, numpy_helper

import frontends
from frontends import zoo
from frontends.passes import run_passes
from frontends.tasks import workload_of
from te.ops import registry
from te.target import host

from .onnx_helpers import tiny, vi
from .test_quantized import QF, QT, _compare, _output_step, _quantize_static

pytest.importorskip("onnxruntime.quantization")


def _chosen(m) -> set[str]:
    """The implementations a build picks for the int8 anchors of quantised model m."""
    g = run_passes(frontends.from_onnx(m))
    wls = [workload_of(n, g) for n in g.nodes if n.op == "Conv"]
    return {registry.select(wl, host()).name for wl in wls if wl is not None and wl.dtype == "uint8"}


def _shuffle_unit():
    """Grouped 1x1 conv (4 groups) -> Relu -> channel shuffle (4 groups) -> depthwise 3x3 stride 2 ->
    grouped 3x3 conv (4 groups)."""
    rng = np.random.default_rng(3)

    def init(name, shape, scale):
        return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)
    n = helper.make_node
    nodes = [n("Conv", ["x", "w1", "b1"], ["c1"], group=4), n("Relu", ["c1"], ["r1"]),
             n("Reshape", ["r1", "split"], ["g1"]), n("Transpose", ["g1"], ["g2"], perm=[0, 2, 1, 3, 4]),
             n("Reshape", ["g2", "merge"], ["s1"]),
             n("Conv", ["s1", "w2", "b2"], ["c2"], group=32, kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[2, 2]),
             n("Conv", ["c2", "w3", "b3"], ["y"], group=4, kernel_shape=[3, 3], pads=[1, 1, 1, 1])]
    inits = [init("w1", (32, 4, 1, 1), 0.5), init("b1", (32,), 0.1), init("w2", (32, 1, 3, 3), 0.4),
             init("b2", (32,), 0.1), init("w3", (16, 8, 3, 3), 0.2), init("b3", (16,), 0.1),
             numpy_helper.from_array(np.array([1, 4, 8, 12, 12], np.int64), "split"),
             numpy_helper.from_array(np.array([1, 32, 12, 12], np.int64), "merge")]
    return tiny(nodes, [vi("x", [1, 16, 12, 12])], [vi("y", [1, 16, 6, 6])], inits)


@pytest.mark.parametrize("act", [QT.QUInt8, QT.QInt8])
def test_quantized_mobilenet_block_runs_the_int8_depthwise_within_one_step(tmp_path, act):
    m = _quantize_static(tmp_path, zoo.mobilenet_block(channels=8, expand=3, size=10), QF.QDQ, act, True)
    assert "conv2d.int8_depthwise_f32" in _chosen(m)
    feeds = [{"x": np.random.default_rng(s).standard_normal((1, 8, 10, 10)).astype(np.float32)} for s in range(3)]
    _compare(m, feeds, _output_step(m))


def test_quantized_shuffle_unit_runs_the_int8_grouped_and_depthwise_within_one_step(tmp_path):
    m = _quantize_static(tmp_path, _shuffle_unit(), QF.QDQ, QT.QUInt8, True)
    chosen = _chosen(m)
    assert {"conv2d.int8_grouped_dense", "conv2d.int8_depthwise_f32"} <= chosen and len(chosen) == 3
    assert "conv2d.int8_reference" not in chosen      # the grouped 1x1: a GEMM per group
    # the shuffle folded into the int8 depthwise conv: no Transpose kernel left
    g = run_passes(frontends.from_onnx(m))
    assert not any(n.op == "Transpose" for n in g.nodes)
    assert [n.attrs.get("channel_shuffle") for n in g.nodes if n.op == "Conv" and n.attrs.get("group") == 32] == [4]
    feeds = [{"x": np.random.default_rng(s).standard_normal((1, 16, 12, 12)).astype(np.float32)} for s in range(3)]
    _compare(m, feeds, _output_step(m))
