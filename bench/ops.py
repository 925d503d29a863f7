"""Compute-heavy operators on ResNet-50 / MobileNet / BERT-base shapes: the untuned default schedule
(te.ops.schedule) against ONNX Runtime (a one-node model, the same thread count, in the same process)
and numpy where numpy has the operator, and against the machine's measured fp32 peak.

    python bench/ops.py                      # every case, 2 threads
    python bench/ops.py --quick              # fewer repeats
    python bench/ops.py --only conv 3x3      # cases whose label contains any of the words
    python bench/ops.py --kinds dense        # only some kinds

Each case is a `Case` with a `kind`; the kind says how a row is measured and reported
(GFLOP/s and share of peak for compute kinds, GB/s for memory kinds), so memory-bound rows
can be added to CASES with kind="memory" and `bytes=`.  "vs ORT" and "vs numpy" are their time
over ours (above 1 = tilewise is faster).  Weights are ONNX initializers, so ONNX Runtime
packs them once at session creation; the tilewise NCHW conv packs them inside the kernel on
every call (the "NCHWc pre-packed" rows show the graph compiler's path without that cost).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import te                                                        # noqa: E402
from frontends.profile import onnxruntime_session                # noqa: E402
from te import machine, ops                                      # noqa: E402
from te.ops.conv2d import geometry                               # noqa: E402
from te.ops.conv2d_nchwc import (default_blocks, pack_conv_weight_numpy,  # noqa: E402
                                 pack_nchwc_numpy)
from common import env_note, numpy_threads, table, time_call     # noqa: E402

COMPUTE_KINDS = ("conv2d", "conv2d_nchwc", "depthwise", "dense", "matmul")


@dataclass
class Case:
    """One row: how to build the te graph, the ONNX node that does the same, numpy's version."""
    kind: str                                   # conv2d | conv2d_nchwc | depthwise | dense | matmul | memory
    label: str
    inputs: list                                # shapes of the te placeholders, in argument order
    build: Callable                             # (*placeholders) -> output tensor
    flops: float = 0.0
    bytes: float = 0.0                          # for memory kinds: bytes an ideal kernel moves
    onnx: Callable | None = None                # (*arrays) -> (onnx model, feeds): a one-node model
    numpy: Callable | None = None               # (*arrays) -> result
    prepare: Callable | None = None             # (*arrays) -> arrays the te kernel takes (pre-packing)
    unpack: Callable | None = None              # te result -> the layout of the ONNX/numpy result
    params: dict = field(default_factory=dict)


# ---------------------------------------------------------------- ONNX one-node models

def _model(node, inputs: dict, initializers: dict):
    from onnx import TensorProto, helper, numpy_helper
    graph = helper.make_graph(
        [node], node.op_type,
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, a.shape) for n, a in inputs.items()],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=[numpy_helper.from_array(a, n) for n, a in initializers.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), inputs


def _onnx_conv(strides, pads, groups):
    def make(x, w):
        from onnx import helper
        node = helper.make_node("Conv", ["x", "w"], ["y"], strides=list(strides), pads=list(pads), group=groups)
        return _model(node, {"x": x}, {"w": w})
    return make


def _onnx_gemm(x, w, b):
    from onnx import helper
    return _model(helper.make_node("Gemm", ["x", "w", "b"], ["y"], transB=1), {"x": x}, {"w": w, "b": b})


def _onnx_matmul(a, b):
    from onnx import helper
    return _model(helper.make_node("MatMul", ["a", "b"], ["y"]), {"a": a}, {"b": b})


# ---------------------------------------------------------------- cases

