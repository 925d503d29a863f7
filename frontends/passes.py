"""Graph passes: dead node elimination, BatchNorm and per-channel affine folding into Conv/Gemm,
quantised Conv/MatMul/Gemm as int8 anchors (qdq.py), a MatMul of a 3-D activation by a 2-D weight as
the 2-D matmul of its rows (flatten_dense.py), channel shuffles folded into the depthwise
convs that read them (shuffle.py), a depthwise conv and the 1x1 conv after it as one node, a stem
conv and the max pool after it as one node (conv_pool.py),
an average pool moved to the side of a 1x1 conv where it costs less (pool_swap.py), layout
propagation to NCHW[x]c (opt-in), and fusion of elementwise chains into the kernel they follow.

Every pass takes a Graph and returns a new Graph (the input is not changed).  `run_passes`
applies the default pipeline; `print_passes` shows the graph before and after each pass.
"""
from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field

import numpy as np

from .conv_pool import fuse_conv_max_pool
from .flatten_dense import flatten_dense
from .graph import Graph, Node
from .pool_swap import average_pool_before_conv, conv_before_average_pool
from .shuffle import fold_channel_shuffle

log = logging.getLogger(__name__)

# Ops whose output element depends on one input element (plus broadcast operands): they fuse.
ELEMWISE = {"Relu", "LeakyRelu", "PRelu", "Clip", "Sigmoid", "Tanh", "Gelu", "HardSigmoid",
            "HardSwish", "Elu", "Softplus", "Add", "Sub", "Mul", "Div", "Pow", "Sqrt", "Exp", "Log",
            "Erf", "Neg", "Abs", "Reciprocal", "Sum", "Max", "Min", "Mean", "Where", "Equal", "Cast",
            "Identity", "Dropout", "BatchNormalization", "Floor", "Ceil", "Not", "Less", "Greater",
            "Mod", "Sign", "Round", "Sin", "Cos", "And", "Or", "Xor", "LessOrEqual", "GreaterOrEqual",
            "Selu", "Celu", "ThresholdedRelu", "Shrink", "Softsign", "Mish", "Swish", "Sinh", "Cosh",
            "IsNaN", "IsInf", "QuantizeLinear", "DequantizeLinear", "tilewise.ToUint8", "tilewise.QAdd",
            "tilewise.Requantize"}
# Ops that start a kernel of their own and accept an elementwise epilogue.
ANCHORS = {"Conv", "Gemm", "MatMul"}


def eliminate_dead_nodes(g: Graph) -> Graph:
    """Drop nodes (and constants) that no graph output depends on."""
    g = g.copy()
    live = {o.name for o in g.outputs}
    keep: list[Node] = []
    for n in reversed(g.nodes):
        if any(o in live for o in n.outputs):
            keep.append(n)
            live.update(i for i in n.inputs if i)
    g.nodes = list(reversed(keep))
    g.constants = {k: v for k, v in g.constants.items() if k in live}
    return g


def remove_identities(g: Graph) -> Graph:
    """Drop Identity and inference-mode Dropout nodes, reading their input directly; one whose
    output is a graph output instead renames its input where a node computes that value for it
    alone (so the producer writes the graph output, no copy)."""
    g = g.copy()
    outputs = {o.name for o in g.outputs}
    used = {i for n in g.nodes for i in n.inputs} | outputs
    readers: dict[str, int] = {}
    for n in g.nodes:
        for i in n.inputs:
            readers[i] = readers.get(i, 0) + 1
    producer = {o: n for n in g.nodes for o in n.outputs if o}
    alias: dict[str, str] = {}
    keep = []
    for n in g.nodes:
        n.inputs = [alias.get(i, i) for i in n.inputs]
        if n.op not in ("Identity", "Dropout") or any(o in used for o in n.outputs[1:]):
            keep.append(n)
            continue
        src, out = n.inputs[0], n.outputs[0]
        if out not in outputs:
            alias[out] = src
        elif src in producer and src not in outputs and readers.get(src) == 1 and out not in producer[src].outputs:
            p = producer[src]
            p.outputs[p.outputs.index(src)] = out
        else:
            keep.append(n)
    g.nodes = keep
    return g


