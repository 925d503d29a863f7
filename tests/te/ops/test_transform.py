"""te.ops data movement (pad, transpose, reshape, concat, slice, gather, resize...) against numpy
and, for resize, ONNX Runtime."""
from __future__ import annotations

import numpy as np
import pytest

import te
from te import ops
from .ort_reference import run_node


def build_run(out, inputs, arrays):
    """ops.schedule + build + run; returns the output (or outputs)."""
    outs = out if isinstance(out, list) else [out]
    f = te.build(ops.schedule(outs), inputs + outs)
    res = [np.zeros(o.shape, dtype=np.dtype(o.dtype)) for o in outs]
    f(*arrays, *res)
    return res if isinstance(out, list) else res[0]


@pytest.mark.parametrize("mode", ["constant", "edge", "reflect", "wrap"])
def test_pad(mode, rand):
    a_np = rand((2, 3, 5, 6))
    x = te.placeholder(a_np.shape, name="x")
    pw = [(0, 0), (1, 0), (2, 3), (1, 2)]
    kw = {"constant_values": 1.5} if mode == "constant" else {}
    got = build_run(ops.pad(x, pw, value=1.5, mode=mode), [x], [a_np])
    np.testing.assert_array_equal(got, np.pad(a_np, pw, mode, **kw))


def test_pad_onnx_layout_and_crop(rand):
    a_np = rand((4, 6))
    x = te.placeholder(a_np.shape, name="x")
    got = build_run(ops.pad(x, [1, -1, 0, 2]), [x], [a_np])     # ONNX pads: begins then ends
    np.testing.assert_array_equal(got, np.pad(a_np, [(1, 0), (0, 2)])[:, 1:])
    with pytest.raises(ValueError, match="reflect"):
        ops.pad(x, [(4, 0), (0, 0)], mode="reflect")
    got = build_run(ops.pad(x, [0, 2], [1, 0], value=-1.0), [x], [a_np])    # TOPI: before, after
    np.testing.assert_array_equal(got, np.pad(a_np, [(0, 1), (2, 0)], constant_values=-1.0))


@pytest.mark.parametrize("axes", [None, (0, 2, 3, 1), (1, 0, 3, 2)])
def test_transpose(axes, rand):
    a_np = rand((2, 3, 4, 5))
    x = te.placeholder(a_np.shape, name="x")
    np.testing.assert_array_equal(build_run(ops.transpose(x, axes), [x], [a_np]), np.transpose(a_np, axes))


@pytest.mark.parametrize("shape, axes, dtype", [((32, 3, 48), (1, 2, 0), "float32"),      # attention's K^T
                                               ((2, 48, 32), (0, 2, 1), "int32"),
                                               ((3, 32, 2, 16), (2, 0, 3, 1), "float32")])
def test_transpose_in_tiles(shape, axes, dtype, rand):
    """A transpose whose innermost axes differ runs in tiles of lanes x lanes."""
    a_np = rand(shape, dtype)
    x = te.placeholder(shape, dtype, name="x")
    out = ops.transpose(x, axes)
    text = str(te.lower(ops.schedule([out]), [x, out]))
    assert "# unrolled" in text and "# vectorized" in text
    np.testing.assert_array_equal(build_run(out, [x], [a_np]), np.transpose(a_np, axes))


@pytest.mark.parametrize("newshape,want", [((6, -1), (6, 20)), ((0, 4, 15), (2, 4, 15)),
                                           ((-1,), (120,)), ((2, 3, 20), (2, 3, 20)), ((5, 24), (5, 24))])
def test_reshape(newshape, want, rand):
    a_np = rand((2, 3, 4, 5))
    x = te.placeholder(a_np.shape, name="x")
    out = ops.reshape(x, newshape)
    assert out.shape == want
    np.testing.assert_array_equal(build_run(out, [x], [a_np]), a_np.reshape(want))
    with pytest.raises(ValueError, match="reshape"):
        ops.reshape(x, (7, -1))


@pytest.mark.parametrize("axis", [0, 1, 2, 4])
def test_flatten(axis, rand):
    a_np = rand((2, 3, 4, 5))
    x = te.placeholder(a_np.shape, name="x")
    want = a_np.reshape(int(np.prod(a_np.shape[:axis])), -1)
    np.testing.assert_array_equal(build_run(ops.flatten(x, axis), [x], [a_np]), want)


