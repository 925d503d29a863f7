"""QOperator models as QDQ: each quantised operator becomes DequantizeLinear -> the float op -> QuantizeLinear.

ONNX has two ways to write a quantised model.  QDQ puts QuantizeLinear/DequantizeLinear pairs
around ordinary float operators; QOperator uses operators that take quantised tensors with their
scales and zero points (QLinearConv, QLinearMatMul, MatMulInteger, ConvInteger, and ONNX
Runtime's com.microsoft QLinearAdd, QGemm, QLinearGlobalAveragePool...).  The importer rewrites
the second form into the first before anything else, so one graph pass (qdq.py) turns both
into int8 anchors with fused epilogues:

    QLinearConv(x, sx, zx, w, sw, zw, sy, zy, B)  ->  Q(Conv(DQ(x), DQ(w), DQ(B, sx*sw)), sy, zy)
    MatMulInteger(A, B, za, zb)                    ->  Cast(MatMul(DQ(A, 1, za), DQ(B, 1, zb)), int32)
    DynamicQuantizeLinear(x)                       ->  min/max reductions, scale, zero point, Q(x)

The rewritten nodes are standard ONNX at the model's opset, so folding and shape inference
treat them as any other node.  Before opset 13 DequantizeLinear has no `axis`: a per-channel
weight scale is then applied with float ops, and such a layer runs in float.
"""
from __future__ import annotations

import numpy as np
from onnx import helper

from .fold import attrs_of

CONTRIB = "com.microsoft"
# Operators of ONNX Runtime's com.microsoft domain that the importer rewrites:
# name -> (float op, [(input, scale, zero point) of each quantised input], (y scale, y zero point) or None)
CONTRIB_OPS = {
    "QLinearAdd": ("Add", [(0, 1, 2), (3, 4, 5)], (6, 7)),
    "QLinearMul": ("Mul", [(0, 1, 2), (3, 4, 5)], (6, 7)),
    "QLinearGlobalAveragePool": ("GlobalAveragePool", [(0, 1, 2)], (3, 4)),
    "QLinearAveragePool": ("AveragePool", [(0, 1, 2)], (3, 4)),
    "QLinearLeakyRelu": ("LeakyRelu", [(0, 1, 2)], (3, 4)),
    "QLinearSigmoid": ("Sigmoid", [(0, 1, 2)], (3, 4)),
}
CONTRIB_NAMES = frozenset(CONTRIB_OPS) | {"QGemm", "QLinearConcat"}
DEFAULT_OPS = frozenset({"QLinearConv", "QLinearMatMul", "MatMulInteger", "ConvInteger", "DynamicQuantizeLinear"})


def is_qoperator(node) -> bool:
    """Is node a quantised operator that `expand` rewrites?"""
    if node.domain == CONTRIB:
        return node.op_type in CONTRIB_NAMES
    return node.domain in ("", "ai.onnx") and node.op_type in DEFAULT_OPS