def _const_1d_per_channel(g: Graph, name: str, channels: int, rank: int) -> np.ndarray | None:
    """A constant that broadcasts along axis 1 only (shape (C,1,1), (1,C,1,1), (C,) for rank 2...)."""
    c = g.constants.get(name)
    if c is None:
        return None
    if c.size == 1:
        return np.full(channels, c.reshape(-1)[0], np.float32)
    shape = list(c.shape)
    while len(shape) < rank:
        shape.insert(0, 1)
    if len(shape) != rank or shape[1] != channels or any(s != 1 for i, s in enumerate(shape) if i != 1):
        return None
    return c.reshape(-1).astype(np.float32)


def fold_batchnorm(g: Graph) -> Graph:
    """Fold BatchNormalization, and Mul/Add by per-channel constants, into the preceding Conv/Gemm."""
    g = g.copy()
    prod = g.producers()
    cons = g.consumers()
    outputs = {o.name for o in g.outputs}
    removed: set[int] = set()
    for n in g.nodes:
        if id(n) in removed or n.op not in ("BatchNormalization", "Mul", "Add") or not n.inputs:
            continue
        src = prod.get(n.inputs[0])
        if n.op in ("Mul", "Add") and src is None and len(n.inputs) > 1:
            src = prod.get(n.inputs[1])
        if src is None or src.op not in ("Conv", "Gemm") or id(src) in removed:
            continue
        if len(cons.get(src.outputs[0], [])) != 1 or src.outputs[0] in outputs:
            continue
        if src.op == "Gemm" and (src.attrs.get("transB", 0) != 1 or src.attrs.get("alpha", 1.0) != 1.0
                                 or src.attrs.get("beta", 1.0) != 1.0):
            continue
        w = g.constants.get(src.inputs[1])
        if w is None or w.dtype != np.float32:
            continue
        k = w.shape[0]
        rank = len(g.info(src.outputs[0]).shape)
        b = g.constants.get(src.inputs[2]) if len(src.inputs) > 2 else np.zeros(k, np.float32)
        if b is None:
            continue
        if n.op == "BatchNormalization":
            if any(x not in g.constants for x in n.inputs[1:5]) or len(n.outputs) > 1 and any(n.outputs[1:]):
                continue
            scale, beta, mean, var = (g.constants[x].astype(np.float64) for x in n.inputs[1:5])
            s = scale / np.sqrt(var + n.attrs.get("epsilon", 1e-5))
            shift = beta - mean * s
        else:
            other = n.inputs[1] if n.inputs[0] == src.outputs[0] else n.inputs[0]
            v = _const_1d_per_channel(g, other, k, rank)
            if v is None:
                continue
            s, shift = (v, np.zeros(k)) if n.op == "Mul" else (np.ones(k), v)
        new_w = (w * s.reshape((k,) + (1,) * (w.ndim - 1))).astype(np.float32)
        new_b = (b * s + shift).astype(np.float32)
        wname, bname = f"{src.name}.W_folded{len(removed)}", f"{src.name}.b_folded{len(removed)}"
        g.constants[wname], g.constants[bname] = new_w, new_b
        src.inputs = [src.inputs[0], wname, bname]
        # src now produces n's output directly
        old_out = src.outputs[0]
        src.outputs = [n.outputs[0]]
        g.infos[n.outputs[0]] = g.infos.get(n.outputs[0], g.infos.get(old_out))
        removed.add(id(n))
        prod[n.outputs[0]] = src
        cons[n.outputs[0]] = cons.get(n.outputs[0], [])
    g.nodes = [n for n in g.nodes if id(n) not in removed]
    return eliminate_dead_nodes(g)


@dataclass
class Group:
    """Nodes that become one kernel: a master node and the elementwise chain fused after it."""
    nodes: list[Node] = field(default_factory=list)

    @property
    def master(self) -> Node:
        return self.nodes[0]

    @property
    def output(self) -> str:
        return self.nodes[-1].outputs[0]

    def inputs(self) -> list[str]:
        """Values the group reads from outside (graph inputs, constants, other groups)."""
        inside = {o for n in self.nodes for o in n.outputs}
        seen: list[str] = []
        for n in self.nodes:
            for i in n.inputs:
                if i and i not in inside and i not in seen:
                    seen.append(i)
        return seen


DIAMOND_MAX_NODES = 16          # the longest chain a value read twice may be fused through (GELU: 5)


def _joins(n: Node, g: Graph, value: str) -> bool:
    """Can the elementwise node n join the group whose output `value` it reads (same shape, one output)?"""
    return (n.op in ELEMWISE and len([o for o in n.outputs if o]) == 1
            and g.info(value).shape == g.info(n.outputs[0]).shape)


