"""Profiling a model: latency over repeats, ONNX Runtime beside it, and a per-kernel roofline.

    lat = profile.time_calls(lambda: lib.run(x=x), repeat=20)          # seconds per run
    both = profile.time_interleaved({"tilewise": f, "onnxruntime": g})  # alternating rounds
    kernels = profile.profile_kernels(graph, logs=records)              # one row per distinct kernel
    rows = profile.roofline(kernels, peak_gflops=150.0, bandwidth_gbs=20.0)
    profile.plot_roofline(rows, 150.0, 20.0, "roofline.png")          # needs matplotlib

Per-kernel timing compiles each distinct kernel of the model plan on its own (te.build of its
LoweredFunc) and calls it with random arrays of its argument shapes.  A kernel's FLOPs are
counted from the graph nodes it computes (2 per multiply-add for Conv/Gemm/MatMul, one per
output element for elementwise ops); the bytes it moves are its arguments read once and its
output written once, the compulsory traffic, so the arithmetic intensity is an upper bound
and the memory ceiling an optimistic one.
"""
from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .graph import Graph, Node

# FLOPs per output element of ops that are not matrix products (approximate, for the roofline).
ELEMENT_FLOPS = {
    "Add": 1, "Sub": 1, "Mul": 1, "Div": 1, "Relu": 1, "LeakyRelu": 2, "PRelu": 2, "Clip": 2,
    "Max": 1, "Min": 1, "Sum": 1, "Mean": 2, "Neg": 1, "Abs": 1, "Sqrt": 1, "Reciprocal": 1,
    "Pow": 1, "Exp": 1, "Log": 1, "Erf": 1, "Sigmoid": 4, "Tanh": 4, "Gelu": 8, "HardSigmoid": 3,
    "HardSwish": 4, "Elu": 3, "Softplus": 3, "BatchNormalization": 2, "Softmax": 5,
    "LayerNormalization": 8, "InstanceNormalization": 8, "Where": 1, "Floor": 1, "Ceil": 1,
}
# Ops that only move data.
DATA_MOVEMENT = {"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Concat", "Split",
                 "Slice", "Gather", "Pad", "Expand", "Tile", "Identity", "Dropout", "Cast", "Resize"}


@dataclass
class Latency:
    """Seconds per run over repeats."""
    times: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def min(self) -> float:
        return min(self.times)

    @property
    def max(self) -> float:
        return max(self.times)


@dataclass
class KernelProfile:
    """One distinct kernel of a model plan, timed on its own."""
    name: str
    calls: int                      # how many steps of the model call it
    ops: str                        # the ops it computes, e.g. "Conv+Add+Relu"
    flops: float                    # per call
    bytes: float                    # per call: arguments read once, output written once
    latency: Latency | None = None  # per call
    error: str = ""
    unit: str = "fp32"              # what computes it: "fp32", or int8 on "amx", "vnni" or "int8" (no dot unit)

    @property
    def seconds(self) -> float:
        return self.latency.median if self.latency else math.nan

    @property
    def intensity(self) -> float:
        """FLOPs per byte moved."""
        return self.flops / self.bytes if self.bytes else math.nan

    @property
    def gflops(self) -> float:
        """Achieved GFLOP/s."""
        return self.flops / self.seconds / 1e9 if self.latency and self.seconds > 0 else math.nan

    @property
    def gbs(self) -> float:
        """Achieved GB/s of compulsory traffic."""
        return self.bytes / self.seconds / 1e9 if self.latency and self.seconds > 0 else math.nan


@dataclass
class RooflineRow:
    """A kernel against the machine's ceilings."""
    kernel: KernelProfile
    bound: str                      # "compute" or "memory": which ceiling applies at its intensity
    attainable_gflops: float        # min(peak, intensity * bandwidth)
    efficiency: float               # achieved / attainable
    share: float = math.nan         # of the sum of kernel times (calls * time per call)
    extra: dict = field(default_factory=dict)


