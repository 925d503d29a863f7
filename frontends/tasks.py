"""Task extraction: one tuning task per distinct anchor workload of a model, weighted by use.

Conv groups map to the `conv2d_nchw` / `depthwise_conv2d_nchw` templates, Gemm and 2-D MatMul
to `dense` / `matmul`.  Each task carries how often it occurs and its FLOPs, so a tuner can
spend its budget where the model spends its time.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from te.ops import winograd
from te.ops.conv2d import geometry, resolve_padding

from .graph import Graph, Node
from .passes import fuse, run_passes


@dataclass
class ModelTask:
    """A tuning task of a model: the task, how many kernels use it, and FLOPs per use."""
    task: object                # autotune.Task
    count: int
    flops: float
    nodes: list[str]

    @property
    def total_flops(self) -> float:
        return self.count * self.flops


def _conv_padding(node: Node, g: Graph):
    x = g.info(node.inputs[0]).shape
    w = g.info(node.inputs[1]).shape
    auto = node.attrs.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    strides = tuple(node.attrs.get("strides", [1, 1]))
    dil = tuple(node.attrs.get("dilations", [1, 1]))
    if auto in ("SAME_UPPER", "SAME_LOWER", "VALID"):
        return tuple(resolve_padding(auto, x[2:], w[2:], strides, dil)), strides, dil
    p = node.attrs.get("pads", [0, 0, 0, 0])
    return (p[0], p[1], p[2], p[3]), strides, dil


def conv_geometry(node: Node, g: Graph):
    """The te.ops.conv2d.ConvGeometry of a 2-D Conv node (input and weight shapes from the graph)."""
    pads, strides, dil = _conv_padding(node, g)
    return geometry(tuple(g.info(node.inputs[0]).shape), tuple(g.info(node.inputs[1]).shape), strides, pads,
                    dil, int(node.attrs.get("group", 1)))


def task_of(node: Node, g: Graph, target=None):
    """The (template name, args) that tunes this node's kernel, or None."""
    if node.op == "Conv" and node.attrs.get("layout") == "NCHWc":
        return None         # chains in NCHW[x]c (passes.propagate_nchwc) run the default schedule
    if node.op == "Conv" and len(g.info(node.inputs[0]).shape) == 4 and node.inputs[1] in g.constants:
        x = tuple(g.info(node.inputs[0]).shape)
        w = tuple(g.info(node.inputs[1]).shape)
        pads, strides, dil = _conv_padding(node, g)
        groups = int(node.attrs.get("group", 1))
        name = "depthwise_conv2d_nchw" if groups == x[1] and groups > 1 and w[1] == 1 else "conv2d_nchw"
        if name == "conv2d_nchw":
            if winograd.chosen(conv_geometry(node, g)):    # the default algorithm
                name = "conv2d_nchw_winograd"
        args = (x, w, strides, pads, dil, groups, "float32") if name != "depthwise_conv2d_nchw" \
            else (x, w, strides, pads, dil, "float32")
        return name, args
    if node.op == "Gemm" and node.attrs.get("transA", 0) == 0:
        a = g.info(node.inputs[0]).shape
        b = g.info(node.inputs[1]).shape
        if node.attrs.get("transB", 0):
            return "dense", (a[0], b[0], a[1], "float32")
        return "matmul", (a[0], b[1], a[1], "float32")
    if node.op == "MatMul":
        a, b = g.info(node.inputs[0]).shape, g.info(node.inputs[1]).shape
        if len(a) == 2 and len(b) == 2:
            return "matmul", (a[0], b[1], a[1], "float32")
    return None


def extract_tasks(graph: Graph, target=None) -> list[ModelTask]:
    """The distinct tunable workloads of a model (after its graph passes), largest total FLOPs first."""
    import autotune
    g = run_passes(graph)
    found: dict[str, ModelTask] = {}
    for grp in fuse(g):
        spec = task_of(grp.master, g, target)
        if spec is None:
            continue
        try:
            task = autotune.create_task(spec[0], spec[1], target)
        except Exception:
            continue
        mt = found.get(task.workload_key)
        if mt is None:
            found[task.workload_key] = ModelTask(task, 1, task.flops, [grp.master.name])
        else:
            mt.count += 1
            mt.nodes.append(grp.master.name)
    return sorted(found.values(), key=lambda t: -t.total_flops)


def model_flops(graph: Graph) -> float:
    """Approximate FLOPs of one run: the convolutions and matrix products."""
    g = run_passes(graph)
    total = 0.0
    for n in g.nodes:
        if n.op == "Conv":
            w = g.info(n.inputs[1]).shape
            y = g.info(n.outputs[0]).shape
            total += 2.0 * np.prod(y) * np.prod(w[1:])
        elif n.op in ("Gemm", "MatMul"):
            a = g.info(n.inputs[0]).shape
            y = g.info(n.outputs[0]).shape
            total += 2.0 * np.prod(y) * a[-1]
    return float(total)
