"""Task extraction: one tuning task per distinct anchor workload of a model, weighted by use.

`workload_of(node, graph)` is the one reading of an anchor node (Conv, Gemm, MatMul, the QDQ pass's
QLinearMatMul) as a te.ops.registry workload; the model compiler and the task extractor both hand it to
`registry.select`, so the task extracted for a node is the template and arguments of the
implementation its kernel is built with.  Each task carries how often it occurs and its FLOPs,
so a tuner can spend its budget where the model spends its time, and how many bytes of weights
the model holds, so a tuner times it with its weight where the model finds it (behind that many
bytes of other weights when they outgrow the cores' L3 share: autotune.call_timing.cold_plan).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from te.ops import registry
from te.ops.conv_geometry import ConvGeometry, resolve_padding
from te.ops.int8_batch_matmul import qlinear_workload

from .graph import Graph, Node
from .lower_qnn import QMATMUL
from .lowering import conv_padding
from .passes import fuse, run_passes


@dataclass
class ModelTask:
    """A tuning task of a model: the task, how many kernels use it, and FLOPs per use; `workload`
    is the kernel's registry workload, which the tasks of its other implementations share."""
    task: object                # autotune.Task
    count: int
    flops: float
    nodes: list[str]
    workload: object = None     # te.ops.registry.Workload

    @property
    def total_flops(self) -> float:
        return self.count * self.flops


def workload_of(node: Node, g: Graph) -> registry.Workload | None:
    """The registry workload of an anchor node, or None (not an anchor, a weight computed at run
    time, a transposed A, a MatMul of a vector: those run the op's default kernel).  A MatMul of a
    batched A by a 2-D B reaches here as the 2-D MatMul of A's rows (passes' flatten_dense)."""
    if node.op == "Conv" and len(node.inputs) > 1 and node.inputs[1] in g.constants:
        w = tuple(g.info(node.inputs[1]).shape)
        x = tuple(g.info(node.inputs[0]).shape)
        layout, block = node.attrs.get("layout", "NCHW"), int(node.attrs.get("block", 0))
        if layout == "NCHWc":           # passes.propagate_nchwc: the input arrives packed
            x = (x[0], w[1], x[2], x[3])
        if len(x) != 4:
            return None
        strides = tuple(int(v) for v in node.attrs.get("strides", [1, 1]))
        dil = tuple(int(v) for v in node.attrs.get("dilations", [1, 1]))
        pads = conv_padding(node.attrs)
        if isinstance(pads, str):
            pads = resolve_padding(pads, x[2:], w[2:], strides, dil)
        return registry.ConvWorkload(x, w, strides, tuple(int(p) for p in pads), dil,
                                     int(node.attrs.get("group", 1)), g.info(node.inputs[0]).dtype, layout, block,
                                     int(node.attrs.get("channel_shuffle", 0)))    # frontends/shuffle.py
    if node.op == "Gemm" and node.attrs.get("transA", 0) == 0:
        a, b = g.info(node.inputs[0]), g.info(node.inputs[1]).shape
        tb = bool(node.attrs.get("transB", 0))
        return registry.MatmulWorkload(a.shape[0], b[0] if tb else b[1], a.shape[1], a.dtype, tb)
    if node.op == "MatMul":
        a, b = g.info(node.inputs[0]), g.info(node.inputs[1]).shape
        if len(a.shape) == 2 and len(b) == 2:
            return registry.MatmulWorkload(a.shape[0], b[1], a.shape[1], a.dtype)
        if len(a.shape) >= 2 and len(b) >= 3 and a.dtype == "float32":    # the lowering's batch_matmul
            return registry.BatchMatmulWorkload(*_batch_dims(a.shape, b))
    if node.op == QMATMUL:
        a, b = (g.info(v) for v in node.inputs[:2])
        return qlinear_workload(*_batch_dims(a.shape, b.shape), a.dtype, b.dtype, node.attrs)
    return None


def _batch_dims(a: tuple, b: tuple) -> tuple[int, int, int, int]:
    """(batch, M, N, K) of a batched matmul of a (..., M, K) and b (..., K, N): the leading axes
    broadcast and flattened, as lowering.as_batches lays the operands out."""
    lead = np.broadcast_shapes(tuple(a[:-2]), tuple(b[:-2]))
    return int(np.prod(lead)), int(a[-2]), int(b[-1]), int(a[-1])


def epilogue_of(grp, g: Graph) -> tuple:
    """The fused chain after a group's anchor as an autotune.epilogue (what the tuner times its
    candidates with): the anchor's bias, then each op that reads the value before it (and maybe an
    earlier value of the chain: Erf-GELU's diamond), up to the first op the epilogue cannot express
    (the kernel is then timed with the chain up to there)."""
    from autotune.epilogue import EPILOGUE_OPS
    n = grp.master
    steps: list = []
    if len(n.inputs) > 2 and n.inputs[2]:
        if n.op == "Conv" or (n.op == "Gemm" and n.attrs.get("beta", 1.0) == 1.0 and n.attrs.get("alpha", 1.0) == 1.0
                              and tuple(g.info(n.inputs[2]).shape) == (g.info(n.outputs[0]).shape[-1],)):
            steps.append(("bias", tuple(g.info(n.inputs[2]).shape)))
        else:                   # a scaled or broadcast C: lowered outside the anchor's compute
            return ()
    value = n.outputs[0]
    entering = {value: len(steps)}      # a value of the chain -> the step it enters ("x<k>", a diamond)
    for m in grp.nodes[1:]:
        if m.op not in EPILOGUE_OPS or value not in m.inputs or (m.attrs and m.op != "Clip"):
            break
        if m.op == "Clip" and not all(i == value or (i in g.constants and g.constants[i].size == 1)
                                      for i in m.inputs):       # a bound left out or computed
            break
        operands = []
        for i in m.inputs:
            c = g.constants.get(i)
            if i == value:
                operands.append("x")
            elif i in entering:
                operands.append(f"x{entering[i]}")
            elif c is not None and c.size == 1:
                operands.append(float(c.reshape(-1)[0]))
            elif i:
                operands.append(tuple(g.info(i).shape))
        if m.op == "Clip" and m.attrs:          # opset < 11: the bounds are attributes
            operands += [float(m.attrs.get("min", -3.4e38)), float(m.attrs.get("max", 3.4e38))]
        steps.append((m.op, tuple(operands)))
        value = m.outputs[0]
        entering[value] = len(steps)
    return tuple(steps)