# ---------------------------------------------------------------- timing
def time_calls(fn: Callable[[], object], repeat: int = 20, warmup: int = 2, min_time: float = 0.0) -> Latency:
    """Time fn() `repeat` times after `warmup` calls; with min_time, each sample loops to last that long."""
    for _ in range(max(0, warmup)):
        fn()
    number = 1
    if min_time > 0:
        t = time.perf_counter()
        fn()
        one = max(time.perf_counter() - t, 1e-7)
        number = max(1, int(min_time / one))
    times = []
    for _ in range(max(1, repeat)):
        t = time.perf_counter()
        for _ in range(number):
            fn()
        times.append((time.perf_counter() - t) / number)
    return Latency(times)


def time_interleaved(fns: dict[str, Callable[[], object]], repeat: int = 20, warmup: int = 2,
                     settle: int = 1, block: int = 1) -> dict[str, Latency]:
    """Time several callables in alternating rounds, so a change in machine load hits them alike.

    Each turn starts with `settle` untimed calls: the engine that ran before may leave threads
    spinning (OpenMP's workers and ONNX Runtime's default session wait busily for a while after
    a run), and the first call after a switch would pay for them.  Then `block` timed calls: an
    engine run back to back, as a user runs it (ONNX Runtime's spinning threads help it then).
    """
    for fn in fns.values():
        for _ in range(max(0, warmup)):
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(max(1, repeat)):
        for k, fn in fns.items():
            for _ in range(max(0, settle)):
                fn()
            for _ in range(max(1, block)):
                t = time.perf_counter()
                fn()
                times[k].append(time.perf_counter() - t)
    return {k: Latency(v) for k, v in times.items()}


ORT_MISSING = ("onnxruntime is not installed, and comparing with ONNX Runtime needs it: "
               "pip install 'tilewise[compare]'")


def onnxruntime_session(model, threads: int | None = None, spinning: bool = True,
                        profile_prefix: str | None = None, optimized_path: str | None = None):
    """An ONNX Runtime CPU session on `threads` intra-op threads (model: path, bytes or ModelProto).

    threads=None keeps ONNX Runtime's default (one per core).  spinning=False stops its idle
    threads from busy-waiting after a run: needed when its runs alternate with ours, or its
    spinning threads would take a core from our next run.  profile_prefix turns on ONNX
    Runtime's per-node profile (written by session.end_profiling()), optimized_path saves the
    graph it runs (fused and in its layouts).  This is the one place tilewise makes a session
    (benchmarks, commands and tests' references), so they all run it the same way.
    """
    try:
        import onnxruntime as ort
    except ImportError:
        raise ImportError(ORT_MISSING) from None
    opts = ort.SessionOptions()
    if not spinning:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads is not None:
        opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3
    if profile_prefix is not None:
        opts.enable_profiling = True
        opts.profile_file_prefix = profile_prefix
    if optimized_path is not None:
        opts.optimized_model_filepath = optimized_path
    if hasattr(model, "SerializeToString"):
        model = model.SerializeToString()
    return ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])


def random_inputs(specs: list[dict], seed: int = 0) -> dict[str, np.ndarray]:
    """Random arrays for inputs given as {name, shape, dtype} (floats ~ N(0,1), integers in [0, 3))."""
    from te.runtime import random_array
    rng = np.random.default_rng(seed)
    return {s["name"]: random_array(rng, tuple(s["shape"]), s["dtype"]) for s in specs}


