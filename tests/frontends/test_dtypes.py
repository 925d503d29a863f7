"""The frontend's dtype tables agree with onnx's own, and the one random-input maker."""
from __future__ import annotations

import numpy as np
import onnx
import pytest

from frontends.dtypes import ONNX_DTYPES, ONNX_TO_NUMPY, onnx_elem_type
from frontends.profile import random_inputs
from te.expr import DTYPES
from te.runtime import random_array


def test_tables_agree_with_onnx():
    for elem, dt in ONNX_TO_NUMPY.items():
        assert onnx.helper.tensor_dtype_to_np_dtype(elem) == dt
        assert onnx_elem_type(dt) == elem
    # every te dtype has an ONNX element type, and maps back to itself
    assert sorted(ONNX_DTYPES.values()) == sorted(DTYPES)
    for elem, name in ONNX_DTYPES.items():
        assert onnx_elem_type(name) == elem


@pytest.mark.parametrize("dtype", DTYPES)
def test_random_array_has_the_dtype_and_small_integers(dtype):
    a = random_array(np.random.default_rng(0), (64,), dtype)
    assert a.dtype == np.dtype(dtype) and a.shape == (64,)
    if np.dtype(dtype).kind in "iu":
        assert a.min() >= 0 and a.max() < 3


def test_random_inputs_are_seeded():
    specs = [{"name": "x", "shape": [2, 3], "dtype": "float32"}, {"name": "m", "shape": [4], "dtype": "bool"}]
    one, two = random_inputs(specs, seed=3), random_inputs(specs, seed=3)
    assert one.keys() == {"x", "m"} and one["m"].dtype == np.bool_
    np.testing.assert_array_equal(one["x"], two["x"])


@pytest.mark.parametrize("elem", [onnx.TensorProto.INT64, onnx.TensorProto.INT32, onnx.TensorProto.UINT8,
                                  onnx.TensorProto.INT8])
@pytest.mark.parametrize("mode", ["constant", "edge"])
def test_pad_keeps_an_integer_tensor_integer(elem, mode):
    """ONNX Pad of an integer tensor with its default value 0.0: the pad value is taken in the
    tensor's dtype (it was a float32 constant, which made the padded tensor float32: its bits read
    as integers, and a uint8 buffer overrun that aborted the process)."""
    from onnx import helper

    import frontends
    from frontends.profile import onnxruntime_session
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
    from onnx import helper

    import frontends
    from frontends.profile import onnxruntime_session
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
