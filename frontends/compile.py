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

import contextlib
import hashlib
import json
import logging
import time
from dataclasses import dataclass, field

import numpy as np
from llvmlite import ir

import te
from te import ops
from te.codegen_llvm import STACK_LIMIT
from te.ops import winograd
from te.ops.common import config_scope
from te.ops.conv2d import PackedWeight, pack_weight_numpy, weight_block
from te.ops.conv2d_nchwc import pack_conv_weight_numpy
from te.ops.winograd import WinogradWeight
from te.stmt import hoist_scratch
from te.target import Target, parse

from .graph import Graph
from .lowering import LOWER
from .passes import Group, fuse, run_passes

log = logging.getLogger(__name__)

ALIGN = 64
I32, PTR = ir.IntType(32), ir.PointerType()
ENTRY = "tilewise_run"
MEMCPY = "memcpy"          # a Step that copies bytes instead of calling a kernel


@dataclass
class Step:
    """One kernel call of the model: which kernel, and where each argument lives."""
    kernel: str
    args: list[tuple[str, int]]       # (space, index-or-offset): ("io", i) | ("param", off) | ("ws", off)
    group: str


@dataclass
class ModelPlan:
    """What the entry point does: kernels, calls, buffer placement, I/O signature."""
    inputs: list[dict]
    outputs: list[dict]
    steps: list[Step]
    param_bytes: int
    workspace_bytes: int
    funcs: list = field(default_factory=list)          # LoweredFunc per distinct kernel
    tasks: list = field(default_factory=list)
    records: list = field(default_factory=list)        # tuning records the kernels use


def _size(shape, dtype) -> int:
    return int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype if dtype != "bool" else np.bool_).itemsize


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


def prepack_weights(g: Graph, grp: Group, target: Target) -> dict[str, tuple[str, int | None]]:
    """Pack the constant weights of a group's direct conv ahead of time, the way its kernel reads them.

    Returns {weight value: (packed constant, kind)}, kind None for a channel-block packing, the
    tile m for a Winograd transform, "NCHWc" for a conv in the packed layout; the packed
    constants are added to `g.constants`.
    Called under the group's config scope, since a tuned config may pick another channel block.
    """
    n = grp.master
    if n.op != "Conv" or len(n.inputs) < 2 or n.inputs[1] not in g.constants:
        return {}
    w = g.constants[n.inputs[1]]
    if n.attrs.get("layout") == "NCHWc":      # passes.propagate_nchwc: OIHW[b]i[b]o
        b = int(n.attrs["block"])
        packed = f"{n.inputs[1]}::nchw{b}c"
        if packed not in g.constants:
            g.constants[packed] = pack_conv_weight_numpy(w, b, b)
        return {n.inputs[1]: (packed, "NCHWc")}
    if len(g.info(n.inputs[0]).shape) != 4:
        return {}
    from .tasks import _conv_padding, conv_geometry
    pads, strides, dil = _conv_padding(n, g)
    x_shape, groups = g.info(n.inputs[0]).shape, int(n.attrs.get("group", 1))
    geo = conv_geometry(n, g)
    if winograd.chosen(geo):
        m, bn = winograd.layout(geo, target)
        packed = f"{n.inputs[1]}::winograd{m}x{bn}"
        if packed not in g.constants:
            g.constants[packed] = winograd.transform_weight_numpy(w, m, bn)
        return {n.inputs[1]: (packed, m)}
    ocb = weight_block(x_shape, w.shape, strides, pads, dil, groups, target)
    if ocb is None:
        return {}
    packed = f"{n.inputs[1]}::oc{ocb}"
    if packed not in g.constants:
        g.constants[packed] = pack_weight_numpy(w, ocb)
    return {n.inputs[1]: (packed, None)}