# ---------------------------------------------------------------- FLOPs
def node_flops(n: Node, g: Graph) -> float:
    """Approximate floating-point operations of one node."""
    if n.op in DATA_MOVEMENT or not n.outputs or n.outputs[0] not in g.infos:
        return 0.0
    y = g.info(n.outputs[0]).shape
    out = float(np.prod(y, dtype=np.float64))
    if n.op == "Conv":
        w = g.info(n.inputs[1]).shape
        return 2.0 * out * float(np.prod(w[1:], dtype=np.float64))
    if n.op == "tilewise.DepthwisePointwise":        # passes.fuse_depthwise_pointwise: both convs
        wd, wp = g.info(n.inputs[1]).shape, g.info(n.inputs[3]).shape
        return 2.0 * out / wp[0] * (wd[0] * float(np.prod(wd[2:], dtype=np.float64)) + wp[0] * wp[1])
    if n.op == "tilewise.ConvMaxPool":               # conv_pool.fuse_conv_max_pool: the conv's FLOPs
        from te.ops.conv_geometry import geometry
        w = g.info(n.inputs[1]).shape
        c = geometry(g.info(n.inputs[0]).shape, w, tuple(n.attrs["conv_strides"]), tuple(n.attrs["conv_pads"]),
                     tuple(n.attrs["conv_dilations"]), 1)
        return 2.0 * c.N * c.K * c.OH * c.OW * float(np.prod(w[1:], dtype=np.float64))
    if n.op == "Gemm":
        a = g.info(n.inputs[0]).shape
        k = a[0] if n.attrs.get("transA", 0) else a[1]
        return 2.0 * out * k
    if n.op in ("MatMul", "BatchMatMul"):
        return 2.0 * out * g.info(n.inputs[0]).shape[-1]
    if n.op in ("MaxPool", "AveragePool"):
        return out * float(np.prod(n.attrs.get("kernel_shape", [1]), dtype=np.float64))
    if n.op in ("GlobalAveragePool", "GlobalMaxPool") or n.op.startswith("Reduce"):
        return float(np.prod(g.info(n.inputs[0]).shape, dtype=np.float64))
    return out * ELEMENT_FLOPS.get(n.op, 1)


# ---------------------------------------------------------------- per-kernel profile
def profile_kernels(graph: Graph, target=None, logs=None, repeat: int = 5, min_time: float = 0.01,
                    progress: Callable[[int, int, str], None] | None = None) -> list[KernelProfile]:
    """Compile every distinct kernel of the model's plan on its own and time it with random arguments."""
    import te
    from te.build import arg_specs
    from te.ops import winograd
    from autotune.call_timing import padded_array
    from te.runtime import random_array
    from te.target import parse

    from .compile import plan_model
    tgt = parse(target)
    history = None
    if logs:
        import autotune
        history = autotune.apply_history_best(logs)
    mp, g, _ = plan_model(graph, tgt, getattr(graph, "opset", 13), history)
    nodes = {n.name: n for n in g.nodes}
    calls: dict[str, list[list[Node]]] = {}
    for st in mp.steps:
        calls.setdefault(st.kernel, []).append([nodes[k] for k in st.nodes if k in nodes])
    out: list[KernelProfile] = []
    rng = np.random.default_rng(0)
    for k, func in enumerate(mp.funcs):
        groups = calls.get(func.name, [[]])
        grp = groups[0]
        specs = arg_specs(func)
        io = specs[:len(specs) - func.attrs.get("scratch", 0)]    # scratch is not compulsory traffic
        ops = "+".join(n.op for n in grp) or "?"
        if winograd.in_kernel(func):            # its FLOPs are the direct conv's, as TVM counts them
            ops = ops.replace("Conv", "Conv(Winograd)", 1)
        prof = KernelProfile(func.name, len(groups), ops, sum(node_flops(n, g) for n in grp),
                             float(sum(np.prod(s.shape, dtype=np.int64) * s.dtype.itemsize for s in io)),
                             unit=compute_unit(func, grp, g))
        if progress:
            progress(k, len(mp.funcs), func.name)
        try:
            kern = te.build(func, target=tgt)          # already scheduled: no dispatch here
            # laid out as the model's buffers hold them: 64-byte aligned, memory after each end
            # (numpy's large arrays start 16 bytes past a line, where every vector load a kernel
            # reads in place straddles two lines: ResNet-50's 1x1 GEMMs ran 1.2-1.3x slower so)
            arrays = [padded_array(s.shape, s.dtype) for s in specs]
            for a, s in zip(arrays, specs):
                if not s.written:
                    a[...] = random_array(rng, s.shape, s.dtype)
            ptrs = kern.check(arrays)
            prof.latency = time_calls(lambda: kern.call_unchecked(ptrs), repeat=repeat, warmup=1, min_time=min_time)
        except Exception as e:      # one kernel that cannot be timed alone does not spoil the report
            prof.error = f"{type(e).__name__}: {e}"
        out.append(prof)
    if progress:
        progress(len(mp.funcs), len(mp.funcs), "")
    return out


