"""An average pool moved after the 1x1 conv that narrows its channels (frontends/pool_swap.py)."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import frontends
from frontends import passes
from frontends.profile import onnxruntime_session


def pool_branch(rng, C=24, K=8, H=10, pool=None, bias=True, kernel=1, extra_user=False):
    """Inception's pool branch: x -> AveragePool (3x3, stride 1, pads 1 unless `pool` says) -> Conv
    (C -> K, `kernel` x `kernel`) [+ bias] -> Relu (-> the pool's output as a second output)."""
    pool = pool or {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}
    w = rng.standard_normal((K, C, kernel, kernel)).astype(np.float32)
    b = rng.standard_normal(K).astype(np.float32)
    nodes = [helper.make_node("AveragePool", ["x"], ["p"], **pool),
             helper.make_node("Conv", ["p", "w"] + (["b"] if bias else []), ["c"]),
             helper.make_node("Relu", ["c"], ["y"])]
    outs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]
    if extra_user:
        outs.append(helper.make_tensor_value_info("p", TensorProto.FLOAT, None))
    g = helper.make_graph(nodes, "pool_branch", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, C, H, H])],
                          outs, [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])


def ops(m) -> list[str]:
    return [n.op for n in passes.run_passes(frontends.from_onnx(m)).nodes]


def check_against_onnxruntime(m, rng, C=24, H=10, layout=None):
    x = rng.standard_normal((1, C, H, H)).astype(np.float32)
    got = frontends.build(frontends.from_onnx(m), layout=layout).run(x=x)
    want = onnxruntime_session(m).run(None, {"x": x})
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("count_include_pad", [0, 1])
@pytest.mark.parametrize("bias", [True, False])
def test_the_pool_runs_after_the_conv_and_matches_onnxruntime(rng, count_include_pad, bias):
    m = pool_branch(rng, bias=bias, pool={"kernel_shape": [3, 3], "pads": [1, 1, 1, 1],
                                          "count_include_pad": count_include_pad})
    assert ops(m) == ["Conv", "AveragePool"] + (["Add"] if bias else []) + ["Relu"]
    check_against_onnxruntime(m, rng)


@pytest.mark.parametrize("case", ["strided pool", "widening conv", "3x3 conv", "pool read elsewhere"])
def test_what_would_cost_more_or_change_the_result_stays(rng, case):
    m = {"strided pool": lambda: pool_branch(rng, pool={"kernel_shape": [3, 3], "strides": [2, 2]}),
         "widening conv": lambda: pool_branch(rng, K=32),
         "3x3 conv": lambda: pool_branch(rng, kernel=3),
         "pool read elsewhere": lambda: pool_branch(rng, extra_user=True)}[case]()
    assert ops(m)[:2] == ["AveragePool", "Conv"]
    check_against_onnxruntime(m, rng)


def test_the_swapped_branch_in_the_packed_layout_matches_onnxruntime(rng):
    check_against_onnxruntime(pool_branch(rng, C=32, K=16), rng, C=32, layout="NCHWc")


def transition(rng, C=24, K=12, H=10, pool=None, bias=True, extra_user=False):
    """DenseNet's transition: x -> Conv 1x1 (C -> K) [+ bias] -> AveragePool (2x2, stride 2 unless
    `pool` says) -> Relu (-> the conv's output as a second output)."""
    pool = pool or {"kernel_shape": [2, 2], "strides": [2, 2]}
    w = rng.standard_normal((K, C, 1, 1)).astype(np.float32)
    b = rng.standard_normal(K).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w"] + (["b"] if bias else []), ["c"]),
             helper.make_node("AveragePool", ["c"], ["p"], **pool),
             helper.make_node("Relu", ["p"], ["y"])]
    outs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]
    if extra_user:
        outs.append(helper.make_tensor_value_info("c", TensorProto.FLOAT, None))
    g = helper.make_graph(nodes, "transition", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, C, H, H])],
                          outs, [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])


@pytest.mark.parametrize("case", ["2x2 stride 2", "3x3 stride 2 padded, padding not counted",
                                  "3x3 stride 2 padded and counted, no bias"])
def test_a_shrinking_pool_runs_before_the_conv_and_matches_onnxruntime(rng, case):
    pool, bias = {"2x2 stride 2": ({"kernel_shape": [2, 2], "strides": [2, 2]}, True),
                  "3x3 stride 2 padded, padding not counted":
                      ({"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}, True),
                  "3x3 stride 2 padded and counted, no bias":
                      ({"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1], "count_include_pad": 1},
                       False)}[case]
    m = transition(rng, pool=pool, bias=bias)
    assert ops(m) == ["AveragePool", "Conv", "Relu"]
    check_against_onnxruntime(m, rng)


@pytest.mark.parametrize("case", ["padding counted with a bias", "same-size pool", "conv read elsewhere"])
def test_a_pool_that_would_change_the_bias_or_save_nothing_stays_after_the_conv(rng, case):
    m = {"padding counted with a bias": lambda: transition(rng, pool={"kernel_shape": [3, 3], "strides": [2, 2],
                                                                       "pads": [1, 1, 1, 1], "count_include_pad": 1}),
         "same-size pool": lambda: transition(rng, K=32, pool={"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}),
         "conv read elsewhere": lambda: transition(rng, extra_user=True)}[case]()
    assert ops(m)[:2] == ["Conv", "AveragePool"]
    check_against_onnxruntime(m, rng)