class _Expansion:
    """The replacement nodes of one quantised node, with the constants they add."""

    def __init__(self, node, k: int, consts: dict, opset: int, problems: list):
        self.node, self.consts, self.opset, self.problems = node, consts, opset, problems
        self.base = node.name or f"{node.op_type}_{k}"
        self.nodes: list = []

    def arg(self, i: int) -> str:
        """The node's i-th input name ('' when absent)."""
        return self.node.input[i] if i < len(self.node.input) else ""

    def const(self, value, tag: str) -> str:
        name = f"{self.base}/{tag}"
        self.consts[name] = np.asarray(value)
        return name

    def emit(self, op: str, inputs: list[str], tag: str, out: str | None = None, **attrs) -> str:
        out = out or f"{self.base}/{tag}"
        while inputs and not inputs[-1]:
            inputs = inputs[:-1]
        self.nodes.append(helper.make_node(op, inputs, [out], name=f"{self.base}.{tag}", **attrs))
        return out

    def dq(self, x: str, scale: str, zp: str, tag: str, axis: int | None = None, rank: int = 4) -> str:
        """DequantizeLinear of x; `axis`: the axis of a weight's per-channel scale (None: an
        activation, per tensor).  Before opset 13 DequantizeLinear has no axis: a per-channel (or
        computed) weight scale is then applied by float ops, which the int8 pass leaves in float."""
        c = self.consts.get(scale)
        if axis is None or c is not None and c.size == 1:
            return self.emit("DequantizeLinear", [x, scale, zp], tag)
        if self.opset >= 13:
            return self.emit("DequantizeLinear", [x, scale, zp], tag, axis=axis)
        return self.float_dq(x, scale, zp, tag, axis, rank)

    def float_dq(self, x: str, scale: str | None, zp: str, tag: str, axis: int, rank: int) -> str:
        """(float(x) - float(zp)) * scale with float ops, zp and scale along `axis` of a rank-D x."""
        rank = self.consts[x].ndim if x in self.consts else rank
        axis %= rank

        def along(v: str, what: str) -> str:
            if axis == rank - 1:
                return v
            shape = self.const(np.array([-1] + [1] * (rank - 1 - axis), np.int64), f"{tag}.{what}.shape")
            return self.emit("Reshape", [v, shape], f"{tag}.{what}.r")
        y = self.emit("Cast", [x], f"{tag}.f", to=1)
        if zp:
            y = self.emit("Sub", [y, along(self.emit("Cast", [zp], f"{tag}.zf", to=1), "z")], f"{tag}.sub")
        return y if scale is None else self.emit("Mul", [y, along(scale, "s")], f"{tag}.mul")

    def unit_dq(self, x: str, zp: str, tag: str, axis: int, rank: int) -> str:
        """x - zp in float (scale 1): what MatMulInteger/ConvInteger multiply; rank 1 for an
        activation, whose zero point is one value (DynamicQuantizeLinear's)."""
        c = self.consts.get(zp) if zp else None
        if zp and c is None and rank > 1:    # a weight's computed zero point: its shape is not known yet
            return self.float_dq(x, None, zp, tag, axis, rank)
        one = np.ones(c.shape, np.float32) if c is not None and c.size > 1 else np.float32(1.0)
        return self.dq(x, self.const(one, f"{tag}.scale"), zp, tag, axis, rank)

    def q(self, x: str, scale: str, zp: str, out: str) -> str:
        return self.emit("QuantizeLinear", [x, scale, zp], "q", out=out)


def _conv_like(e: _Expansion, a: dict) -> None:
    """QLinearConv and ConvInteger."""
    n = e.node
    if n.op_type == "QLinearConv":
        x = e.dq(e.arg(0), e.arg(1), e.arg(2), "dq_x")
        w = e.dq(e.arg(3), e.arg(4), e.arg(5), "dq_w", axis=0)
        bias = []
        if e.arg(8):
            sb = e.emit("Mul", [e.arg(1), e.arg(4)], "bias_scale")
            bias = [e.dq(e.arg(8), sb, "", "dq_b", axis=0, rank=1)]
        y = e.emit("Conv", [x, w, *bias], "conv", **a)
        e.q(y, e.arg(6), e.arg(7), n.output[0])
    else:                                                    # ConvInteger: int32 sums of products
        x = e.unit_dq(e.arg(0), e.arg(2), "dq_x", 0, 1)
        w = e.unit_dq(e.arg(1), e.arg(3), "dq_w", 0, 4)
        y = e.emit("Conv", [x, w], "conv", **a)
        e.emit("Cast", [y], "cast", out=n.output[0], to=6)