def lower_group(g: Graph, grp: Group, name: str, opset: int, target: Target, packed: dict | None = None):
    """te tensors of one group for target: (placeholders in argument order, argument values, output tensor).

    `packed` maps a weight to its packed constant (prepack_weights): the kernel takes that instead.
    """
    packed = packed or {}
    env: dict[str, object] = {}
    placeholders = []
    arg_values = []
    for k, v in enumerate(grp.inputs()):
        c = g.constants.get(v)
        info = g.info(v)
        if c is not None and c.size == 1 and grp.master.op not in ("Conv", "Gemm", "MatMul"):
            env[v] = c.reshape(-1)[0].item()          # a scalar operand: folded into the kernel
            continue
        if v in packed:
            name, kind = packed[v]
            p = te.placeholder(g.constants[name].shape, info.dtype, name=f"in{k}.packed")
            env[v] = (PackedWeight(p, tuple(info.shape)) if kind is None else
                      p if kind == "NCHWc" else WinogradWeight(p, tuple(info.shape), kind))
            placeholders.append(p)
            arg_values.append(name)
            continue
        p = te.placeholder(info.shape, info.dtype, name=f"in{k}")
        env[v] = p
        placeholders.append(p)
        arg_values.append(v)
    for n in grp.nodes:
        n.out_shapes = [g.info(o).shape for o in n.outputs if o]
        n.target = target                 # what the anchors' lowerings build for
        ins = [env[i] if i else None for i in n.inputs]
        try:
            outs = LOWER[n.op](n, ins, n.attrs, opset)
        except Exception as e:
            raise type(e)(f"node {n.name} ({n.op}): {e}") from e
        for o, t in zip(n.outputs, outs):
            env[o] = t
    out = env[grp.output]
    if not isinstance(out, te.Tensor) or out in placeholders:
        # the group computes nothing new (e.g. a reshape of an input): make it a copy
        src = out
        out = te.compute(src.shape, lambda *i: src[i], name=f"{name}.copy", tag="elemwise")
    want = g.info(grp.output)
    if tuple(out.shape) != tuple(want.shape):
        raise RuntimeError(f"kernel {name}: lowering produced shape {out.shape}, the model says {want.shape}")
    return placeholders, arg_values, out


def tuned_config(g: Graph, grp: Group, target: Target, history):
    """The tuned config (and its record) of a group's anchor in `history`, or (None, None)."""
    if history is None:
        return None, None
    import autotune

    from .tasks import task_of
    spec = task_of(grp.master, g, target)
    if spec is None or spec[0] not in TUNED_TEMPLATES:
        return None, None
    try:
        task = autotune.create_task(spec[0], spec[1], target)
        cfg = history.query(task)
    except Exception as e:            # a record that does not fit: the default schedule is fine
        log.warning("%s: tuning record not usable (%s); using the default schedule", grp.master.name, e)
        return None, None
    if cfg is None:
        return None, None
    return cfg, history.used.get(task.workload_key)


# Templates whose tuned configs model kernels apply (the op reads them through te.ops.config_scope).
TUNED_TEMPLATES = ("conv2d_nchw", "conv2d_nchw_winograd", "depthwise_conv2d_nchw", "matmul", "dense")


