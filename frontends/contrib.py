"""ONNX Runtime's com.microsoft fused operators, rewritten into standard ONNX at import.

ONNX Runtime's transformer optimiser (onnxruntime.transformers.optimizer) fuses BERT/GPT
subgraphs into contrib operators.  The importer spells them out again in default-domain ops at
the model's opset, before folding and shape inference (as qoperators.py does for the quantised
ones); the elementwise chains fuse back into one kernel, and SkipLayerNormalization becomes the
Add and the LayerNormalization lowering (before opset 17, which has no LayerNormalization, its
reductions):

    Gelu(x)                         ->  0.5 * x * (1 + Erf(x / sqrt(2)))
    BiasGelu(x, b)                  ->  Gelu(x + b)
    FastGelu(x, b?)                 ->  y = x + b;  0.5 * y * (1 + Tanh(sqrt(2/pi) * (y + 0.044715 y^3)))
    SkipLayerNormalization(x, skip, gamma, beta?, bias?)
                                    ->  s = x + skip (+ bias);  LayerNormalization(s, gamma, beta, axis=-1)
"""
from __future__ import annotations

import math

import numpy as np

from .fold import attrs_of
from .qoperators import CONTRIB
from .qoperators import _Expansion as Expansion

# ORT's default epsilon of SkipLayerNormalization
SKIP_LN_EPSILON = 1e-12


def _c(e: Expansion, value: float, tag: str) -> str:
    return e.const(np.float32(value), tag)


def _gelu(e: Expansion, x: str, out: str) -> str:
    t = e.emit("Div", [x, _c(e, math.sqrt(2.0), "sqrt2")], "scaled")
    t = e.emit("Erf", [t], "erf")
    t = e.emit("Add", [t, _c(e, 1.0, "one")], "onep")
    t = e.emit("Mul", [x, t], "xp")
    return e.emit("Mul", [t, _c(e, 0.5, "half")], "gelu", out=out)


def _fast_gelu(e: Expansion, x: str, out: str) -> str:
    cube = e.emit("Mul", [e.emit("Mul", [x, x], "sq"), x], "cube")
    inner = e.emit("Add", [x, e.emit("Mul", [cube, _c(e, 0.044715, "k")], "kcube")], "inner")
    t = e.emit("Tanh", [e.emit("Mul", [inner, _c(e, math.sqrt(2.0 / math.pi), "c")], "arg")], "tanh")
    t = e.emit("Mul", [x, e.emit("Add", [t, _c(e, 1.0, "one")], "onep")], "xp")
    return e.emit("Mul", [t, _c(e, 0.5, "half")], "gelu", out=out)


def _plus_bias(e: Expansion, x: str, bias: str) -> str:
    return e.emit("Add", [x, bias], "biased") if bias else x


def _skip_layer_norm(e: Expansion, attrs: dict, used: set) -> None:
    node = e.node
    outs = list(node.output) + [""] * (4 - len(node.output))
    stats = [o for o in outs[1:3] if o and o in used]
    if stats:
        e.problems.append(f"node {e.base} (com.microsoft.SkipLayerNormalization): its mean and inverse "
                          f"standard deviation outputs ({', '.join(stats)}) are not supported (inference only)")
        return
    eps = float(attrs.get("epsilon", SKIP_LN_EPSILON))
    s = e.emit("Add", [e.arg(0), e.arg(1)], "skip", out=None if e.arg(4) else (outs[3] or None))
    if e.arg(4):
        s = e.emit("Add", [s, e.arg(4)], "bias", out=outs[3] or None)
    gamma, beta = e.arg(2), e.arg(3)
    if e.opset >= 17:
        e.emit("LayerNormalization", [s, gamma, beta], "ln", out=outs[0], axis=-1, epsilon=eps)
        return
    mean = e.emit("ReduceMean", [s], "mean", axes=[-1], keepdims=1)
    d = e.emit("Sub", [s, mean], "centred")
    var = e.emit("ReduceMean", [e.emit("Mul", [d, d], "sq")], "var", axes=[-1], keepdims=1)
    std = e.emit("Sqrt", [e.emit("Add", [var, _c(e, eps, "eps")], "vareps")], "std")
    y = e.emit("Mul", [e.emit("Div", [d, std], "normed"), gamma], "scaled", out=None if beta else outs[0])
    if beta:
        e.emit("Add", [y, beta], "shifted", out=outs[0])


NAMES = frozenset({"Gelu", "BiasGelu", "FastGelu", "SkipLayerNormalization"})


def is_contrib(node) -> bool:
    """Is node a com.microsoft operator that `expand` rewrites?"""
    return node.domain == CONTRIB and node.op_type in NAMES


def expand(raw: list, consts: dict, opset: int, problems: list, used: set) -> list:
    """The (index, NodeProto) list with every contrib operator of NAMES in standard ONNX
    (`used`: the value names something reads, to tell which optional outputs matter)."""
    out = []
    for k, node in raw:
        if not is_contrib(node):
            out.append((k, node))
            continue
        e = Expansion(node, k, consts, opset, problems)
        op, y = node.op_type, node.output[0]
        if op == "Gelu":
            _gelu(e, e.arg(0), y)
        elif op == "BiasGelu":
            _gelu(e, _plus_bias(e, e.arg(0), e.arg(1)), y)
        elif op == "FastGelu":
            _fast_gelu(e, _plus_bias(e, e.arg(0), e.arg(1)), y)
        else:
            _skip_layer_norm(e, attrs_of(node), used)
        out.extend((k, m) for m in e.nodes)
    return out
