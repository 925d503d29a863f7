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

from .onnx_helpers import tiny, vi


def both(m, x) -> tuple[np.ndarray, np.ndarray]:
    """(tilewise's output, ONNX Runtime's) of the model m on input x."""
    got = frontends.build(frontends.from_onnx(m)).run(x=x)[0]
    return got, onnxruntime_session(m, threads=1).run(None, {"x": x})[0]


@pytest.mark.parametrize("elem", [onnx.TensorProto.INT64, onnx.TensorProto.INT32, onnx.TensorProto.UINT8,
                                  onnx.TensorProto.INT8])
@pytest.mark.parametrize("mode", ["constant", "edge"])
def test_pad_keeps_an_integer_tensor_integer(elem, mode):
    """ONNX Pad of an integer tensor with its default value 0.0: the pad value is taken in the
    tensor's dtype (it was a float32 constant, which made the padded tensor float32: its bits read
    as integers, and a uint8 buffer overrun that aborted the process)."""
    pads = helper.make_tensor("pads", onnx.TensorProto.INT64, [4], [0, 1, 1, 2])
    m = tiny([helper.make_node("Pad", ["x", "pads"], ["y"], mode=mode)], [vi("x", [2, 5], elem)],
             [vi("y", [3, 8], elem)], [pads], opset=18)
    got, want = both(m, (np.arange(10).reshape(2, 5) + 3).astype(onnx.helper.tensor_dtype_to_np_dtype(elem)))
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
    m = tiny([node], [vi("x", [1, 1, 4, 5], elem)], [vi("y", [1, 1, 6, 7], elem)], [roi, sizes], opset=18)
    got, want = both(m, np.arange(20).reshape(1, 1, 4, 5).astype(onnx.helper.tensor_dtype_to_np_dtype(elem)))
    assert got.dtype == want.dtype and (want == 9).any()
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("elem", [onnx.TensorProto.INT32, onnx.TensorProto.INT64])
@pytest.mark.parametrize("op", ["ReduceMean", "ReduceL2", "ReduceLogSumExp", "ReduceL1", "ReduceSumSquare"])
def test_integer_reductions_match_onnxruntime(elem, op):
    """ReduceMean truncates toward zero (-7/3 -> -2, and 300/3 stays 100); the L2 norm and the
    log-sum-exp, computed in float, are truncated into the integer type."""
    m = tiny([helper.make_node(op, ["x"], ["y"], keepdims=0, axes=[1])], [vi("x", [4, 3], elem)],
             [vi("y", [4], elem)])          # opset 13: axes an attribute
    x = np.array([[-7, 0, 0], [-8, 1, 2], [5, 5, 6], [100, 100, 100]])
    got, want = both(m, x.astype(onnx.helper.tensor_dtype_to_np_dtype(elem)))
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)


def float64_unary(op: str, shape: tuple, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """both() of a one-node float64 model of op on seeded normal inputs times scale."""
    m = tiny([helper.make_node(op, ["x"], ["y"])], [vi("x", list(shape), onnx.TensorProto.DOUBLE)],
             [vi("y", list(shape), onnx.TensorProto.DOUBLE)], opset=18)
    return both(m, np.random.default_rng(0).standard_normal(shape) * scale)


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax"])
def test_float64_softmax_keeps_float64_accuracy(op):
    """The softmax's exp was the float32 polynomial for every float type: 3e-8 off in float64."""
    np.testing.assert_allclose(*float64_unary(op, (3, 37), 4), rtol=1e-13, atol=0)


@pytest.mark.parametrize("op", ["HardSigmoid", "HardSwish", "Selu"])
def test_float64_activations_take_the_specs_float32_constants(op):
    """Attribute defaults (and HardSwish's 1/6) are float32 in ONNX: a float64 model computes with
    0.20000000298, as ONNX Runtime does, not 0.2 (3e-8 off before)."""
    np.testing.assert_allclose(*float64_unary(op, (4, 9), 3), rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("shape, node", [
    ((), helper.make_node("ReduceMean", ["x"], ["y"], keepdims=0)),       # a 0-d tensor: "no axis to reduce"
    ((), helper.make_node("ReduceL2", ["x"], ["y"], keepdims=0)),
    ((0, 3), helper.make_node("Flatten", ["x"], ["y"], axis=1)),          # folded with reshape(0, -1)
    ((2, 0, 4), helper.make_node("Flatten", ["x"], ["y"], axis=-1)),
])
def test_scalar_and_empty_tensors_match_onnxruntime(shape, node):
    """Shapes at the edges (found by a shape sweep against ONNX Runtime): a reduction of a 0-d
    tensor is its elementwise part alone, a Flatten of a tensor with no elements folds."""
    m = onnx.shape_inference.infer_shapes(tiny([node], [vi("x", list(shape))], [vi("y", None)], opset=18))
    got, want = both(m, np.asarray(np.random.default_rng(0).standard_normal(shape), np.float32))
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-6)