def _matmul_like(e: _Expansion, a: dict) -> None:
    """QLinearMatMul, MatMulInteger and QGemm."""
    n = e.node
    if n.op_type == "QLinearMatMul":
        x = e.dq(e.arg(0), e.arg(1), e.arg(2), "dq_a")
        w = e.dq(e.arg(3), e.arg(4), e.arg(5), "dq_b", axis=-1, rank=2)
        e.q(e.emit("MatMul", [x, w], "matmul"), e.arg(6), e.arg(7), n.output[0])
    elif n.op_type == "MatMulInteger":
        x = e.unit_dq(e.arg(0), e.arg(2), "dq_a", 0, 1)
        w = e.unit_dq(e.arg(1), e.arg(3), "dq_b", -1, 2)
        e.emit("Cast", [e.emit("MatMul", [x, w], "matmul")], "cast", out=n.output[0], to=6)
    else:                                                    # QGemm
        tb = int(a.get("transB", 0))
        x = e.dq(e.arg(0), e.arg(1), e.arg(2), "dq_a")
        w = e.dq(e.arg(3), e.arg(4), e.arg(5), "dq_b", axis=0 if tb else 1, rank=2)
        ins = [x, w]
        if e.arg(6):
            sb = e.emit("Mul", [e.arg(1), e.arg(4)], "bias_scale")
            ins.append(e.dq(e.arg(6), sb, "", "dq_c", axis=0, rank=1))
        attrs = {k: a[k] for k in ("alpha", "transA", "transB") if k in a}
        if e.arg(7):
            e.q(e.emit("Gemm", ins, "gemm", **attrs), e.arg(7), e.arg(8), n.output[0])
        else:
            e.emit("Gemm", ins, "gemm", out=n.output[0], **attrs)


def _dynamic_quantize(e: _Expansion, a: dict) -> None:
    """DynamicQuantizeLinear: uint8 over [min(x, 0), max(x, 0)] as ONNX defines it."""
    x = e.arg(0)
    outs = list(e.node.output) + ["", "", ""]
    zero, top = e.const(np.float32(0), "zero"), e.const(np.float32(255), "qmax")
    lo = e.emit("Min", [e.emit("ReduceMin", [x], "min", keepdims=0), zero], "lo")
    hi = e.emit("Max", [e.emit("ReduceMax", [x], "max", keepdims=0), zero], "hi")
    scale = e.emit("Div", [e.emit("Sub", [hi, lo], "range"), top], "scale", out=outs[1] or None)
    izp = e.emit("Neg", [e.emit("Div", [lo, scale], "lo_steps")], "izp")
    zp = e.emit("Round", [e.emit("Min", [e.emit("Max", [izp, zero], "izp_lo"), top], "izp_hi")], "zp_f")
    zp = e.emit("Cast", [zp], "zp", out=outs[2] or None, to=2)
    e.q(x, scale, zp, outs[0])


def _contrib(e: _Expansion, a: dict) -> None:
    """The com.microsoft QLinear* ops: dequantize the inputs, the float op, quantize the output."""
    n = e.node
    if int(a.pop("channels_last", 0)):
        e.problems.append(f"node {e.base} ({n.op_type}): channels_last=1 is not supported; export it in NCHW")
        return
    if n.op_type == "QLinearConcat":
        parts = [e.dq(e.arg(i), e.arg(i + 1), e.arg(i + 2), f"dq{i}") for i in range(2, len(n.input), 3)]
        e.q(e.emit("Concat", parts, "concat", axis=int(a.get("axis", 1))), e.arg(0), e.arg(1), n.output[0])
        return
    op, inputs, (sy, zy) = CONTRIB_OPS[n.op_type]
    ins = [e.dq(e.arg(x), e.arg(s), e.arg(z), f"dq{x}") for x, s, z in inputs]
    y = e.emit(op, ins, op.lower(), **a)
    e.q(y, e.arg(sy), e.arg(zy), n.output[0])


_EXPAND = {"QLinearConv": _conv_like, "ConvInteger": _conv_like, "QLinearMatMul": _matmul_like,
           "MatMulInteger": _matmul_like, "QGemm": _matmul_like, "DynamicQuantizeLinear": _dynamic_quantize}


def expand(raw: list, consts: dict, opset: int, problems: list) -> list:
    """The (index, NodeProto) list with every quantised operator rewritten into QDQ form."""
    out = []
    for k, node in raw:
        if not is_qoperator(node):
            out.append((k, node))
            continue
        e = _Expansion(node, k, consts, opset, problems)
        _EXPAND.get(node.op_type, _contrib)(e, attrs_of(node))
        out.extend((k, m) for m in e.nodes)
    return out
