"""A model built for another target (AVX2 on any host): its kernels and weights packed ahead of
time follow that target, and it runs here (this CPU has AVX2) against numpy."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import frontends
import te
from frontends.compile import plan_model

from ..te.ops.conv_reference import conv_ref

HASWELL = te.target.parse("llvm -mcpu=haswell")


@pytest.mark.skipif("avx2" not in te.target.host().feature_set, reason="this CPU lacks AVX2")
def test_conv_model_for_avx2_packs_weights_by_its_vector_and_runs(rng):
    # a stride-2 conv on rows of 6: the direct conv with one vector of channels (not Winograd,
    # not direct_defaults.pair_block), whose weights are packed
    w = rng.standard_normal((64, 32, 3, 3)).astype(np.float32)
    g = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1], strides=[2, 2])], "conv",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 32, 12, 12])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64, 6, 6])],
                          [numpy_helper.from_array(w, "w")])
    graph = frontends.from_onnx(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]))
    _, planned, _ = plan_model(graph, HASWELL, 13)
    packed = [k for k in planned.constants if "::" in k]
    assert packed == ["w::conv2d.direct[8, 32, 3, 3, 8]"]                # one 8-lane vector of channels
    x = rng.standard_normal((1, 32, 12, 12)).astype(np.float32)
    (y,) = frontends.build(graph, target=HASWELL).run(x=x)
    np.testing.assert_allclose(y, conv_ref(x, w, (2, 2), pads=(1, 1, 1, 1)), rtol=1e-4, atol=1e-3)


@pytest.mark.skipif("avx2" not in te.target.host().feature_set, reason="this CPU lacks AVX2")
def test_mobilenet_block_for_avx2_fuses_depthwise_and_pointwise_and_runs(rng):
    """The fused depthwise + 1x1 kernel follows the target's 8 lanes."""
    from frontends import zoo
    from frontends.profile import onnxruntime_session
    m = zoo.mobilenet_block(channels=8, expand=3, size=28)
    lib = frontends.build(frontends.from_onnx(m), target=HASWELL)
    assert [f.name for f in lib.plan.funcs] == ["k0_conv", "k1_tilewise_depthwisepointwise"]
    x = rng.standard_normal((1, 8, 28, 28)).astype(np.float32)
    np.testing.assert_allclose(lib.run(x=x)[0], onnxruntime_session(m).run(None, {"x": x})[0], rtol=1e-4, atol=1e-4)