def _closes_diamond(g: Graph, value: str, cons: dict, outputs: set[str], order: dict) -> bool:
    """Does every reader of `value` (a group's output read more than once) join its group, as
    fuse's rule would let them: a chain of elementwise nodes in graph order, each reading the one
    before it (its only reader), that other members may also read `value` (Erf-GELU reads the
    dense output in its Div and in its last Mul) and no value of the chain leaves it but the last.

    Then `value` lives only inside the kernel and the chain becomes its epilogue instead of a
    kernel of its own that reads it back from memory."""
    readers = cons.get(value, [])
    if len(readers) < 2 or not all(_joins(n, g, value) for n in readers):
        return False
    produced = {o for n in g.nodes for o in n.outputs if o}
    chain: list[Node] = []
    cur, m = value, min(readers, key=lambda n: order[id(n)])
    while len(chain) < DIAMOND_MAX_NODES:
        # m's other operands come from no other group, so fuse cannot put it elsewhere first
        inside = {value, cur}
        if (cur not in m.inputs or not _joins(m, g, cur)
                or any(i in produced and i not in inside for i in m.inputs if i)):
            return False
        chain.append(m)
        cur = next(o for o in m.outputs if o)
        if all(any(r is c for c in chain) for r in readers):
            return True
        nxt = cons.get(cur, [])
        if cur in outputs or len(nxt) != 1:
            return False
        m = nxt[0]
    return False


def fuse(g: Graph) -> list[Group]:
    """Group nodes: each elementwise node joins the group of an input it alone consumes, or that
    a chain of elementwise nodes alone consumes (_closes_diamond)."""
    cons = g.consumers()
    outputs = {o.name for o in g.outputs}
    order = {id(n): k for k, n in enumerate(g.nodes)}
    group_of: dict[str, Group] = {}
    groups: list[Group] = []
    for n in g.nodes:
        target = None
        if n.op in ELEMWISE and len([o for o in n.outputs if o]) == 1:
            for i in n.inputs:
                grp = group_of.get(i)
                if (grp is not None and grp.output == i and i not in outputs and _joins(n, g, i)
                        and (len(cons.get(i, [])) == 1 or _closes_diamond(g, i, cons, outputs, order))):
                    target = grp
                    break
        if target is None:
            target = Group()
            groups.append(target)
        target.nodes.append(n)
        for o in n.outputs:
            if o:
                group_of[o] = target
    # a group runs when its last node can: it may have absorbed a node that reads values
    # produced after the group began (a residual add of another branch)
    return sorted(groups, key=lambda grp: order[id(grp.nodes[-1])])


# ---------------------------------------------------------------- depthwise + pointwise

DWPW = "tilewise.DepthwisePointwise"


def _conv_attrs(n: Node) -> tuple[tuple, tuple, tuple]:
    """(strides, dilations, pads (top, left, bottom, right)) of a Conv node without auto_pad."""
    p = n.attrs.get("pads", [0, 0, 0, 0])
    return (tuple(n.attrs.get("strides", [1, 1])), tuple(n.attrs.get("dilations", [1, 1])),
            (p[0], p[1], p[2], p[3]))


def _constant_conv(n: Node, g: Graph) -> bool:
    """A float32 2-D Conv with constant weight and bias, explicit pads, on the plain NCHW layout."""
    return (n.op == "Conv" and len(n.inputs) >= 2 and n.inputs[1] in g.constants
            and all(i in g.constants for i in n.inputs[2:] if i) and len(g.info(n.inputs[0]).shape) == 4
            and g.info(n.inputs[0]).dtype == "float32" and not n.attrs.get("layout")
            and not n.attrs.get("channel_shuffle") and n.attrs.get("auto_pad", "NOTSET") in ("NOTSET", b"NOTSET"))


def _clip_bounds(n: Node, g: Graph) -> tuple[float | None, float | None] | None:
    """(low, high) of a Relu (no high bound), or of a Clip with constant scalar bounds, an absent
    one the float32 extreme as ONNX says (lowering._clip); None for any other node."""
    if n.op == "Relu":
        return 0.0, None
    if n.op != "Clip":
        return None
    bounds = []
    for k, key, absent in ((1, "min", np.finfo(np.float32).min), (2, "max", np.finfo(np.float32).max)):
        name = n.inputs[k] if len(n.inputs) > k else ""
        if name:
            if name not in g.constants or g.constants[name].size != 1:
                return None
            bounds.append(float(g.constants[name].reshape(-1)[0]))
        else:
            bounds.append(float(n.attrs.get(key, absent)))      # opset < 11: attributes
    return bounds[0], bounds[1]


