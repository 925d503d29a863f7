"""ONNX Runtime's com.microsoft fused operators through the importer, against ONNX Runtime."""
import numpy as np
import pytest
from onnx import helper, numpy_helper

import frontends
from frontends import ModelError

from .onnx_helpers import vi

MS = "com.microsoft"


def _model(nodes, inputs, outputs, inits, opset):
    g = helper.make_graph(nodes, "contrib", inputs, outputs, inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset), helper.make_opsetid(MS, 1)])


def _check(m, feeds):
    import onnxruntime as ort
    want = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)
    got = frontends.build(frontends.from_onnx(m)).run(**feeds)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("op,bias", [("Gelu", False), ("BiasGelu", True), ("FastGelu", True), ("FastGelu", False)])
def test_gelu_family_matches_onnxruntime(rand, op, bias):
    x = rand((2, 5, 16), low=-4, high=4)
    inits = [numpy_helper.from_array(rand((16,)), "b")] if bias else []
    node = helper.make_node(op, ["x", "b"] if bias else ["x"], ["y"], domain=MS, name="g")
    _check(_model([node], [vi("x", list(x.shape))], [vi("y", None)], inits, 13), {"x": x})


@pytest.mark.parametrize("opset,beta,bias", [(17, True, True), (13, True, False), (13, False, True)])
def test_skip_layer_norm_matches_onnxruntime(rand, opset, beta, bias):
    x, skip = rand((2, 4, 32)), rand((2, 4, 32))
    inits = [numpy_helper.from_array(rand((32,)), "gamma")]
    names = ["x", "skip", "gamma", "beta" if beta else "", "bias" if bias else ""]
    inits += [numpy_helper.from_array(rand((32,)), n) for n in ("beta", "bias") if n in names]
    node = helper.make_node("SkipLayerNormalization", names, ["y", "", "", "sum"], domain=MS,
                            epsilon=1e-5, name="sln")
    m = _model([node], [vi("x", [2, 4, 32]), vi("skip", [2, 4, 32])], [vi("y", None), vi("sum", None)],
               inits, opset)
    _check(m, {"x": x, "skip": skip})


def test_skip_layer_norm_statistics_outputs_are_refused(rand):
    node = helper.make_node("SkipLayerNormalization", ["x", "skip", "gamma"], ["y", "mean"], domain=MS, name="sln")
    m = _model([node], [vi("x", [2, 8]), vi("skip", [2, 8])], [vi("y", None), vi("mean", None)],
               [numpy_helper.from_array(rand((8,)), "gamma")], 17)
    with pytest.raises(ModelError, match="mean and inverse standard deviation outputs"):
        frontends.from_onnx(m)


@pytest.mark.parametrize("opset,masked", [(13, False), (12, True)])
def test_attention_matches_onnxruntime(rand, opset, masked):
    from onnx import TensorProto
    x = rand((2, 5, 16))
    inits = [numpy_helper.from_array(rand((16, 48)), "w"), numpy_helper.from_array(rand((48,)), "b")]
    feeds, inputs = {"x": x}, [vi("x", [2, 5, 16])]
    if masked:
        feeds["mask"] = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], np.int32)
        inputs.append(vi("mask", [2, 5], TensorProto.INT32))
    node = helper.make_node("Attention", ["x", "w", "b"] + (["mask"] if masked else []), ["y"], domain=MS,
                            name="att", num_heads=4)
    _check(_model([node], inputs, [vi("y", None)], inits, opset), feeds)


@pytest.mark.parametrize("attrs,why", [
    (dict(num_heads=2, unidirectional=1), r"unidirectional \(causal\) attention is not supported"),
    ({}, "the num_heads attribute is missing"),
])
def test_unsupported_attention_is_refused_by_name(rand, attrs, why):
    node = helper.make_node("Attention", ["x", "w"], ["y"], domain=MS, name="att", **attrs)
    m = _model([node], [vi("x", [1, 4, 8])], [vi("y", None)], [numpy_helper.from_array(rand((8, 24)), "w")], 13)
    with pytest.raises(ModelError, match=r"Attention\): " + why):
        frontends.from_onnx(m)


def test_other_contrib_ops_are_refused_by_name():
    node = helper.make_node("EmbedLayerNormalization", ["x"], ["y"], domain=MS, name="emb")
    m = _model([node], [vi("x", [1, 4])], [vi("y", None)], [], 13)
    with pytest.raises(ModelError, match=r"com.microsoft.EmbedLayerNormalization\): custom-domain op"):
        frontends.from_onnx(m)
