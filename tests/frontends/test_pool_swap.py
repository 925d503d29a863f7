"""An average pool moved to the side of a 1x1 conv where it costs less (frontends/pool_swap.py)."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import frontends
from frontends import passes
from frontends.profile import onnxruntime_session


def conv_and_pool(rng, pool_first: bool, pool: dict, C: int, K: int, H: int, bias: bool, kernel: int = 1,
                  extra_user: bool = False):
    """x -> AveragePool -> Conv (C -> K, kernel x kernel) [+ bias], or the conv first (pool_first
    False) -> Relu -> y; extra_user: the first node's output is a second output."""
    w = rng.standard_normal((K, C, kernel, kernel)).astype(np.float32)
    b = rng.standard_normal(K).astype(np.float32)
    first, second = ("p", "c") if pool_first else ("c", "p")
    make = {"p": lambda src: helper.make_node("AveragePool", [src], ["p"], **pool),
            "c": lambda src: helper.make_node("Conv", [src, "w"] + (["b"] if bias else []), ["c"])}
    nodes = [make[first]("x"), make[second](first), helper.make_node("Relu", [second], ["y"])]
    outs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]
    if extra_user:
        outs.append(helper.make_tensor_value_info(first, TensorProto.FLOAT, None))
    g = helper.make_graph(nodes, "conv_and_pool", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, C, H, H])],
                          outs, [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])


def pool_branch(rng, C=24, K=8, H=10, pool=None, bias=True, kernel=1, extra_user=False):
    """Inception's pool branch: AveragePool (3x3, stride 1, pads 1 unless `pool` says) -> Conv -> Relu."""
    pool = pool or {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}
    return conv_and_pool(rng, True, pool, C, K, H, bias, kernel, extra_user)


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
    """DenseNet's transition: Conv 1x1 -> AveragePool (2x2, stride 2 unless `pool` says) -> Relu."""
    pool = pool or {"kernel_shape": [2, 2], "strides": [2, 2]}
    return conv_and_pool(rng, False, pool, C, K, H, bias, extra_user=extra_user)


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


@pytest.mark.parametrize("case", ["padding counted with a bias", "same-size pool", "conv read elsewhere",
                                  "too few conv outputs"])
def test_a_pool_that_would_change_the_bias_or_save_nothing_stays_after_the_conv(rng, case):
    m = {"padding counted with a bias": lambda: transition(rng, pool={"kernel_shape": [3, 3], "strides": [2, 2],
                                                                       "pads": [1, 1, 1, 1], "count_include_pad": 1}),
         "same-size pool": lambda: transition(rng, K=32, pool={"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}),
         "conv read elsewhere": lambda: transition(rng, extra_user=True),
         "too few conv outputs": lambda: transition(rng, K=4)}[case]()
    assert ops(m)[:2] == ["Conv", "AveragePool"]
    check_against_onnxruntime(m, rng)