def fuse_depthwise_pointwise(g: Graph) -> Graph:
    """A stride-1 depthwise Conv, the Relu or Clip after it, and the 1x1 Conv that alone reads
    that, as one tilewise.DepthwisePointwise node (te.ops.dwpw): the depthwise output never goes
    to memory, each task computing a band of it into cache for the 1x1 conv's GEMM.

    Its inputs are (x, depthwise weight, bias, 1x1 weight, bias), "" for an absent bias; its
    attributes the depthwise conv's pads and dilations and the activation's bounds (act_min,
    act_max).  Where te.ops.dwpw does not apply (strided, narrow maps, a batch) nothing changes."""
    from te.ops import dwpw
    from te.ops.conv_geometry import geometry
    g = g.copy()
    only_reader = g.sole_readers()
    fused: list[tuple[Node, Node, Node]] = []
    for dw in g.nodes:
        if not _constant_conv(dw, g):
            continue
        strides, dil, pads = _conv_attrs(dw)
        x, w = g.info(dw.inputs[0]).shape, g.info(dw.inputs[1]).shape
        groups = int(dw.attrs.get("group", 1))
        if groups != x[1] or w[0] != x[1]:
            continue
        try:
            geo = geometry(x, w, strides, pads, dil, groups)
        except ValueError:
            continue
        act = only_reader(dw.outputs[0])
        pw = act and only_reader(act.outputs[0])
        if not (dwpw.applies(geo) and act and _clip_bounds(act, g) and pw and _constant_conv(pw, g)):
            continue
        pw_strides, pw_dil, pw_pads = _conv_attrs(pw)
        if (int(pw.attrs.get("group", 1)) != 1 or tuple(g.info(pw.inputs[1]).shape[1:]) != (x[1], 1, 1)
                or pw_strides != (1, 1) or any(pw_pads)):
            continue
        fused.append((dw, act, pw))
    for dw, act, pw in fused:
        lo, hi = _clip_bounds(act, g)
        bias = (lambda n: n.inputs[2] if len(n.inputs) > 2 else "")
        node = Node(DWPW, pw.name, [dw.inputs[0], dw.inputs[1], bias(dw), pw.inputs[1], bias(pw)], list(pw.outputs),
                    {"pads": list(_conv_attrs(dw)[2]), "dilations": list(_conv_attrs(dw)[1]),
                     "act_min": lo, "act_max": hi})
        g.replace([dw, act, pw], [node], at=pw)
    if fused:
        log.info("fuse_depthwise_pointwise: %d depthwise + 1x1 conv pair(s) as one kernel each", len(fused))
    return g


# ---------------------------------------------------------------- layout propagation

PACK_NCHWC, UNPACK_NCHWC = "tilewise.PackNCHWc", "tilewise.UnpackNCHWc"
_CHAIN_UNARY = {"Relu", "Clip", "LeakyRelu", "Sigmoid", "HardSwish", "HardSigmoid"}


def _direct_conv(n: Node, g: Graph, target) -> bool:
    """A conv the direct kernel would run for target: 2-D, constant weight, ungrouped, not Winograd
    or a GEMM."""
    if n.op != "Conv" or n.attrs.get("layout") or len(n.inputs) < 2 or n.inputs[1] not in g.constants:
        return False
    if len(g.info(n.inputs[0]).shape) != 4 or int(n.attrs.get("group", 1)) != 1 \
            or (len(n.inputs) > 2 and n.inputs[2] and n.inputs[2] not in g.constants):
        return False
    from te.ops import registry

    from .tasks import workload_of
    return registry.select(workload_of(n, g), target).name == "conv2d.direct"


def _unary(n: Node, g: Graph) -> bool:
    """An elementwise op of one activation (its other inputs, if any, scalar constants)."""
    return n.op in _CHAIN_UNARY and all(i in g.constants and g.constants[i].size == 1 for i in n.inputs[1:] if i)


