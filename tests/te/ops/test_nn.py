"""te.ops softmax, log_softmax, layer_norm, batch_norm and LRN against numpy and ONNX Runtime."""
from __future__ import annotations

import numpy as np
import pytest

import te
from autotune.space import ConfigSpace, FallbackConfig, get_template
from te import ops
from .ort_reference import run_node

TOL = dict(rtol=1e-5, atol=1e-6)
REDUCE = dict(rtol=1e-4, atol=1e-5)


def build_run(out, inputs, arrays):
    """ops.schedule + build + run; returns the output."""
    f = te.build(ops.schedule([out]), inputs + [out])
    res = np.zeros(out.shape, dtype=np.dtype(out.dtype))
    f(*arrays, res)
    return res


def np_softmax(a, axis):
    a = a.astype(np.float64)
    e = np.exp(a - a.max(axis, keepdims=True))
    return e / e.sum(axis, keepdims=True)


@pytest.mark.parametrize("shape,axis", [((6, 16, 128), -1), ((5, 97), 1), ((4, 7), -1), ((64,), 0),
                                        ((3, 5, 6), 1), ((6, 20), 0), ((4, 5, 48), 2)])
@pytest.mark.parametrize("log", [False, True], ids=["softmax", "log_softmax"])
def test_softmax(shape, axis, log, rand):
    a_np = rand(shape, low=-30, high=30)        # wide range: needs the max subtraction
    x = te.placeholder(shape, name="x")
    out = (ops.log_softmax if log else ops.softmax)(x, axis)
    want = np_softmax(a_np, axis)
    got = build_run(out, [x], [a_np])
    if log:
        np.testing.assert_allclose(got, np.log(want), rtol=1e-5, atol=1e-5)
    else:
        np.testing.assert_allclose(got, want, **TOL)
        np.testing.assert_allclose(got.sum(axis), 1.0, rtol=1e-5)


def test_softmax_huge_inputs(rand):
    a_np = rand((4, 64), low=-1e4, high=1e4)
    x = te.placeholder(a_np.shape, name="x")
    got = build_run(ops.softmax(x), [x], [a_np])
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, np_softmax(a_np, -1), **TOL)


def test_softmax_rows_are_fused():
    x = te.placeholder((64, 256), name="x")
    out = ops.softmax(x)
    text = str(te.lower(ops.schedule([out]), [x, out]))
    # every statistic is produced inside the row loop: only the output is a root stage
    assert text.count("parallel") == 1 and "allocate softmax.sum.partial" in text
    # one pass of exponentials, kept in a row for the sum and the output; one row max
    exps = [line for line in text.splitlines() if "floor(" in line]
    assert len(exps) == 1 and "softmax.exp[" in exps[0] and "allocate softmax.exp: float32[256]" in text
    assert text.count("allocate softmax.max:") == 1 and "max2" not in text


@pytest.mark.parametrize("which", ["default", "other"])
def test_softmax_template(which, rand):
    space = ConfigSpace()
    get_template("softmax")(space, 8, 128)
    cfg = FallbackConfig() if which == "default" else space.get(
        next(i for i in range(len(space)) if i != space.default_index()))
    s, (x, y) = get_template("softmax")(cfg, 8, 128)
    a_np = rand((8, 128), low=-5, high=5)
    got = np.zeros((8, 128), np.float32)
    te.build(s, [x, y])(a_np, got)
    np.testing.assert_allclose(got, np_softmax(a_np, -1), **TOL)


def np_layer_norm(a, gamma, beta, axes, eps):
    a = a.astype(np.float64)
    mu = a.mean(axes, keepdims=True)
    var = ((a - mu) ** 2).mean(axes, keepdims=True)
    y = (a - mu) / np.sqrt(var + eps)
    if gamma is not None:
        shape = [a.shape[d] if d in axes else 1 for d in range(a.ndim)]
        y = y * gamma.reshape(shape) + beta.reshape(shape)
    return y


@pytest.mark.parametrize("shape,axis", [((16, 768), -1), ((4, 6, 10), (1, 2)), ((4, 6, 10), (1,)),
                                        ((3, 4, 5), (0, 1, 2)), ((5, 97), -1), ((3, 16), -1)])
@pytest.mark.parametrize("affine", [True, False])
def test_layer_norm(shape, axis, affine, rand):
    axes = tuple(sorted(a % len(shape) for a in ((axis,) if isinstance(axis, int) else axis)))
    pshape = tuple(shape[d] for d in axes)
    a_np = rand(shape) * 3 + 100       # a large mean: the variance must be two-pass
    x = te.placeholder(shape, name="x")
    if affine:
        g_np, b_np = rand(pshape), rand(pshape)
        g, b = te.placeholder(pshape, name="g"), te.placeholder(pshape, name="b")
        got = build_run(ops.layer_norm(x, g, b, axis, 1e-5), [x, g, b], [a_np, g_np, b_np])
        want = np_layer_norm(a_np, g_np, b_np, axes, 1e-5)
    else:
        got = build_run(ops.layer_norm(x, axis=axis, epsilon=1e-3), [x], [a_np])
        want = np_layer_norm(a_np, None, None, axes, 1e-3)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=2e-4)