def conv_case(label: str, N, C, H, K, R, stride, pad, groups=1, kind="conv2d") -> Case:
    """A conv2d (or depthwise) row; kind conv2d_nchwc measures the packed op on pre-packed inputs."""
    xs, ws = (N, C, H, H), (K, C // groups, R, R)
    g = geometry(xs, ws, stride, pad, 1, groups)
    pads = (pad,) * 4
    if kind != "conv2d_nchwc":
        return Case(kind, label, [xs, ws], lambda x, w: ops.conv2d(x, w, stride, pads, 1, groups), g.flops,
                    onnx=_onnx_conv((stride, stride), pads, groups), params={"groups": groups})
    ib, ob = default_blocks(C, K, te.target.host())
    xp, wp = pack_nchwc_numpy(np.zeros(xs, np.float32), ib), pack_conv_weight_numpy(np.zeros(ws, np.float32), ib, ob)
    return Case(kind, label + " NCHWc pre-packed", [xp.shape, wp.shape],
                lambda x, w: ops.conv2d_NCHWc(x, w, stride, pads), g.flops,
                onnx=_onnx_conv((stride, stride), pads, groups),
                prepare=lambda x, w: [pack_nchwc_numpy(x, ib), pack_conv_weight_numpy(w, ib, ob)],
                unpack=lambda y: y.transpose(0, 1, 4, 2, 3).reshape(N, -1, g.OH, g.OW)[:, :K],
                params={"logical": [xs, ws]})


def dense_case(label: str, M, N, K) -> Case:
    """y = x @ W.T + b with W (N, K), as ONNX Gemm(transB=1)."""
    return Case("dense", label, [(M, K), (N, K), (N,)], lambda x, w, b: ops.dense(x, w, b), 2.0 * M * N * K,
                onnx=_onnx_gemm, numpy=lambda x, w, b: x @ w.T + b)


def matmul_case(label: str, M, N, K) -> Case:
    """C = A @ B with a row-major B (K, N), as ONNX MatMul."""
    return Case("matmul", label, [(M, K), (K, N)], lambda a, b: ops.matmul(a, b), 2.0 * M * N * K,
                onnx=_onnx_matmul, numpy=np.matmul)


RESNET = [  # label, N, C, H, K, R, stride, pad
    ("res2 3x3 64->64 56x56", 1, 64, 56, 64, 3, 1, 1),
    ("res2 1x1 64->256 56x56", 1, 64, 56, 256, 1, 1, 0),
    ("res2 1x1 256->64 56x56", 1, 256, 56, 64, 1, 1, 0),
    ("res3 3x3 128->128 28x28", 1, 128, 28, 128, 3, 1, 1),
    ("res4 3x3 256->256 14x14", 1, 256, 14, 256, 3, 1, 1),
    ("res5 3x3 512->512 7x7", 1, 512, 7, 512, 3, 1, 1),
]

CASES: list[Case] = (
    [conv_case(f"conv {lbl}", *a) for lbl, *a in RESNET]
    + [conv_case("conv stem 7x7 s2 3->64 224x224", 1, 3, 224, 64, 7, 2, 3)]
    + [conv_case(f"conv {lbl}", *a, kind="conv2d_nchwc") for lbl, *a in RESNET]
    + [conv_case("depthwise 3x3 32ch 112x112", 1, 32, 112, 32, 3, 1, 1, groups=32, kind="depthwise"),
       conv_case("depthwise 3x3 s2 144ch 56x56", 1, 144, 56, 144, 3, 2, 1, groups=144, kind="depthwise")]
    + [dense_case("dense BERT qkv 128x768x768", 128, 768, 768),
       dense_case("dense BERT ffn1 128x3072x768", 128, 3072, 768),
       dense_case("dense BERT ffn2 128x768x3072", 128, 768, 3072),
       dense_case("dense ResNet fc 1x1000x2048", 1, 1000, 2048),
       dense_case("dense AlexNet fc6 1x4096x9216", 1, 4096, 9216),
       matmul_case("matmul BERT 128x768x768", 128, 768, 768),
       matmul_case("matmul AlexNet fc6 1x4096x9216 (B row-major)", 1, 4096, 9216)]
)


# ---------------------------------------------------------------- measuring

@dataclass
class Result:
    case: Case
    ours: float
    build: float
    ort: float | None = None
    npy: float | None = None
    error: float | None = None


def measure(case: Case, threads: int, repeats: int, seconds: float, rng, stat: str = "median") -> Result:
    """Build the default schedule, check it against ORT/numpy, and time all three."""
    logical = case.params.get("logical", case.inputs)
    arrays = [rng.uniform(-1, 1, s).astype(np.float32) for s in logical]
    feed = case.prepare(*arrays) if case.prepare else arrays
    ph = [te.placeholder(a.shape, name=f"in{i}") for i, a in enumerate(feed)]
    out = case.build(*ph)
    t0 = time.perf_counter()
    f = te.build(ops.schedule([out]), [*ph, out], name=case.kind)
    build = time.perf_counter() - t0
    f.set_num_threads(threads)
    y = np.zeros(out.shape, np.float32)
    ptrs = f.check([*feed, y])
    tc = dict(min_repeats=repeats, min_seconds=seconds)
    res = Result(case, time_call(f.call_unchecked, ptrs, **tc)[stat], build)
    reference = None
    if case.onnx is not None:
        model, inputs = case.onnx(*arrays)
        sess = onnxruntime_session(model, threads)
        feeds = {n: a for n, a in inputs.items()}
        reference = sess.run(None, feeds)[0]
        res.ort = time_call(lambda: sess.run(None, feeds), **tc)[stat]
    if case.numpy is not None:
        with numpy_threads(threads):
            reference = case.numpy(*arrays) if reference is None else reference
            res.npy = time_call(case.numpy, *arrays, **tc)[stat]
    if reference is not None:
        got = case.unpack(y) if case.unpack else y
        res.error = float(np.abs(got - reference).max() / max(1e-30, np.abs(reference).max()))
    return res


def report(results: list[Result], threads: int, peak: float, bw: float) -> str:
    """The Markdown table of results."""
    rows = []
    for r in results:
        c = r.case
        if c.kind in COMPUTE_KINDS:
            rate = f"{c.flops / r.ours / 1e9:.1f} GFLOP/s"
            share = f"{100 * c.flops / r.ours / 1e9 / peak:.0f}%"
        else:
            rate = f"{c.bytes / r.ours / 1e9:.1f} GB/s"
            share = f"{100 * c.bytes / r.ours / 1e9 / bw:.0f}% BW"
        ok = "" if r.error is None or r.error < 1e-3 else f" WRONG ({r.error:.1e})"
        rows.append([c.label + ok, c.kind, f"{r.ours * 1e3:.3f}", rate, share,
                     "-" if r.ort is None else f"{r.ort * 1e3:.3f}",
                     "-" if r.ort is None else f"{r.ort / r.ours:.2f}x",
                     "-" if r.npy is None else f"{r.npy / r.ours:.2f}x", f"{r.build:.2f}"])
    return table(["case", "kind", "ms", "tilewise", "of peak", "ORT ms", "vs ORT", "vs numpy", "build s"], rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2, help="threads for tilewise, ORT and numpy (default 2)")
    ap.add_argument("--quick", action="store_true", help="fewer repeats")
    ap.add_argument("--only", nargs="*", default=[], help="run cases whose label contains any of these words")
    ap.add_argument("--kinds", nargs="*", default=[], help="run only these kinds")
    ap.add_argument("--stat", choices=["median", "min"], default="median",
                    help="which statistic of the repeats to report (min is steadier on a shared machine)")
    a = ap.parse_args()
    cases = [c for c in CASES if (not a.only or any(w in c.label for w in a.only))
             and (not a.kinds or c.kind in a.kinds)]
    print(env_note())
    # on a shared machine the all-threads peak measures low when another process holds a core;
    # threads x the one-thread peak is the steadier figure of what the hardware can do
    peak_n, peak_1 = machine.peak_gflops(a.threads), machine.peak_gflops(1)
    peak = max(peak_n, a.threads * peak_1)
    bw = machine.bandwidth_gbs()
    print(f"fp32 FMA peak: {peak_1:.0f} GFLOP/s on 1 thread, {peak_n:.0f} measured on {a.threads} "
          f"(using {peak:.0f}); single-thread copy bandwidth {bw:.1f} GB/s\n")
    rng = np.random.default_rng(0)
    results = []
    for c in cases:
        r = measure(c, a.threads, 5 if a.quick else 20, 0.2 if a.quick else 1.0, rng, a.stat)
        results.append(r)
        print(f"  {c.label}: {r.ours * 1e3:.3f} ms" + ("" if r.ort is None else f", ORT {r.ort * 1e3:.3f} ms"),
              flush=True)
    print(f"\nUntuned default schedules, {a.threads} threads, {a.stat} of repeats; ORT and numpy on "
          f"{a.threads} threads in the same process")
    print(report(results, a.threads, peak, bw))


if __name__ == "__main__":
    main()
