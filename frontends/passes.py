"""Graph passes: dead node elimination, BatchNorm and per-channel affine folding into Conv/Gemm,
and fusion of elementwise chains into the kernel they follow.

Every pass takes a Graph and returns a new Graph (the input is not changed).  `run_passes`
applies the default pipeline; `print_passes` shows the graph before and after each pass.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from .graph import Graph, Node

log = logging.getLogger(__name__)

# Ops whose output element depends on one input element (plus broadcast operands): they fuse.
ELEMWISE = {"Relu", "LeakyRelu", "PRelu", "Clip", "Sigmoid", "Tanh", "Gelu", "HardSigmoid",
            "HardSwish", "Elu", "Softplus", "Add", "Sub", "Mul", "Div", "Pow", "Sqrt", "Exp", "Log",
            "Erf", "Neg", "Abs", "Reciprocal", "Sum", "Max", "Min", "Mean", "Where", "Equal", "Cast",
            "Identity", "Dropout", "BatchNormalization", "Floor", "Ceil", "Not", "Less", "Greater",
            "Mod", "Sign", "Round", "Sin", "Cos", "And", "Or", "Xor", "LessOrEqual", "GreaterOrEqual",
            "Selu", "Celu", "ThresholdedRelu", "Shrink", "Softsign", "Mish", "Swish", "Sinh", "Cosh",
            "IsNaN", "IsInf"}
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
    """Drop Identity and inference-mode Dropout nodes, reading their input directly."""
    g = g.copy()
    outputs = {o.name for o in g.outputs}
    used = {i for n in g.nodes for i in n.inputs} | outputs
    alias: dict[str, str] = {}
    keep = []
    for n in g.nodes:
        n.inputs = [alias.get(i, i) for i in n.inputs]
        if n.op in ("Identity", "Dropout") and n.outputs[0] not in outputs \
                and not any(o in used for o in n.outputs[1:]):
            alias[n.outputs[0]] = n.inputs[0]
            continue
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


def fuse(g: Graph) -> list[Group]:
    """Group nodes: each elementwise node joins the group of an input it alone consumes."""
    cons = g.consumers()
    outputs = {o.name for o in g.outputs}
    group_of: dict[str, Group] = {}
    groups: list[Group] = []
    for n in g.nodes:
        target = None
        if n.op in ELEMWISE and len([o for o in n.outputs if o]) == 1:
            for i in n.inputs:
                grp = group_of.get(i)
                if (grp is not None and grp.output == i and len(cons.get(i, [])) == 1 and i not in outputs
                        and g.info(i).shape == g.info(n.outputs[0]).shape):
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
    position = {id(n): k for k, n in enumerate(g.nodes)}
    return sorted(groups, key=lambda grp: position[id(grp.nodes[-1])])


PIPELINE = [eliminate_dead_nodes, remove_identities, fold_batchnorm]


def run_passes(g: Graph) -> Graph:
    """The default graph pipeline."""
    for p in PIPELINE:
        g = p(g)
    return g


def print_passes(g: Graph, stream=None) -> Graph:
    """Run the default pipeline, printing the graph before and after each pass."""
    import sys
    stream = stream or sys.stdout
    stream.write(f"== input\n{g}\n")
    for p in PIPELINE:
        g = p(g)
        stream.write(f"== after {p.__name__}\n{g}\n")
    groups = fuse(g)
    stream.write(f"== fusion: {len(groups)} kernels\n")
    for k, grp in enumerate(groups):
        stream.write(f"  kernel {k}: " + " -> ".join(n.op for n in grp.nodes) + "\n")
    return g
