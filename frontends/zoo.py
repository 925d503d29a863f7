"""Real model graphs for tests and benchmarks: the ONNX package's 'light' models with real weights.

The light models (onnx/backend/test/data/light/*.onnx) produce every weight with a
ConstantOfShape node filled with one value, which makes most layers trivial.  `light_model`
swaps each of those for a seeded random initializer scaled by how the tensor is used (He
initialisation for Conv/Gemm weights, small biases, BatchNorm statistics with a positive
variance), so tilewise and ONNX Runtime are compared on the same realistic model.
"""
from __future__ import annotations

import functools
import os
import zlib

import numpy as np
import onnx
from onnx import helper, numpy_helper

LIGHT_DIR = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")


def light_models() -> list[str]:
    """Names of the light models the installed onnx package ships (e.g. 'resnet50')."""
    if not os.path.isdir(LIGHT_DIR):
        return []
    return sorted(f[len("light_"):-len(".onnx")] for f in os.listdir(LIGHT_DIR)
                  if f.startswith("light_") and f.endswith(".onnx"))


def _use(name: str, consumers: dict, shape: tuple) -> tuple[str, int]:
    """How a weight is used: (role, fan_in), following shape-only ops such as Unsqueeze."""
    todo, seen = [name], set()
    while todo:
        t = todo.pop()
        if t in seen:
            continue
        seen.add(t)
        for node, idx in consumers.get(t, []):
            op = node.op_type
            if op in ("Conv", "ConvTranspose") and idx == 1:
                return "weight", int(np.prod(shape[1:])) if len(shape) > 1 else 1
            if op == "Gemm" and idx == 1:
                trans_b = any(a.name == "transB" and a.i for a in node.attribute)
                return "weight", int(shape[1] if trans_b else shape[0]) if len(shape) == 2 else int(shape[0])
            if op == "MatMul" and idx == 1:
                return "weight", int(shape[-2]) if len(shape) >= 2 else int(shape[0])
            if op in ("Conv", "Gemm") and idx == 2:
                return "bias", 0
            if op == "BatchNormalization" and idx >= 1:
                return ("bn_scale", "bn_shift", "bn_mean", "bn_var")[idx - 1], 0
            if op == "Mul":
                return "bn_scale", 0
            if op in ("Add", "Sum"):
                return "bn_shift", 0
            if op in ("Unsqueeze", "Reshape", "Flatten", "Identity", "Squeeze", "Transpose", "Cast") and idx == 0:
                todo.extend(node.output)
    return "other", 0


def _draw(role: str, fan_in: int, shape: tuple, rng: np.random.Generator) -> np.ndarray:
    if role == "weight":
        return rng.standard_normal(shape) * np.sqrt(2.0 / max(1, fan_in))
    if role == "bias":
        return rng.standard_normal(shape) * 0.01
    if role == "bn_scale":
        return 1.0 + 0.1 * rng.standard_normal(shape)
    if role in ("bn_shift", "bn_mean"):
        return 0.1 * rng.standard_normal(shape)
    if role == "bn_var":
        return rng.uniform(0.5, 1.5, shape)
    return 0.02 * rng.standard_normal(shape)


