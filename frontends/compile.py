"""Whole-model compilation: fused groups -> kernels, a static memory plan, one native entry point.

    lib = frontends.build(graph, logs=["tuning.jsonl"])
    outputs = lib.run(data=x)               # in-process (JIT)
    lib.export_library("model.so")          # one .so: kernels + weights + entry + metadata

The entry point `tilewise_run(void **io, const void *params, void *workspace)` calls every
kernel in order with pointers into the caller's inputs/outputs (`io`), the weights blob
(`params`) and one workspace whose offsets the memory plan fixed at build time, so no Python
runs between kernels.  Identical kernels (same ops, attributes and shapes) are compiled once.
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field

import numpy as np

import te
from te import ops
from te import prefetch as prefetching
from te.codegen_llvm import STACK_LIMIT
from te.export import MEMCPY, add_model_entry
from te.ops import registry
from te.ops.knobs import ConfigError
from te.ops.registry import Choice
from te.runtime import ALIGN, aligned_zeros
from te.stmt import hoist_scratch
from te.target import Target, parse

from . import in_place
from .graph import Graph
from .lowering import ANCHORS, LOWER
from .passes import Group, fuse, run_passes
from .tasks import workload_of

log = logging.getLogger(__name__)



@dataclass
class KernelCall:
    """One kernel call of the model: which kernel, where each argument lives, the nodes it runs."""
    kernel: str
    args: list[tuple[str, int]]       # (space, index-or-offset): ("io", i) | ("param", off) | ("ws", off)
    nodes: list[str]                  # the graph nodes of its group, anchor first (or what a copy copies)
    task: tuple | None = None         # (template, args) of its anchor's implementation, if it has one
    prefetch: tuple[int, int, int] | None = None   # (params offset, bytes, lead) its threads prefetch (te/prefetch.py)


@dataclass
class ModelPlan:
    """What the entry point does: kernels, calls, buffer placement, I/O signature."""
    inputs: list[dict]
    outputs: list[dict]
    steps: list[KernelCall]
    param_bytes: int
    workspace_bytes: int
    funcs: list = field(default_factory=list)          # LoweredFunc per distinct kernel
    records: list = field(default_factory=list)        # tuning records the kernels use
    batch: dict | None = None          # a dynamic batch: {"dim", "max", "sizes"}; the shapes above lead with dim
    io_strides: list[int] = field(default_factory=list)  # per io slot, the bytes of one image (0: no batch)
    variants: list = field(default_factory=list)    # a dynamic batch: (batch, its steps) per compiled batch

    @property
    def entry(self) -> str:
        """The entry point's symbol: tilewise_run, or tilewise_run_batch with a dynamic batch."""
        return te.runtime.MODEL_BATCH_ENTRY_SYMBOL if self.batch else te.runtime.MODEL_ENTRY_SYMBOL


def _size(shape, dtype) -> int:
    return int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def _group_key(g: Graph, grp: Group) -> str:
    parts = []
    for n in grp.nodes:
        attrs = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in sorted(n.attrs.items())}
        parts.append([n.op, repr(attrs), [g.info(o).shape for o in n.outputs if o]])
    ins = []
    for name in grp.inputs():
        info = g.info(name)
        c = g.constants.get(name)
        ins.append([list(info.shape), info.dtype, c.reshape(-1)[0].item() if c is not None and c.size == 1 else None])
    return hashlib.sha256(json.dumps([parts, ins], default=str).encode()).hexdigest()[:16]


# ---------------------------------------------------------------- 1. lowering: the registry's choice per group

