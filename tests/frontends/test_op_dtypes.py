"""Operators on integer and float64 tensors, and on 0-d or empty ones, through the importer,
against ONNX Runtime: a float constant or a float intermediate must not make an integer result
float (its bits read as integers, a buffer sized for bytes overrun), nor a float32 approximation a
float64 one less accurate."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper

import frontends
from frontends.profile import onnxruntime_session


@pytest.mark.parametrize("elem", [onnx.TensorProto.INT64, onnx.TensorProto.INT32, onnx.TensorProto.UINT8,
                                  onnx.TensorProto.INT8])
@pytest.mark.parametrize("mode", ["constant", "edge"])
def test_pad_keeps_an_integer_tensor_integer(elem, mode):
    """ONNX Pad of an integer tensor with its default value 0.0: the pad value is taken in the
    tensor's dtype (it was a float32 constant, which made the padded tensor float32: its bits read
    as integers, and a uint8 buffer overrun that aborted the process)."""
    pads = helper.make_tensor("pads", onnx.TensorProto.INT64, [4], [0, 1, 1, 2])
    g = helper.make_graph([helper.make_node("Pad", ["x", "pads"], ["y"], mode=mode)], "g",
                          [helper.make_tensor_value_info("x", elem, [2, 5])],
                          [helper.make_tensor_value_info("y", elem, [3, 8])], [pads])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
    x = (np.arange(10).reshape(2, 5) + 3).astype(onnx.helper.tensor_dtype_to_np_dtype(elem))
    got = frontends.build(frontends.from_onnx(m)).run(x=x)[0]
    want = onnxruntime_session(m, threads=1).run(None, {"x": x})[0]
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("elem", [onnx.TensorProto.UINT8, onnx.TensorProto.INT32])
def test_crop_and_resize_keeps_an_integer_tensor_integer(elem):
    """Resize's extrapolation value (a float attribute) outside the crop, taken in the tensor's
    dtype: it made the resized tensor float32, which the build refused."""
    roi = helper.make_tensor("roi", onnx.TensorProto.FLOAT, [8], [0, 0, -0.2, -0.1, 1, 1, 1.1, 1.2])
    sizes = helper.make_tensor("sizes", onnx.TensorProto.INT64, [4], [1, 1, 6, 7])
    node = helper.make_node("Resize", ["x", "roi", "", "sizes"], ["y"], mode="nearest", extrapolation_value=9.0,
                            coordinate_transformation_mode="tf_crop_and_resize")
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", elem, [1, 1, 4, 5])],
                          [helper.make_tensor_value_info("y", elem, [1, 1, 6, 7])], [roi, sizes])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
    x = np.arange(20).reshape(1, 1, 4, 5).astype(onnx.helper.tensor_dtype_to_np_dtype(elem))
    got = frontends.build(frontends.from_onnx(m)).run(x=x)[0]
    want = onnxruntime_session(m, threads=1).run(None, {"x": x})[0]
    assert got.dtype == want.dtype and (want == 9).any()
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("elem", [onnx.TensorProto.INT32, onnx.TensorProto.INT64])
@pytest.mark.parametrize("op", ["ReduceMean", "ReduceL2", "ReduceLogSumExp", "ReduceL1", "ReduceSumSquare"])
def test_integer_reductions_match_onnxruntime(elem, op):
    """ReduceMean truncates toward zero (-7/3 -> -2, and 300/3 stays 100); the L2 norm and the
    log-sum-exp, computed in float, are truncated into the integer type."""
    g = helper.make_graph([helper.make_node(op, ["x"], ["y"], keepdims=0, axes=[1])], "g",
                          [helper.make_tensor_value_info("x", elem, [4, 3])],
                          [helper.make_tensor_value_info("y", elem, [4])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    x = np.array([[-7, 0, 0], [-8, 1, 2], [5, 5, 6], [100, 100, 100]]).astype(onnx.helper.tensor_dtype_to_np_dtype(elem))
    got = frontends.build(frontends.from_onnx(m)).run(x=x)[0]
    want = onnxruntime_session(m, threads=1).run(None, {"x": x})[0]
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax"])
def test_float64_softmax_keeps_float64_accuracy(op):
    """The softmax's exp was the float32 polynomial for every float type: 3e-8 off in float64."""
    g = helper.make_graph([helper.make_node(op, ["x"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", onnx.TensorProto.DOUBLE, [3, 37])],
                          [helper.make_tensor_value_info("y", onnx.TensorProto.DOUBLE, [3, 37])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
    x = np.random.default_rng(0).standard_normal((3, 37)) * 4
    got = frontends.build(frontends.from_onnx(m)).run(x=x)[0]
    want = onnxruntime_session(m, threads=1).run(None, {"x": x})[0]
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=0)


@pytest.mark.parametrize("op", ["HardSigmoid", "HardSwish", "Selu"])
def test_float64_activations_take_the_specs_float32_constants(op):
    """Attribute defaults (and HardSwish's 1/6) are float32 in ONNX: a float64 model computes with
    0.20000000298, as ONNX Runtime does, not 0.2 (3e-8 off before)."""
    g = helper.make_graph([helper.make_node(op, ["x"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", onnx.TensorProto.DOUBLE, [4, 9])],
                          [helper.make_tensor_value_info("y", onnx.TensorProto.DOUBLE, [4, 9])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
    x = np.random.default_rng(0).standard_normal((4, 9)) * 3
    got = frontends.build(frontends.from_onnx(m)).run(x=x)[0]
    want = onnxruntime_session(m, threads=1).run(None, {"x": x})[0]
    np.testing.assert_allclose(got, want, rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("shape, node", [
    ((), helper.make_node("ReduceMean", ["x"], ["y"], keepdims=0)),       # a 0-d tensor: "no axis to reduce"
    ((), helper.make_node("ReduceL2", ["x"], ["y"], keepdims=0)),
    ((0, 3), helper.make_node("Flatten", ["x"], ["y"], axis=1)),          # folded with reshape(0, -1)
    ((2, 0, 4), helper.make_node("Flatten", ["x"], ["y"], axis=-1)),
])
def test_scalar_and_empty_tensors_match_onnxruntime(shape, node):
    """Shapes at the edges (found by a shape sweep against ONNX Runtime): a reduction of a 0-d
    tensor is its elementwise part alone, a Flatten of a tensor with no elements folds."""
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, list(shape))],
                          [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)])
    m = onnx.shape_inference.infer_shapes(helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)]))
    x = np.asarray(np.random.default_rng(0).standard_normal(shape), np.float32)
    got = frontends.build(frontends.from_onnx(m)).run(x=x)[0]
    want = onnxruntime_session(m, threads=1).run(None, {"x": x})[0]
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-6)
