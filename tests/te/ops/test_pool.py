"""te.ops pooling against ONNX Runtime (one-node MaxPool/AveragePool/Global*Pool models)."""
from __future__ import annotations

import numpy as np
import pytest

import te
from autotune.space import ConfigSpace, FallbackConfig, get_template
from te import ops
from te.ops.pool import pool_out_size
from .ort_reference import run_node


def build_run(out, inputs, arrays):
    """ops.schedule + build + run; returns the output."""
    f = te.build(ops.schedule([out]), inputs + [out])
    res = np.zeros(out.shape, dtype=np.dtype(out.dtype))
    f(*arrays, res)
    return res


def _pair(v):
    return [v, v] if isinstance(v, int) else list(v)


def _pads(p):
    if isinstance(p, int):
        return [p] * 4
    return [p[0], p[1], p[0], p[1]] if len(p) == 2 else list(p)


# (N, C, H, W), kernel, stride, pads (top, left, bottom, right), dilation, ceil_mode, count_include_pad
CASES = [
    ((1, 5, 14, 14), 3, 2, 1, 1, False, False),           # ResNet stem shape, small
    ((2, 3, 7, 9), 3, 2, (1, 0, 0, 1), 1, True, False),   # asymmetric pads, ceil mode, odd sizes
    ((1, 17, 10, 10), 2, 2, 0, 1, True, False),           # channels not a multiple of 16
    ((1, 4, 9, 11), 3, 2, 1, 1, True, True),              # ceil mode and counted padding
    ((1, 4, 10, 10), 3, 2, 1, 1, True, True),             # ceil mode adds a window that overhangs
    ((1, 3, 9, 11), (3, 2), (2, 1), (1, 0, 1, 1), (2, 1), False, False),   # rectangular, dilated
    ((1, 6, 8, 8), 3, 1, 1, 1, False, True),              # stride 1, same size
    ((1, 2, 5, 5), 5, 1, 2, 1, False, False),             # window as large as the input
    ((1, 3, 6, 7), 3, 3, 1, 2, True, False),              # dilation with ceil mode
    ((1, 3, 13, 13), 3, 2, 0, 1, True, False),            # ceil mode without padding
    ((1, 2, 12, 40), 2, (1, 3), (0, 1, 1, 1), 1, False, True),  # stride 3 along w, wide rows
    ((1, 3, 32, 32), (1, 3), 1, (0, 1, 0, 1), 1, False, False),  # a 1-row window
    ((1, 5, 28, 28), 3, 1, 1, 1, False, False),           # stride 1 on a flat plane (Inception's avg pools)
    ((1, 4, 13, 11), (3, 5), 1, (0, 2, 2, 1), (2, 1), False, True),   # stride 1: asymmetric pads, dilated
    ((1, 3, 7, 7), 7, 1, 0, 1, False, False),             # stride 1, one output: rows, not a flat plane
    ((1, 2, 5, 70), 3, 1, 1, 1, False, False),            # stride 1, rows wider than one run
]