def choose(g: Graph, grp: Group, target: Target, history=None) -> Choice | None:
    """The registry's choice for a group's anchor: its implementation, task and config; None for
    a group without an anchor workload (it runs default kernels).

    Without tuning records the preferred implementation (the highest priority) with its defaults;
    with records, of the implementations that apply, the one whose best record ran fastest (tuning
    times every candidate, so the algorithm is chosen by measurement), with that config; where
    the model check judged the node, as record.preferred ranks the records (like with like)."""
    wl = workload_of(grp.master, g)
    if wl is None:
        return None
    found = registry.candidates(wl, target)
    if not found:
        raise ConfigError(f"{grp.master.name}: no implementation of {wl.op} runs {wl}")
    judged, ranked = 0.0, []            # the node's last judging in the model; ((implementation, cfg), record)
    for _, impl in found if history is not None else []:
        if impl.template is None:
            continue
        import autotune                 # only a build with tuning logs needs the tuner's tasks
        try:
            task = autotune.create_task(impl.template, impl.args(wl), target)
            cfg = history.query(task)
        except Exception as e:            # a record that does not fit: the default schedule is fine
            log.warning("%s: tuning record of %s not usable (%s)", grp.master.name, impl.name, e)
            continue
        judged = max(judged, history.judged_at(task) or 0.0)
        if cfg is not None:
            ranked.append(((impl, cfg), history.used[task.workload_key]))
    best = autotune.record.preferred(ranked, judged or None) if ranked else None
    return Choice(found[0][1], wl, target) if best is None else Choice(best[0][0], wl, target, best[0][1], best[1])


def preferred_anchor(g: Graph, grp: Group, gi: int, opset: int, target: Target):
    """(choice, packed, (placeholders, arg values, output)) of an anchor lowered as an untuned build
    lowers it (the preferred implementation, its defaults), or None for a group without an anchor:
    the computation `tilewise tune --auto-schedule all` gives the auto-scheduler for the anchor."""
    wl = workload_of(grp.master, g)
    found = registry.candidates(wl, target) if wl is not None else []
    if not found:
        return None
    choice = Choice(found[0][1], wl, target)
    packed = pack_weights(g, grp, choice)
    return choice, packed, lower_group(g, grp, f"k{gi}", opset, target, choice, packed)


def auto_anchor(g: Graph, grp: Group, gi: int, opset: int, target: Target, history, choice: Choice | None):
    """An anchor whose auto-scheduler record (of preferred_anchor's computation) ran faster than the
    best template record of the choice: (choice, packed, lowered, (schedule, record)); else None."""
    from autotune import record as rec
    from autotune.auto_scheduler.workload import GROUP, dispatch_group
    if choice is None or history is None or not history.has_workloads(f'["{GROUP}"'):
        return None
    base = preferred_anchor(g, grp, gi, opset, target)
    if base is None:
        return None
    placeholders, _, out = base[2]
    auto = dispatch_group(placeholders, out, target, history)
    if auto is None or (choice.record is not None and not rec.model_better(auto[1], choice.record)):
        return None
    return (*base, auto)


def pack_weights(g: Graph, grp: Group, choice: Choice | None) -> dict[str, str]:
    """{weight value: packed constant} for the group's anchor: its constant weight laid out by its
    implementation's pack_weight (added to g.constants), so no kernel repacks per call."""
    if choice is None or len(grp.master.inputs) < 2 or grp.master.inputs[1] not in g.constants:
        return {}
    w = grp.master.inputs[1]
    packed = choice.pack_weight(g.constants[w])
    if packed is None:
        return {}
    name = f"{w}::{choice.impl.name}{list(packed.shape)}"
    g.constants.setdefault(name, packed)
    choice.prepacked = True
    return {w: name}


