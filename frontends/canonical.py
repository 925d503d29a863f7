"""Import-time rewrites into the forms the lowerings take, once every shape and type is known.

A kernel computes one tensor, so nodes with several used outputs become single-output nodes:
Split becomes one Slice per part, TopK a node per used output, Dropout's mask a constant, LayerNormalization's Mean and
InvStdDev reductions, SoftmaxCrossEntropyLoss's log-probabilities a LogSoftmax.  CastLike
becomes a Cast; QuantizeLinear states its output type (`output_dtype`); Shape, Size and EyeLike, which read only their input's shape, become
constants.  1-D convolution and pooling become their 2-D forms on data of height 1, and 3-D
pooling two 2-D poolings (over H and W, then over D: a window's max, sum and count all factor
by axis).  LSTM, GRU and RNN become Gemms and elementwise ops unrolled over the sequence
(lower_rnn.py).  A value with no elements is a constant, and a Concat drops such parts.
"""
from __future__ import annotations

import numpy as np

from .dtypes import onnx_elem_type
from .fold import fold
from .graph import Node, TensorInfo

# Ops whose output depends on the shape of their input, never on its values.
SHAPE_ONLY = frozenset({"Shape", "Size", "EyeLike"})
# Ops rewritten into others here (lower_rnn.py unrolls the recurrences into Gemms and elementwise ops).
EXPANDED = frozenset({"LSTM", "GRU", "RNN"})


def truthy(v) -> bool:
    """An ONNX flag's value, given as an attribute or a constant input (a number or an array)."""
    a = np.asarray(v).reshape(-1)
    return bool(a[0]) if a.size else False


class _Emit:
    """Builds the replacement nodes of one node, recording the info of every value it makes."""

    def __init__(self, n: Node, infos: dict, consts: dict):
        self.n, self.infos, self.consts, self.nodes = n, infos, consts, []

    def node(self, op: str, inputs: list[str], shape: tuple, dtype: str, attrs: dict | None = None,
             out: str | None = None) -> str:
        name = out or f"{self.n.name}.{op.lower()}{len(self.nodes)}"
        self.infos[name] = TensorInfo(name, tuple(int(s) for s in shape), dtype)
        self.nodes.append(Node(op, f"{self.n.name}.{len(self.nodes)}", inputs, [name], attrs or {}))
        return name

    def reshape(self, x: str, shape: tuple, out: str | None = None) -> str:
        """x reshaped (a constant x is reshaped now)."""
        if x in self.consts and out is None:
            name = f"{self.n.name}.{len(self.nodes)}.r"
            self.consts[name] = self.consts[x].reshape(shape)
            return name
        return self.node("Reshape", [x], shape, self.infos[x].dtype if x in self.infos
                         else str(self.consts[x].dtype), {"shape": np.array(shape, np.int64)}, out)


def canonicalize(nodes: list[Node], infos: dict, consts: dict, opset: int,
                 dropped: list[Node] | None = None) -> list[Node]:
    """The nodes rewritten as the module docstring says (infos and consts gain the new values);
    the nodes whose outputs have no elements, now constants, are appended to `dropped`."""
    out: list[Node] = []
    for n in nodes:
        for m in _rewrite(n, infos, consts, opset):
            outs = [o for o in m.outputs if o]
            if outs and all(o in infos and 0 in infos[o].shape for o in outs):
                for o in outs:          # nothing to compute
                    consts[o] = np.zeros(infos[o].shape, np.dtype(infos[o].dtype))
                if dropped is not None:
                    dropped.append(m)
                continue
            if m.op == "Concat":        # parts with no elements add nothing
                full = [i for i in m.inputs if 0 not in _shape(i, infos, consts)]
                m.inputs = full or m.inputs[:1]
            out.append(m)
    return out


def _shape(name: str, infos: dict, consts: dict) -> tuple:
    if name in consts:
        return consts[name].shape
    return infos[name].shape if name in infos else ()


