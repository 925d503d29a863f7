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

from te.runtime import random_inputs  # noqa: F401  (re-exported: its home is te, so `tilewise run` imports no frontends)

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
    # the fp32 peak (GFLOP/s) sampled either side of its timing, the higher (profile_kernels' `peak`), else nan
    peak_gflops: float = math.nan
    # timed writing its output over an input, as most of the model's calls of it do (frontends/in_place.py)
    in_place: bool = False

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
                    progress: Callable[[int, int, str], None] | None = None,
                    peak: Callable[[], float] | None = None) -> list[KernelProfile]:
    """Compile every distinct kernel of the model's plan on its own and time it with random
    arguments.  With `peak` (te.machine.peak_now, say), the peak is sampled before the first
    kernel and after each, and an fp32 kernel's peak_gflops is the higher of the samples either
    side of its timing: roofline() holds it against the peak of that moment, and a sample a
    disturbance pulled down does not flatter it."""
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
    steps: dict[str, list] = {}
    for st in mp.steps:
        calls.setdefault(st.kernel, []).append([nodes[k] for k in st.nodes if k in nodes])
        steps.setdefault(st.kernel, []).append(st)
    out: list[KernelProfile] = []
    rng = np.random.default_rng(0)
    last = peak() if peak is not None else math.nan      # the peak sampled last (see the docstring)
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
            for o, i in in_place_args(steps.get(func.name, []), specs).items():
                ptrs[o] = ptrs[i]        # the kernel reads the input's element before it writes it there
                prof.in_place = True
            prof.latency = time_calls(lambda: kern.call_unchecked(ptrs), repeat=repeat, warmup=1, min_time=min_time)
            if peak is not None and prof.unit == "fp32":
                before, last = last, peak()
                prof.peak_gflops = max(before, last)
        except Exception as e:      # one kernel that cannot be timed alone does not spoil the report
            prof.error = f"{type(e).__name__}: {e}"
        out.append(prof)
    if progress:
        progress(len(mp.funcs), len(mp.funcs), "")
    return out


def in_place_args(steps: list, specs: list) -> dict[int, int]:
    """{output argument: the input argument it overwrites} where most of a kernel's calls
    (`steps`, its model steps) write an output over an input's bytes (the plan's in-place Sum):
    timed on separate buffers such a kernel moves the residual and its output through the
    caches where the model moves one buffer (ResNet-50's 64 -> 256 + Sum at 56x56: 290 against
    235 us)."""
    found: dict[tuple[int, int], int] = {}
    for st in steps:
        for o, so in enumerate(specs[:len(st.args)]):
            if so.written:
                for i, si in enumerate(specs[:len(st.args)]):
                    if not si.written and st.args[i] == st.args[o] and si.shape == so.shape and si.dtype == so.dtype:
                        found[o, i] = found.get((o, i), 0) + 1
    return {o: i for (o, i), n in found.items() if 2 * n > len(steps)}


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
    peak of its unit (int8 kernels: `int8_peaks`, "vnni"/"amx" -> GOP/s, where given; an fp32
    kernel's own peak_gflops, sampled beside it, where profile_kernels measured one)."""
    total = sum(k.calls * k.seconds for k in kernels if k.latency)
    rows = []
    for k in kernels:
        peak_gflops_k = unit_peak(k.unit, peak_gflops, int8_peaks)
        if k.unit == "fp32" and k.peak_gflops > 0:
            peak_gflops_k = k.peak_gflops
        ai = k.intensity
        mem = ai * bandwidth_gbs if math.isfinite(ai) else math.inf
        attainable = min(peak_gflops_k, mem)
        bound = "memory" if mem < peak_gflops_k else "compute"
        eff = k.gflops / attainable if k.latency and attainable > 0 else math.nan
        share = k.calls * k.seconds / total if k.latency and total > 0 else math.nan
        rows.append(RooflineRow(k, bound, attainable, eff, share))
    return rows


def roof_seconds(rows: list[RooflineRow]) -> float:
    """Seconds per run the timed kernels would take if each under its roof ran at it, the others
    (a Winograd conv counted in the direct conv's FLOPs can pass the peak) as they run now: how
    far the kernels alone could go, a floor for the model's time with these algorithms."""
    return sum(r.kernel.calls * min(r.kernel.seconds, r.kernel.flops / (r.attainable_gflops * 1e9))
               for r in rows if r.kernel.latency and r.attainable_gflops > 0)


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


# kernels timed where the model runs them (step_timing.py), importable from here as before
from .step_timing import (FLUSHED_ORDERS, STEP_ORDERS, KernelPair, compare_builds,  # noqa: E402, F401
                          match_steps, time_steps)