def lower_group(g: Graph, grp: Group, name: str, opset: int, target: Target, choice: Choice | None = None,
                packed: dict | None = None):
    """te tensors of one group for target: (placeholders in argument order, argument values, output tensor).

    The anchor is built by `choice` (choose); `packed` maps its weight to the packed constant
    (pack_weights) that the kernel takes instead."""
    packed = packed or {}
    env: dict[str, object] = {}
    placeholders = []
    arg_values = []
    anchor_inputs = {i for n in grp.nodes if n.op in ANCHORS for i in n.inputs}
    for k, v in enumerate(grp.inputs()):
        c = g.constants.get(v)
        info = g.info(v)
        if c is not None and c.size == 1 and v not in anchor_inputs:
            # a scalar operand of an elementwise op (an epilogue's too): folded into the kernel,
            # whose key holds its value (_group_key); an anchor's own operands stay tensors
            env[v] = c.reshape(-1)[0].item()
            continue
        if v in packed:
            pc = g.constants[packed[v]]      # an integer weight may be packed wider (int16 for vpmaddwd)
            p = te.placeholder(pc.shape, pc.dtype.name if pc.dtype.kind in "iu" else info.dtype, name=f"in{k}.packed")
            arg_values.append(packed[v])
        else:
            p = te.placeholder(info.shape, info.dtype, name=f"in{k}")
            arg_values.append(v)
        env[v] = p
        placeholders.append(p)
    for n in grp.nodes:
        ins = [env[i] if i else None for i in n.inputs]
        out_shapes = [g.info(o).shape for o in n.outputs if o]
        try:
            if n.op in ANCHORS:
                outs = ANCHORS[n.op](n, ins, n.attrs, opset, out_shapes, target,
                                     choice if n is grp.master else None)
            else:
                outs = LOWER[n.op](n, ins, n.attrs, opset, out_shapes)
        except Exception as e:
            raise type(e)(f"node {n.name} ({n.op}): {e}") from e
        for o, t in zip(n.outputs, outs):
            env[o] = t
    out = env[grp.output]
    if not isinstance(out, te.Tensor) or out in placeholders:
        # the group computes nothing new (e.g. a reshape of an input): make it a copy
        out = te.compute(out.shape, lambda *i, src=out: src[i], name=f"{name}.copy", tag="elemwise")
    want = g.info(grp.output)
    if (tuple(out.shape), out.dtype) != (tuple(want.shape), want.dtype):     # its buffer is sized by these
        raise RuntimeError(f"kernel {name} ({grp.master.op} {grp.master.name}): lowering produced {out.dtype} "
                           f"{tuple(out.shape)}, the model says {want.dtype} {tuple(want.shape)}; please report it")
    return placeholders, arg_values, out


@dataclass
class Kernels:
    """The lowering's result: distinct kernels, and per group its call (kernel, argument values)."""
    funcs: dict = field(default_factory=dict)          # kernel name -> LoweredFunc
    calls: list[KernelCall] = field(default_factory=list)   # args still empty: bind_arguments fills them
    values: list[list[str]] = field(default_factory=list)   # per call, the values it passes
    scratch: dict[str, int] = field(default_factory=dict)    # a call's scratch buffer -> bytes
    records: dict = field(default_factory=dict)        # workload -> tuning record used
    slices: dict[str, tuple[str, int]] = field(default_factory=dict)  # a concat's part -> (concat, byte offset)
    io_views: dict[str, str] = field(default_factory=dict)   # a graph output -> the kernel's value it views
    overwrites: dict[str, list[str]] = field(default_factory=dict)  # a call's output -> inputs it may write over


VIEW_OPS = frozenset({"Reshape", "Flatten", "Squeeze", "Unsqueeze"})


def view_source(g: Graph, grp: Group) -> str | None:
    """The value a group only re-shapes (Reshape, Flatten, Squeeze, Unsqueeze of one value: the
    same bytes in row-major order), so its consumers can read that value's buffer as it is; None
    for a group that computes something."""
    if not all(n.op in VIEW_OPS for n in grp.nodes):
        return None
    src = grp.master.inputs[0]
    if not src or g.info(src).dtype != g.info(grp.output).dtype:
        return None
    return src


def output_view(root: str, written: set[str], outputs: set[str], io_views: dict[str, str]) -> bool:
    """Whether a graph output that views `root` can be root's buffer itself: root's kernel writes
    the caller's output array and no copy runs.  Not when root is no kernel's own result (a graph
    input, a weight, a concat's result or part, which live in the concat's buffer) or has a
    buffer of the caller's already (it is a graph output itself, or another output views it);
    then the output keeps its copy kernel."""
    return root in written and root not in outputs and root not in io_views.values()


def concat_slices(g: Graph, grp: Group, outputs: set[str], produced: set[str]) -> dict[str, tuple[str, int]]:
    """{part: (concat value, byte offset)} for a group that is only a Concat whose parts are
    contiguous blocks of its result (every dimension before the axis is 1: a channel concat at
    batch 1, NCHW or NCHWc) and are each written by a kernel (`produced`), once: those kernels can
    write straight into their slice, and the concat needs no kernel.  {} for any other group."""
    n = grp.master
    if len(grp.nodes) != 1 or n.op != "Concat" or grp.output != n.outputs[0] or grp.output in outputs:
        return {}
    out = g.info(grp.output)
    axis = n.attrs["axis"] % len(out.shape)
    if int(np.prod(out.shape[:axis], dtype=np.int64)) != 1 or len(set(n.inputs)) != len(n.inputs) or \
            not all(p in produced and p not in outputs and g.info(p).dtype == out.dtype for p in n.inputs):
        return {}
    parts, off = {}, 0
    for p in n.inputs:
        parts[p] = (grp.output, off)
        off += _size(g.info(p).shape, out.dtype)
    return parts