def conv_geometry(node: Node, g: Graph) -> ConvGeometry:
    """The te.ops ConvGeometry of a 2-D Conv node with a constant weight (shapes from the graph)."""
    return workload_of(node, g).geometry


def extract_tasks(graph: Graph, target=None, algorithms: str = "all",
                  auto_schedule: bool | str = False) -> list[ModelTask]:
    """The distinct tunable workloads of a model (after its graph passes), largest total FLOPs first.

    algorithms "all": for each anchor the task of every implementation that applies (the 1x1
    GEMM and the direct conv, Winograd and the direct conv, each matmul strategy), so the tuned
    build can keep the fastest (frontends.compile.choose); "preferred": only the implementation
    an untuned build runs.  With `auto_schedule`, every other kernel too, as a task of the
    auto-scheduler; with auto_schedule="all" the anchors too are auto-scheduler tasks instead of
    template tasks (their computation as an untuned build lowers it: compile.preferred_anchor), to
    compare the two; a build then takes whichever record ran faster (compile.auto_anchor)."""
    import autotune
    from te.target import parse
    if algorithms not in ("all", "preferred"):
        raise ValueError(f"algorithms {algorithms!r}: use 'all' or 'preferred'")
    if auto_schedule not in (False, True, "all"):
        raise ValueError(f"auto_schedule {auto_schedule!r}: use False, True or 'all'")
    target = parse(target)
    g = run_passes(graph)
    weights = model_weight_bytes(g)
    found: dict[str, ModelTask] = {}
    epilogues: dict[str, list[tuple]] = {}      # workload key -> the epilogue of each kernel using it

    def add(task, wl, node: str) -> None:
        mt = found.get(task.workload_key)
        if mt is None:
            found[task.workload_key] = ModelTask(task, 1, task.flops, [node], wl)
        else:
            mt.count += 1
            mt.nodes.append(node)

    for gi, grp in enumerate(fuse(g)):
        wl = workload_of(grp.master, g)
        if wl is None:
            from .compile import lower_group, view_source
            if auto_schedule and view_source(g, grp) is None:      # a view is no kernel
                from autotune.auto_scheduler.workload import group_task
                from te import ops
                placeholders, _, out = lower_group(g, grp, f"k{gi}", getattr(graph, "opset", 13), target)
                task = group_task(placeholders, out, target, default=ops.schedule([out], target))
                add(task, task.workload_key, grp.master.name)
            continue
        if auto_schedule == "all":
            from autotune.auto_scheduler.workload import group_task
            from te import ops

            from .compile import preferred_anchor
            choice, _, (placeholders, _, out) = preferred_anchor(g, grp, gi, getattr(graph, "opset", 13), target)
            task = group_task(placeholders, out, target,
                              default=ops.schedule([out], target, anchor_schedule=choice.schedule))
            add(task, task.workload_key, grp.master.name)
            continue
        impls = [impl for _, impl in registry.candidates(wl, target)]
        for impl in impls if algorithms == "all" else impls[:1]:
            choice = registry.Choice(impl, wl, target)
            if choice.task is not None:
                task = replace(autotune.create_task(*choice.task, target, epilogue_of(grp, g)),
                               model_weight_bytes=weights)
                epilogues.setdefault(task.workload_key, []).append(task.epilogue)
                add(task, wl, grp.master.name)
    for key, eps in epilogues.items():
        # the kernels of one workload may fuse different chains (ResNet-50's 64->256 1x1: bias alone
        # in the first block's shortcut, bias + Sum + Relu in its three residual branches); the
        # task is timed with the chain most of them run (the first of the most common)
        common = max(eps, key=eps.count)
        mt = found[key]
        if common != mt.task.epilogue:
            mt.task = replace(autotune.create_task(mt.task.name, mt.task.args, target, common),
                              model_weight_bytes=weights)
    # heaviest kernels first, each kernel's implementations in the registry's order (preferred first)
    order = {mt.workload: -mt.total_flops for mt in reversed(found.values())}
    return sorted(found.values(), key=lambda t: order[t.workload])


def model_weight_bytes(g: Graph) -> int:
    """Bytes of the constants of a graph after its passes (weights with batch norms folded in): what
    a run reads once and the caches must hold for a kernel to find its weight there on the next
    run; a build's weights blob holds at least as much (some kernels' weights packed larger)."""
    return int(sum(c.nbytes for c in g.constants.values()))


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
