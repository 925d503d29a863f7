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
    Attention(x, w, b?, mask?)      ->  q, k, v = Slice(x @ w + b) as (batch, heads, seq, head size);
                                        Softmax(q @ k^T * scale + (mask ? 0 : mask_filter_value)) @ v

Attention takes no past state, relative position bias, causal mask or unequal q/k/v widths (refused
by name), and a mask only as ONNX Runtime's 2-D (batch, sequence) 1/0 form.
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
    if not e.arg(2):
        e.problems.append(f"node {e.base} (com.microsoft.SkipLayerNormalization): gamma (input 2) is missing")
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


def _attention_problem(e: Expansion, attrs: dict, ranks: dict) -> str | None:
    """Why this Attention node is not rewritten (None: it is)."""
    if int(attrs.get("num_heads", 0)) < 1:
        return "the num_heads attribute is missing; give the number of attention heads"
    extra = [name for i, name in ((4, "past"), (5, "relative_position_bias"), (6, "past_sequence_length"))
             if e.arg(i)]
    if extra or any(o for o in list(e.node.output)[1:]):
        return f"past state ({', '.join(extra) or 'present'}) is not supported"
    if int(attrs.get("unidirectional", 0)):
        return "unidirectional (causal) attention is not supported"
    sizes = [int(v) for v in attrs.get("qkv_hidden_sizes", [])]
    if sizes and len(set(sizes)) != 1:
        return f"qkv_hidden_sizes {sizes}: unequal query, key and value widths are not supported"
    w = e.consts.get(e.arg(1))
    if w is None or w.ndim != 2 or w.shape[1] % 3 or (w.shape[1] // 3) % int(attrs["num_heads"]):
        return "the weights must be a constant (input hidden, 3 x hidden) with hidden divisible by num_heads"
    if ranks.get(e.arg(0)) not in (None, 3):
        return f"the input has rank {ranks[e.arg(0)]}; Attention needs (batch, sequence, hidden)"
    if e.arg(3) and ranks.get(e.arg(3)) != 2:
        return "only a 2-D (batch, sequence) mask_index of 1s and 0s is supported"
    return None


def _heads(e: Expansion, t: str, heads: int, size: int, perm: list[int], tag: str) -> str:
    """t (batch, seq, heads * size) as (batch, heads, seq, size), or transposed by perm."""
    t = e.emit("Reshape", [t, e.const(np.array([0, 0, heads, size], np.int64), f"{tag}shape")], f"{tag}4d")
    return e.emit("Transpose", [t], f"{tag}heads", perm=perm)


def _slice(e: Expansion, t: str, start: int, end: int, tag: str) -> str:
    consts = [e.const(np.array([v], np.int64), f"{tag}{k}") for k, v in (("s", start), ("e", end), ("a", 2))]
    return e.emit("Slice", [t, *consts], tag)


def _attention(e: Expansion, attrs: dict, ranks: dict) -> None:
    why = _attention_problem(e, attrs, ranks)
    if why:
        e.problems.append(f"node {e.base} (com.microsoft.Attention): {why}")
        return
    heads = int(attrs["num_heads"])
    hidden = e.consts[e.arg(1)].shape[1] // 3
    size = hidden // heads
    qkv = _plus_bias(e, e.emit("MatMul", [e.arg(0), e.arg(1)], "qkv"), e.arg(2))
    q = _heads(e, _slice(e, qkv, 0, hidden, "q"), heads, size, [0, 2, 1, 3], "q")
    k = _heads(e, _slice(e, qkv, hidden, 2 * hidden, "k"), heads, size, [0, 2, 3, 1], "k")
    v = _heads(e, _slice(e, qkv, 2 * hidden, 3 * hidden, "v"), heads, size, [0, 2, 1, 3], "v")
    scale = float(attrs.get("scale", 1.0 / math.sqrt(size)))
    scores = e.emit("Mul", [e.emit("MatMul", [q, k], "qk"), _c(e, scale, "scale")], "scores")
    if e.arg(3):
        # ONNX Runtime's raw mask: a position whose mask is not positive gets mask_filter_value
        keep = e.emit("Cast", [e.emit("Greater", [e.arg(3), e.const(np.int32(0), "zero")], "keep")],
                      "keepf", to=1)
        filt = float(attrs.get("mask_filter_value", -10000.0))
        add = e.emit("Mul", [e.emit("Sub", [_c(e, 1.0, "one"), keep], "drop"), _c(e, filt, "filter")], "maskadd")
        add = e.emit("Reshape", [add, e.const(np.array([0, 1, 1, -1], np.int64), "maskshape")], "mask4d")
        scores = e.emit("Add", [scores, add], "masked")
    probs = e.emit("Softmax", [scores], "probs", axis=3 if e.opset < 13 else -1)
    ctx = e.emit("Transpose", [e.emit("MatMul", [probs, v], "ctx")], "ctxt", perm=[0, 2, 1, 3])
    e.emit("Reshape", [ctx, e.const(np.array([0, 0, hidden], np.int64), "outshape")], "out",
           out=e.node.output[0])


NAMES = frozenset({"Gelu", "BiasGelu", "FastGelu", "SkipLayerNormalization", "Attention"})


def is_contrib(node) -> bool:
    """Is node a com.microsoft operator that `expand` rewrites?"""
    return node.domain == CONTRIB and node.op_type in NAMES


def expand(raw: list, consts: dict, opset: int, problems: list, graph) -> list:
    """The (index, NodeProto) list with every contrib operator of NAMES in standard ONNX
    (`graph`, the model's GraphProto: which optional outputs are read, the inputs' ranks)."""
    used = {x for _, n in raw for x in n.input} | {o.name for o in graph.output}
    ranks = {vi.name: len(vi.type.tensor_type.shape.dim) for vi in list(graph.input) + list(graph.value_info)
             if vi.type.tensor_type.HasField("shape")}
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
        elif op == "Attention":
            _attention(e, attrs_of(node), ranks)
        else:
            _skip_layer_norm(e, attrs_of(node), used)
        out.extend((k, m) for m in e.nodes)
    return out
