"""Lowerings of the normalisation, pooling, reduction and loss operators (see lowering.py)."""
from __future__ import annotations

import math

import numpy as np

from .lowering import _ints, _is_float, _ops, _str, _tensor, checks, lowers


@lowers("Softmax", "LogSoftmax", "Hardmax")
def _softmax(node, ins, attrs, opset, out_shapes):
    ops = _ops()
    x = ins[0]
    fn = {"Softmax": ops.softmax, "LogSoftmax": ops.log_softmax, "Hardmax": _hardmax}[node.op]
    rank = len(x.shape)
    if opset >= 13:
        return [fn(x, axis=attrs.get("axis", -1), name=node.name)]
    # before opset 13 the input is seen as 2-D: the axes before `axis`, and the rest
    axis = attrs.get("axis", 1) % rank
    if axis == rank - 1:
        return [fn(x, axis=-1, name=node.name)]
    outer = int(np.prod(x.shape[:axis]))
    x2 = ops.reshape(x, (outer, int(np.prod(x.shape[axis:]))), name=f"{node.name}.2d")
    return [ops.reshape(fn(x2, axis=-1, name=f"{node.name}.sm"), tuple(x.shape), name=node.name)]


def _hardmax(x, axis: int, name: str):
    """1 at the first maximum along axis, 0 elsewhere."""
    import te
    ax = axis % len(x.shape)
    idx = _ops().argmax(x, ax, keepdims=True, name=f"{name}.argmax")
    return te.compute(x.shape, lambda *i: te.if_then_else(
        i[ax] == idx[i[:ax] + (0,) + i[ax + 1:]], te.const(1, x.dtype), te.const(0, x.dtype)),
        name=name, tag="broadcast")


@lowers("LayerNormalization")
def _layernorm(node, ins, attrs, opset, out_shapes):
    ops = _ops()
    x = ins[0]
    gamma, beta = (_tensor(ins[k], (1,), x.dtype, f"{node.name}.p{k}") if len(ins) > k else None
                   for k in (1, 2))
    rank = len(x.shape)
    axis = attrs.get("axis", -1) % rank
    eps = attrs.get("epsilon", 1e-5)
    norm = tuple(x.shape[axis:])
    if axis == rank - 1 or x.dtype != "float32" or any(
            p is not None and tuple(p.shape) != norm for p in (gamma, beta)):
        return [ops.layer_norm(x, gamma, beta, axis=list(range(axis, rank)), epsilon=eps, name=node.name)]
    # several axes, scale and bias of their full shape: rows of their flattened elements, as ONNX
    # Runtime's kernel normalizes them (so layer_norm over the last axis is its arithmetic)
    n = int(np.prod(norm))

    def flat(p, k):
        return None if p is None else ops.reshape(p, (n,), name=f"{node.name}.p{k}.row")
    rows = ops.reshape(x, tuple(x.shape[:axis]) + (n,), name=f"{node.name}.rows")
    y = ops.layer_norm(rows, flat(gamma, 1), flat(beta, 2), axis=-1, epsilon=eps, name=f"{node.name}.ln")
    return [ops.reshape(y, tuple(x.shape), name=node.name)]


@checks("LayerNormalization")
def _check_layernorm(node, ins, opset):
    rank = len(ins[0].shape)
    axis = node.attrs.get("axis", -1) % rank
    norm = ins[0].shape[axis:]
    for p in ins[1:3]:
        if p is not None and np.broadcast_shapes(tuple(p.shape), norm) != norm:
            return f"scale/bias of shape {p.shape} do not broadcast to the normalized shape {norm}"
    return None


