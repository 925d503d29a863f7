"""From graph nodes to te tensors: one function per ONNX operator, built on te.ops.

A lowering gets the node's input tensors (te placeholders or the outputs of earlier nodes of
the same kernel; constants of one element arrive as Python numbers), its attributes (with
parameter inputs already folded into them by the importer), the graph's opset and the shapes
of its outputs as the graph inferred them, and returns the output tensors.  This module holds the registry, the elementwise operators and
the anchors (Conv, Gemm, MatMul: they also take the target and the registry choice the model
compiler made for them); lower_nn.py and lower_data.py hold the others.

What a lowering cannot do is said at import, not at build time: `CHECKS[op](node, inputs,
opset)` gets the node and the TensorInfo of each input (None for an absent optional one) and
returns the reason the node is not supported, or None; the importer lists every such node in
its ModelError.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from .canonical import EXPANDED, truthy
from .dtypes import ONNX_DTYPES

LOWER: dict[str, Callable] = {}
ANCHORS: dict[str, Callable] = {}
CHECKS: dict[str, Callable] = {}


def lowers(*names: str):
    """Decorator: the lowering of the given ONNX ops, fn(node, ins, attrs, opset, out_shapes)."""
    def deco(fn):
        for n in names:
            LOWER[n] = fn
        return fn
    return deco


def lowers_anchor(name: str):
    """Decorator: the lowering of an anchor op, fn(node, ins, attrs, opset, out_shapes, target,
    choice).

    `choice` is the te.ops.registry.Choice the model compiler made for the node (implementation,
    config, whether the weight arrives packed; a batched MatMul's: its BatchMatmulWorkload), or
    None where the node has no workload (a weight computed at run time): then the op's default
    kernel for `target`."""
    def deco(fn):
        ANCHORS[name] = fn
        return fn
    return deco


def checks(*names: str):
    """Decorator: fn(node, input infos, opset) -> the reason the node is unsupported, or None."""
    def deco(fn):
        for n in names:
            CHECKS[n] = fn
        return fn
    return deco


def _ops():
    from te import ops
    return ops


def _ints(v) -> list[int]:
    return [int(x) for x in np.asarray(v).reshape(-1)]


def _str(v, default: str) -> str:
    v = default if v is None else v
    return v.decode() if isinstance(v, bytes) else str(v)


def _dtype(x) -> str | None:
    """The dtype of a tensor operand; None for a Python number (a folded scalar constant)."""
    return getattr(x, "dtype", None)


def _is_float(dtype: str | None) -> bool:
    return dtype in ("float32", "float64")


def _tensor(v, shape: tuple, dtype: str | None, name: str):
    """v as a te tensor of the given shape: a constant of one element arrives as a Python
    number, which the ops that index their operands cannot take."""
    import te
    if v is None or isinstance(v, te.Tensor):
        return v
    dtype = dtype or ("float32" if isinstance(v, float) else "bool" if isinstance(v, bool) else "int64")
    return te.compute(tuple(shape), lambda *i: te.const(v, dtype), name=name, tag="elemwise")


# ---------------------------------------------------------------- elementwise

_BINARY = {"Add": "add", "Sub": "subtract", "Mul": "multiply", "Equal": "equal", "Less": "less",
           "Greater": "greater", "LessOrEqual": "less_equal", "GreaterOrEqual": "greater_equal",
           "And": "logical_and", "Or": "logical_or", "Xor": "logical_xor"}
_UNARY = {"Sqrt": "sqrt", "Exp": "exp", "Log": "log", "Erf": "erf", "Neg": "negative", "Abs": "abs",
          "Reciprocal": "reciprocal", "Relu": "relu", "Sigmoid": "sigmoid", "Tanh": "tanh",
          "Floor": "floor", "Ceil": "ceil", "Not": "logical_not", "Softplus": "softplus",
          "Round": "round", "Sign": "sign", "Sin": "sin", "Cos": "cos"}


@lowers(*_BINARY)
def _binary(node, ins, attrs, opset, out_shapes):
    return [getattr(_ops(), _BINARY[node.op])(ins[0], ins[1], name=node.name)]


@lowers("Div")
def _div(node, ins, attrs, opset, out_shapes):
    # ONNX integer division truncates toward zero (C), not down (numpy)
    return [_ops().trunc_divide(ins[0], ins[1], name=node.name)]


@lowers("Mod")
def _mod(node, ins, attrs, opset, out_shapes):
    fn = _ops().fmod if attrs.get("fmod", 0) else _ops().mod
    return [fn(ins[0], ins[1], name=node.name)]


@lowers("Pow")
def _pow(node, ins, attrs, opset, out_shapes):
    ops = _ops()
    a, b = ins
    base = _dtype(a)
    if base is not None and not _is_float(base) and _is_float(_dtype(b)):
        # numpy computes an integer base to a float power in float64; ONNX keeps the base's type
        return [ops.cast(ops.power(ops.cast(a, "float64", name=f"{node.name}.a"), b, name=f"{node.name}.pow"),
                         base, name=node.name)]
    out = ops.power(a, b, name=f"{node.name}.pow" if base else node.name)
    if base is not None and out.dtype != base:
        out = ops.cast(out, base, name=node.name)
    return [out]


@lowers(*_UNARY)
def _unary(node, ins, attrs, opset, out_shapes):
    return [getattr(_ops(), _UNARY[node.op])(ins[0], name=node.name)]


@lowers("Identity", "Dropout")
def _identity(node, ins, attrs, opset, out_shapes):
    return [_ops().copy(ins[0], name=node.name)]


@checks("Dropout")
def _check_dropout(node, ins, opset):
    ratio = node.attrs.get("ratio", 0.5)
    if truthy(node.attrs.get("training_mode", False)) and float(np.asarray(ratio).reshape(-1)[0]) != 0.0:
        return "Dropout in training mode is not supported (inference only)"
    return None


@lowers("LeakyRelu")
def _leaky(node, ins, attrs, opset, out_shapes):
    return [_ops().leaky_relu(ins[0], attrs.get("alpha", 0.01), name=node.name)]


@lowers("Elu")
def _elu(node, ins, attrs, opset, out_shapes):
    return [_ops().elu(ins[0], attrs.get("alpha", 1.0), name=node.name)]


def _float_attr(attrs: dict, key: str, default: float) -> float:
    """A float attribute, or its default as the float32 the ONNX spec declares (ONNX Runtime's
    value: HardSigmoid's 0.2 is 0.20000000298, which a float64 model sees)."""
    return float(np.float32(attrs.get(key, default)))


@lowers("HardSigmoid")
def _hsig(node, ins, attrs, opset, out_shapes):
    return [_ops().hard_sigmoid(ins[0], _float_attr(attrs, "alpha", 0.2), _float_attr(attrs, "beta", 0.5),
                                name=node.name)]


@lowers("HardSwish")
def _hswish(node, ins, attrs, opset, out_shapes):
    # the spec's function body: x * HardSigmoid<alpha = 1/6 as float32, beta = 0.5>(x)
    return [_ops().hard_swish(ins[0], name=node.name, alpha=float(np.float32(1.0 / 6.0)))]


@lowers("Gelu")
def _gelu(node, ins, attrs, opset, out_shapes):
    return [_ops().gelu(ins[0], _str(attrs.get("approximate"), "none"), name=node.name)]


_ACTIVATIONS = {  # op: (te.ops name, [(attribute, default)...]) passed positionally
    "Selu": ("selu", [("alpha", 1.6732632423543772), ("gamma", 1.0507009873554805)]),
    "Celu": ("celu", [("alpha", 1.0)]), "ThresholdedRelu": ("thresholded_relu", [("alpha", 1.0)]),
    "Shrink": ("shrink", [("bias", 0.0), ("lambd", 0.5)]), "Swish": ("swish", [("alpha", 1.0)]),
    "Softsign": ("softsign", []), "Mish": ("mish", []), "Sinh": ("sinh", []), "Cosh": ("cosh", []),
    "IsNaN": ("isnan", []), "IsInf": ("isinf", [("detect_positive", 1), ("detect_negative", 1)]),
}


@lowers(*_ACTIVATIONS)
def _activation(node, ins, attrs, opset, out_shapes):
    fn, params = _ACTIVATIONS[node.op]
    args = [_float_attr(attrs, key, default) if isinstance(default, float)
            else type(default)(attrs.get(key, default)) for key, default in params]
    return [getattr(_ops(), fn)(ins[0], *args, name=node.name)]


@lowers("PRelu")
def _prelu(node, ins, attrs, opset, out_shapes):
    # ONNX broadcasts the slope to x with numpy's rules (a 1-D slope runs along the last axis);
    # a 1-D slope that only fits the channels is read per channel, as old exporters meant it
    x, slope = ins
    shape = getattr(slope, "shape", ())
    legacy = len(shape) == 1 and len(x.shape) > 2 and shape[0] not in (1, x.shape[-1])
    return [_ops().prelu(x, slope, axis=1 if legacy else -1, name=node.name)]


@checks("PRelu")
def _check_prelu(node, ins, opset):
    x, slope = ins[0].shape, ins[1].shape
    try:
        fits = np.broadcast_shapes(x, slope) == x
    except ValueError:
        fits = False
    if not fits and not (len(slope) == 1 and len(x) > 1 and slope[0] == x[1]):
        return f"the slope of shape {slope} does not broadcast to the input's {x}"
    return None


@lowers("Clip")
def _clip(node, ins, attrs, opset, out_shapes):
    import te
    ops = _ops()
    x = ins[0]
    lo = ins[1] if len(ins) > 1 and ins[1] is not None else attrs.get("min")   # opset < 11: attributes
    hi = ins[2] if len(ins) > 2 and ins[2] is not None else attrs.get("max")
    if _is_float(x.dtype):
        # ONNX's absent bounds are the type's lowest and largest finite values, so -inf and inf clip to them
        lo = np.finfo(x.dtype).min if lo is None else lo
        hi = np.finfo(x.dtype).max if hi is None else hi
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
def _cast(node, ins, attrs, opset, out_shapes):
    # saturate and round_mode concern the float8 types only (te.ops.lowbit)
    return [_ops().cast(ins[0], ONNX_DTYPES[attrs["to"]], name=node.name, saturate=bool(attrs.get("saturate", 1)),
                        round_mode=_str(attrs.get("round_mode"), "up"))]


@lowers("CastLike")
def _cast_like(node, ins, attrs, opset, out_shapes):
    # the importer turns CastLike into Cast; this serves graphs built by hand
    return [_ops().cast(ins[0], ins[1].dtype, name=node.name)]


@checks("Cast")
def _check_cast(node, ins, opset):
    if node.attrs.get("to") not in ONNX_DTYPES:
        return f"casting to ONNX type {node.attrs.get('to')} is not supported"
    return None


@lowers("Where")
def _where(node, ins, attrs, opset, out_shapes):
    return [_ops().where(ins[0], ins[1], ins[2], name=node.name)]


@lowers("Sum", "Max", "Min", "Mean")
def _variadic(node, ins, attrs, opset, out_shapes):
    ops = _ops()
    fn = {"Sum": ops.add, "Mean": ops.add, "Max": ops.maximum, "Min": ops.minimum}[node.op]
    out = ins[0]
    for k, x in enumerate(ins[1:]):
        out = fn(out, x, name=f"{node.name}.{k}")
    if node.op == "Mean":
        out = ops.multiply(out, 1.0 / len(ins), name=f"{node.name}.mean")
    if len(ins) == 1:
        out = ops.copy(out, name=node.name)
    return [out]


@lowers("BatchNormalization")
def _bn(node, ins, attrs, opset, out_shapes):
    x = ins[0]
    params = [_tensor(p, (x.shape[1],), x.dtype, f"{node.name}.p{k}") for k, p in enumerate(ins[1:5])]
    return [_ops().batch_norm(x, *params, axis=1, epsilon=attrs.get("epsilon", 1e-5), name=node.name)]


@checks("BatchNormalization")
def _check_bn(node, ins, opset):
    if truthy(node.attrs.get("training_mode", 0)) or any(node.outputs[1:]):
        return "BatchNormalization in training mode is not supported (inference only)"
    c = ins[0].shape[1] if len(ins[0].shape) > 1 else None
    if any(i is None or i.shape != (c,) for i in ins[1:5]):
        return "BatchNormalization needs (C,) scale, bias, mean and variance"
    return None


# ---------------------------------------------------------------- anchors

def _float_only(what: str, dtypes=("float32",)):
    def check(node, ins, opset):
        dts = {i.dtype for i in ins if i is not None}
        if not dts <= set(dtypes):
            other = ", ".join(sorted(dts - set(dtypes)))
            return f"{what} is supported on {' and '.join(dtypes)} only, not {other}"
        return None
    return check


def conv_padding(attrs: dict):
    """A Conv node's padding: its auto_pad mode (SAME_UPPER, SAME_LOWER, VALID) or (top, left, bottom, right)."""
    auto = _str(attrs.get("auto_pad"), "NOTSET")
    if auto in ("SAME_UPPER", "SAME_LOWER", "VALID"):
        return auto
    p = attrs.get("pads", [0, 0, 0, 0])
    return (p[0], p[1], p[2], p[3])


@lowers_anchor("Conv")
def _conv(node, ins, attrs, opset, out_shapes, target, choice=None):
    x, w = ins[0], ins[1]
    bias = ins[2] if len(ins) > 2 else None
    if choice is not None:
        return [choice.compute([x, w, bias], name=node.name)]
    return [_ops().conv2d(x, w, strides=tuple(attrs.get("strides", [1, 1])), padding=conv_padding(attrs),
                          dilation=tuple(attrs.get("dilations", [1, 1])), groups=attrs.get("group", 1),
                          bias=bias, name=node.name, target=target)]


@lowers_anchor("tilewise.DepthwisePointwise")
def _dwpw(node, ins, attrs, opset, out_shapes, target, choice=None):
    """passes.fuse_depthwise_pointwise's node: te.ops.dwpw's one kernel, the activation as its
    depthwise epilogue."""
    from te.ops import dwpw
    from te.ops.conv_geometry import geometry
    from te.ops.elementwise import clamp
    x, wd, bd, wp, bp = ins
    g = geometry(x.shape, wd.shape, (1, 1), tuple(attrs["pads"]), tuple(attrs["dilations"]), x.shape[1])
    lo, hi = attrs["act_min"], attrs["act_max"]
    return [dwpw.dwpw_conv2d(x, wd, bd, lambda v, idx: clamp(v, lo, hi), wp, bp, None, g, name=node.name,
                             target=target)]


@lowers_anchor("tilewise.ConvMaxPool")
def _conv_max_pool(node, ins, attrs, opset, out_shapes, target, choice=None):
    """conv_pool.fuse_conv_max_pool's node: te.ops.conv_pool's one kernel, the activation (if any)
    as the conv's epilogue."""
    from te.ops import conv_pool
    from te.ops.conv_geometry import geometry
    from te.ops.elementwise import clamp

    from .lower_nn import _pool_args
    x, w = ins[0], ins[1]
    bias = ins[2] if len(ins) > 2 else None
    g = geometry(x.shape, w.shape, tuple(attrs["conv_strides"]), tuple(attrs["conv_pads"]),
                 tuple(attrs["conv_dilations"]), 1)
    lo, hi = attrs["act_min"], attrs["act_max"]
    act = None if lo is None and hi is None else (lambda v, idx: clamp(v, lo, hi))
    k, strides, pads, dil, ceil = _pool_args(attrs, x)
    return [conv_pool.conv_stem_max_pool(x, w, g, bias, act, k, strides, pads, dil, ceil, name=node.name,
                                         target=target)]


@lowers("tilewise.PackNCHWc")
def _pack_nchwc(node, ins, attrs, opset, out_shapes):
    return [_ops().pack_nchwc(ins[0], attrs["block"], name=node.name)]


@lowers("tilewise.UnpackNCHWc")
def _unpack_nchwc(node, ins, attrs, opset, out_shapes):
    return [_ops().unpack_nchwc(ins[0], attrs["channels"], name=node.name)]


@checks("Conv")
def _check_conv(node, ins, opset):
    nd = len(ins[0].shape) - 2
    if nd != 2:
        return f"Conv{nd}D: only 2-D convolutions are supported"
    if len(ins[1].shape) != len(ins[0].shape):
        return (f"weight '{node.inputs[1]}' has shape {ins[1].shape}; it must have the data's rank "
                f"{len(ins[0].shape)} (output channels, input channels / group, kernel height, width)")
    bias = ins[2] if len(ins) > 2 else None
    if bias is not None and bias.shape != (ins[1].shape[0],):    # ONNX Runtime refuses it too
        return (f"bias '{node.inputs[2]}' has shape {bias.shape}; it must be 1-D with one value per output "
                f"channel ({ins[1].shape[0]},)")
    from te.ops.conv_geometry import geometry
    strides, padding, dil = (tuple(node.attrs.get("strides", [1, 1])), conv_padding(node.attrs),
                             tuple(node.attrs.get("dilations", [1, 1])))
    try:        # the sizes ONNX Runtime checks too: channels and groups, an output with no pixels
        geometry(ins[0].shape, ins[1].shape, strides, padding, dil, int(node.attrs.get("group", 1)))
    except ValueError as e:
        return str(e).removeprefix("conv2d: ")
    return _float_only("Conv")(node, ins, opset)


@lowers_anchor("Gemm")
def _gemm(node, ins, attrs, opset, out_shapes, target, choice=None):
    ops = _ops()
    a, b = ins[0], ins[1]
    c = ins[2] if len(ins) > 2 else None
    alpha, beta = attrs.get("alpha", 1.0), attrs.get("beta", 1.0)
    ta, tb = attrs.get("transA", 0), attrs.get("transB", 0)
    n_out = b.shape[0] if tb else b.shape[1]
    bias = c if (c is not None and beta == 1.0 and hasattr(c, "shape") and tuple(c.shape) == (n_out,)) else None
    if choice is not None:
        out = choice.compute([a, b, bias], name=node.name)
    else:
        out = ops.matmul(a, b, bias=bias, transpose_a=bool(ta), transpose_b=bool(tb), name=node.name,
                         target=target)
    if alpha != 1.0:
        out = ops.multiply(out, float(alpha), name=f"{node.name}.alpha")
    if c is not None and bias is None:
        # C broadcasts to (M, N) with numpy's rules
        cc = ops.multiply(c, float(beta), name=f"{node.name}.beta") if beta != 1.0 and hasattr(c, "shape") \
            else (c * beta if not hasattr(c, "shape") else c)
        out = ops.add(out, cc, name=f"{node.name}.c")
    return [out]


def as_batches(a, b, name: str) -> tuple:
    """a (..., M, K) and b (..., K, N) as 3-D (batch, M, K) and (batch, K, N): numpy's broadcast of the
    leading axes, flattened into one batch axis."""
    ops = _ops()
    lead = tuple(np.broadcast_shapes(tuple(a.shape[:-2]), tuple(b.shape[:-2])))
    batch = int(np.prod(lead)) if lead else 1

    def as3(t, tag):
        full = lead + tuple(t.shape[-2:])
        if tuple(t.shape) != full:
            t = ops.broadcast_to(t, full, name=f"{name}.{tag}bc")
        if len(full) != 3:
            t = ops.reshape(t, (batch,) + tuple(t.shape[-2:]), name=f"{name}.{tag}3")
        return t
    return as3(a, "a"), as3(b, "b")


@lowers_anchor("MatMul")
def _matmul(node, ins, attrs, opset, out_shapes, target, choice=None):
    ops = _ops()
    a, b = ins
    out_shape = tuple(out_shapes[0])
    # numpy's rules: a 1-D a is a row (1, K), a 1-D b a column (K, 1); the unit axis goes away
    if len(a.shape) == 1:
        a = ops.reshape(a, (1, a.shape[0]), name=f"{node.name}.row")
    if len(b.shape) == 1:
        b = ops.reshape(b, (b.shape[0], 1), name=f"{node.name}.col")
    ra, rb = len(a.shape), len(b.shape)
    if choice is not None and choice.workload.op == "batch_matmul":
        y = choice.compute(list(as_batches(a, b, node.name)), name=f"{node.name}.bmm")
    elif choice is not None:            # a 2-D workload; b may arrive packed (the choice's pack_weight)
        wl = choice.workload
        name = node.name if out_shape == (wl.M, wl.N) else f"{node.name}.mm"
        y = choice.compute([a, b], name=name)
    elif ra == 2 and rb == 2:
        name = node.name if out_shape == (a.shape[0], b.shape[1]) else f"{node.name}.mm"
        y = ops.matmul(a, b, name=name, target=target)
    elif rb == 2:
        lead = a.shape[:-1]
        a2 = ops.reshape(a, (int(np.prod(lead)), a.shape[-1]), name=f"{node.name}.flat")
        y = ops.matmul(a2, b, name=f"{node.name}.mm", target=target)
    else:
        a3, b3 = as_batches(a, b, node.name)
        y = ops.batch_matmul(a3, b3, name=f"{node.name}.bmm", target=target)
    if tuple(y.shape) != out_shape:
        y = ops.reshape(y, out_shape, name=node.name)
    return [y]


CHECKS["Gemm"] = _float_only("Gemm", ("float32", "float64"))
CHECKS["MatMul"] = _float_only("MatMul", ("float32", "float64"))


# The other lowerings register themselves on import.
from . import lower_data, lower_index, lower_linalg, lower_nn, lower_qnn, lower_rnn, lower_seq  # noqa: E402,F401

# Shape, Size, Constant, ConstantOfShape... are folded at import when their inputs are known
# (canonical.py makes constants of what reads only shapes); left over, they are reported as
# unsupported there.  The EXPANDED ops become others at import (canonical.py).
SUPPORTED = frozenset(LOWER) | frozenset(ANCHORS) | EXPANDED