def plan(graph: Graph, target: Target, opset: int, history=None,
         layout: str | None = None) -> tuple[ModelPlan, Graph, dict]:
    """Passes, fusion, one lowered function per distinct group (tuned where `history` has a record), memory plan."""
    g = run_passes(graph, layout)
    groups = fuse(g)
    funcs, steps, by_key = {}, [], {}            # kernel name -> lowered function; group key -> name
    io_index = {i.name: k for k, i in enumerate(g.inputs)}
    copies = []          # outputs that are an input or a constant: copied by the entry point
    for k, o in enumerate(g.outputs):
        if o.name in io_index or o.name in g.constants:
            copies.append((o.name, len(g.inputs) + k))
        else:
            io_index[o.name] = len(g.inputs) + k
    # kernels
    group_args: list[list[str]] = []
    scratch: dict[str, int] = {}         # a kernel's scratch buffer in one step -> bytes
    used_records: dict[str, object] = {}
    for gi, grp in enumerate(groups):
        cfg, rec = tuned_config(g, grp, target, history)
        key = _group_key(g, grp) + (f"/{cfg}" if cfg is not None else "")
        kname = by_key.get(key)
        with config_scope(cfg) if cfg is not None else contextlib.nullcontext():
            packed = prepack_weights(g, grp, target)
            placeholders, arg_values, out = lower_group(g, grp, f"k{gi}", opset, target, packed)
            if kname is None:
                kname = f"k{len(funcs)}_{grp.master.op.lower()}"
                s = ops.schedule([out], target)
                # buffers the kernel would allocate per call come from the workspace instead
                funcs[kname] = hoist_scratch(te.lower(s, placeholders + [out], kname), STACK_LIMIT)
                by_key[key] = kname
        if rec is not None:
            used_records[rec.workload] = rec
        func = funcs[kname]
        extra = []
        for j, b in enumerate(func.args[len(func.args) - func.attrs.get("scratch", 0):]):
            extra.append(f"{kname}#scratch{j}@{gi}")
            scratch[extra[-1]] = _size(b.shape, b.dtype)
        group_args.append(arg_values + [grp.output] + extra)
        steps.append(Step(kname, [], " -> ".join(n.name for n in grp.nodes)))
    # constants the kernels read (weights packed ahead of time in place of the originals) -> params blob
    param_off: dict[str, int] = {}
    total = 0
    for v in [c for c, _ in copies if c in g.constants] + [v for vals in group_args for v in vals]:
        if v in g.constants and v not in param_off:
            param_off[v] = total
            total = _align(total + g.constants[v].nbytes)
    # memory plan for intermediates: lifetimes in step order, greedy placement by size
    first, last = {}, {}
    for si, vals in enumerate(group_args):
        for v in vals:
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
    ws_total = max((o + s for o, s, _, _ in placed), default=0)
    for st, vals in zip(steps, group_args):
        for v in vals:
            if v in io_index:
                st.args.append(("io", io_index[v]))
            elif v in g.constants:
                st.args.append(("param", param_off[v]))
            else:
                st.args.append(("ws", ws_off[v]))
    for src, dst in copies:
        info = g.info(src)
        where = ("param", param_off[src]) if src in g.constants else ("io", io_index[src])
        steps.append(Step(MEMCPY, [where, ("io", dst), ("bytes", _size(info.shape, info.dtype))], f"copy {src}"))
    mp_records = list(used_records.values())
    mp = ModelPlan(inputs=[{"name": i.name, "shape": list(i.shape), "dtype": i.dtype} for i in g.inputs],
                   outputs=[{"name": o.name, "shape": list(o.shape), "dtype": o.dtype} for o in g.outputs],
                   steps=steps, param_bytes=total, workspace_bytes=ws_total, funcs=list(funcs.values()))
    mp.records = mp_records
    return mp, g, param_off


def params_blob(g: Graph, param_off: dict, total: int) -> np.ndarray:
    """All constants in one 64-byte-aligned byte buffer."""
    blob = np.zeros(max(total, ALIGN) + ALIGN, np.uint8)
    base = (-blob.ctypes.data) % ALIGN
    blob = blob[base:base + max(total, ALIGN)]
    for name, off in param_off.items():
        c = np.ascontiguousarray(g.constants[name])
        blob[off:off + c.nbytes] = c.view(np.uint8).reshape(-1)
    return blob


