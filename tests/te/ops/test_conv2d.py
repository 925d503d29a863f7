"""conv2d (direct NCHW, depthwise, packed NCHWc), the layout ops, fusion and the conv templates.

References: a float64 numpy convolution, and ONNX Runtime running a one-node Conv model for
the edge cases (SAME padding, dilation, groups, strides, odd sizes, channels that no vector
block divides).  Shapes stay small so the whole file runs in a few seconds.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import te
from autotune import create_task
from autotune.space import ConfigSpace, FallbackConfig, get_template
from te import ops
from te.ops.conv2d import as_matmul, geometry, resolve_padding
from te.ops.conv2d_nchwc import pack_conv_weight_numpy, pack_nchwc_numpy, unpack_nchwc_numpy

from .conv_reference import conv_ref, parallel_tasks

TOL = dict(rtol=1e-4, atol=1e-4)


def ort_conv(x, w, strides, pads, dilation, groups, auto_pad=None):
    """Run one ONNX Conv node in ONNX Runtime (pads as ONNX: top, left, bottom, right)."""
    pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper, numpy_helper

    from frontends.profile import onnxruntime_session
    attrs = dict(strides=list(strides), dilations=list(dilation), group=groups)
    if auto_pad:
        attrs["auto_pad"] = auto_pad
    else:
        attrs["pads"] = [pads[0], pads[1], pads[2], pads[3]]
    node = helper.make_node("Conv", ["x", "w"], ["y"], **attrs)
    graph = helper.make_graph([node], "conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x.shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              initializer=[numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    return onnxruntime_session(model, threads=1).run(None, {"x": x})[0]


def build_run(outs, args, arrays):
    """ops.schedule the outputs, build, run on `arrays` (the inputs) and return the outputs."""
    s = ops.schedule(outs)
    f = te.build(s, args)
    results = [np.zeros(t.shape, np.float32) for t in args[len(arrays):]]
    f(*arrays, *results)
    return results[0] if len(results) == 1 else results


# ---------------------------------------------------------------- padding and geometry

@pytest.mark.parametrize("mode, size, k, s, d", [
    ("SAME_UPPER", 7, 3, 2, 1), ("SAME_LOWER", 7, 4, 2, 1), ("SAME", 8, 3, 1, 2), ("SAME_UPPER", 5, 2, 1, 1),
])
def test_same_padding_matches_onnx_formula(mode, size, k, s, d):
    t, l, b, r = resolve_padding(mode, (size, size), (k, k), (s, s), (d, d))
    out = (size + t + b - (k - 1) * d - 1) // s + 1
    assert out == -(-size // s)
    assert (t, b) == (l, r)
    total = t + b
    assert (t == total // 2) if mode != "SAME_LOWER" else (b == total // 2)


def test_padding_forms():
    assert resolve_padding(1, (5, 5), (3, 3), (1, 1), (1, 1)) == (1, 1, 1, 1)
    assert resolve_padding((1, 2), (5, 5), (3, 3), (1, 1), (1, 1)) == (1, 2, 1, 2)
    assert resolve_padding((0, 1, 2, 3), (5, 5), (3, 3), (1, 1), (1, 1)) == (0, 1, 2, 3)
    assert resolve_padding("VALID", (5, 5), (3, 3), (1, 1), (1, 1)) == (0, 0, 0, 0)
    with pytest.raises(ValueError, match="padding"):
        resolve_padding("FULL", (5, 5), (3, 3), (1, 1), (1, 1))


def test_bad_shapes_raise():
    x = te.placeholder((1, 6, 8, 8), name="x")
    with pytest.raises(ValueError, match="groups"):
        ops.conv2d(x, te.placeholder((4, 4, 3, 3), name="w"), groups=2)
    with pytest.raises(ValueError, match="empty"):
        ops.conv2d(x, te.placeholder((4, 6, 9, 9), name="w"))
    with pytest.raises(ValueError, match="4-D"):
        ops.conv2d(x, te.placeholder((4, 6, 3), name="w"))


# ---------------------------------------------------------------- direct and depthwise conv vs ONNX Runtime

CASES = [
    # x shape, w shape, strides, pads (t, l, b, r) or a mode, dilation, groups
    ((1, 8, 10, 10), (16, 8, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1),
    ((2, 5, 9, 11), (7, 5, 3, 2), (2, 1), (0, 1, 2, 1), (1, 2), 1),       # odd everything
    ((1, 3, 17, 15), (20, 3, 5, 5), (2, 2), "SAME_UPPER", (1, 1), 1),      # K not a multiple of 16
    ((1, 6, 12, 9), (12, 6, 2, 3), (1, 2), "SAME_LOWER", (2, 1), 1),
    ((1, 8, 9, 9), (12, 2, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 4),        # grouped, 3 channels a group
    ((1, 32, 8, 8), (32, 8, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 4),       # grouped, 8 a group
    ((1, 16, 12, 12), (16, 1, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 16),    # depthwise
    ((1, 16, 13, 13), (32, 1, 3, 3), (2, 2), (1, 1, 1, 1), (1, 1), 16),    # depthwise, multiplier 2, s2
    ((1, 24, 14, 14), (24, 1, 5, 5), (2, 2), (2, 2, 2, 2), (1, 1), 24),    # depthwise 5x5 s2
    ((1, 8, 11, 11), (8, 1, 3, 3), (1, 1), (2, 2, 2, 2), (2, 2), 8),       # depthwise dilated
    ((1, 20, 15, 15), (24, 20, 1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1),    # 1x1: a GEMM
    ((1, 24, 29, 29), (40, 24, 1, 1), (2, 2), (0, 0, 0, 0), (1, 1), 1),    # 1x1 s2: a GEMM, strided pack
    ((1, 20, 7, 7), (64, 20, 1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1),      # 1x1 on a small map: direct
    ((1, 24, 9, 9), (40, 24, 1, 1), (2, 2), (0, 0, 0, 0), (1, 1), 1),      # ... strided, K no multiple of 32
    ((1, 24, 28, 28), (40, 24, 1, 1), (2, 2), (0, 0, 0, 0), (1, 1), 1),    # ... 14x14 out: the GEMM
    ((2, 20, 7, 7), (24, 20, 1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1),      # 1x1, two images: direct
    ((1, 20, 7, 7), (24, 20, 1, 1), (1, 1), (1, 0, 1, 0), (1, 1), 1),      # 1x1 padded: direct
    ((1, 3, 23, 23), (16, 3, 7, 7), (2, 2), (3, 3, 3, 3), (1, 1), 1),      # a small stem
    ((1, 4, 5, 37), (16, 4, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1),       # a prime width
    ((2, 64, 4, 4), (40, 64, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1),      # deep: weights packed per block
]


@pytest.mark.parametrize("xs, ws, strides, pads, dilation, groups", CASES)
def test_conv2d_matches_onnxruntime(xs, ws, strides, pads, dilation, groups, rand):
    x = te.placeholder(xs, name="x")
    w = te.placeholder(ws, name="w")
    y = ops.conv2d(x, w, strides, pads, dilation, groups)
    expect_tag = "depthwise_conv2d_nchw" if groups == xs[1] else "conv2d_nchw"
    if as_matmul(geometry(xs, ws, strides, pads, dilation, groups), te.target.host()):
        expect_tag = "matmul"          # 1x1, one image, no padding: te.ops.matmul's packed GEMM
    assert y.op.tag == expect_tag
    a, b = rand(xs), rand(ws)
    got = build_run([y], [x, w, y], [a, b])
    if isinstance(pads, str) and dilation == (1, 1):
        ref = ort_conv(a, b, strides, None, dilation, groups, auto_pad=pads if pads != "SAME" else "SAME_UPPER")
    elif isinstance(pads, str):     # ONNX Runtime has no auto_pad with dilation: give it the pads
        explicit = resolve_padding(pads, xs[2:], ws[2:], strides, dilation)
        ref = ort_conv(a, b, strides, explicit, dilation, groups)
    else:
        ref = ort_conv(a, b, strides, pads, dilation, groups)
    np.testing.assert_allclose(got, ref, **TOL)


def test_conv2d_batch_bias_epilogue(rand):
    """bias + a residual add + relu, all inside the conv kernel."""
    x = te.placeholder((2, 16, 6, 6), name="x")
    w = te.placeholder((32, 16, 3, 3), name="w")
    b = te.placeholder((32,), name="b")
    r = te.placeholder((2, 32, 6, 6), name="r")
    y = ops.conv2d(x, w, padding=1, bias=b, epilogue=lambda v, i: te.max_of(v + r[i], 0.0))
    a, wa, ba, ra = rand(x.shape), rand(w.shape), rand(b.shape), rand(r.shape)
    got = build_run([y], [x, w, b, r, y], [a, wa, ba, ra])
    ref = np.maximum(conv_ref(a, wa, pads=(1, 1, 1, 1)) + ba[:, None, None] + ra, 0)
    np.testing.assert_allclose(got, ref, **TOL)


def test_weights_packed_per_channel_block_with_epilogue(rand):
    """A deep layer (weights outweigh the output) packs its weights inside the parallel loop."""
    x = te.placeholder((1, 48, 4, 4), name="x")
    w = te.placeholder((32, 48, 3, 3), name="w")
    b = te.placeholder((32,), name="b")
    y = ops.conv2d(x, w, padding=1, bias=b)
    z = _elemwise_relu(y)
    s = ops.schedule([z])
    assert "conv2d.wpack" not in [st.name for st in s.stages if st.attach_type.value == "root"]
    a, wa, ba = rand(x.shape), rand(w.shape), rand(b.shape)
    out = np.zeros(z.shape, np.float32)
    te.build(s, [x, w, b, z])(a, wa, ba, out)
    np.testing.assert_allclose(out, np.maximum(conv_ref(a, wa, pads=(1, 1, 1, 1)) + ba[:, None, None], 0), **TOL)


@pytest.mark.parametrize("xs, ws, pads, groups", [
    ((1, 16, 9, 9), (24, 16, 3, 3), (1, 1, 1, 1), 1),       # K=24 is no multiple of 16: zero-padded block
    ((1, 48, 4, 4), (32, 48, 3, 3), (1, 1, 1, 1), 1),       # deep layer: the per-channel-block schedule
    ((1, 8, 7, 7), (16, 4, 3, 3), (0, 0, 0, 0), 2),
])
def test_weights_packed_ahead_of_time(xs, ws, pads, groups, rand):
    """A PackedWeight (packed in numpy, as a model build does) replaces the in-kernel packing stage."""
    from te.ops.conv2d import PackedWeight, default_ocb, geometry, pack_weight_numpy
    ocb = default_ocb(geometry(xs, ws, (1, 1), pads, (1, 1), groups), te.target.host())
    a, wa, ba = rand(xs), rand(ws), rand((ws[0],))
    wpk = pack_weight_numpy(wa, ocb)
    x = te.placeholder(xs, name="x")
    wp = te.placeholder(wpk.shape, name="wp")
    b = te.placeholder((ws[0],), name="b")
    y = ops.conv2d(x, PackedWeight(wp, ws), padding=pads, groups=groups, bias=b)
    assert y.op.attrs["ocb"] == ocb
    s = ops.schedule([y])
    assert not [st for st in s.stages if getattr(st.op, "tag", None) == "conv2d.wpack"]
    out = np.zeros(y.shape, np.float32)
    te.build(s, [x, wp, b, y])(a, wpk, ba, out)
    np.testing.assert_allclose(out, conv_ref(a, wa, pads=pads, groups=groups) + ba[:, None, None], **TOL)


def test_packed_weight_must_fit_the_conv():
    from te.ops import registry
    from te.ops.conv2d import PackedWeight
    x = te.placeholder((1, 16, 16, 16), name="x")
    with pytest.raises(ValueError, match="pass it unpacked"):        # 1x1, 256 pixels: a GEMM on OIHW
        ops.conv2d(x, PackedWeight(te.placeholder((2, 16, 1, 1, 16), name="wp"), (32, 16, 1, 1)))
    with pytest.raises(ValueError, match="not a"):
        PackedWeight(te.placeholder((2, 16, 3, 3, 8), name="wp"), (32, 16, 3, 3))
    host = te.target.host()
    gemm = registry.select(registry.ConvWorkload((1, 16, 16, 16), (32, 16, 1, 1)), host)
    depthwise = registry.select(registry.ConvWorkload((1, 16, 8, 8), (16, 1, 3, 3), groups=16), host)
    assert not gemm.packs_weight and not depthwise.packs_weight      # they read the weights as they are


def test_depthwise_bias_and_explicit_call(rand):
    x = te.placeholder((1, 8, 10, 10), name="x")
    w = te.placeholder((8, 1, 3, 3), name="w")
    b = te.placeholder((8,), name="b")
    y = ops.depthwise_conv2d_nchw(x, w, bias=b, strides=2, padding="SAME")
    a, wa, ba = rand(x.shape), rand(w.shape), rand(b.shape)
    got = build_run([y], [x, w, b, y], [a, wa, ba])
    pads = resolve_padding("SAME", (10, 10), (3, 3), (2, 2), (1, 1))
    np.testing.assert_allclose(got, conv_ref(a, wa, (2, 2), pads, groups=8) + ba[:, None, None], **TOL)
    with pytest.raises(ValueError, match="groups"):
        ops.depthwise_conv2d_nchw(x, te.placeholder((8, 2, 3, 3), name="w2"))


# ---------------------------------------------------------------- fusion through ops.schedule

def _relu(t):
    if hasattr(ops, "relu"):
        return ops.relu(t)
    return te.compute(t.shape, lambda *i: te.max_of(t[i], 0.0), name="relu", tag="elemwise")


def _elemwise_relu(t):
    return te.compute(t.shape, lambda *i: te.max_of(t[i], 0.0), name="relu_e", tag="elemwise")


@pytest.mark.parametrize("make_relu", [_relu, _elemwise_relu])
def test_schedule_fuses_relu_into_conv(make_relu, rand):
    x = te.placeholder((1, 16, 8, 8), name="x")
    w = te.placeholder((16, 16, 3, 3), name="w")
    conv = ops.conv2d(x, w, strides=(1, 1), padding=(1, 1, 1, 1), dilation=(1, 1), groups=1)
    y = make_relu(conv)
    s = ops.schedule([y])
    assert s[conv].attach_type.value == "inline"         # the conv's output stage runs in y's tile
    f = te.build(s, [x, w, y])
    a, b = rand(x.shape), rand(w.shape)
    out = np.zeros(y.shape, np.float32)
    f(a, b, out)
    np.testing.assert_allclose(out, np.maximum(conv_ref(a, b, pads=(1, 1, 1, 1)), 0), **TOL)


def test_contract_relu_of_conv_resnet_layer(rand):
    """The contract of ops.schedule, verbatim, on a ResNet-50 layer."""
    x = te.placeholder((1, 64, 56, 56), name="x")
    w = te.placeholder((64, 64, 3, 3), name="w")
    y = ops.relu(ops.conv2d(x, w, strides=(1, 1), padding=(1, 1, 1, 1), dilation=(1, 1), groups=1))
    s = ops.schedule([y])
    f = te.build(s, [x, w, y])
    a, b = rand(x.shape), rand(w.shape)
    out = np.zeros(y.shape, np.float32)
    f(a, b, out)
    np.testing.assert_allclose(out, np.maximum(conv_ref(a, b, pads=(1, 1, 1, 1)), 0), **TOL)


def test_schedule_chain_and_two_anchors(rand):
    """conv -> +bias (broadcast) -> relu -> conv -> relu: each conv absorbs its own chain."""
    x = te.placeholder((1, 8, 6, 6), name="x")
    w1 = te.placeholder((16, 8, 3, 3), name="w1")
    w2 = te.placeholder((16, 16, 1, 1), name="w2")
    bias = te.placeholder((16,), name="bias")
    c1 = ops.conv2d(x, w1, padding=1)
    b1 = te.compute(c1.shape, lambda n, k, h, ww: c1[n, k, h, ww] + bias[k], name="addb", tag="broadcast")
    r1 = _elemwise_relu(b1)
    c2 = ops.conv2d(r1, w2)
    y = _elemwise_relu(c2)
    s = ops.schedule([y])
    assert s[c1].attach_type.value == "inline" and s[b1].attach_type.value == "inline"
    f = te.build(s, [x, w1, w2, bias, y])
    a, k1, k2, bb = rand(x.shape), rand(w1.shape), rand(w2.shape), rand(bias.shape)
    out = np.zeros(y.shape, np.float32)
    f(a, k1, k2, bb, out)
    mid = np.maximum(conv_ref(a, k1, pads=(1, 1, 1, 1)) + bb[:, None, None], 0)
    np.testing.assert_allclose(out, np.maximum(conv_ref(mid, k2), 0), **TOL)


def test_schedule_keeps_conv_output_that_is_also_an_output(rand):
    x = te.placeholder((1, 4, 6, 6), name="x")
    w = te.placeholder((8, 4, 3, 3), name="w")
    c = ops.conv2d(x, w, padding=1)
    y = _elemwise_relu(c)
    s = ops.schedule([c, y])
    f = te.build(s, [x, w, c, y])
    a, b = rand(x.shape), rand(w.shape)
    oc, oy = np.zeros(c.shape, np.float32), np.zeros(y.shape, np.float32)
    f(a, b, oc, oy)
    ref = conv_ref(a, b, pads=(1, 1, 1, 1))
    np.testing.assert_allclose(oc, ref, **TOL)
    np.testing.assert_allclose(oy, np.maximum(ref, 0), **TOL)


# ---------------------------------------------------------------- NCHWc

def test_layout_ops_round_trip(rand):
    x = te.placeholder((2, 20, 5, 3), name="x")
    p = ops.pack_nchwc(x, 8)
    assert p.shape == (2, 3, 5, 3, 8)
    u = ops.unpack_nchwc(p, 20)
    a = rand(x.shape)
    got_p, got_u = build_run([p, u], [x, p, u], [a])
    np.testing.assert_array_equal(got_p, pack_nchwc_numpy(a, 8))
    np.testing.assert_array_equal(got_u, a)
    w = te.placeholder((10, 20, 3, 3), name="w")
    pw = ops.pack_conv_weight(w, 8, 4)
    wa = rand(w.shape)
    np.testing.assert_array_equal(build_run([pw], [w, pw], [wa]), pack_conv_weight_numpy(wa, 8, 4))


@pytest.mark.parametrize("C, K, R, strides, pads, dilation, ib, ob", [
    (16, 32, 3, (1, 1), (1, 1, 1, 1), (1, 1), 16, 16),
    (12, 20, 3, (2, 1), (0, 1, 2, 1), (1, 2), 4, 8),       # channels the blocks do not divide
    (8, 16, 1, (1, 1), (0, 0, 0, 0), (1, 1), 8, 16),
])
def test_conv2d_nchwc_in_graph_and_prepacked(C, K, R, strides, pads, dilation, ib, ob, rand):
    x = te.placeholder((1, C, 9, 9), name="x")
    w = te.placeholder((K, C, R, R), name="w")
    b = te.placeholder((K,), name="b")
    y5 = ops.conv2d_NCHWc(ops.pack_nchwc(x, ib), ops.pack_conv_weight(w, ib, ob), strides, pads, dilation,
                          bias=b, epilogue=lambda v, i: te.max_of(v, 0.0))
    y = ops.unpack_nchwc(y5, K)
    a, wa, ba = rand(x.shape), rand(w.shape), rand(b.shape)
    ref = np.maximum(conv_ref(a, wa, strides, pads, dilation) + ba[:, None, None], 0)
    np.testing.assert_allclose(build_run([y], [x, w, b, y], [a, wa, ba]), ref, **TOL)
    # weights packed at build time, activations already packed
    X = te.placeholder(pack_nchwc_numpy(a, ib).shape, name="X")
    W = te.placeholder(pack_conv_weight_numpy(wa, ib, ob).shape, name="W")
    Y = ops.conv2d_NCHWc(X, W, strides, pads, dilation)
    got = build_run([Y], [X, W, Y], [pack_nchwc_numpy(a, ib), pack_conv_weight_numpy(wa, ib, ob)])
    np.testing.assert_allclose(unpack_nchwc_numpy(got, K), conv_ref(a, wa, strides, pads, dilation), **TOL)


def test_conv2d_nchwc_takes_oc_outer_where_the_nchw_conv_would_chunk():
    """ResNet-50's stride-2 3x3 512@14x14 (9 MiB of weights past a 2 MiB L2) orders an NCHW conv's
    tiles chunks_outer, an order NCHWc has not: its default is oc_outer (a model build with
    layout="NCHWc" failed on it with 'chunks_outer is not one of [...]')."""
    from te.ops.direct_defaults import default_out_order
    args = ((1, 512, 14, 14), (512, 512, 3, 3), (2, 2), (1, 1, 1, 1), (1, 1), "float32")
    tgt = te.target.parse("llvm -mcpu=skylake-avx512 -l1d=48K -l2=2M -l3=150M")
    cfg = FallbackConfig()
    s, (X, W, Y) = get_template("conv2d_NCHWc")(cfg, *args, target=tgt)
    attrs = Y.op.attrs
    assert default_out_order(attrs["geometry"], attrs["ob"], attrs["bh"], attrs["bw"], tgt) == "chunks_outer"
    assert cfg["out_order"].val == "oc_outer"


def test_conv2d_nchwc_rejects_mismatched_blocks():
    with pytest.raises(ValueError, match="blocks"):
        ops.conv2d_NCHWc(te.placeholder((1, 2, 5, 5, 8), name="x"), te.placeholder((1, 4, 3, 3, 4, 16), name="w"))


# ---------------------------------------------------------------- templates

def _run_template(name, args, cfg, rand):
    s, tensors = get_template(name)(cfg, *args)
    f = te.build(s, tensors)
    arrays = [rand(t.shape) for t in tensors]
    f(*arrays)
    return arrays


TEMPLATE_CASES = [
    ("conv2d_nchw", ((1, 16, 7, 7), (16, 16, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1, "float32")),
    ("conv2d_nchw", ((1, 8, 9, 9), (24, 4, 3, 3), (2, 2), (1, 1, 1, 1), (1, 1), 2, "float32")),
    ("conv2d_nchw", ((1, 24, 9, 9), (40, 24, 1, 1), (2, 2), (0, 0, 0, 0), (1, 1), 1, "float32")),   # GEMM knobs
    ("depthwise_conv2d_nchw", ((1, 16, 10, 10), (16, 1, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1), "float32")),
    ("depthwise_conv2d_nchw", ((1, 8, 11, 11), (8, 1, 3, 3), (2, 2), (1, 1, 1, 1), (1, 1), "float32")),
]


@pytest.mark.parametrize("name, args", TEMPLATE_CASES)
def test_conv_templates_default_and_other_configs(name, args, rand):
    space = create_task(name, args).config_space
    assert len(space) > 1
    xs, ws, strides, pads, dilation = args[:5]
    groups = args[5] if name == "conv2d_nchw" else xs[1]
    for cfg in [FallbackConfig(), space.get(space.default_index()), space.get(len(space) - 1), space.get(len(space) // 3)]:
        a, b, out = _run_template(name, args, cfg, rand)
        np.testing.assert_allclose(out, conv_ref(a, b, strides, pads, dilation, groups), **TOL)


def test_tuned_1x1_config_reaches_the_model_kernel(rand):
    """A config of the 1x1 template (GEMM knobs) shapes the kernel a model builds with it (the registry's choice)."""
    from te.ops import registry
    args = ((1, 24, 30, 30), (40, 24, 1, 1), (2, 2), (0, 0, 0, 0), (1, 1), 1, "float32")   # 15x15 pixels: a GEMM
    task = create_task("conv2d_1x1_gemm", args)
    space = task.config_space
    assert "bn" in space.space_map and "tile_oc" not in space.space_map
    cfg = next(space.get(i) for i in range(len(space)) if space.get(i)["bn"].val == 8)
    wl = task.implementation.workload(task.args)
    choice = registry.Choice(registry.select(wl, task.target), wl, task.target, cfg)
    assert choice.impl is task.implementation and choice.task == ("conv2d_1x1_gemm", task.args)
    x, w = te.placeholder(args[0], name="x"), te.placeholder(args[1], name="w")
    y = choice.compute([x, w], name="conv")
    assert y.op.attrs["bn"] == 8
    a, b = rand(args[0]), rand(args[1])
    out = np.zeros(y.shape, np.float32)
    te.build(ops.schedule([y], anchor_schedule=choice.schedule), [x, w, y])(a, b, out)
    np.testing.assert_allclose(out, conv_ref(a, b, (2, 2)), **TOL)


def test_conv2d_nchwc_template(rand):
    args = ((1, 16, 6, 6), (32, 16, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1), "float32")
    space = create_task("conv2d_NCHWc", args).config_space
    assert {"tile_ic", "tile_oc", "tile_ow", "tile_oh"} <= set(space.space_map)
    for cfg in [FallbackConfig(), space.get(len(space) - 1), space.get(len(space) // 2)]:
        s, (X, W, Y) = get_template("conv2d_NCHWc")(cfg, *args)
        ib, ob = X.shape[-1], W.shape[-1]
        a, wa = rand(args[0]), rand(args[1])
        out = np.zeros(Y.shape, np.float32)
        te.build(s, [X, W, Y])(pack_nchwc_numpy(a, ib), pack_conv_weight_numpy(wa, ib, ob), out)
        np.testing.assert_allclose(unpack_nchwc_numpy(out, 32), conv_ref(a, wa, pads=(1, 1, 1, 1)), **TOL)


@pytest.mark.parametrize("name, args, loops", [
    ("conv2d_nchw", ((1, 16, 8, 8), (16, 16, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1, "float32"),
     {"c_rs": ["rc.outer", "rc.inner", "rr", "rs"], "rs_c": ["rc.outer", "rr", "rs", "rc.inner"]}),
    ("conv2d_NCHWc", ((1, 16, 8, 8), (16, 16, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1), "float32"),
     {"c_rs": ["rco", "rr", "rs", "rci"], "rs_c": ["rr", "rs", "rco", "rci"]}),
])
def test_reduce_order_names_one_loop_order(name, args, loops):
    """reduce_order means the same in both conv templates: c_rs the input channels outside the
    filter taps, rs_c inside them (NCHWc's lanes of an input block stay innermost)."""
    from te.tensor import IterKind
    space = create_task(name, args).config_space
    for order, want in loops.items():
        cfg = space.default_with({"reduce_order": order})
        s, _ = get_template(name)(cfg, *args)
        acc = next(st for st in s.stages if st.op.name.endswith(".acc"))
        assert [iv.name for iv in acc.leaf_iter_vars if iv.kind is IterKind.REDUCE] == want


def test_fallback_config_is_the_untuned_schedule():
    """FallbackConfig through the template and ops.schedule give the same loop nest."""
    args = ((1, 16, 7, 7), (16, 16, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1, "float32")
    s1, t1 = get_template("conv2d_nchw")(FallbackConfig(), *args)
    x, w = te.placeholder(args[0], name="x"), te.placeholder(args[1], name="w")
    y = ops.conv2d(x, w, padding=1)
    s2 = ops.schedule([y])
    assert str(te.lower(s1, t1)).count("vectorized") == str(te.lower(s2, [x, w, y])).count("vectorized")
    assert isinstance(create_task("conv2d_nchw", args).config_space, ConfigSpace)


def test_1x1_convs_pick_gemm_or_direct_by_map_size():
    """Up to 14x14 pixels a 1x1 conv is the direct kernel (32-channel block, one row); above, and
    on 14x14 with a stride, the GEMM, unless the target's threads split the strided one's input
    channels (direct_defaults.strided_split_c_pays)."""
    from te.ops.conv2d import default_ocb, default_tiles
    avx512 = te.target.parse("llvm -mcpu=skylake-avx512")
    small = geometry((1, 256, 14, 14), (1024, 256, 1, 1))
    assert not as_matmul(small) and default_ocb(small, avx512) == 32 and default_tiles(small, 32, avx512) == (1, 14)
    assert as_matmul(geometry((1, 256, 28, 28), (64, 256, 1, 1)))
    assert not as_matmul(geometry((1, 1024, 14, 14), (2048, 1024, 1, 1), (2, 2)))   # 7x7 out
    assert as_matmul(geometry((1, 512, 28, 28), (1024, 512, 1, 1), (2, 2)))         # 14x14 out, strided
    one, two = (dataclasses.replace(avx512, threads=n) for n in (1, 2))
    assert as_matmul(geometry((1, 512, 28, 28), (1024, 512, 1, 1), (2, 2)), one)    # the direct conv split
    assert not as_matmul(geometry((1, 512, 28, 28), (1024, 512, 1, 1), (2, 2)), two)   # on two threads
    args = ((1, 512, 7, 7), (2048, 512, 1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1, "float32")
    space = create_task("conv2d_nchw", args).config_space
    assert "tile_oc" in space.space_map and "bn" not in space.space_map


def test_1x1_conv_on_short_rows_takes_four_vector_channel_blocks(rng):
    """conv2d.short_rows: on rows of at most 7 pixels a 1x1 conv's channel block is four vectors
    (a 1 x 7 tile of 28 accumulators) with AVX-512, two on 14-wide rows, one with AVX2; built
    with its defaults (a task per channel block), the result matches numpy."""
    from te.ops.conv2d import conv2d_nchw, default_ocb, default_tiles
    avx512, avx2 = te.target.parse("llvm -mcpu=skylake-avx512"), te.target.parse("llvm -mcpu=haswell")
    g = geometry((1, 128, 7, 7), (128, 128, 1, 1))
    assert default_ocb(g, avx512) == 64 and default_tiles(g, 64, avx512) == (1, 7)
    assert default_ocb(geometry((1, 1024, 14, 14), (2048, 1024, 1, 1), (2, 2)), avx512) == 64    # 7x7 out
    assert default_ocb(geometry((1, 512, 28, 28), (1024, 512, 1, 1), (2, 2)), avx512) == 32      # 14x14 out
    assert default_ocb(geometry((1, 128, 7, 7), (96, 128, 1, 1)), avx512) == 32       # 96 channels: no 64s
    assert default_ocb(g, avx2) == 8
    x = rng.standard_normal((1, 128, 7, 7)).astype(np.float32)
    w = rng.standard_normal((128, 128, 1, 1)).astype(np.float32)
    X, W = te.placeholder(x.shape, name="x"), te.placeholder(w.shape, name="w")
    Y = conv2d_nchw(X, W, g, target=avx512)
    assert Y.op.attrs["ocb"] == 64
    out = np.zeros(Y.shape, np.float32)
    te.build(ops.schedule([Y], avx512), [X, W, Y], target=avx512)(x, w, out)
    np.testing.assert_allclose(out, conv_ref(x, w, (1, 1)), rtol=1e-4, atol=1e-3)


def test_a_1x1_tile_takes_channel_pairs():
    """direct_defaults.paired_channels: a 1x1 conv's tile unrolls two input channels per
    iteration inside the tile_ic loop (which keeps its iterations: the prefetch stream's loop);
    spatial convs keep one."""
    from te.ops.conv2d import conv2d_nchw, paired_channels
    avx512 = te.target.parse("llvm -mcpu=skylake-avx512")
    g7 = geometry((1, 512, 7, 7), (2048, 512, 1, 1))
    assert paired_channels(g7) and paired_channels(geometry((1, 256, 14, 14), (1024, 256, 1, 1)))
    assert not paired_channels(geometry((1, 512, 7, 7), (512, 512, 3, 3), (1, 1), 1))
    X, W = te.placeholder((1, 512, 7, 7), name="x"), te.placeholder((2048, 512, 1, 1), name="w")
    Y = conv2d_nchw(X, W, g7, target=avx512)
    text = str(te.lower(ops.schedule([Y], avx512), [X, W, Y]))
    assert "for rc.inner.inner in range(2):  # unrolled" in text and "for rc.inner.outer in range(8):" in text


def test_a_short_reduction_on_a_row_no_tile_divides_takes_a_dividing_tile(rng):
    """SqueezeNet's stem (3 channels, 3x3, stride 2, 111 columns): a 1x3 tile that stores whole row
    vectors, not the padded 1x8 whose channel vectors store lane by lane; the result still matches."""
    from te.ops.conv2d import default_ocb, default_tiles
    avx512 = te.target.parse("llvm -mcpu=skylake-avx512")
    stem = geometry((1, 3, 224, 224), (64, 3, 3, 3), (2, 2))
    assert default_ocb(stem, avx512) == 32 and default_tiles(stem, 32, avx512) == (1, 3)
    assert default_tiles(geometry((1, 16, 55, 55), (64, 16, 3, 3), (1, 1), 1), 32, avx512) == (1, 8)   # 144 FMAs
    x = rng.standard_normal((1, 3, 67, 67)).astype(np.float32)      # 33 columns out: a 1x3 tile here
    w = rng.standard_normal((32, 3, 3, 3)).astype(np.float32)
    X, W = te.placeholder(x.shape, name="x"), te.placeholder(w.shape, name="w")
    Y = ops.conv2d(X, W, strides=2)
    out = np.zeros(Y.shape, np.float32)
    te.build(ops.schedule([Y]), [X, W, Y])(x, w, out)
    np.testing.assert_allclose(out, conv_ref(x, w, (2, 2)), rtol=1e-4, atol=1e-4)


def test_strided_conv_with_weights_past_l1d_takes_two_rows(rng):
    """conv2d.two_row_tile: ResNet-50's stride-2 3x3 conv on 28 columns takes a 2 x 7 tile
    (28 accumulators); the stem (its block's weights within L1d), a 7-row map, stride 1 and the
    14-column 256@28x28, which the chunks order takes (its chunks' weights read from L1), keep one
    row; a conv with that tile matches numpy."""
    from te.ops.conv2d import default_tiles
    avx512 = te.target.parse("llvm -mcpu=skylake-avx512 -l1d=48K -l2=2M -l3=150M")
    assert default_tiles(geometry((1, 128, 56, 56), (128, 128, 3, 3), (2, 2), 1), 32, avx512) == (2, 7)
    assert default_tiles(geometry((1, 256, 28, 28), (256, 256, 3, 3), (2, 2), 1), 32, avx512) == (1, 7)
    assert default_tiles(geometry((1, 512, 14, 14), (512, 512, 3, 3), (2, 2), 1), 32, avx512) == (1, 7)
    assert default_tiles(geometry((1, 3, 224, 224), (64, 3, 7, 7), (2, 2), 3), 32, avx512) == (1, 8)
    assert default_tiles(geometry((1, 128, 28, 28), (128, 128, 3, 3), (1, 1), 1), 32, avx512) == (1, 7)
    x = rng.standard_normal((1, 40, 28, 28)).astype(np.float32)     # 40 x 9 x 32 floats: 45 KiB a block
    w = rng.standard_normal((32, 40, 3, 3)).astype(np.float32)
    X, W = te.placeholder(x.shape, name="x"), te.placeholder(w.shape, name="w")
    Y = ops.conv2d(X, W, strides=2, padding=1)
    if te.target.host().lanes() == 16 and te.target.host().vector_registers >= 32:
        assert (Y.op.attrs["bh"], Y.op.attrs["bw"]) == (2, 7)
    out = np.zeros(Y.shape, np.float32)
    te.build(ops.schedule([Y]), [X, W, Y])(x, w, out)
    np.testing.assert_allclose(out, conv_ref(x, w, (2, 2), pads=(1, 1, 1, 1)), rtol=1e-4, atol=1e-4)


def test_untuned_conv_with_weights_packed_ahead_runs_tiles_not_channel_blocks(rand):
    """conv2d.pack_at: with its weights packed ahead of time an untuned deep spatial conv runs the
    tile loop ("root", many small tasks), not one task per channel block; a 1x1 conv and a tuned
    config keep "oc_block"; the result matches numpy."""
    from te.ops.conv2d import PackedWeight, default_ocb, default_pack_at, pack_at, pack_weight_numpy
    xs, ws = (1, 64, 7, 7), (64, 64, 3, 3)
    g = geometry(xs, ws, (1, 1), 1)
    assert default_pack_at(g, 32, 1, 7, te.target.host()) == "oc_block"
    cfg = FallbackConfig()
    cfg.define_knob("pack_at", ["root", "oc_block"], default="oc_block")
    assert pack_at(cfg, None, g) == "root" and pack_at(cfg, te.placeholder((1,), name="wpack"), g) == "oc_block"
    assert pack_at(cfg, None, geometry((1, 1024, 14, 14), (256, 1024, 1, 1))) == "oc_block"     # a 1x1 conv
    space = create_task("conv2d_nchw", (xs, ws, (1, 1), (1, 1, 1, 1), (1, 1), 1, "float32")).config_space
    tuned = space.default_with({"pack_at": "oc_block"})
    assert pack_at(tuned, None, g) == "oc_block"
    a, wa = rand(xs), rand(ws)
    ocb = default_ocb(g, te.target.host())
    wpk = pack_weight_numpy(wa, ocb)
    x = te.placeholder(xs, name="x")
    w = PackedWeight(te.placeholder(wpk.shape, name="wp"), ws)
    y = ops.conv2d(x, w, padding=1)
    s = ops.schedule([y])
    body = str(te.lower(s, [x, w.tensor, y]))
    assert parallel_tasks(body) == 7 * (64 // ocb)       # a task per row tile and block, not per block
    out = np.zeros(y.shape, np.float32)
    te.build(s, [x, w.tensor, y])(a, wpk, out)
    np.testing.assert_allclose(out, conv_ref(a, wa, pads=(1, 1, 1, 1)), **TOL)


def test_padding_stage_shares_rows_not_planes_between_threads(rand):
    """A stem's padded input (3 channel planes) is split over the threads by rows: its parallel
    loop runs over every padded row of every plane; the conv still matches numpy."""
    from te.schedule import ForKind
    from te.stmt import For, walk_stmt
    x, w = te.placeholder((1, 3, 64, 64), name="x"), te.placeholder((32, 3, 7, 7), name="w")
    y = ops.conv2d(x, w, strides=2, padding=3)
    s = ops.schedule([y])
    f = te.lower(s, [x, w, y])
    pad = next(st for st in s.stages if getattr(st.op, "tag", "") == "conv2d.pad")
    loops = [n for n in walk_stmt(f.body) if isinstance(n, For) and n.kind is ForKind.PARALLEL]
    assert 3 * pad.op.output(0).shape[2] in [int(n.extent.value) for n in loops]   # (AVX2 packs weights first)
    a, wa = rand(x.shape), rand(w.shape)
    out = np.zeros(y.shape, np.float32)
    te.build(s, [x, w, y])(a, wa, out)
    np.testing.assert_allclose(out, conv_ref(a, wa, (2, 2), pads=(3, 3, 3, 3)), **TOL)