def compute_unit(func, grp: list[Node], g: Graph) -> str:
    """Which ceiling a kernel answers to: "amx" or "vnni" where it runs that dot-product
    intrinsic, "int8" for another kernel of an int8 anchor (int32 multiply-adds), else "fp32"."""
    from te.stmt import For, walk_stmt
    from te.tensorize import intrin_of
    names = {intrin_of(s) for s in walk_stmt(func.body) if isinstance(s, For) and s.pragmas}
    if "amx" in names:
        return "amx"
    if any(n and n.startswith("vpdpbusd") for n in names):
        return "vnni"
    if any(n.op in ("Conv", "MatMul", "Gemm") and g.info(n.outputs[0]).dtype == "int32" for n in grp):
        return "int8"
    return "fp32"


def unit_peak(unit: str, peak_gflops: float, int8_peaks: dict[str, float] | None) -> float:
    """The compute ceiling of a kernel of this unit: the int8 peak of its dot-product unit (an
    int8 kernel without one answers to VNNI's, the machine's int8 capability), else the fp32 peak."""
    peaks = int8_peaks or {}
    if unit == "amx" and "amx" in peaks:
        return peaks["amx"]
    if unit in ("amx", "vnni", "int8") and "vnni" in peaks:
        return peaks["vnni"]
    return peak_gflops


def roofline(kernels: list[KernelProfile], peak_gflops: float, bandwidth_gbs: float,
             int8_peaks: dict[str, float] | None = None) -> list[RooflineRow]:
    """Each kernel against the ceilings: attainable = min(peak, intensity * bandwidth), the
    peak of its unit (int8 kernels: `int8_peaks`, "vnni"/"amx" -> GOP/s, where given)."""
    total = sum(k.calls * k.seconds for k in kernels if k.latency)
    rows = []
    for k in kernels:
        peak_gflops_k = unit_peak(k.unit, peak_gflops, int8_peaks)
        ai = k.intensity
        mem = ai * bandwidth_gbs if math.isfinite(ai) else math.inf
        attainable = min(peak_gflops_k, mem)
        bound = "memory" if mem < peak_gflops_k else "compute"
        eff = k.gflops / attainable if k.latency and attainable > 0 else math.nan
        share = k.calls * k.seconds / total if k.latency and total > 0 else math.nan
        rows.append(RooflineRow(k, bound, attainable, eff, share))
    return rows


