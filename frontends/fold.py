"""numpy evaluation of ONNX nodes, for constant folding (and for canonicalising parameter inputs).

Only what models compute on constants: shapes, indices, the weights that ConstantOfShape
builds, and cheap elementwise math.  An op missing here is simply not folded.
"""
from __future__ import annotations

import numpy as np
from onnx import helper, numpy_helper

from .dtypes import ONNX_TO_NUMPY



def _axes(attrs, inputs, idx):
    if len(inputs) > idx and inputs[idx] is not None:
        return [int(a) for a in np.asarray(inputs[idx]).reshape(-1)]
    a = attrs.get("axes")
    return None if a is None else [int(x) for x in a]


def _slice(x, attrs, inputs):
    if len(inputs) > 1:
        starts, ends = inputs[1].reshape(-1), inputs[2].reshape(-1)
        axes = inputs[3].reshape(-1) if len(inputs) > 3 and inputs[3] is not None else range(len(starts))
        steps = inputs[4].reshape(-1) if len(inputs) > 4 and inputs[4] is not None else [1] * len(starts)
    else:
        starts, ends = attrs["starts"], attrs["ends"]
        axes = attrs.get("axes", list(range(len(starts))))
        steps = [1] * len(starts)
    sl = [slice(None)] * x.ndim
    for s, e, a, st in zip(starts, ends, axes, steps):
        sl[int(a)] = slice(int(s), int(e), int(st))
    return x[tuple(sl)]


def _reshape(x, shape, allowzero=0):
    shape = [int(s) for s in np.asarray(shape).reshape(-1)]
    if not allowzero:
        shape = [x.shape[i] if s == 0 else s for i, s in enumerate(shape)]
    return x.reshape(shape)


def _cast(x, attrs):
    return x.astype(ONNX_TO_NUMPY[attrs["to"]])


def _constant(attrs):
    for k in ("value", "value_float", "value_floats", "value_int", "value_ints"):
        if k in attrs:
            v = attrs[k]
            if k == "value":
                return numpy_helper.to_array(v) if not isinstance(v, np.ndarray) else v
            return np.array(v, np.float32 if "float" in k else np.int64)
    raise ValueError("Constant node without a supported value attribute")


def _constant_of_shape(inputs, attrs):
    shape = [int(s) for s in inputs[0].reshape(-1)]
    v = attrs.get("value")
    if v is None:
        return np.zeros(shape, np.float32)
    arr = numpy_helper.to_array(v) if not isinstance(v, np.ndarray) else v
    return np.full(shape, arr.reshape(-1)[0], arr.dtype)


def _div(x, y):
    """ONNX Div: integers round toward zero (C), not down (numpy)."""
    if not np.issubdtype(x.dtype, np.integer):
        return x / y
    q = x // y
    return q + ((x % y != 0) & ((x < 0) != (y < 0))).astype(q.dtype)


def _gather(x, idx, axis):
    return np.take(x, idx.astype(np.int64), axis=axis)