def add_entry(cg, mp: ModelPlan) -> None:
    """Emit `i32 tilewise_run(ptr io, ptr params, ptr workspace)` into the codegen's module."""
    mod = cg.module
    fn = ir.Function(mod, ir.FunctionType(I32, [PTR, PTR, PTR]), ENTRY)
    io, params, ws = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    kernels = {f.name: mod.get_global(f.name) for f in mp.funcs}
    for k, st in enumerate(mp.steps):
        ptrs = []
        for space, v in st.args:
            if space == "bytes":
                ptrs.append(ir.Constant(ir.IntType(64), v))
                continue
            if space == "io":
                slot = b.gep(io, [ir.Constant(ir.IntType(64), v)], source_etype=PTR)
                ptrs.append(b.load(slot, typ=PTR))
            else:
                base = params if space == "param" else ws
                ptrs.append(b.gep(base, [ir.Constant(ir.IntType(64), v)], source_etype=ir.IntType(8)))
        if st.kernel == MEMCPY:
            memcpy = mod.globals.get("llvm.memcpy.p0.p0.i64") or ir.Function(
                mod, ir.FunctionType(ir.VoidType(), [PTR, PTR, ir.IntType(64), ir.IntType(1)]),
                "llvm.memcpy.p0.p0.i64")
            b.call(memcpy, [ptrs[1], ptrs[0], ptrs[2], ir.Constant(ir.IntType(1), 0)])
            continue
        rc = b.call(kernels[st.kernel], ptrs)
        fail = b.icmp_signed("!=", rc, ir.Constant(I32, 0))
        with b.if_then(fail, likely=False):
            b.ret(rc)
    b.ret(ir.Constant(I32, 0))


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
        return (f"{len(mp.funcs)} distinct kernels, {len(mp.steps)} calls, weights "
                f"{mp.param_bytes / 2**20:.1f} MiB, workspace (peak intermediate memory) "
                f"{mp.workspace_bytes / 2**20:.1f} MiB")

    def _module(self):
        from te.codegen_llvm import codegen
        cg = codegen(self.plan.funcs, self.target)
        add_entry(cg, self.plan)
        return cg

    def _compile_jit(self):
        import ctypes

        from te import llvm_init
        from te.build import optimize
        from te.codegen_llvm import NUM_THREADS_GLOBAL
        cg = self._module()
        if cg.uses_openmp:
            llvm_init.load_openmp()
        mod = optimize(str(cg.module), self.target)
        engine = llvm_init.llvm().create_mcjit_compiler(mod, self.target.new_machine())
        engine.finalize_object()
        ctypes.c_int32.from_address(engine.get_global_value_address(NUM_THREADS_GLOBAL)).value = \
            te.runtime.num_threads()
        fn = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p)(
            engine.get_function_address(ENTRY))
        self._jit = (engine, fn)

    def run(self, **inputs) -> list[np.ndarray]:
        """Run the model in this process; returns the outputs in the model's order."""
        if self._jit is None:
            self._compile_jit()
        from te.runtime import run_entry
        return run_entry(self._jit[1], self.plan.inputs, self.plan.outputs, self.plan.workspace_bytes,
                         self.params.ctypes.data, inputs)

    __call__ = run

    def export_library(self, path, header: str | None = None) -> dict:
        """Write one shared library with the kernels, the weights, the entry point and the metadata."""
        from te import export
        return export.export_model(self._module(), self.plan, self.params, path, self.target,
                                   records=self.records, header=header)


def build(graph: Graph, target=None, logs=None, layout: str | None = None) -> GraphLibrary:
    """Compile a graph with the best known records (default schedules otherwise) into a GraphLibrary.

    layout="NCHWc" runs chains of direct convolutions in the packed layout (passes.propagate_nchwc).
    """
    t0 = time.perf_counter()
    tgt = parse(target)
    opset = getattr(graph, "opset", 13)
    history = None
    if logs:
        import autotune
        history = autotune.apply_history_best(logs)
    mp, g, param_off = plan(graph, tgt, opset, history, layout)
    lib = GraphLibrary(graph, mp, g, param_off, tgt, records=mp.records)
    log.info("built %s: %s, %d tuned kernel(s), in %.1f s", graph.name, lib.summary(), len(mp.records),
             time.perf_counter() - t0)
    return lib