def test_squeeze_unsqueeze(rand):
    a_np = rand((1, 3, 1, 4))
    x = te.placeholder(a_np.shape, name="x")
    np.testing.assert_array_equal(build_run(ops.squeeze(x), [x], [a_np]), a_np.squeeze())
    np.testing.assert_array_equal(build_run(ops.squeeze(x, 2), [x], [a_np]), a_np.squeeze(2))
    got = build_run(ops.unsqueeze(x, [0, -1]), [x], [a_np])
    np.testing.assert_array_equal(got, a_np[None, ..., None])
    np.testing.assert_array_equal(build_run(ops.expand_dims(x, 1, 2), [x], [a_np]), a_np[:, None, None])
    with pytest.raises(ValueError, match="not 1"):
        ops.squeeze(x, 1)


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_concat(axis, rand):
    shapes = [(2, 3, 4), (2, 3, 4), (2, 3, 4)]
    shapes = [tuple(s[d] + k if d == axis % 3 else s[d] for d in range(3)) for k, s in enumerate(shapes)]
    arrays = [rand(s) for s in shapes]
    xs = [te.placeholder(s, name=f"x{k}") for k, s in enumerate(shapes)]
    got = build_run(ops.concat([ops.relu(xs[0])] + xs[1:], axis), xs, arrays)
    np.testing.assert_array_equal(got, np.concatenate([np.maximum(arrays[0], 0)] + arrays[1:], axis))


def test_split(rand):
    a_np = rand((6, 10))
    x = te.placeholder(a_np.shape, name="x")
    for parts, axis in ((3, 0), ([2, 7], 1)):
        outs = ops.split(x, parts, axis)
        for got, want in zip(build_run(outs, [x], [a_np]), np.split(a_np, parts, axis)):
            np.testing.assert_array_equal(got, want)
    got = build_run(ops.split_sizes(x, [1, 4, 5], 1), [x], [a_np])
    for g, w in zip(got, np.split(a_np, [1, 5], 1)):
        np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize("begin,end,strides,axes", [
    ([1, 0], [4, 10], [1, 2], None),
    ([-3], [100], [1], [1]),                # negative start, end past the axis
    ([5, -1], [0, -8], [-2, -3], [0, 1]),   # negative steps
    ([None], [None], [-1], [2]),            # a full reversal
    ([1], [-1], [1], [-1])])
def test_slice(begin, end, strides, axes, rand):
    a_np = rand((6, 10, 4))
    x = te.placeholder(a_np.shape, name="x")
    got = build_run(ops.strided_slice(x, begin, end, strides, axes), [x], [a_np])
    idx = [slice(None)] * 3
    for a, b, e, s in zip(axes or range(len(begin)), begin, end, strides):
        idx[a] = slice(b, e, s)
    np.testing.assert_array_equal(got, a_np[tuple(idx)])


@pytest.mark.parametrize("axis", [0, 1])
def test_gather(axis, rand, rng):
    a_np = rand((5, 6, 3))
    i_np = rng.integers(-a_np.shape[axis], a_np.shape[axis], (2, 4)).astype(np.int64)
    x, i = te.placeholder(a_np.shape, name="x"), te.placeholder((2, 4), "int64", "i")
    np.testing.assert_array_equal(build_run(ops.gather(x, i, axis), [x, i], [a_np, i_np]),
                                  np.take(a_np, i_np, axis))


def test_copy(rand):
    a_np = rand((3, 5))
    x = te.placeholder(a_np.shape, name="x")
    np.testing.assert_array_equal(build_run(ops.copy(x), [x], [a_np]), a_np)


def test_expand_and_tile(rand):
    a_np = rand((3, 1))
    x = te.placeholder(a_np.shape, name="x")
    np.testing.assert_array_equal(build_run(ops.expand(x, (2, 1, 4)), [x], [a_np]),
                                  a_np * np.ones((2, 1, 4), np.float32))
    np.testing.assert_array_equal(build_run(ops.broadcast_to(x, (3, 5)), [x], [a_np]),
                                  np.broadcast_to(a_np, (3, 5)))
    np.testing.assert_array_equal(build_run(ops.tile(x, (2, 2, 3)), [x], [a_np]), np.tile(a_np, (2, 2, 3)))