@lowers("RMSNormalization")
def _rmsnorm(node, ins, attrs, opset, out_shapes):
    import te
    ops = _ops()
    x, scale = ins[0], ins[1]
    rank = len(x.shape)
    axes = list(range(attrs.get("axis", -1) % rank, rank))
    ms = ops.reduce_mean(ops.multiply(x, x, name=f"{node.name}.sq"), axes, keepdims=True, name=f"{node.name}.ms")
    eps = float(attrs.get("epsilon", 1e-5))
    norm_shape = tuple(x.shape[axes[0]:])

    def body(*i):
        row = tuple(0 if d in axes else k for d, k in enumerate(i))
        return x[i] * te.rsqrt(ms[row] + eps) * _ops().broadcast_at(scale, norm_shape, i[axes[0]:])
    return [te.compute(tuple(x.shape), body, name=node.name, tag="broadcast")]


@lowers("LpNormalization")
def _lpnorm(node, ins, attrs, opset, out_shapes):
    ops = _ops()
    x = ins[0]
    axis = attrs.get("axis", -1) % len(x.shape)
    if attrs.get("p", 2) == 1:
        norm = ops.reduce_sum(ops.abs(x, name=f"{node.name}.abs"), [axis], keepdims=True, name=f"{node.name}.l1")
    else:
        sq = ops.reduce_sum(ops.multiply(x, x, name=f"{node.name}.sq"), [axis], keepdims=True,
                            name=f"{node.name}.ss")
        norm = ops.sqrt(sq, name=f"{node.name}.l2")
    # a zero norm gives 0, not 0 / 0
    return [ops.where(ops.equal(norm, 0.0, name=f"{node.name}.zero"), 0.0,
                      ops.divide(x, norm, name=f"{node.name}.div"), name=node.name)]


@checks("LpNormalization")
def _check_lpnorm(node, ins, opset):
    return None if node.attrs.get("p", 2) in (1, 2) else f"p={node.attrs.get('p')}: only p=1 and p=2 are supported"


@lowers("MeanVarianceNormalization")
def _mvn(node, ins, attrs, opset, out_shapes):
    axes = _ints(attrs.get("axes", [0, 2, 3]))
    return [_ops().layer_norm(ins[0], None, None, axis=axes, epsilon=1e-9, name=node.name)]