def test_layer_norm_matches_onnx(rand):
    a_np, g_np, b_np = rand((2, 5, 32)), rand((32,)), rand((32,))
    x, g, b = te.placeholder(a_np.shape, name="x"), te.placeholder((32,), name="g"), te.placeholder((32,), name="b")
    got = build_run(ops.layer_norm(x, g, b, -1, 1e-5), [x, g, b], [a_np, g_np, b_np])
    want = run_node("LayerNormalization", {"x": a_np, "g": g_np, "b": b_np}, opset=17, axis=-1, epsilon=1e-5)[0]
    np.testing.assert_allclose(got, want, **REDUCE)


def test_short_row_statistics_are_one_stage_of_two_outputs():
    """Rows shorter than ORT_MIN_ROW: the mean and the std are the two outputs of one stage, so
    each row's Welford recursion runs once (the sum of squares needs every running mean)."""
    x = te.placeholder((6, 5), name="x")
    y = ops.layer_norm(x, epsilon=1e-5)
    stats = [t for t in y.op.input_tensors if getattr(t.op, "tag", "") == ops.nn.STAT_TAG]
    assert len(stats) == 2 and stats[0].op is stats[1].op


@pytest.mark.parametrize("shape", [(2, 3, 7, 9), (1, 4, 32)])
def test_instance_norm_matches_onnx(shape, rand):
    a_np, g_np, b_np = rand(shape), rand((shape[1],)), rand((shape[1],))
    x, g, b = (te.placeholder(shape, name="x"), te.placeholder((shape[1],), name="g"),
               te.placeholder((shape[1],), name="b"))
    got = build_run(ops.instance_norm(x, g, b, 1e-4), [x, g, b], [a_np, g_np, b_np])
    want = run_node("InstanceNormalization", {"x": a_np, "g": g_np, "b": b_np}, epsilon=1e-4)[0]
    np.testing.assert_allclose(got, want, **REDUCE)


@pytest.mark.parametrize("axis", [1, -1])
def test_batch_norm(axis, rand):
    shape = (2, 6, 5, 6)
    c = shape[axis]
    a_np = rand(shape)
    g_np, b_np, m_np, v_np = rand((c,)), rand((c,)), rand((c,)), rand((c,), low=0.1, high=2.0)
    x = te.placeholder(shape, name="x")
    params = [te.placeholder((c,), name=n) for n in ("g", "b", "m", "v")]
    got = build_run(ops.batch_norm(x, *params, axis=axis, epsilon=1e-3), [x] + params,
                    [a_np, g_np, b_np, m_np, v_np])
    bshape = [1] * 4
    bshape[axis] = c
    r = [p.reshape(bshape) for p in (g_np, b_np, m_np, v_np)]
    want = (a_np - r[2]) / np.sqrt(r[3] + 1e-3) * r[0] + r[1]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape,size,alpha,beta,bias", [
    ((1, 7, 5, 6), 5, 1e-4, 0.75, 1.0),       # AlexNet's parameters, channels not a multiple of 16
    ((2, 16, 4, 17), 3, 2e-2, 0.75, 2.0),
    ((1, 6, 3, 3), 3, 1e-3, 0.6, 1.0)])       # generic beta
def test_lrn_matches_onnx(shape, size, alpha, beta, bias, rand):
    a_np = rand(shape, low=-3, high=3)
    x = te.placeholder(shape, name="x")
    got = build_run(ops.lrn(x, size, alpha, beta, bias), [x], [a_np])
    want = run_node("LRN", {"x": a_np}, size=size, alpha=alpha, beta=beta, bias=bias)[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_lrn_even_size(rand):
    # ONNX Runtime accepts odd sizes only; the ONNX formula: the window is c - 1 .. c + 2 for size 4
    a_np = rand((1, 6, 3, 3), low=-3, high=3)
    x = te.placeholder(a_np.shape, name="x")
    got = build_run(ops.lrn(x, 4, 1e-2, 0.5, 1.0), [x], [a_np])
    sq = np.zeros_like(a_np, dtype=np.float64)
    for c in range(6):
        sq[:, c] = (a_np[:, max(0, c - 1):min(6, c + 3)].astype(np.float64) ** 2).sum(1)
    np.testing.assert_allclose(got, a_np / (1.0 + 1e-2 / 4 * sq) ** 0.5, rtol=1e-5, atol=1e-6)


def test_layer_norm_bad_gamma():
    x = te.placeholder((4, 8), name="x")
    with pytest.raises(ValueError, match="gamma"):
        ops.layer_norm(x, te.placeholder((4,), name="g"), None, -1)


@pytest.mark.parametrize("shape", [(3, 5), (3, 5, 2), (2, 4, 3, 2)])
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("ignore_index", [None, 1])
def test_nll_loss_matches_onnx(shape, reduction, weighted, ignore_index, rng):
    from onnx.reference.ops.op_negative_log_likelihood_loss import \
        _compute_negative_log_likelihood_loss as reference
    x_np = rng.standard_normal(shape).astype(np.float32)
    t_np = rng.integers(0, shape[1], (shape[0],) + shape[2:]).astype(np.int64)
    w_np = rng.random(shape[1]).astype(np.float32)
    x = te.placeholder(shape, name="x")
    t = te.placeholder(t_np.shape, "int64", "t")
    w = te.placeholder((shape[1],), name="w")
    out = ops.nll_loss(x, t, w if weighted else None, reduction, ignore_index)
    got = build_run(out, [x, t] + ([w] if weighted else []), [x_np, t_np] + ([w_np] if weighted else []))
    want = reference(x_np, t_np, w_np if weighted else None, reduction, ignore_index)[0]
    np.testing.assert_allclose(got, want, **REDUCE)