@pytest.mark.parametrize("method,ctm,nearest_mode,size", [
    ("nearest", "asymmetric", "floor", (10, 13)),
    ("nearest", "half_pixel", "round_prefer_floor", (9, 5)),
    ("nearest", "align_corners", "round_prefer_ceil", (12, 8)),
    ("nearest", "asymmetric", "ceil", (3, 4)),
    ("linear", "half_pixel", "round_prefer_floor", (11, 14)),
    ("linear", "half_pixel", "round_prefer_floor", (3, 2)),       # downsampling
    ("linear", "align_corners", "round_prefer_floor", (9, 16)),
    ("linear", "asymmetric", "round_prefer_floor", (10, 7)),
    ("linear", "pytorch_half_pixel", "round_prefer_floor", (1, 12))])
def test_resize_matches_onnx(method, ctm, nearest_mode, size, rand):
    a_np = rand((1, 3, 5, 6), low=-2, high=2)
    x = te.placeholder(a_np.shape, name="x")
    got = build_run(ops.resize(x, (1, 3, *size), method, ctm, nearest_mode), [x], [a_np])
    want = run_node("Resize", {"x": a_np, "roi": None, "scales": None,
                               "sizes": np.array([1, 3, *size], np.int64)},
                    mode=method, coordinate_transformation_mode=ctm, nearest_mode=nearest_mode)[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def reference_node(op_type: str, inputs: dict, **attrs) -> np.ndarray:
    """One node run by onnx.reference (None = an omitted optional input)."""
    from onnx import helper
    from onnx.reference import ReferenceEvaluator
    names = [n if a is not None else "" for n, a in inputs.items()]
    node = helper.make_node(op_type, names, ["y"], **attrs)
    graph = helper.make_graph([node], "one", [helper.make_tensor_value_info(
        n, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape) for n, a in inputs.items() if a is not None],
        [helper.make_empty_tensor_value_info("y")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])
    return ReferenceEvaluator(model).run(None, {n: a for n, a in inputs.items() if a is not None})[0]


@pytest.mark.parametrize("attrs,scales,size", [
    ({"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"},
     (0.6, 0.8), None),                                             # the scales, not the sizes, map
    ({"mode": "linear", "coordinate_transformation_mode": "align_corners"}, (1.7, 0.7), None),
    ({"mode": "linear", "coordinate_transformation_mode": "half_pixel_symmetric"}, (2.3, 0.65), None),
    ({"mode": "cubic"}, None, (8, 9)),
    ({"mode": "cubic", "cubic_coeff_a": -0.5, "exclude_outside": 1}, (0.8, 1.6), None),
    ({"mode": "cubic", "coordinate_transformation_mode": "asymmetric"}, None, (3, 4)),
])
def test_resize_scales_and_cubic_match_onnx(attrs, scales, size, rand):
    # against ONNX's reference implementation, which the conformance data follow (ONNX Runtime
    # differs for align_corners with scales: it divides by the rounded output size)
    a_np = rand((1, 2, 5, 6), low=-2, high=2)
    x = te.placeholder(a_np.shape, name="x")
    if scales is not None:
        out_hw = tuple(int(n * s) for n, s in zip(a_np.shape[2:], scales))
        feeds = {"x": a_np, "roi": None, "scales": np.array([1, 1, *scales], np.float32)}
    else:
        out_hw = size
        feeds = {"x": a_np, "roi": None, "scales": None, "sizes": np.array([1, 2, *size], np.int64)}
    got = build_run(ops.resize(x, (1, 2, *out_hw), attrs["mode"],
                               attrs.get("coordinate_transformation_mode", "half_pixel"),
                               attrs.get("nearest_mode", "round_prefer_floor"), scales=scales,
                               cubic_coeff_a=attrs.get("cubic_coeff_a", -0.75),
                               exclude_outside=bool(attrs.get("exclude_outside", 0))), [x], [a_np])
    want = reference_node("Resize", feeds, **attrs)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_resize_tf_crop_and_resize(rand):
    a_np = rand((1, 1, 6, 5), low=-2, high=2)
    x = te.placeholder(a_np.shape, name="x")
    roi = (0.2, -0.3, 0.9, 0.8)             # (h0, w0, h1, w1): part of the box is outside
    got = build_run(ops.resize(x, (4, 7), "linear", "tf_crop_and_resize", roi=roi, extrapolation_value=-9.0),
                    [x], [a_np])
    want = run_node("Resize", {"x": a_np, "roi": np.array([0, 0, roi[0], roi[1], 1, 1, roi[2], roi[3]],
                                                          np.float32),
                               "scales": None, "sizes": np.array([1, 1, 4, 7], np.int64)},
                    mode="linear", coordinate_transformation_mode="tf_crop_and_resize",
                    extrapolation_value=-9.0)[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