def resolve_slice(slices: dict[str, tuple[str, int]], v: str) -> tuple[str, int]:
    """(the value whose buffer holds v, v's byte offset in it): v itself at 0 unless v is a slice
    of a concat's result (concat_slices), which may itself be a slice of another."""
    off = 0
    while v in slices:
        v, o = slices[v]
        off += o
    return v, off


def lower_groups(g: Graph, groups: list[Group], target: Target, opset: int, history=None) -> Kernels:
    """One lowered, scheduled function per distinct group (same ops, shapes and config), each
    group's anchor built as the registry chose; the weights its kernel reads packed in g.

    A group that only re-shapes a value (view_source) is no kernel: its consumers are passed the
    source's buffer (ks.values name the source), which stays alive until they have run.  A view
    that is a graph output is no kernel either when the source's kernel can write the caller's
    output array (output_view; ks.io_views).  A Concat whose parts the kernels before it can
    write into their slices of its result (concat_slices) is no kernel either (ks.slices)."""
    ks, by_key = Kernels(), {}
    views: dict[str, str] = {}                      # a view's value -> the value whose bytes it is
    outputs = {o.name for o in g.outputs}
    produced: set[str] = set()                      # values a kernel writes (or a slicing concat)
    written: set[str] = set()                       # values a kernel writes into a buffer of their own
    for gi, grp in enumerate(groups):
        parts = concat_slices(g, grp, outputs, produced - set(ks.slices) - set(ks.io_views.values()))
        if parts:
            ks.slices.update(parts)
            written.difference_update(parts)
            produced.add(grp.output)
            continue
        src = view_source(g, grp)
        root = views.get(src, src)
        if src is not None and (grp.output not in outputs or output_view(root, written, outputs, ks.io_views)):
            views[grp.output] = root
            if grp.output in outputs:
                ks.io_views[grp.output] = root
            continue
        choice = choose(g, grp, target, history)
        anchor_auto = auto_anchor(g, grp, gi, opset, target, history, choice)
        if anchor_auto is not None:     # an auto-scheduled anchor that ran faster than its templates
            choice, packed, (placeholders, arg_values, out), auto = anchor_auto
            key = _group_key(g, grp) + f"/auto:{auto[1].workload}"
        else:
            tuned = choice is not None and choice.record is not None
            key = _group_key(g, grp) + (f"/{choice.cfg}" if tuned else "")
            packed = pack_weights(g, grp, choice)
            placeholders, arg_values, out = lower_group(g, grp, f"k{gi}", opset, target, choice, packed)
            auto = None
            if choice is None and history is not None:     # no template: an auto-scheduled record?
                from autotune.auto_scheduler.workload import dispatch_group
                auto = dispatch_group(placeholders, out, target, history)
        tuned = choice is not None and choice.record is not None
        kname = by_key.get(key)
        if kname is None:
            # a C name: the tilewise.X ops have a dot
            kname = by_key[key] = f"k{len(ks.funcs)}_{grp.master.op.lower().replace('.', '_')}"
            if auto is not None:
                s, ks.records[auto[1].workload] = auto
            else:
                s = ops.schedule([out], target, anchor_schedule=choice.schedule if choice is not None else None)
            # buffers the kernel would allocate per call come from the workspace instead
            ks.funcs[kname] = hoist_scratch(te.lower(s, placeholders + [out], kname), STACK_LIMIT)
        if tuned:
            ks.records[choice.record.workload] = choice.record
        func = ks.funcs[kname]
        extra = []
        for j, b in enumerate(func.args[len(func.args) - func.attrs.get("scratch", 0):]):
            extra.append(f"{kname}#scratch{j}@{gi}")
            ks.scratch[extra[-1]] = _size(b.shape, b.dtype)
        args = [views.get(v, v) for v in arg_values]
        ks.values.append(args + [grp.output] + extra)
        ks.overwrites[grp.output] = in_place.overwritable_values(args, placeholders, out)
        produced.add(grp.output)
        written.add(grp.output)
        task = choice.task if choice is not None else None
        ks.calls.append(KernelCall(kname, [], [n.name for n in grp.nodes], task))
    return ks


