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