@pytest.mark.parametrize("pool_type", ["max", "avg"])
@pytest.mark.parametrize("shape,kernel,stride,pads,dilation,ceil_mode,cip", CASES)
def test_pool2d_matches_onnx(pool_type, shape, kernel, stride, pads, dilation, ceil_mode, cip, rand):
    a_np = rand(shape, low=-4, high=4)
    x = te.placeholder(shape, name="x")
    out = ops.pool2d(x, kernel, stride, pads, dilation, pool_type, ceil_mode, cip)
    attrs = dict(kernel_shape=_pair(kernel), strides=_pair(stride), pads=_pads(pads),
                 ceil_mode=int(ceil_mode), dilations=_pair(dilation))
    if pool_type == "avg":
        attrs["count_include_pad"] = int(cip)
    want = run_node("MaxPool" if pool_type == "max" else "AveragePool", {"x": a_np}, **attrs)[0]
    assert out.shape == want.shape
    np.testing.assert_allclose(build_run(out, [x], [a_np]), want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("shape", [(2, 20, 7, 7), (1, 33, 5, 9), (1, 16, 8, 32)])
def test_global_pools_match_onnx(shape, rand):
    a_np = rand(shape)
    x = te.placeholder(shape, name="x")
    got_avg = build_run(ops.global_avg_pool2d(x), [x], [a_np])
    got_max = build_run(ops.global_max_pool2d(x), [x], [a_np])
    np.testing.assert_allclose(got_avg, run_node("GlobalAveragePool", {"x": a_np})[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(got_max, run_node("GlobalMaxPool", {"x": a_np})[0])


def test_pool_after_relu_and_pad_is_fused(rand):
    a_np = rand((1, 8, 12, 12))
    x = te.placeholder(a_np.shape, name="x")
    padded = ops.pad(ops.relu(x), [(0, 0), (0, 0), (1, 1), (1, 1)])
    out = ops.max_pool2d(padded, 3, 2)
    text = str(te.lower(ops.schedule([out]), [x, out]))
    assert "allocate pad" not in text and "allocate relu" not in text
    want = run_node("MaxPool", {"x": np.maximum(a_np, 0)}, kernel_shape=[3, 3], strides=[2, 2],
                    pads=[1, 1, 1, 1])[0]
    np.testing.assert_allclose(build_run(out, [x], [a_np]), want, rtol=1e-6)


@pytest.mark.parametrize("stride", [2, 1])            # rows then columns; stride 1 on the flat plane
@pytest.mark.parametrize("which", ["default", "other"])
def test_pool_template(which, stride, rand):
    space = ConfigSpace()
    get_template("pool2d")(space, 1, 4, 16, 16, 3, stride, 1, "max")
    assert len(space) > 1
    cfg = FallbackConfig() if which == "default" else space.get(
        next(i for i in range(len(space)) if i != space.default_index()))
    s, (x, y) = get_template("pool2d")(cfg, 1, 4, 16, 16, 3, stride, 1, "max")
    assert y.op.tag == ("pool_flat" if stride == 1 else "pool")
    a_np = rand((1, 4, 16, 16))
    got = np.zeros(y.shape, np.float32)
    te.build(s, [x, y])(a_np, got)
    want = run_node("MaxPool", {"x": a_np}, kernel_shape=[3, 3], strides=[stride] * 2, pads=[1, 1, 1, 1])[0]
    np.testing.assert_array_equal(got, want)


def test_stride1_pool_runs_flat_with_its_epilogue(rand):
    """A stride-1 pool runs on the flat plane (no row buffer) and takes the activation after it."""
    a_np = rand((1, 6, 14, 14), low=-4, high=4)
    x = te.placeholder(a_np.shape, name="x")
    pooled = ops.avg_pool2d(x, 3, 1, 1)
    assert pooled.op.tag == "pool_flat"
    out = ops.relu(pooled)
    text = str(te.lower(ops.schedule([out]), [x, out]))
    assert "rows" not in text and "allocate avg_pool2d:" not in text      # relu fused, no row buffer
    want = np.maximum(run_node("AveragePool", {"x": a_np}, kernel_shape=[3, 3], pads=[1, 1, 1, 1])[0], 0)
    np.testing.assert_allclose(build_run(out, [x], [a_np]), want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("auto_pad", ["SAME_UPPER", "SAME_LOWER", "VALID"])
def test_auto_pad_matches_onnx(auto_pad, rand):
    a_np = rand((1, 3, 10, 9))
    x = te.placeholder(a_np.shape, name="x")
    out = ops.avg_pool2d(x, (3, 2), (2, 2), auto_pad, count_include_pad=False)
    want = run_node("AveragePool", {"x": a_np}, kernel_shape=[3, 2], strides=[2, 2], auto_pad=auto_pad)[0]
    np.testing.assert_allclose(build_run(out, [x], [a_np]), want, rtol=1e-5, atol=1e-6)


def test_out_size_rules():
    assert pool_out_size(112, 3, 2, 1, 1, 1, False) == 56
    assert pool_out_size(10, 3, 2, 1, 1, 1, True) == 6
    assert pool_out_size(6, 2, 2, 1, 0, 1, True) == 3     # the last window would start in the padding
    with pytest.raises(ValueError, match="larger"):
        pool_out_size(2, 5, 1, 1, 0, 0, False)
    with pytest.raises(ValueError, match="NCHW"):
        ops.max_pool2d(te.placeholder((4, 4), name="x"), 2)