# ---------------------------------------------------------------- 2. weight placement

def place_weights(g: Graph, values: list[list[str]]) -> tuple[dict[str, int], int]:
    """Offsets in the params blob of the constants the calls read (packed weights in place of
    the originals), 64-byte aligned; and the blob's size."""
    param_off: dict[str, int] = {}
    total = 0
    for v in (v for vals in values for v in vals):
        if v in g.constants and v not in param_off:
            param_off[v] = total
            total = _align(total + g.constants[v].nbytes)
    return param_off, total


# ---------------------------------------------------------------- 3. workspace planning

def plan_workspace(g: Graph, values: list[list[str]], io_index: dict[str, int],
                   scratch: dict[str, int], slices: dict[str, tuple[str, int]] | None = None,
                   aliases: dict[str, str] | None = None) -> tuple[dict[str, int], int]:
    """Workspace offsets of the intermediates and scratch buffers: lifetimes in call order, the
    largest placed first at the lowest offset that no buffer alive at the same time overlaps.
    A concat's part is its result's buffer (resolve_slice): a use of either keeps it alive; so is
    an output written over an input (`aliases`, in_place.aliases)."""
    aliases = aliases or {}
    first, last = {}, {}
    for si, vals in enumerate(values):
        for v in (aliases.get(v, v) for v in (resolve_slice(slices or {}, v)[0] for v in vals)):
            if v in io_index or v in g.constants:
                continue
            first.setdefault(v, si)
            last[v] = si
    sizes = {v: _align(scratch[v] if v in scratch else _size(g.info(v).shape, g.info(v).dtype)) for v in first}
    placed: list[tuple[int, int, int, int]] = []     # (offset, size, first, last)
    ws_off: dict[str, int] = {}
    for v in sorted(first, key=lambda v: (-sizes[v], first[v])):
        off = 0
        for o, sz, f, l in sorted(placed):
            if f <= last[v] and first[v] <= l and off < o + sz and o < off + sizes[v]:
                off = _align(o + sz)
        # re-check after moving past conflicts (placed is sorted by offset, so one more scan settles it)
        moved = True
        while moved:
            moved = False
            for o, sz, f, l in placed:
                if f <= last[v] and first[v] <= l and off < o + sz and o < off + sizes[v]:
                    off, moved = _align(o + sz), True
        placed.append((off, sizes[v], first[v], last[v]))
        ws_off[v] = off
    ws_off.update({v: ws_off[r] for v, r in aliases.items()})
    return ws_off, max((o + s for o, s, _, _ in placed), default=0)


# ---------------------------------------------------------------- 4. argument binding

def io_slots(g: Graph, io_views: dict[str, str] | None = None) -> tuple[dict[str, int], list[tuple[str, int]]]:
    """Slots of the inputs and outputs in the entry's io array (an output's slot is also that of
    the value it views, io_views), and the outputs that are an input or a constant (the entry
    copies them: (source value, io slot))."""
    io_index = {i.name: k for k, i in enumerate(g.inputs)}
    copies = []
    for k, o in enumerate(g.outputs):
        if o.name in io_index or o.name in g.constants:
            copies.append((o.name, len(g.inputs) + k))
        else:
            io_index[o.name] = len(g.inputs) + k
    for out, root in (io_views or {}).items():
        io_index[root] = io_index[out]
    return io_index, copies


