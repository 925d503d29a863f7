"""ScatterND, ScatterElements and GridSample through the importer, against ONNX Runtime."""
import numpy as np
import pytest
from onnx import TensorProto, helper

import frontends
from frontends import ModelError
from frontends.profile import onnxruntime_session

from .onnx_helpers import tiny, vi


def _check(m, feed):
    got = frontends.build(frontends.from_onnx(m)).run(**feed)
    want = onnxruntime_session(m, threads=1).run(None, feed)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def _scatter(op, data, indices, updates, opset=18, **attrs):
    node = helper.make_node(op, ["d", "i", "u"], ["y"], name="sc", **attrs)
    return tiny([node], [vi("d", list(data)), vi("i", list(indices), TensorProto.INT64), vi("u", list(updates))],
                [vi("y", list(data))], opset=opset)


@pytest.mark.parametrize("reduction", ["none", "add", "mul", "max", "min"])
def test_scatter_nd_slices_with_negative_and_repeated_indices(rng, reduction):
    data = rng.standard_normal((4, 3, 5)).astype(np.float32)
    # rows of (4, 3) positions; with a reduction the same position comes twice
    idx = np.array([[[0, 1], [-1, 2]], [[2, 0], [0, 1] if reduction != "none" else [1, 1]]], np.int64)
    upd = rng.standard_normal((2, 2, 5)).astype(np.float32)
    m = _scatter("ScatterND", data.shape, idx.shape, upd.shape, reduction=reduction)
    _check(m, {"d": data, "i": idx, "u": upd})


@pytest.mark.parametrize("reduction", ["none", "add", "max"])
def test_scatter_elements_along_an_axis_with_smaller_indices(rng, reduction):
    data = rng.standard_normal((3, 6)).astype(np.float32)
    idx = np.array([[1, -2, 1], [0, 5, 3]], np.int64) if reduction != "none" else np.array([[1, -2, 0], [0, 5, 3]])
    upd = rng.standard_normal(idx.shape).astype(np.float32)
    _check(_scatter("ScatterElements", data.shape, idx.shape, upd.shape, axis=1, reduction=reduction),
           {"d": data, "i": idx.astype(np.int64), "u": upd})


def test_scatter_refuses_updates_of_the_wrong_shape():
    with pytest.raises(ModelError, match=r"updates 'u' have shape \(2, 4\); .* must have shape \(2, 5\)"):
        frontends.from_onnx(_scatter("ScatterND", (4, 5), (2, 1), (2, 4)))


@pytest.mark.parametrize("mode", ["bilinear", "nearest", "bicubic"])
@pytest.mark.parametrize("padding", ["zeros", "border", "reflection"])
@pytest.mark.parametrize("align", [0, 1])
def test_grid_sample_matches_onnxruntime(rng, mode, padding, align):
    x = rng.standard_normal((2, 3, 5, 6)).astype(np.float32)
    grid = rng.uniform(-1.6, 1.6, (2, 4, 7, 2)).astype(np.float32)      # some samples outside the image
    node = helper.make_node("GridSample", ["x", "g"], ["y"], mode=mode, padding_mode=padding, align_corners=align)
    m = tiny([node], [vi("x", list(x.shape)), vi("g", list(grid.shape))], [vi("y", [2, 3, 4, 7])], opset=16)
    _check(m, {"x": x, "g": grid})


def test_grid_sample_refuses_an_unknown_mode():
    node = helper.make_node("GridSample", ["x", "g"], ["y"], mode="area")
    m = tiny([node], [vi("x", [1, 1, 4, 4]), vi("g", [1, 2, 2, 2])], [vi("y", [1, 1, 2, 2])], opset=16)
    with pytest.raises(ModelError, match="mode 'area' is not one of nearest, linear, cubic"):
        frontends.from_onnx(m)
