"""te.ops maximum/minimum/relu/clip keep NaN as numpy and ONNX Runtime do."""
import numpy as np
import pytest

import te
from te import ops

from .build_run import build_run

A = np.array([np.nan, 1, 2, -1, np.inf, -np.inf, 0, 9, np.nan, 3], np.float32)
B = np.array([1, np.nan, 0, 5, -np.inf, np.inf, np.nan, 2, np.nan, -3], np.float32)


@pytest.mark.parametrize("name", ["maximum", "minimum"])
def test_maximum_and_minimum_propagate_nan_from_either_side(name):
    a, b = te.placeholder(A.shape, name="a"), te.placeholder(B.shape, name="b")
    got = build_run(getattr(ops, name)(a, b), [a, b], [A, B])
    np.testing.assert_array_equal(got, getattr(np, name)(A, B))


def test_relu_and_clip_keep_nan():
    a = te.placeholder(A.shape, name="a")
    np.testing.assert_array_equal(build_run(ops.relu(a), [a], [A]), np.where(np.isnan(A), A, np.maximum(A, 0)))
    np.testing.assert_array_equal(build_run(ops.clip(a, 0.0, 6.0), [a], [A]), np.clip(A, 0, 6))


@pytest.mark.parametrize("name", ["argmax", "argmin"])
@pytest.mark.parametrize("last", [False, True])
def test_arg_reductions_answer_an_index_inside_a_row_with_nan(name, last):
    rows = np.stack([A, np.where(np.isnan(A), 0, A), B, np.full(A.shape, np.nan, np.float32)])
    x = te.placeholder(rows.shape, name="x")
    got = build_run(getattr(ops, name)(x, axis=1, keepdims=False, select_last_index=last), [x], [rows])
    assert ((got >= 0) & (got < rows.shape[1])).all(), got       # was rows.shape[1] or -1
    assert got[1] == (getattr(np, name)(rows[1]) if not last else 9 - getattr(np, name)(rows[1][::-1]))
