"""te.ops reductions (sum, mean, max, min, prod) and their schedules, against numpy."""
from __future__ import annotations

import numpy as np
import pytest

import te
from te import ops
from te.ops.reduction import lane_stages, rfactor_lanes

REDUCE = dict(rtol=1e-4, atol=1e-5)
NP = {"sum": np.sum, "mean": np.mean, "max": np.max, "min": np.min, "prod": np.prod}


def build_run(out, inputs, arrays):
    """ops.schedule + build + run; returns the output."""
    f = te.build(ops.schedule([out]), inputs + [out])
    res = np.zeros(out.shape, dtype=np.dtype(out.dtype))
    f(*arrays, res)
    return res


CASES = [
    ((4, 5, 6), None, False),        # everything
    ((4, 5, 6), 2, True),            # last axis, short, keepdims
    ((4, 5, 128), -1, False),        # last axis: partial + folds
    ((3, 4, 96), (0, 2), False),     # last and another
    ((2, 3, 7, 7), (2, 3), True),    # global-pool style
    ((2, 6, 5, 33), 1, False),       # a middle axis: the innermost stays vectorized
    ((40, 24), 0, True),             # first axis only: few rows
    ((3, 97), 1, False),             # prime extent: no lanes
    ((1000,), 0, False),             # a 1-D reduction to a scalar
]


@pytest.mark.parametrize("kind", sorted(NP))
@pytest.mark.parametrize("shape,axis,keepdims", CASES)
def test_reduce_matches_numpy(kind, shape, axis, keepdims, rand):
    a_np = rand(shape, low=0.9, high=1.1) if kind == "prod" else rand(shape)
    x = te.placeholder(shape, name="x")
    out = getattr(ops, kind)(x, axis, keepdims)
    want = NP[kind](a_np.astype(np.float64), axis=axis, keepdims=keepdims)
    assert out.shape == np.shape(want)
    np.testing.assert_allclose(build_run(out, [x], [a_np]), want, **REDUCE)


@pytest.mark.parametrize("shape", [(64, 1024), (1 << 16,), (8, 4, 32, 32), (1, 1, 256, 160)])
@pytest.mark.parametrize("kind", ["sum", "mean", "max"])
def test_reduce_everything_in_parallel_blocks(shape, kind, rand):
    a_np = rand(shape)
    x = te.placeholder(shape, name="x")
    out = getattr(ops, kind)(x, keepdims=True)
    text = str(te.lower(ops.schedule([out]), [x, out]))
    assert "parallel" in text
    np.testing.assert_allclose(build_run(out, [x], [a_np]),
                               NP[kind](a_np.astype(np.float64), keepdims=True), **REDUCE)


def test_reduce_everything_of_a_broadcast(rand):
    a_np, b_np = rand((1, 16, 48, 48)), rand((16, 1, 1))
    x, b = te.placeholder(a_np.shape, name="x"), te.placeholder((16, 1, 1), name="b")
    out = ops.sum(ops.add(x, b))
    np.testing.assert_allclose(build_run(out, [x, b], [a_np, b_np]), (a_np.astype(np.float64) + b_np).sum(),
                               rtol=1e-4)


def test_integer_sum_and_mean(rand):
    a_np = rand((6, 40), "int32")
    x = te.placeholder((6, 40), "int32", "x")
    s = ops.sum(x, 1)
    assert s.dtype == "int32"
    np.testing.assert_array_equal(build_run(s, [x], [a_np]), a_np.sum(1))
    m = ops.mean(x, 0)
    assert m.dtype == "float32"
    np.testing.assert_allclose(build_run(m, [x], [a_np]), a_np.mean(0), **REDUCE)


def test_last_axis_reduction_is_vectorized_two_stage(rand):
    x = te.placeholder((16, 256), name="x")
    out = ops.sum(x, 1)
    lanes = rfactor_lanes(256, te.target.host())
    stages = lane_stages(out)
    assert stages[-1].shape == (16, lanes) and len(stages) == int(np.log2(lanes))   # partial + folds
    text = str(te.lower(ops.schedule([out]), [x, out]))
    assert "vectorized" in text and "ko" in text


def test_injective_producer_is_inlined(rand):
    a_np = rand((8, 64, 49))
    x = te.placeholder(a_np.shape, name="x")
    out = ops.max(ops.relu(ops.negative(x)), axis=(0, 2))
    s = ops.schedule([out])
    assert str(te.lower(s, [x, out])).count("allocate relu") == 0
    np.testing.assert_allclose(build_run(out, [x], [a_np]), np.maximum(-a_np, 0).max((0, 2)), **REDUCE)


def test_reduction_feeding_elementwise(rand):
    a_np = rand((4, 32, 16))
    x = te.placeholder(a_np.shape, name="x")
    out = ops.sqrt(ops.mean(ops.multiply(x, x), axis=-1, keepdims=True))
    np.testing.assert_allclose(build_run(out, [x], [a_np]), np.sqrt((a_np.astype(np.float64) ** 2).mean(-1, keepdims=True)),
                               **REDUCE)


def test_bad_axis():
    x = te.placeholder((3, 4), name="x")
    with pytest.raises(ValueError, match="out of range"):
        ops.sum(x, 2)
    with pytest.raises(ValueError, match="lanes"):
        ops.reduce_over(x.shape, (1,), lambda i: x[i], "sum", "s", lanes=3)


@pytest.mark.parametrize("shape,axis", [((3, 4, 5), 0), ((3, 4, 5), 1), ((3, 4, 5), -1), ((2, 130), 1), ((7,), 0)])
@pytest.mark.parametrize("last", [False, True])
@pytest.mark.parametrize("kind", ["argmax", "argmin"])
def test_argmax_argmin_with_ties(kind, shape, axis, last, rng):
    a_np = rng.integers(0, 4, shape).astype(np.float32)      # many ties
    x = te.placeholder(shape, name="x")
    out = getattr(ops, kind)(x, axis, keepdims=True, select_last_index=last)
    assert out.dtype == "int64"
    got = build_run(out, [x], [a_np])
    ref = getattr(np, kind)
    want = a_np.shape[axis] - 1 - ref(np.flip(a_np, axis), axis) if last else ref(a_np, axis)
    np.testing.assert_array_equal(got, np.expand_dims(want, axis))