def randomize_weights(model: onnx.ModelProto, seed: int = 0) -> onnx.ModelProto:
    """A copy of the model whose ConstantOfShape-built weights are seeded random initializers."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    inits = {t.name: t for t in g.initializer}
    consumers: dict[str, list] = {}
    for node in g.node:
        for k, x in enumerate(node.input):
            consumers.setdefault(x, []).append((node, k))
    built, keep_nodes = [], []
    for node in g.node:
        is_weight = node.op_type == "ConstantOfShape" and node.input and node.input[0] in inits
        (built if is_weight else keep_nodes).append(node)
    used = {x for n in keep_nodes for x in n.input} | {o.name for o in g.output}
    new_inits = []
    for node in built:
        if node.output[0] not in used:
            continue
        shape = tuple(int(s) for s in numpy_helper.to_array(inits[node.input[0]]).reshape(-1))
        value = next((a.t for a in node.attribute if a.name == "value"), None)
        dtype = numpy_helper.to_array(value).dtype if value is not None else np.dtype(np.float32)
        out = node.output[0]
        role, fan_in = _use(out, consumers, shape)
        rng = np.random.default_rng([seed, zlib.crc32(out.encode())])   # stable per tensor name
        arr = _draw(role, fan_in, shape, rng).astype(dtype) if dtype.kind == "f" else np.zeros(shape, dtype)
        new_inits.append(numpy_helper.from_array(arr, out))
    del g.node[:]
    g.node.extend(keep_nodes)
    # the weights go in once, after the unused initializers (the shapes) left: a protobuf extend
    # copies each tensor (VGG-19: 0.9 s more for its 550 MB copied twice)
    kept = [t for t in g.initializer if t.name in used]
    del g.initializer[:]
    g.initializer.extend(kept)
    g.initializer.extend(new_inits)
    names = {t.name for t in g.initializer}
    # weights are constants, not overridable inputs (IR >= 4 allows initializers outside the inputs)
    ins = [i for i in g.input if i.name not in names and i.name in used]
    del g.input[:]
    g.input.extend(ins)
    m.ir_version = max(m.ir_version, 7)
    return m


@functools.lru_cache(maxsize=None)
def _light(name: str, seed: int) -> onnx.ModelProto:
    """The light model with its random weights, made once per process and only ever copied: a
    copy costs what parsing its bytes did, without serialising them first (VGG-19: 1.7 s)."""
    path = os.path.join(LIGHT_DIR, f"light_{name}.onnx")
    if not os.path.exists(path):
        raise FileNotFoundError(f"no light model {name!r} in {LIGHT_DIR} (have: {', '.join(light_models())})")
    return randomize_weights(onnx.load(path), seed)


def light_model(name: str, seed: int = 0, logits: bool = False) -> onnx.ModelProto:
    """The light model `name` with seeded random weights (cached per process).

    With random weights the final Softmax saturates to a one-hot vector, which agrees with any
    answer that has the same argmax; `logits=True` also outputs the Softmax's input, so a
    comparison checks every value the network computes.
    """
    if logits:
        return with_logits(_light(name, seed))
    m = onnx.ModelProto()
    m.CopyFrom(_light(name, seed))
    return m


def with_logits(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of the model that also outputs the input of each Softmax that makes a graph output."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    outs = {o.name for o in m.graph.output}
    for node in m.graph.node:
        if node.op_type == "Softmax" and node.output[0] in outs and node.input[0] not in outs:
            m.graph.output.append(helper.make_empty_tensor_value_info(node.input[0]))
            outs.add(node.input[0])
    return m


def mobilenet_block(seed: int = 0, channels: int = 32, expand: int = 6, size: int = 56) -> onnx.ModelProto:
    """A MobileNetV2 inverted-residual block: 1x1 expand, Clip(0, 6), 3x3 depthwise, Clip, 1x1 project, Add."""
    rng = np.random.default_rng(seed)
    c, e = channels, channels * expand
    w1 = (rng.standard_normal((e, c, 1, 1)) * np.sqrt(2 / c)).astype(np.float32)
    w2 = (rng.standard_normal((e, 1, 3, 3)) * np.sqrt(2 / 9)).astype(np.float32)
    w3 = (rng.standard_normal((c, e, 1, 1)) * np.sqrt(2 / e)).astype(np.float32)
    b1, b2, b3 = (rng.standard_normal(n).astype(np.float32) * 0.01 for n in (e, e, c))
    lo, hi = np.array(0.0, np.float32), np.array(6.0, np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["h1"], kernel_shape=[1, 1]),
        helper.make_node("Clip", ["h1", "lo", "hi"], ["a1"]),
        helper.make_node("Conv", ["a1", "w2", "b2"], ["h2"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], group=e),
        helper.make_node("Clip", ["h2", "lo", "hi"], ["a2"]),
        helper.make_node("Conv", ["a2", "w3", "b3"], ["h3"], kernel_shape=[1, 1]),
        helper.make_node("Add", ["h3", "x"], ["y"]),
    ]
    inits = [numpy_helper.from_array(v, k) for k, v in
             dict(w1=w1, w2=w2, w3=w3, b1=b1, b2=b2, b3=b3, lo=lo, hi=hi).items()]
    g = helper.make_graph(nodes, "mobilenet_block",
                          [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, c, size, size])],
                          [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, c, size, size])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])


def encoder_layer(seed: int = 0, seq: int = 128, hidden: int = 768, heads: int = 12, ffn: int = 3072,
                  decomposed_layernorm: bool = False, batch: int | None = None) -> onnx.ModelProto:
    """A BERT-base-like encoder layer: self-attention (MatMul, Softmax), LayerNorm, Erf-GELU feed-forward;
    x (seq, hidden), or with `batch` (batch, seq, hidden) as PyTorch exports it (3-D dense layers)."""
    rng = np.random.default_rng(seed)
    d = hidden // heads
    P = {}

    def w(name, shape, fan_in):
        P[name] = (rng.standard_normal(shape) * np.sqrt(1.0 / fan_in)).astype(np.float32)
        return name

    def b(name, n):
        P[name] = (rng.standard_normal(n) * 0.02).astype(np.float32)
        return name

    def const(name, value, dtype=np.float32):
        P[name] = np.asarray(value, dtype)
        return name

    nodes = []

    def node(op, ins, outs, **kw):
        nodes.append(helper.make_node(op, ins, outs, **kw))
        return outs[0]

    def dense_(x, name, n_in, n_out):
        y = node("MatMul", [x, w(f"{name}.w", (n_in, n_out), n_in)], [f"{name}.mm"])
        return node("Add", [y, b(f"{name}.b", n_out)], [f"{name}.out"])

    def layernorm(x, name):
        g_, b_ = const(f"{name}.g", 1 + 0.1 * rng.standard_normal(hidden)), b(f"{name}.beta", hidden)
        if not decomposed_layernorm:
            return node("LayerNormalization", [x, g_, b_], [f"{name}.out"], axis=-1, epsilon=1e-12)
        mean = node("ReduceMean", [x], [f"{name}.mean"], axes=[-1])
        cen = node("Sub", [x, mean], [f"{name}.cen"])
        var = node("ReduceMean", [node("Mul", [cen, cen], [f"{name}.sq"])], [f"{name}.var"], axes=[-1])
        std = node("Sqrt", [node("Add", [var, const(f"{name}.eps", 1e-12)], [f"{name}.ve"])], [f"{name}.std"])
        nrm = node("Div", [cen, std], [f"{name}.norm"])
        return node("Add", [node("Mul", [nrm, g_], [f"{name}.scaled"]), b_], [f"{name}.out"])

    x = "x"
    q, k, v = (dense_(x, n, hidden, hidden) for n in ("q", "k", "v"))
    lead = [] if batch is None else [batch]
    r = len(lead)                   # the batch axis stays first through the heads' transposes
    shape4 = const("shape4", lead + [seq, heads, d], np.int64)
    perm_q = dict(perm=list(range(r)) + [r + 1, r, r + 2])
    qh = node("Transpose", [node("Reshape", [q, shape4], ["q4"])], ["qh"], **perm_q)
    kh = node("Transpose", [node("Reshape", [k, shape4], ["k4"])], ["kh"], perm=list(range(r)) + [r + 1, r + 2, r])
    vh = node("Transpose", [node("Reshape", [v, shape4], ["v4"])], ["vh"], **perm_q)
    scores = node("Div", [node("MatMul", [qh, kh], ["qk"]), const("scale", np.sqrt(d))], ["scores"])
    probs = node("Softmax", [scores], ["probs"], axis=-1)
    ctx = node("Transpose", [node("MatMul", [probs, vh], ["ctx3"])], ["ctxt"], **perm_q)
    ctx = node("Reshape", [ctx, const("shape2", lead + [seq, hidden], np.int64)], ["ctx"])
    attn = dense_(ctx, "o", hidden, hidden)
    h = layernorm(node("Add", [attn, x], ["res1"]), "ln1")
    f1 = dense_(h, "ffn1", hidden, ffn)
    gelu = node("Mul", [node("Mul", [f1, node("Add", [node("Erf", [node("Div", [f1, const("sqrt2", np.sqrt(2.0))],
                                                                             ["g.div"])], ["g.erf"]),
                                                        const("one", 1.0)], ["g.add"])], ["g.mul"]),
                        const("half", 0.5)], ["gelu"])
    f2 = dense_(gelu, "ffn2", ffn, hidden)
    y = layernorm(node("Add", [f2, h], ["res2"]), "ln2")
    nodes.append(helper.make_node("Identity", [y], ["y"]))
    inits = [numpy_helper.from_array(v, k) for k, v in P.items()]
    g = helper.make_graph(nodes, "encoder_layer",
                          [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, lead + [seq, hidden])],
                          [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, lead + [seq, hidden])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def mlp(seed: int = 0, sizes: tuple[int, ...] = (1024, 2048, 2048, 1000), batch: int = 1) -> onnx.ModelProto:
    """A multi-layer perceptron of Gemm(transB=1) layers with Relu between them (batch 1 by default:
    each layer reads its whole weight for one row, so it is bound by memory bandwidth)."""
    rng = np.random.default_rng(seed)
    nodes, inits, x = [], [], "x"
    for i, (n_in, n_out) in enumerate(zip(sizes, sizes[1:])):
        w = (rng.standard_normal((n_out, n_in)) * np.sqrt(2 / n_in)).astype(np.float32)
        b = (rng.standard_normal(n_out) * 0.01).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"fc{i}.w"), numpy_helper.from_array(b, f"fc{i}.b")]
        last = i == len(sizes) - 2
        y = "y" if last else f"fc{i}"
        nodes.append(helper.make_node("Gemm", [x, f"fc{i}.w", f"fc{i}.b"], [y], transB=1))
        if not last:
            nodes.append(helper.make_node("Relu", [y], [f"relu{i}"]))
            x = f"relu{i}"
    g = helper.make_graph(nodes, "mlp",
                          [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [batch, sizes[0]])],
                          [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [batch, sizes[-1]])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