def bind_arguments(g: Graph, ks: Kernels, io_index: dict[str, int], copies: list, param_off: dict[str, int],
                   ws_off: dict[str, int]) -> list[KernelCall]:
    """Every call's arguments as (space, offset), then the copies of outputs that no kernel writes."""
    steps = ks.calls
    for st, vals in zip(steps, ks.values):
        for v in vals:
            if v in ks.slices:
                base, off = resolve_slice(ks.slices, v)
                st.args.append(("ws", ws_off[base] + off))
            elif v in io_index:
                st.args.append(("io", io_index[v]))
            elif v in g.constants:
                st.args.append(("param", param_off[v]))
            else:
                st.args.append(("ws", ws_off[v]))
    for src, dst in copies:
        info = g.info(src)
        where = ("param", param_off[src]) if src in g.constants else ("io", io_index[src])
        steps.append(KernelCall(MEMCPY, [where, ("io", dst), ("bytes", _size(info.shape, info.dtype))], [src]))
    return steps


def plan_model(graph: Graph, target: Target, opset: int, history=None,
               layout: str | None = None) -> tuple[ModelPlan, Graph, dict]:
    """The model's plan: passes and fusion, then the four steps below; returns (plan, the graph
    after passes with its packed constants, params offsets). A graph with a dynamic batch
    (graph.batch) gets one plan per compiled batch, merged (frontends/batch_plan.py)."""
    if graph.batch is not None:
        from .batch_plan import plan_batched
        return plan_batched(graph, target, opset, history, layout)
    g = run_passes(graph, layout, target)
    ks = lower_groups(g, fuse(g), target, opset, history)         # 1. kernels, weights packed
    io_index, copies = io_slots(g, ks.io_views)
    param_off, param_bytes = place_weights(g, [[c for c, _ in copies]] + ks.values)       # 2.
    private = set(io_index) | set(g.constants) | set(ks.slices) | {b for b, _ in ks.slices.values()}
    ws_off, ws_bytes = plan_workspace(g, ks.values, io_index, ks.scratch, ks.slices,              # 3.
                                      in_place.aliases(ks.values, ks.overwrites, private))
    steps = bind_arguments(g, ks, io_index, copies, param_off, ws_off)                       # 4.
    mp = ModelPlan(inputs=[io_spec(i, None) for i in g.inputs], outputs=[io_spec(o, None) for o in g.outputs],
                   steps=steps, param_bytes=param_bytes, workspace_bytes=ws_bytes, funcs=list(ks.funcs.values()),
                   records=list(ks.records.values()))
    return mp, g, param_off


def io_spec(t, batch) -> dict:
    """A model input's or output's {name, shape, dtype}; a batch-carrying one leads with the
    batch dimension's name, as ONNX Runtime shows it."""
    shape = batch.symbolic(t.name, t.shape) if batch is not None else list(t.shape)
    return {"name": t.name, "shape": shape, "dtype": t.dtype}


def params_blob(g: Graph, param_off: dict, total: int) -> np.ndarray:
    """All constants in one 64-byte-aligned byte buffer."""
    blob = aligned_zeros((max(total, ALIGN),), np.uint8)       # on huge pages where it is large
    for name, off in param_off.items():
        c = np.ascontiguousarray(g.constants[name])
        blob[off:off + c.nbytes] = c.view(np.uint8).reshape(-1)
    return blob


