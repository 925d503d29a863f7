"""From graph nodes to te tensors: one function per ONNX operator, built on te.ops.

A lowering gets the node's input tensors (te placeholders or the outputs of earlier nodes of
the same kernel; constants of one element arrive as Python numbers), its attributes (with
parameter inputs already folded into them by the importer) and the graph's opset, and
returns the output tensors.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

LOWER: dict[str, Callable] = {}


def lowers(*names: str):
    """Decorator: the lowering of the given ONNX ops."""
    def deco(fn):
        for n in names:
            LOWER[n] = fn
        return fn
    return deco


def _ops():
    from te import ops
    return ops


def _ints(v) -> list[int]:
    return [int(x) for x in np.asarray(v).reshape(-1)]


# ---------------------------------------------------------------- elementwise

_BINARY = {"Add": "add", "Sub": "subtract", "Mul": "multiply", "Div": "divide", "Pow": "power",
           "Equal": "equal", "Less": "less", "Greater": "greater", "LessOrEqual": "less_equal",
           "GreaterOrEqual": "greater_equal", "And": "logical_and", "Or": "logical_or", "Mod": "mod"}
_UNARY = {"Sqrt": "sqrt", "Exp": "exp", "Log": "log", "Erf": "erf", "Neg": "negative", "Abs": "abs",
          "Reciprocal": "reciprocal", "Relu": "relu", "Sigmoid": "sigmoid", "Tanh": "tanh",
          "Floor": "floor", "Ceil": "ceil", "Not": "logical_not", "Softplus": "softplus",
          "HardSwish": "hard_swish", "Round": "round", "Sign": "sign"}


@lowers(*_BINARY)
def _binary(node, ins, attrs, opset):
    return [getattr(_ops(), _BINARY[node.op])(ins[0], ins[1], name=node.name)]


@lowers(*_UNARY)
def _unary(node, ins, attrs, opset):
    return [getattr(_ops(), _UNARY[node.op])(ins[0], name=node.name)]


@lowers("Identity", "Dropout")
def _identity(node, ins, attrs, opset):
    if node.op == "Dropout" and bool(np.asarray(attrs.get("training_mode", False)).reshape(-1)[0]):
        raise NotImplementedError("Dropout in training mode is not supported (inference only)")
    return [_ops().copy(ins[0], name=node.name)]


@lowers("LeakyRelu")
def _leaky(node, ins, attrs, opset):
    return [_ops().leaky_relu(ins[0], attrs.get("alpha", 0.01), name=node.name)]


@lowers("Elu")
def _elu(node, ins, attrs, opset):
    return [_ops().elu(ins[0], attrs.get("alpha", 1.0), name=node.name)]


@lowers("HardSigmoid")
def _hsig(node, ins, attrs, opset):
    return [_ops().hard_sigmoid(ins[0], attrs.get("alpha", 0.2), attrs.get("beta", 0.5), name=node.name)]


@lowers("Gelu")
def _gelu(node, ins, attrs, opset):
    approx = attrs.get("approximate", "none")
    return [_ops().gelu(ins[0], approx.decode() if isinstance(approx, bytes) else approx, name=node.name)]


@lowers("PRelu")
def _prelu(node, ins, attrs, opset):
    return [_ops().prelu(ins[0], ins[1], name=node.name)]


@lowers("Clip")
def _clip(node, ins, attrs, opset):
    import te
    ops = _ops()
    x = ins[0]
    lo = ins[1] if len(ins) > 1 and ins[1] is not None else attrs.get("min")   # opset < 11: attributes
    hi = ins[2] if len(ins) > 2 and ins[2] is not None else attrs.get("max")
    if not isinstance(lo, te.Tensor) and not isinstance(hi, te.Tensor):
        scalar = (lambda v: None if v is None else np.asarray(v).reshape(-1)[0].item())
        return [ops.clip(x, scalar(lo), scalar(hi), name=node.name)]
    out = x
    if lo is not None:
        out = ops.maximum(out, lo, name=f"{node.name}.lo")
    if hi is not None:
        out = ops.minimum(out, hi, name=f"{node.name}.hi")
    return [out]


@lowers("Cast")
def _cast(node, ins, attrs, opset):
    from .onnx import ONNX_DTYPES
    return [_ops().cast(ins[0], ONNX_DTYPES[attrs["to"]], name=node.name)]


@lowers("Where")
def _where(node, ins, attrs, opset):
    return [_ops().where(ins[0], ins[1], ins[2], name=node.name)]


@lowers("Sum", "Max", "Min", "Mean")
def _variadic(node, ins, attrs, opset):
    ops = _ops()
    fn = {"Sum": ops.add, "Mean": ops.add, "Max": ops.maximum, "Min": ops.minimum}[node.op]
    out = ins[0]
    for k, x in enumerate(ins[1:]):
        out = fn(out, x, name=f"{node.name}.{k}")
    if node.op == "Mean":
        out = ops.multiply(out, 1.0 / len(ins), name=f"{node.name}.mean")
    if len(ins) == 1:
        out = ops.copy(out, name=node.name) if hasattr(ops, "copy") else out
    return [out]


@lowers("BatchNormalization")
def _bn(node, ins, attrs, opset):
    if bool(attrs.get("training_mode", 0)) or any(o for o in node.outputs[1:]):
        raise NotImplementedError("BatchNormalization in training mode is not supported (inference only)")
    return [_ops().batch_norm(ins[0], ins[1], ins[2], ins[3], ins[4], axis=1,
                              epsilon=attrs.get("epsilon", 1e-5), name=node.name)]


# ---------------------------------------------------------------- anchors

@lowers("Conv")
def _conv(node, ins, attrs, opset):
    x, w = ins[0], ins[1]
    bias = ins[2] if len(ins) > 2 else None
    nd = len(x.shape) - 2
    if nd != 2:
        raise NotImplementedError(f"Conv{nd}D: only 2-D convolutions are supported")
    strides = tuple(attrs.get("strides", [1, 1]))
    dil = tuple(attrs.get("dilations", [1, 1]))
    auto = attrs.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    if auto in ("SAME_UPPER", "SAME_LOWER", "VALID"):
        padding = auto
    else:
        p = attrs.get("pads", [0, 0, 0, 0])
        padding = (p[0], p[1], p[2], p[3])
    return [_ops().conv2d(x, w, strides=strides, padding=padding, dilation=dil,
                          groups=attrs.get("group", 1), bias=bias, name=node.name)]


@lowers("Gemm")
def _gemm(node, ins, attrs, opset):
    ops = _ops()
    a, b = ins[0], ins[1]
    c = ins[2] if len(ins) > 2 else None
    alpha, beta = attrs.get("alpha", 1.0), attrs.get("beta", 1.0)
    ta, tb = attrs.get("transA", 0), attrs.get("transB", 0)
    n_out = b.shape[0] if tb else b.shape[1]
    bias = c if (c is not None and beta == 1.0 and hasattr(c, "shape") and tuple(c.shape) == (n_out,)) else None
    out = ops.matmul(a, b, bias=bias, transpose_a=bool(ta), transpose_b=bool(tb), name=node.name)
    if alpha != 1.0:
        out = ops.multiply(out, float(alpha), name=f"{node.name}.alpha")
    if c is not None and bias is None:
        cc = ops.multiply(c, float(beta), name=f"{node.name}.beta") if beta != 1.0 and hasattr(c, "shape") \
            else (c * beta if not hasattr(c, "shape") else c)
        out = ops.add(out, cc, name=f"{node.name}.c")
    return [out]


@lowers("MatMul")
def _matmul(node, ins, attrs, opset):
    ops = _ops()
    a, b = ins
    ra, rb = len(a.shape), len(b.shape)
    if ra == 2 and rb == 2:
        return [ops.matmul(a, b, name=node.name)]
    if rb == 2 and ra > 2:
        lead = a.shape[:-1]
        a2 = ops.reshape(a, (int(np.prod(lead)), a.shape[-1]), name=f"{node.name}.flat")
        y = ops.matmul(a2, b, name=f"{node.name}.mm")
        return [ops.reshape(y, tuple(lead) + (b.shape[-1],), name=node.name)]
    # batched: broadcast leading dims, flatten them into one batch axis
    lead = np.broadcast_shapes(tuple(a.shape[:-2]), tuple(b.shape[:-2]))
    batch = int(np.prod(lead)) if lead else 1
    a3 = ops.reshape(ops.broadcast_to(a, tuple(lead) + tuple(a.shape[-2:])) if tuple(a.shape[:-2]) != tuple(lead)
                     else a, (batch,) + tuple(a.shape[-2:]), name=f"{node.name}.a3") if ra != 3 or tuple(a.shape[:-2]) != tuple(lead) else a
    b3 = ops.reshape(ops.broadcast_to(b, tuple(lead) + tuple(b.shape[-2:])) if tuple(b.shape[:-2]) != tuple(lead)
                     else b, (batch,) + tuple(b.shape[-2:]), name=f"{node.name}.b3") if rb != 3 or tuple(b.shape[:-2]) != tuple(lead) else b
    y = ops.batch_matmul(a3, b3, name=f"{node.name}.bmm")
    if len(lead) == 1:
        return [y]
    return [ops.reshape(y, tuple(lead) + (a.shape[-2], b.shape[-1]), name=node.name)]


# ---------------------------------------------------------------- nn

@lowers("Softmax", "LogSoftmax")
def _softmax(node, ins, attrs, opset):
    ops = _ops()
    x = ins[0]
    fn = ops.softmax if node.op == "Softmax" else ops.log_softmax
    rank = len(x.shape)
    if opset >= 13:
        return [fn(x, axis=attrs.get("axis", -1), name=node.name)]
    axis = attrs.get("axis", 1) % rank
    if axis == rank - 1:
        return [fn(x, axis=-1, name=node.name)]
    outer = int(np.prod(x.shape[:axis]))
    x2 = ops.reshape(x, (outer, int(np.prod(x.shape[axis:]))), name=f"{node.name}.2d")
    return [ops.reshape(fn(x2, axis=-1, name=f"{node.name}.sm"), tuple(x.shape), name=node.name)]


@lowers("LayerNormalization")
def _layernorm(node, ins, attrs, opset):
    gamma = ins[1] if len(ins) > 1 else None
    beta = ins[2] if len(ins) > 2 else None
    if any(o for o in node.outputs[1:]):
        raise NotImplementedError("LayerNormalization's Mean/InvStdDev outputs are not supported")
    rank = len(ins[0].shape)
    axis = attrs.get("axis", -1) % rank
    return [_ops().layer_norm(ins[0], gamma, beta, axis=list(range(axis, rank)),
                              epsilon=attrs.get("epsilon", 1e-5), name=node.name)]


@lowers("InstanceNormalization")
def _instnorm(node, ins, attrs, opset):
    return [_ops().instance_norm(ins[0], ins[1], ins[2], epsilon=attrs.get("epsilon", 1e-5), name=node.name)]


@lowers("LRN")
def _lrn(node, ins, attrs, opset):
    return [_ops().lrn(ins[0], attrs["size"], attrs.get("alpha", 1e-4), attrs.get("beta", 0.75),
                       attrs.get("bias", 1.0), name=node.name)]


def _pool_args(attrs, x):
    k = tuple(attrs["kernel_shape"])
    strides = tuple(attrs.get("strides", [1] * len(k)))
    dil = tuple(attrs.get("dilations", [1] * len(k)))
    auto = attrs.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    if auto in ("SAME_UPPER", "SAME_LOWER", "VALID"):
        pads = auto
    else:
        p = attrs.get("pads", [0] * (2 * len(k)))
        pads = (p[0], p[1], p[2], p[3])
    return k, strides, pads, dil, bool(attrs.get("ceil_mode", 0))


@lowers("MaxPool")
def _maxpool(node, ins, attrs, opset):
    if len(node.outputs) > 1 and node.outputs[1]:
        raise NotImplementedError("MaxPool with an Indices output is not supported")
    k, strides, pads, dil, ceil = _pool_args(attrs, ins[0])
    return [_ops().max_pool2d(ins[0], k, strides, pads, dil, ceil, name=node.name)]


@lowers("AveragePool")
def _avgpool(node, ins, attrs, opset):
    k, strides, pads, dil, ceil = _pool_args(attrs, ins[0])
    return [_ops().avg_pool2d(ins[0], k, strides, pads, dil, ceil,
                              count_include_pad=bool(attrs.get("count_include_pad", 0)), name=node.name)]


@lowers("GlobalAveragePool")
def _gap(node, ins, attrs, opset):
    return [_ops().global_avg_pool2d(ins[0], name=node.name)]


@lowers("GlobalMaxPool")
def _gmp(node, ins, attrs, opset):
    return [_ops().global_max_pool2d(ins[0], name=node.name)]


@lowers("ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd")
def _reduce(node, ins, attrs, opset):
    fn = {"ReduceSum": "sum", "ReduceMean": "mean", "ReduceMax": "max", "ReduceMin": "min",
          "ReduceProd": "prod"}[node.op]
    axes = attrs.get("axes")
    axes = None if axes is None else _ints(axes)
    if axes == [] or axes is None:
        if attrs.get("noop_with_empty_axes", 0) and axes == []:
            return [_identity(node, ins, attrs, opset)[0]]
        axes = None
    return [getattr(_ops(), f"reduce_{fn}")(ins[0], axes, keepdims=bool(attrs.get("keepdims", 1)),
                                            name=node.name)]


# ---------------------------------------------------------------- shapes and data movement

@lowers("Reshape")
def _reshape(node, ins, attrs, opset):
    x = ins[0]
    shape = _ints(attrs["shape"])
    if not attrs.get("allowzero", 0):
        shape = [x.shape[i] if s == 0 else s for i, s in enumerate(shape)]
    if -1 in shape:
        known = int(np.prod([s for s in shape if s != -1]))
        shape[shape.index(-1)] = int(np.prod(x.shape)) // max(known, 1)
    return [_ops().reshape(x, tuple(shape), name=node.name)]


@lowers("Flatten")
def _flatten(node, ins, attrs, opset):
    x = ins[0]
    rank = len(x.shape)
    axis = attrs.get("axis", 1)
    axis = axis + rank if axis < 0 else axis
    shape = (int(np.prod(x.shape[:axis])), int(np.prod(x.shape[axis:])))
    return [_ops().reshape(x, shape, name=node.name)]


@lowers("Squeeze", "Unsqueeze")
def _squeeze(node, ins, attrs, opset):
    from .onnx import ONNX_DTYPES  # noqa: F401
    out_shape = node.out_shapes[0]
    return [_ops().reshape(ins[0], tuple(out_shape), name=node.name)]


@lowers("Transpose")
def _transpose(node, ins, attrs, opset):
    perm = attrs.get("perm")
    return [_ops().transpose(ins[0], None if perm is None else tuple(perm), name=node.name)]


@lowers("Concat")
def _concat(node, ins, attrs, opset):
    return [_ops().concat(list(ins), axis=attrs["axis"], name=node.name)]


@lowers("Split")
def _split(node, ins, attrs, opset):
    x = ins[0]
    axis = attrs.get("axis", 0) % len(x.shape)
    sizes = attrs.get("split")
    if sizes is None:
        n = len(node.outputs)
        sizes = [x.shape[axis] // n] * n
    return list(_ops().split_sizes(x, [int(s) for s in np.asarray(sizes).reshape(-1)], axis=axis,
                                   name=node.name))


@lowers("Slice")
def _slice(node, ins, attrs, opset):
    x = ins[0]
    starts, ends = _ints(attrs["starts"]), _ints(attrs["ends"])
    axes = _ints(attrs["axes"]) if "axes" in attrs else list(range(len(starts)))
    steps = _ints(attrs["steps"]) if "steps" in attrs else [1] * len(starts)
    return [_ops().strided_slice(x, starts, ends, steps, axes, name=node.name)]


@lowers("Gather")
def _gather(node, ins, attrs, opset):
    return [_ops().gather(ins[0], ins[1], axis=attrs.get("axis", 0), name=node.name)]


@lowers("Pad")
def _pad(node, ins, attrs, opset):
    x = ins[0]
    pads = _ints(attrs["pads"])
    mode = attrs.get("mode", b"constant")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    value = attrs.get("constant_value", attrs.get("value", 0.0))
    value = float(np.asarray(value).reshape(-1)[0]) if value is not None else 0.0
    rank = len(x.shape)
    if "axes" in attrs:
        axes = [a % rank for a in _ints(attrs["axes"])]
        full = [0] * (2 * rank)
        for k, a in enumerate(axes):
            full[a], full[a + rank] = pads[k], pads[k + len(axes)]
        pads = full
    before, after = pads[:rank], pads[rank:]
    return [_ops().pad(x, before, after, value=value, mode=mode, name=node.name)]


@lowers("Expand")
def _expand(node, ins, attrs, opset):
    shape = tuple(np.broadcast_shapes(tuple(ins[0].shape), tuple(_ints(attrs["shape"]))))
    return [_ops().broadcast_to(ins[0], shape, name=node.name)]


@lowers("Tile")
def _tile(node, ins, attrs, opset):
    return [_ops().tile(ins[0], _ints(attrs["repeats"]), name=node.name)]


@lowers("Resize", "Upsample")
def _resize(node, ins, attrs, opset):
    x = ins[0]
    mode = attrs.get("mode", b"nearest")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    ctm = attrs.get("coordinate_transformation_mode", b"half_pixel" if node.op == "Resize" and opset >= 11
                    else b"asymmetric")
    ctm = ctm.decode() if isinstance(ctm, bytes) else ctm
    nearest = attrs.get("nearest_mode", b"round_prefer_floor")
    nearest = nearest.decode() if isinstance(nearest, bytes) else nearest
    out_shape = tuple(node.out_shapes[0])
    return [_ops().resize(x, out_shape, method=mode, coordinate_transformation_mode=ctm,
                          nearest_mode=nearest, name=node.name)]


# Shape, Size, Range, Constant, ConstantOfShape... are folded at import when their inputs are
# known; left over, they are reported as unsupported there.
SUPPORTED = frozenset(LOWER)