def propagate_nchwc(g: Graph, block: int = 16, target=None) -> Graph:
    """Chains of direct convolutions (and the activations between them) in the packed NCHW[block]c
    layout: the input is packed once where a chain starts and unpacked once where it ends.

    A chain links convs whose output feeds only the next conv (through unary activations); it
    needs two convs at least.  Its convs get attrs layout="NCHWc" and block, their weights are
    packed at build time (compile.pack_weights) and conv2d_NCHWc runs them.  Opt-in
    (`run_passes(layout="NCHWc")`, `frontends.build(..., layout="NCHWc")`): on ResNet-50's
    layers the NCHWc kernel is not faster than the direct NCHW kernel with packed weights.
    `target`: the te.target.Target (or string) the graph is compiled for, None for this machine.
    """
    from te.target import parse
    target = parse(target)
    g = g.copy()
    only_reader = g.sole_readers()
    taken: set[int] = set()
    chains: list[list[Node]] = []
    for n in g.nodes:
        if id(n) in taken or not _direct_conv(n, g, target):
            continue
        chain, cur = [n], n
        while True:
            nxt = only_reader(cur.outputs[0])
            if nxt is None or not (_unary(nxt, g) or _direct_conv(nxt, g, target)):
                break
            chain.append(nxt)
            cur = nxt
        while chain[-1].op != "Conv":          # activations after the last conv stay unpacked
            chain.pop()
        if sum(c.op == "Conv" for c in chain) >= 2:
            chains.append(chain)
            taken.update(id(c) for c in chain)
    for chain in chains:
        _pack_chain(g, chain, block)
    if chains:
        log.info("propagate_nchwc: %d chain(s) of %s convs in NCHW%dc", len(chains),
                 "+".join(str(sum(c.op == "Conv" for c in ch)) for ch in chains), block)
    return g


def _pack_chain(g: Graph, chain: list[Node], block: int) -> None:
    from .graph import TensorInfo
    first, last = chain[0], chain[-1]
    x = first.inputs[0]
    xi = g.info(x)
    N, C, H, W = xi.shape
    packed = f"{x}@nchw{block}c"
    g.infos[packed] = TensorInfo(packed, (N, -(-C // block), H, W, block), xi.dtype)
    pack = Node(PACK_NCHWC, f"{first.name}.pack", [x], [packed], {"block": block})
    final = last.outputs[0]
    cur = packed
    for n in chain:
        out = n.outputs[0]
        oi = g.info(out)
        n.inputs[0] = cur
        if n.op == "Conv":
            n.attrs.update(layout="NCHWc", block=block)
        cur = n.outputs[0] = f"{out}@nchw{block}c"
        N, K, OH, OW = oi.shape
        g.infos[cur] = TensorInfo(cur, (N, -(-K // block), OH, OW, block), oi.dtype)
    unpack = Node(UNPACK_NCHWC, f"{last.name}.unpack", [cur], [final], {"channels": g.info(final).shape[1]})
    g.nodes.insert(g.nodes.index(first), pack)
    g.nodes.insert(g.nodes.index(last) + 1, unpack)


def quantize_int8(g: Graph) -> Graph:
    """Quantised models: DequantizeLinear -> Conv/MatMul/Gemm -> QuantizeLinear as int8 anchors with
    fused requantisation (qdq.py); a float graph is unchanged."""
    from .qdq import quantize_int8 as rewrite
    return rewrite(g)


PIPELINE = [eliminate_dead_nodes, remove_identities, fold_batchnorm, quantize_int8, flatten_dense, fold_channel_shuffle,
            fuse_depthwise_pointwise, conv_before_average_pool, average_pool_before_conv, fuse_conv_max_pool]
LAYOUTS = {None: [], "NCHW": [], "NCHWc": [propagate_nchwc]}     # layout passes also take the target


def _pipeline(layout: str | None, target) -> list:
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; use one of NCHW, NCHWc")
    return PIPELINE + [functools.partial(p, target=target) for p in LAYOUTS[layout]]


def run_passes(g: Graph, layout: str | None = None, target=None) -> Graph:
    """The default graph pipeline (with layout="NCHWc", chains of convs in NCHW[x]c for target,
    None: this machine)."""
    for p in _pipeline(layout, target):
        g = p(g)
    return g


def print_passes(g: Graph, stream=None, layout: str | None = None, target=None) -> Graph:
    """Run the default pipeline, printing the graph before and after each pass."""
    import sys
    stream = stream or sys.stdout
    stream.write(f"== input\n{g}\n")
    for p in _pipeline(layout, target):
        g = p(g)
        stream.write(f"== after {getattr(p, 'func', p).__name__}\n{g}\n")
    groups = fuse(g)
    stream.write(f"== fusion: {len(groups)} kernels\n")
    for k, grp in enumerate(groups):
        stream.write(f"  kernel {k}: " + " -> ".join(n.op for n in grp.nodes) + "\n")
    return g