def _rewrite(n: Node, infos: dict, consts: dict, opset: int) -> list[Node]:
    """The nodes that replace n (n itself when it needs no rewrite)."""
    if n.op == "CastLike" and n.outputs[0] in infos:
        # the target type is the second input's: known now, so it is a Cast (or a constant)
        dtype = infos[n.outputs[0]].dtype
        if n.inputs[0] in consts:
            consts[n.outputs[0]] = consts[n.inputs[0]].astype(dtype)
            return []
        keep = {k: v for k, v in n.attrs.items() if k in ("saturate", "round_mode")}   # float8's rules
        return [Node("Cast", n.name, n.inputs[:1], n.outputs[:1], {"to": onnx_elem_type(dtype), **keep})]
    if n.op == "QuantizeLinear" and n.outputs[0] in infos:
        # the output type, which a folded scalar zero point no longer carries into the lowering
        n.attrs["output_dtype"] = onnx_elem_type(infos[n.outputs[0]].dtype)
    used = [o for o in n.outputs[1:] if o]
    x = infos.get(n.inputs[0]) if n.inputs and n.inputs[0] else None
    if x is None:
        return [n]
    if n.op in SHAPE_ONLY and n.outputs[0]:
        # the output depends on the input's shape only: a constant
        consts[n.outputs[0]] = fold(n.op, [np.zeros(x.shape, np.dtype(x.dtype))], n.attrs)[0]
        return []
    if n.op == "SoftmaxCrossEntropyLoss" and used and (opset >= 13 or len(x.shape) == 2):
        # the log-probabilities output is a LogSoftmax over the classes
        e = _Emit(n, infos, consts)
        e.nodes.append(Node(n.op, n.name, list(n.inputs), [n.outputs[0]], dict(n.attrs)))
        e.node("LogSoftmax", [x.name], x.shape, x.dtype, {"axis": 1}, out=n.outputs[1])
        return e.nodes
    if n.op == "Split":
        return _split_to_slices(n, x.shape)
    if n.op in EXPANDED:
        from .lower_rnn import expand
        return expand(n, infos, consts)
    if n.op == "Dropout" and used and n.outputs[1] in infos and (
            not truthy(n.attrs.get("training_mode", False))
            or float(np.asarray(n.attrs.get("ratio", 0.5)).reshape(-1)[0]) == 0):
        # nothing is dropped: the mask is all true
        consts[n.outputs[1]] = np.ones(infos[n.outputs[1]].shape, np.bool_)
        n.outputs = [n.outputs[0]] + [""] * (len(n.outputs) - 1)
        return [n]
    if n.op == "TopK" and used:
        # values and indices: a node each
        return [Node("TopK", f"{n.name}.{k}", list(n.inputs), [o], {**n.attrs, "output": part})
                for k, (o, part) in enumerate(zip(n.outputs, ("values", "indices"))) if o]
    if n.op == "LayerNormalization" and used:
        return _layer_norm_stats(n, x, infos, consts)
    if n.op in ("Conv", "MaxPool", "AveragePool") and len(x.shape) == 3 and not used \
            and n.outputs[0] in infos:
        return _as_2d(n, x, infos, consts)
    if n.op in ("MaxPool", "AveragePool") and len(x.shape) == 5 and not used and n.outputs[0] in infos:
        return _pool3d(n, x, infos, consts)
    return [n]