def plot_roofline(rows: list[RooflineRow], peak_gflops: float, bandwidth_gbs: float, path: str,
                  title: str = "roofline") -> None:
    """Draw the ceilings and one point per kernel (size ~ share of time) into an image file."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError("the roofline plot needs matplotlib: pip install 'tilewise[plot]' "
                          "(or pip install matplotlib)") from None
    pts = [r for r in rows if r.kernel.latency and r.kernel.flops > 0 and r.kernel.bytes > 0]
    ais = [r.kernel.intensity for r in pts] or [1.0]
    lo, hi = min(min(ais) / 4, 0.05), max(max(ais) * 4, 4 * peak_gflops / bandwidth_gbs)
    xs = np.logspace(math.log10(lo), math.log10(hi), 200)
    fig, ax = plt.subplots(figsize=(8, 5.5))
    ax.plot(xs, np.minimum(peak_gflops, xs * bandwidth_gbs), "k-", lw=2, label="roofline")
    ax.axhline(peak_gflops, color="tab:red", ls="--", lw=1, label=f"peak {peak_gflops:.0f} GFLOP/s")
    ax.plot(xs, xs * bandwidth_gbs, color="tab:blue", ls="--", lw=1, label=f"bandwidth {bandwidth_gbs:.1f} GB/s")
    for r in pts:
        size = 30 + 400 * (r.share if math.isfinite(r.share) else 0)
        ax.scatter(r.kernel.intensity, r.kernel.gflops, s=size, alpha=0.6)
        ax.annotate(r.kernel.name, (r.kernel.intensity, r.kernel.gflops), fontsize=7,
                    xytext=(4, 4), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (FLOP / byte)")
    ax.set_ylabel("GFLOP/s")
    ax.set_ylim(bottom=max(1e-3, min([r.kernel.gflops for r in pts] + [peak_gflops]) / 4), top=peak_gflops * 2)
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ---------------------------------------------------------------- two builds of one model, node by node
@dataclass
class KernelPair:
    """One piece of a model as two builds compute it (a: the reference build, b: the other): the
    kernel calls of each build that compute the same graph nodes (node_match: a layout copy or a
    transform kernel either build adds joins the node it serves), timed where the model runs them."""
    nodes: tuple[str, ...]          # the graph nodes it computes, the anchor of b's first task-bearing call first
    calls: int                      # how many times the model runs such a piece (same kernels on both sides)
    a: tuple = ()                   # the reference build's frontends.compile.KernelCalls of one occurrence
    b: tuple = ()
    times_a: list[float] = field(default_factory=list)     # seconds per occurrence (its calls summed), one per round
    times_b: list[float] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        """Median over rounds of a's time over b's (above 1: b runs faster)."""
        rs = [x / y for x, y in zip(self.times_a, self.times_b) if y > 0]
        return statistics.median(rs) if rs else math.nan


def match_steps(lib_a, lib_b) -> list[tuple[list[int], list[int]]]:
    """The kernel calls of two builds of one graph grouped by the original graph nodes they
    compute: (a's, b's) indices into each build's calls as time_steps returns them (copies left
    out), in a's order (b's calls that match none of a's after).  A call whose nodes a pass named after an original node
    ("<node>.pack") falls in with that node; calls of either build that share a node are one group."""
    from te.export import MEMCPY

    from .node_match import joined, original_node
    names = {n.name for n in lib_a.graph.nodes}
    sides = []
    for side, lib in enumerate((lib_a, lib_b)):
        calls = [st for st in lib.plan.steps if st.kernel != MEMCPY]
        sides.append([sorted({original_node(n, names) or n for n in st.nodes}) or [f"{side}:{k}"]   # no node: its own
                      for k, st in enumerate(calls)])
    find = joined(ns for keys in sides for ns in keys)
    groups: dict[str, tuple[list[int], list[int]]] = {}
    for side, keys in enumerate(sides):
        for k, ns in enumerate(keys):
            groups.setdefault(find(ns[0]), ([], []))[side].append(k)
    return list(groups.values())


def compare_builds(lib_a, lib_b, inputs: dict[str, np.ndarray] | None = None, rounds: int = 7, repeat: int = 10,
                   only: Callable[[tuple, tuple], bool] | None = None) -> list[KernelPair]:
    """Time the pieces of two builds of one graph (GraphLibrary) that `only(calls_a, calls_b)`
    picks (match_steps: the calls computing the same nodes) where each model runs them: every
    round runs time_steps(order="model") on a and on b (a first in every other round), `repeat`
    model passes each, so each call meets its weights as the rest of its model leaves them and
    its input as its producer leaves it, and a change in the machine's load hits both builds alike.  A round's time of a call is
    autotune.call_timing.per_call of its passes (the lower quartile: passes the machine's load
    stretched left out); a piece's is the sum of its calls, layout copies and transforms included.
    Pieces with the same kernels on both sides pool (calls), their times averaged per occurrence."""
    from autotune.call_timing import per_call
    from te.export import MEMCPY
    feed = inputs if inputs is not None else random_inputs(lib_a.plan.inputs)
    calls = [[st for st in lib.plan.steps if st.kernel != MEMCPY] for lib in (lib_a, lib_b)]
    pairs: dict[tuple, KernelPair] = {}
    where: dict[tuple, list[tuple[list[int], list[int]]]] = {}
    for ia, ib in match_steps(lib_a, lib_b):
        ca, cb = tuple(calls[0][k] for k in ia), tuple(calls[1][k] for k in ib)
        if only is not None and not only(ca, cb):
            continue
        key = (tuple(c.kernel for c in ca), tuple(c.kernel for c in cb))
        if key not in pairs:
            anchor = next((c.nodes[0] for c in cb + ca if c.task is not None and c.nodes), None)
            nodes = [n for c in ca + cb for n in c.nodes]
            if anchor is not None:
                nodes = [anchor] + [n for n in nodes if n != anchor]
            pairs[key] = KernelPair(tuple(dict.fromkeys(nodes)), 0, ca, cb)
        pairs[key].calls += 1
        where.setdefault(key, []).append((ia, ib))
    if not pairs:
        return []
    for lib in (lib_a, lib_b):      # untimed: a build's first passes ran 20x slower (its weights' pages, its team)
        time_steps(lib, feed, repeat=2, order="model")
    for r in range(max(1, rounds)):
        per = {}
        for side in ((0, 1) if r % 2 == 0 else (1, 0)):    # which goes first alternates: a drift in load cancels
            lib = (lib_a, lib_b)[side]
            per[side] = [per_call(lat.times) for _, lat in time_steps(lib, feed, repeat=repeat, order="model")]
        for key, p in pairs.items():
            occ = where[key]
            p.times_a.append(sum(per[0][k] for ia, _ in occ for k in ia) / len(occ))
            p.times_b.append(sum(per[1][k] for _, ib in occ for k in ib) / len(occ))
    return list(pairs.values())


# ---------------------------------------------------------------- kernels where the model runs them
STEP_ORDERS = ("model", "after_previous", "alone")     # time_steps' ways of calling each kernel
FLUSHED_ORDERS = ("weights_cold", "input_cold")         # "alone" with part of the arguments evicted


def time_steps(lib, inputs: dict[str, np.ndarray], repeat: int = 20,
               outputs: list[np.ndarray] | None = None, order: str = "model",
               clock: Callable[[], float] = time.perf_counter) -> list[tuple[object, Latency]]:
    """Each kernel call of a model (a GraphLibrary without a dynamic batch) timed where the model
    runs it: on its own weights and workspace, each call timed alone, `repeat` times; returns
    (KernelCall, Latency) per kernel call, copies left out.  `outputs` (arrays of the outputs'
    shapes and dtypes) receive the model's outputs.  `order` says what runs between two timed
    calls of a kernel:

    * "model": the whole model, in its order: the call meets the cache state the model leaves
      (its input in the L2s of the threads that wrote it, its weights wherever the model's other
      weights pushed them); the sum of the calls against the model's latency is the time between
      kernels;
    * "after_previous": only the kernel before it (and the copies after that one): its input
      placed as the model places it, by its producer's split, its weights warm unless they
      outgrow the caches alone;
    * "alone": nothing, the call repeated in a row: input and weights where its own last call
      left them (each thread's share in that thread's L2);
    * "weights_cold" / "input_cold": as "alone", but its constant arguments (weights, bias) /
      the activations it reads evicted from every cache level (te.cache_flush) before each call:
      what reading them from memory costs it.

    model - after_previous is what the rest of the model costs a call (mostly its weights evicted),
    after_previous - alone what its producer's work split costs it.  `clock` times each call
    (time.thread_time on one thread: the CPU time the call got, left alone by other processes).  A build whose kernels
    prefetch the next one's weights (te/prefetch.py) gets each call's range set as its entry
    point sets it."""
    import ctypes

    from te.export import MEMCPY
    from te.runtime import ALIGN
    if order not in STEP_ORDERS + FLUSHED_ORDERS:
        raise ValueError(f"time_steps: order {order!r}; use one of {', '.join(STEP_ORDERS + FLUSHED_ORDERS)}")
    if lib.plan.batch:
        raise ValueError("time_steps: the model has a dynamic batch; build it with a fixed shape")
    if lib._jit is None:
        lib._compile_jit()
    arrays = [np.ascontiguousarray(inputs[s["name"]], dtype=s["dtype"]) for s in lib.plan.inputs]
    outs = outputs if outputs is not None else [np.empty(s["shape"], s["dtype"]) for s in lib.plan.outputs]
    arrays += [np.ascontiguousarray(o) for o in outs]
    if any(a is not o for a, o in zip(arrays[len(lib.plan.inputs):], outs)):
        raise ValueError("time_steps: the output arrays must be C-contiguous")
    ws = np.empty(lib.plan.workspace_bytes + ALIGN, np.uint8)
    base = {"param": lib.params.ctypes.data, "ws": ws.ctypes.data + (-ws.ctypes.data) % ALIGN}
    calls, evict = [], {}
    for k, st in enumerate(lib.plan.steps):
        ptrs = [arrays[v].ctypes.data if space == "io" else v if space == "bytes" else base[space] + v
                for space, v in st.args]
        if st.kernel == MEMCPY:
            calls.append((st, None, ptrs))
        else:
            calls.append((st, lib._jit[0].function(st.kernel, len(ptrs)), [ctypes.c_void_p(p) for p in ptrs]))
            if order in FLUSHED_ORDERS:
                evict[k] = _evicted(lib, st, ptrs, weights=order == "weights_cold")
    flush = None
    if evict:
        from te.cache_flush import CacheFlush
        flush = CacheFlush()

    from te.prefetch import PREFETCH_GLOBAL
    at = lib._jit[0].engine.get_global_value_address(PREFETCH_GLOBAL)
    hint = (ctypes.c_int64 * 3).from_address(at) if at else None       # what the entry sets per call

    def call(k: int) -> float:
        """Run step k; the seconds it took (a copy: 0)."""
        st, fn, args = calls[k]
        if fn is None:
            ctypes.memmove(args[1], args[0], args[2])
            return 0.0
        if hint is not None:
            hint[:] = (base["param"] + st.prefetch[0],) + tuple(st.prefetch[1:]) if st.prefetch else (0, 0, 0)
        t = clock()
        fn(*args)
        return clock() - t

    kernels = [k for k, (_, fn, _) in enumerate(calls) if fn is not None]
    times: dict[int, list[float]] = {k: [] for k in kernels}
    model_pass = range(len(calls))
    for k in model_pass:                    # a pass to warm up, untimed
        call(k)
    if order == "model":
        for _ in range(max(1, repeat)):
            for k in model_pass:
                t = call(k)
                if k in times:
                    times[k].append(t)
    else:
        for i, k in enumerate(kernels):
            before = range(kernels[i - 1], k) if order == "after_previous" and i else range(0)
            call(k)                         # untimed: this call meets the model's cache state
            for _ in range(max(1, repeat)):
                for j in before:
                    call(j)
                for address, nbytes in evict.get(k, ()):
                    flush(address, nbytes)
                times[k].append(call(k))
        for k in model_pass:                # a kernel's output may overwrite its producer's input
            call(k)
    return [(calls[k][0], Latency(times[k])) for k in kernels]


def _evicted(lib, st, ptrs: list[int], weights: bool) -> list[tuple[int, int]]:
    """(address, bytes) of a kernel call's constant arguments (weights) or of the activations it
    reads but does not write (input), from its lowered function's argument shapes."""
    from te.build import arg_specs
    from te.prefetch import arg_bytes
    func = next(f for f in lib.plan.funcs if f.name == st.kernel)
    return [(p, n) for (space, _), p, spec, n in zip(st.args, ptrs, arg_specs(func), arg_bytes(func))
            if not spec.written and (space == "param") == weights]