FOLD = {
    "Identity": lambda i, a: [i[0]],
    "Constant": lambda i, a: [_constant(a)],
    "ConstantOfShape": lambda i, a: [_constant_of_shape(i, a)],
    "Shape": lambda i, a: [np.array(i[0].shape, np.int64)[a.get("start", 0):a.get("end", None)]],
    "Size": lambda i, a: [np.array(i[0].size, np.int64)],
    "EyeLike": lambda i, a: [np.eye(*i[0].shape, k=a.get("k", 0),
                                    dtype=ONNX_TO_NUMPY[a["dtype"]] if "dtype" in a else i[0].dtype)],
    "Gather": lambda i, a: [_gather(i[0], i[1], a.get("axis", 0))],
    "Unsqueeze": lambda i, a: [np.expand_dims(i[0], tuple(sorted(
        ax % (i[0].ndim + len(_axes(a, i, 1))) for ax in _axes(a, i, 1))))],
    "Squeeze": lambda i, a: [np.squeeze(i[0], axis=tuple(_axes(a, i, 1)) if _axes(a, i, 1) else None)],
    "Concat": lambda i, a: [np.concatenate(i, axis=a["axis"])],
    "Reshape": lambda i, a: [_reshape(i[0], i[1] if len(i) > 1 else a["shape"], a.get("allowzero", 0))],
    "Flatten": lambda i, a: [i[0].reshape(int(np.prod(i[0].shape[:a.get("axis", 1)])),
                                          int(np.prod(i[0].shape[a.get("axis", 1):])))],   # no -1: a 0-size input
    "Cast": lambda i, a: [_cast(i[0], a)],
    "Slice": lambda i, a: [_slice(i[0], a, i)],
    "Range": lambda i, a: [np.arange(i[0], i[1], i[2]).astype(np.asarray(i[0]).dtype)],
    "Transpose": lambda i, a: [np.transpose(i[0], a.get("perm"))],
    "Expand": lambda i, a: [i[0] * np.ones([int(s) for s in i[1]], i[0].dtype)],
    "Tile": lambda i, a: [np.tile(i[0], [int(r) for r in i[1]])],
    "Add": lambda i, a: [i[0] + i[1]],
    "Sub": lambda i, a: [i[0] - i[1]],
    "Mul": lambda i, a: [i[0] * i[1]],
    "Div": lambda i, a: [_div(i[0], i[1])],
    "Neg": lambda i, a: [-i[0]],
    "Sqrt": lambda i, a: [np.sqrt(i[0])],
    "Reciprocal": lambda i, a: [1 / i[0]],
    "Equal": lambda i, a: [i[0] == i[1]],
    "Less": lambda i, a: [i[0] < i[1]],
    "Greater": lambda i, a: [i[0] > i[1]],
    "Not": lambda i, a: [np.logical_not(i[0])],
    "Where": lambda i, a: [np.where(i[0], i[1], i[2])],
    "Min": lambda i, a: [np.minimum.reduce(i)],
    "Max": lambda i, a: [np.maximum.reduce(i)],
    "Sum": lambda i, a: [sum(i[1:], i[0])],
}


# Never folded: their outputs are random (or, for Dropout, may be).
NONDETERMINISTIC = frozenset({"RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike",
                              "Multinomial", "Bernoulli", "Dropout"})


def fold(op: str, inputs: list, attrs: dict, opset: int | None = None, n_outputs: int = 1) -> list | None:
    """Outputs of the node evaluated with numpy, or None when the op cannot be folded.

    Ops outside FOLD are evaluated by ONNX's reference implementation when the opset is given
    (a constant subgraph must never reach the kernels: they take scalars as numbers).
    """
    fn = FOLD.get(op)
    if fn is not None:
        return [np.asarray(o) for o in fn(inputs, attrs)]
    if opset is None or op in NONDETERMINISTIC:
        return None
    return _reference(op, inputs, attrs, opset, n_outputs)


def _reference(op: str, inputs: list, attrs: dict, opset: int, n_outputs: int) -> list | None:
    """The node run by onnx.reference on its constant inputs; None if it cannot run."""
    import warnings

    from onnx.reference import ReferenceEvaluator
    names = [f"i{k}" if v is not None else "" for k, v in enumerate(inputs)]
    outs = [f"o{k}" for k in range(n_outputs)]
    node = helper.make_node(op, names, outs, **attrs)
    graph = helper.make_graph([node], "fold", [helper.make_tensor_value_info(
        n, helper.np_dtype_to_tensor_dtype(np.asarray(v).dtype), np.asarray(v).shape)
        for n, v in zip(names, inputs) if n], [helper.make_empty_tensor_value_info(o) for o in outs])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            res = ReferenceEvaluator(model).run(None, {n: np.asarray(v) for n, v in zip(names, inputs) if n})
    except Exception:
        return None
    return [np.asarray(r) for r in res]


def attrs_of(node) -> dict:
    """An ONNX node's attributes as Python values."""
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}