def _split_to_slices(n: Node, shape: tuple) -> list[Node]:
    rank = len(shape)
    axis = int(n.attrs.get("axis", 0)) % rank
    extent = shape[axis]
    if "split" in n.attrs and np.asarray(n.attrs["split"]).size:
        sizes = [int(v) for v in np.asarray(n.attrs["split"]).reshape(-1)]
    else:
        parts = int(n.attrs.get("num_outputs", len(n.outputs)))
        chunk = -(-extent // parts)           # opset 18: the last part may be smaller
        sizes = [min(chunk, max(extent - chunk * k, 0)) for k in range(parts)]
    nodes, start = [], 0
    for k, (o, size) in enumerate(zip(n.outputs, sizes)):
        if o:
            nodes.append(Node("Slice", f"{n.name}.{k}", [n.inputs[0]], [o],
                              {"starts": np.array([start]), "ends": np.array([start + size]),
                               "axes": np.array([axis])}))
        start += size
    return nodes


def _layer_norm_stats(n: Node, x: TensorInfo, infos: dict, consts: dict) -> list[Node]:
    """LayerNormalization whose Mean / InvStdDev outputs are used: Y from the node itself, the
    statistics (over axes axis..rank-1, kept as 1) from ReduceMean/Sub/Mul/Add/Sqrt/Reciprocal."""
    rank = len(x.shape)
    axis = int(n.attrs.get("axis", -1)) % rank
    stat = tuple(1 if d >= axis else s for d, s in enumerate(x.shape))
    outs = list(n.outputs) + [""] * (3 - len(n.outputs))
    e = _Emit(n, infos, consts)
    e.nodes.append(Node(n.op, n.name, list(n.inputs), [outs[0]], dict(n.attrs)))
    reduce = {"axes": np.arange(axis, rank), "keepdims": 1}
    mean = e.node("ReduceMean", [x.name], stat, x.dtype, dict(reduce), outs[1] or None)
    if outs[2]:
        eps = f"{n.name}.eps"
        consts[eps] = np.array(n.attrs.get("epsilon", 1e-5), np.dtype(x.dtype))
        d = e.node("Sub", [x.name, mean], x.shape, x.dtype)
        var = e.node("ReduceMean", [e.node("Mul", [d, d], x.shape, x.dtype)], stat, x.dtype, dict(reduce))
        sd = e.node("Sqrt", [e.node("Add", [var, eps], stat, x.dtype)], stat, x.dtype)
        e.node("Reciprocal", [sd], stat, x.dtype, out=outs[2])
    return e.nodes


def _as_2d(n: Node, x: TensorInfo, infos: dict, consts: dict) -> list[Node]:
    """Conv/MaxPool/AveragePool on (N, C, W) data as the 2-D op on (N, C, 1, W)."""
    e = _Emit(n, infos, consts)
    attrs = dict(n.attrs)
    for key in ("kernel_shape", "strides", "dilations"):
        if key in attrs:
            attrs[key] = [1] + [int(v) for v in attrs[key]]
    if "pads" in attrs:
        p = [int(v) for v in attrs["pads"]]
        attrs["pads"] = [0, p[0], 0, p[1]]
    inputs = [e.reshape(x.name, (x.shape[0], x.shape[1], 1, x.shape[2]))]
    if n.op == "Conv":
        w = n.inputs[1]
        wshape = consts[w].shape if w in consts else infos[w].shape
        inputs.append(e.reshape(w, (wshape[0], wshape[1], 1, wshape[2])))
        inputs += n.inputs[2:]
    y = infos[n.outputs[0]]
    y4 = e.node(n.op, inputs, (y.shape[0], y.shape[1], 1, y.shape[2]), y.dtype, attrs)
    e.reshape(y4, y.shape, out=y.name)
    return e.nodes


def _pool3d(n: Node, x: TensorInfo, infos: dict, consts: dict) -> list[Node]:
    """3-D pooling as a 2-D pooling over (H, W) of (N, C*D, H, W), then one over (D, 1) of
    (N, C, D, OH*OW)."""
    e = _Emit(n, infos, consts)
    N, C, D, H, W = x.shape
    y = infos[n.outputs[0]]
    OD, OH, OW = y.shape[2:]
    a = n.attrs
    k = [int(v) for v in a["kernel_shape"]]
    s = [int(v) for v in a.get("strides", [1, 1, 1])]
    d = [int(v) for v in a.get("dilations", [1, 1, 1])]
    p = [int(v) for v in a.get("pads", [0] * 6)]
    common = {key: a[key] for key in ("auto_pad", "ceil_mode", "count_include_pad") if key in a}
    hw = e.node(n.op, [e.reshape(x.name, (N, C * D, H, W))], (N, C * D, OH, OW), x.dtype,
                {**common, "kernel_shape": k[1:], "strides": s[1:], "dilations": d[1:],
                 "pads": [p[1], p[2], p[4], p[5]]})
    dd = e.node(n.op, [e.reshape(hw, (N, C, D, OH * OW))], (N, C, OD, OH * OW), x.dtype,
                {**common, "kernel_shape": [k[0], 1], "strides": [s[0], 1], "dilations": [d[0], 1],
                 "pads": [p[0], 0, p[3], 0]})
    e.reshape(dd, y.shape, out=y.name)
    return e.nodes