class GraphLibrary:
    """A compiled model: run it in-process, or export it as one shared library."""

    def __init__(self, graph: Graph, mp: ModelPlan, g: Graph, param_off: dict, target: Target,
                 records: list | None = None):
        self.graph, self.plan, self.target = graph, mp, target
        self.params = params_blob(g, param_off, mp.param_bytes)
        self.records = records or []
        self._jit = None

    @property
    def input_names(self) -> list[str]:
        return [i["name"] for i in self.plan.inputs]

    @property
    def output_names(self) -> list[str]:
        return [o["name"] for o in self.plan.outputs]

    def summary(self) -> str:
        """Kernels, calls, weights and the peak workspace."""
        mp = self.plan
        each = f" (compiled for batch {', '.join(str(b) for b, _ in mp.variants)})" if mp.batch else ""
        return (f"{len(mp.funcs)} distinct kernels, {len(mp.steps)} calls{each}, weights "
                f"{mp.param_bytes / 2**20:.1f} MiB, workspace (peak intermediate memory) "
                f"{mp.workspace_bytes / 2**20:.1f} MiB")

    def _module(self):
        from te.codegen_llvm import codegen
        cg = codegen(self.plan.funcs, self.target, prefetch=any(st.prefetch for st in self.plan.steps))
        add_model_entry(cg, self.plan.steps, self.plan.funcs, self.plan.batch, self.plan.io_strides,
                        self.plan.variants)
        return cg

    def _compile_jit(self):
        import ctypes

        from te.build import optimize
        from te.jit import JitModule
        cg = self._module()
        jit = JitModule(optimize(str(cg.module), self.target), self.target, cg.uses_openmp)
        argtypes = [ctypes.c_void_p] * 3 + ([ctypes.c_int64] if self.plan.batch else [])  # (io, params, ws[, batch])
        fn = jit.function(self.plan.entry, argtypes=argtypes)
        # the entry with its input checks, output specs and workspace set up once for every run
        call = te.runtime.ModelCall(fn, self.plan.inputs, self.plan.outputs, self.plan.workspace_bytes,
                                    self.params.ctypes.data, self.plan.batch)
        self._jit = (jit, fn, call)

    def set_num_threads(self, n: int) -> None:
        """Threads that the parallel loops of the model's kernels use."""
        n = te.runtime.check_num_threads(n)
        if self._jit is None:
            self._compile_jit()
        if self._jit[0].num_threads is not None:        # None: no kernel has a parallel loop
            self._jit[0].num_threads.value = n

    def get_inputs(self) -> list:
        """The model's inputs as ONNX Runtime's InferenceSession.get_inputs() gives them."""
        return te.runtime.node_args(self.plan.inputs)

    def get_outputs(self) -> list:
        """The model's outputs as ONNX Runtime's InferenceSession.get_outputs() gives them."""
        return te.runtime.node_args(self.plan.outputs)

    def run(self, *args, **inputs) -> list[np.ndarray]:
        """Run the model in this process.

        As ONNX Runtime: run(output_names, input_feed) returns the outputs named (None: all) in
        that order; run(x=...) returns every output in the model's order."""
        return te.runtime.select_outputs(args, inputs, self.plan.inputs, self.plan.outputs, self._run_all)

    def _run_all(self, inputs: dict) -> list[np.ndarray]:
        if self._jit is None:
            self._compile_jit()
        return self._jit[2](inputs)

    def __call__(self, *arrays: np.ndarray, **inputs: np.ndarray) -> list[np.ndarray]:
        """Run with the inputs in the model's order (or by name); returns every output."""
        return self._run_all(te.runtime.positional_feed(arrays, inputs, self.input_names))

    def export_library(self, path, header: str | None = None) -> dict:
        """Write one shared library with the kernels, the weights, the entry point and the metadata."""
        from te import export
        return export.export_model(self._module(), self.plan, self.params, path, self.target,
                                   records=self.records, header=header)


def build(graph: Graph, target=None, logs=None, layout: str | None = None,
          prefetch: bool | None = None) -> GraphLibrary:
    """Compile a graph with the best known records (default schedules otherwise) into a GraphLibrary.

    layout="NCHWc" runs chains of direct convolutions in the packed layout (passes.propagate_nchwc).
    prefetch: each large-weight kernel's threads prefetch their weights a little ahead
    (te/prefetch.py); None decides by the target and the weights (`te.prefetch.pays`).
    """
    t0 = time.perf_counter()
    tgt = parse(target)
    opset = getattr(graph, "opset", 13)
    history = None
    if logs:
        import autotune
        history = autotune.apply_history_best(logs)
    mp, g, param_off = plan_model(graph, tgt, opset, history, layout)
    if prefetch is None:
        prefetch = prefetching.pays(tgt, mp.param_bytes) and not mp.batch
    if prefetch:
        from .profile import node_flops
        nodes = {n.name: n for n in g.nodes}
        for st, span in zip(mp.steps, prefetching.ranges(mp.steps, mp.funcs, tgt)):
            anchor = nodes.get(st.nodes[0]) if span and st.nodes else None
            if anchor is not None and prefetching.reuses(node_flops(anchor, g), span[1]):
                st.prefetch = span
    lib = GraphLibrary(graph, mp, g, param_off, tgt, records=mp.records)
    log.info("built %s: %s, %d tuned kernel(s), in %.1f s", graph.name, lib.summary(), len(mp.records),
             time.perf_counter() - t0)
    return lib