@lowers("GroupNormalization")
def _groupnorm(node, ins, attrs, opset, out_shapes):
    import te
    ops = _ops()
    x = ins[0]
    scale, bias = (_tensor(p, (1,), x.dtype, f"{node.name}.p{k}") for k, p in enumerate(ins[1:3]))
    N, C = x.shape[:2]
    G = int(attrs["num_groups"])
    rest = int(np.prod(x.shape[2:]))
    grouped = ops.reshape(x, (N, G, (C // G) * rest), name=f"{node.name}.groups")
    normed = ops.reshape(ops.layer_norm(grouped, None, None, axis=-1, epsilon=attrs.get("epsilon", 1e-5),
                                        name=f"{node.name}.norm"), tuple(x.shape), name=f"{node.name}.back")
    per = C // scale.shape[0]          # opset 18: one scale per group; opset 21: one per channel
    return [te.compute(tuple(x.shape), lambda *i: normed[i] * scale[i[1] // per] + bias[i[1] // per],
                       name=node.name, tag="broadcast")]


@lowers("NegativeLogLikelihoodLoss", "SoftmaxCrossEntropyLoss")
def _nll(node, ins, attrs, opset, out_shapes):
    ops = _ops()
    x = ins[0]
    if node.op == "SoftmaxCrossEntropyLoss":
        x = ops.log_softmax(x, axis=1, name=f"{node.name}.logp")
    ii = attrs.get("ignore_index")
    target = _tensor(ins[1], tuple(out_shapes[0]) or (1,) * (len(x.shape) - 1), "int64", f"{node.name}.t")
    weight = _tensor(ins[2], (1,), x.dtype, f"{node.name}.w") if len(ins) > 2 else None
    return [ops.nll_loss(x, target, weight, _str(attrs.get("reduction"), "mean"),
                         None if ii is None else int(ii), name=node.name)]


@lowers("ArgMax", "ArgMin")
def _argmax(node, ins, attrs, opset, out_shapes):
    fn = _ops().argmax if node.op == "ArgMax" else _ops().argmin
    return [fn(ins[0], attrs.get("axis", 0), bool(attrs.get("keepdims", 1)),
               bool(attrs.get("select_last_index", 0)), name=node.name)]


@lowers("InstanceNormalization")
def _instnorm(node, ins, attrs, opset, out_shapes):
    x = ins[0]
    scale, bias = (_tensor(p, (x.shape[1],), x.dtype, f"{node.name}.p{k}") for k, p in enumerate(ins[1:3]))
    return [_ops().instance_norm(x, scale, bias, epsilon=attrs.get("epsilon", 1e-5), name=node.name)]


@lowers("LRN")
def _lrn(node, ins, attrs, opset, out_shapes):
    return [_ops().lrn(ins[0], attrs["size"], attrs.get("alpha", 1e-4), attrs.get("beta", 0.75),
                       attrs.get("bias", 1.0), name=node.name)]


@checks("LRN")
def _check_lrn(node, ins, opset):
    size = int(node.attrs.get("size", 0))
    return None if size >= 1 else f"size={size}: the window must hold at least one channel"


def _pool_args(attrs, x):
    k = tuple(attrs["kernel_shape"])
    strides = tuple(attrs.get("strides", [1] * len(k)))
    dil = tuple(attrs.get("dilations", [1] * len(k)))
    auto = _str(attrs.get("auto_pad"), "NOTSET")
    if auto in ("SAME_UPPER", "SAME_LOWER", "VALID"):
        pads = auto
    else:
        p = attrs.get("pads", [0] * (2 * len(k)))
        pads = (p[0], p[1], p[2], p[3])
    return k, strides, pads, dil, bool(attrs.get("ceil_mode", 0))


@lowers("MaxPool")
def _maxpool(node, ins, attrs, opset, out_shapes):
    k, strides, pads, dil, ceil = _pool_args(attrs, ins[0])
    return [_pool_shape_agrees(node, _ops().max_pool2d(ins[0], k, strides, pads, dil, ceil, name=node.name),
                               out_shapes, ceil)]


@lowers("AveragePool")
def _avgpool(node, ins, attrs, opset, out_shapes):
    k, strides, pads, dil, ceil = _pool_args(attrs, ins[0])
    y = _ops().avg_pool2d(ins[0], k, strides, pads, dil, ceil,
                          count_include_pad=bool(attrs.get("count_include_pad", 0)), name=node.name)
    return [_pool_shape_agrees(node, y, out_shapes, ceil)]


def _pool_shape_agrees(node, y, out_shapes, ceil: bool):
    """y, if its shape is the model's.  In ceil mode a last window that would start in the end
    padding is dropped, as the ONNX spec says and its reference computes, while onnx's shape
    inference (and so the model's declared shape) may count it."""
    want = tuple(out_shapes[0]) if out_shapes and out_shapes[0] is not None else tuple(y.shape)
    if ceil and tuple(y.shape) != want:
        raise ValueError(f"ceil_mode gives the output {tuple(y.shape)} (a last window starting in the end "
                         f"padding is dropped, as the ONNX spec and its reference do), the model declares "
                         f"{want}; lower the end pads so that no window starts in them, or set ceil_mode=0")
    return y


@checks("MaxPool", "AveragePool")
def _check_pool(node, ins, opset):
    nd = len(ins[0].shape) - 2
    if nd != 2:
        return f"{nd}-D pooling: only 2-D pooling (NCHW data) is supported"
    if node.op == "MaxPool" and any(node.outputs[1:]):
        return "MaxPool with an Indices output is not supported"
    if node.op == "AveragePool" and not _is_float(ins[0].dtype):
        return f"average pooling on {ins[0].dtype} is not supported"
    return None


@lowers("GlobalAveragePool", "GlobalMaxPool")
def _global_pool(node, ins, attrs, opset, out_shapes):
    x = ins[0]
    fn = _ops().reduce_mean if node.op == "GlobalAveragePool" else _ops().reduce_max
    return [fn(x, list(range(2, len(x.shape))), keepdims=True, name=node.name)]


_REDUCE = {"ReduceSum": "sum", "ReduceMean": "mean", "ReduceMax": "max", "ReduceMin": "min",
           "ReduceProd": "prod", "ReduceL1": "sum", "ReduceL2": "sum", "ReduceSumSquare": "sum",
           "ReduceLogSum": "sum", "ReduceLogSumExp": "sum"}


@lowers(*_REDUCE)
def _reduce(node, ins, attrs, opset, out_shapes):
    out = _reduction(node, ins, attrs, out_shapes)
    if not _is_float(ins[0].dtype) and _is_float(out.dtype):
        # an integer tensor's L2 norm or log-sum(-exp), computed in float: truncated toward zero
        # into its type, as ONNX Runtime returns them
        out = _ops().cast(out, ins[0].dtype, name=f"{node.name}.int")
    return [out]


def _reduction(node, ins, attrs, out_shapes):
    """The reduction a Reduce* node computes, in float where its op needs it."""
    ops = _ops()
    x = ins[0]
    axes = attrs.get("axes")
    axes = _ints(axes) if axes is not None else []
    src, post = _reduce_source(node, x)
    if (not axes and attrs.get("noop_with_empty_axes", 0)) or not x.shape:
        # a reduction over no axes (or of a 0-d tensor): only the elementwise parts remain
        out = ops.copy(x, name=node.name) if src is x or node.op == "ReduceLogSumExp" else src
        return out if post is None else post(out, name=node.name)
    axes = axes or None
    keep = bool(attrs.get("keepdims", 1))
    if node.op == "ReduceLogSumExp":
        # log(sum(exp(x - max))) + max: no overflow for large x
        m = ops.reduce_max(x, axes, keepdims=True, name=f"{node.name}.max")
        e = ops.exp(ops.subtract(x, m, name=f"{node.name}.shift"), name=f"{node.name}.exp")
        total = ops.reduce_sum(e, axes, keepdims=True, name=f"{node.name}.sum")
        out = ops.add(ops.log(total, name=f"{node.name}.log"), m, name=f"{node.name}.lse")
        return out if keep else ops.reshape(out, tuple(out_shapes[0]), name=node.name)
    if node.op == "ReduceMean" and not _is_float(x.dtype):
        # ONNX Runtime's and the reference's integer mean truncates toward zero; te's mean of
        # integers is float32 (numpy's): here the sum in float64 (exact below 2**53), divided by
        # the count rather than scaled by its inverse (300 * (1/3) would truncate to 99)
        total = ops.reduce_sum(ops.cast(x, "float64", name=f"{node.name}.f64"), axes, keepdims=keep,
                               name=f"{node.name}.sum")
        count = math.prod(x.shape) // math.prod(total.shape)
        return ops.cast(ops.divide(total, float(count), name=f"{node.name}.div"), x.dtype, name=node.name)
    fn = getattr(ops, f"reduce_{_REDUCE[node.op]}")
    if src.dtype == "bool":
        # max/min of bools (any/all) as bytes
        src = ops.cast(src, "uint8", name=f"{node.name}.u8")
        post = (lambda t, name: ops.cast(t, "bool", name=name))
    red = fn(src, axes, keepdims=keep, name=node.name if post is None else f"{node.name}.red")
    return red if post is None else post(red, name=node.name)


def _reduce_source(node, x):
    """(the tensor to reduce, the elementwise op applied after) of a reduction."""
    ops = _ops()
    if node.op == "ReduceL1":
        return ops.abs(x, name=f"{node.name}.abs"), None
    if node.op in ("ReduceL2", "ReduceSumSquare"):
        return ops.multiply(x, x, name=f"{node.name}.sq"), (ops.sqrt if node.op == "ReduceL2" else None)
    if node.op == "ReduceLogSum":
        return x, ops.log
    return x, None
