"""TVM's "How to optimize GEMM on CPU" ladder, in tilewise, against numpy and the machine's peak.

    python bench/gemm.py            # M = N = K = 1024, fp32
    python bench/gemm.py --size 512 --quick
    python bench/gemm.py --int8     # u8 x s8 -> s32: each int8 implementation, fp32 and ORT beside it
    python bench/gemm.py --int8 --threads 1 --cpu-time   # the same by CPU time, while others load the machine

Each step adds one idea to the one before.  Steps up to "write cache" run on one thread and
are compared with numpy on one thread; "parallel" and "register blocking" run on both cores.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import te                                   # noqa: E402
from te import machine                      # noqa: E402
from te.runtime import aligned_copy         # noqa: E402
from common import env_note, numpy_threads, table, time_call   # noqa: E402

BN = 32          # column block (two AVX-512 vectors of fp32)
BM = 8           # rows of the register tile in the last step


def declare(M, N, K, packed: bool):
    A = te.placeholder((M, K), name="A")
    B = te.placeholder((K, N), name="B")
    k = te.reduce_axis((0, K), name="k")
    if not packed:
        C = te.compute((M, N), lambda i, j: te.sum(A[i, k] * B[k, j], axis=k), name="C")
        return A, B, C, None, k
    Bp = te.compute((N // BN, K, BN), lambda jo, kk, ji: B[kk, jo * BN + ji], name="packedB")
    C = te.compute((M, N), lambda i, j: te.sum(A[i, k] * Bp[j // BN, k, j % BN], axis=k), name="C")
    return A, B, C, Bp, k


def baseline(M, N, K):
    A, B, C, _, _ = declare(M, N, K, False)
    return te.create_schedule(C.op), [A, B, C]


def blocking(M, N, K, vectorize=False, permute=False):
    A, B, C, _, k = declare(M, N, K, False)
    s = te.create_schedule(C.op)
    mo, no, mi, ni = s[C].tile(C.op.axis[0], C.op.axis[1], BN, BN)
    ko, ki = s[C].split(k, factor=4)
    s[C].reorder(mo, no, ko, mi, ki, ni) if permute else s[C].reorder(mo, no, ko, ki, mi, ni)
    if vectorize:
        s[C].vectorize(ni)
    return s, [A, B, C]


def packing(M, N, K):
    A, B, C, Bp, k = declare(M, N, K, True)
    s = te.create_schedule(C.op)
    mo, no, mi, ni = s[C].tile(C.op.axis[0], C.op.axis[1], BN, BN)
    ko, ki = s[C].split(k, factor=4)
    s[C].reorder(mo, no, ko, mi, ki, ni)
    s[C].vectorize(ni)
    s[Bp].vectorize(Bp.op.axis[2])
    return s, [A, B, C]


def write_cache(M, N, K, parallel=False):
    A, B, C, Bp, k = declare(M, N, K, True)
    s = te.create_schedule(C.op)
    CC = s.cache_write(C, "local")
    mo, no, mi, ni = s[C].tile(C.op.axis[0], C.op.axis[1], BN, BN)
    s[CC].compute_at(s[C], no)
    mc, nc = s[CC].op.axis
    (kc,) = s[CC].op.reduce_axis
    ko, ki = s[CC].split(kc, factor=4)
    s[CC].reorder(ko, mc, ki, nc)
    s[CC].unroll(ki)
    s[CC].vectorize(nc)
    s[C].vectorize(ni)
    s[Bp].vectorize(Bp.op.axis[2])
    if parallel:
        s[C].parallel(mo)
        s[Bp].parallel(Bp.op.axis[0])
    return s, [A, B, C]


def register_blocking(M, N, K):
    """An 8 x 32 accumulator tile held in vector registers: cache_write + compute_at + unroll + vectorize."""
    A, B, C, Bp, k = declare(M, N, K, True)
    s = te.create_schedule(C.op)
    CC = s.cache_write(C, "local")
    mo, no, mi, ni = s[C].tile(C.op.axis[0], C.op.axis[1], BM, BN)
    s[CC].compute_at(s[C], no)
    mc, nc = s[CC].op.axis
    (kc,) = s[CC].op.reduce_axis
    ko, ki = s[CC].split(kc, factor=4)
    s[CC].reorder(ko, ki, mc, nc)
    s[CC].unroll(ki)
    s[CC].unroll(mc)
    s[CC].vectorize(nc)
    s[C].vectorize(ni)
    s[C].parallel(s[C].fuse(mo, no))
    s[Bp].vectorize(Bp.op.axis[2])
    s[Bp].parallel(Bp.op.axis[0])
    return s, [A, B, C]


LADDER = [
    ("baseline", lambda M, N, K: baseline(M, N, K), 1),
    ("blocking", lambda M, N, K: blocking(M, N, K), 1),
    ("vectorize", lambda M, N, K: blocking(M, N, K, vectorize=True), 1),
    ("loop permutation", lambda M, N, K: blocking(M, N, K, vectorize=True, permute=True), 1),
    ("array packing", packing, 1),
    ("write cache", lambda M, N, K: write_cache(M, N, K), 1),
    ("parallel", lambda M, N, K: write_cache(M, N, K, parallel=True), 2),
    ("register blocking", register_blocking, 2),
    ("register blocking", register_blocking, 1),
]


def int8_main(size: int, threads: int = 2, cpu_time: bool = False, rounds: int = 11) -> None:
    """u8 x s8 -> s32 GEMM by every int8 implementation that runs here, beside tilewise's fp32
    GEMM (the registry's matmul), numpy fp32 and ONNX Runtime's MatMulInteger, on `threads`;
    with cpu_time (one thread), each engine's calling-thread CPU time, the engines alternating."""
    from te.ops import registry
    from te.peak_int8 import available, peak_gops
    from te.target import host
    M = N = K = size
    ops = 2.0 * M * N * K
    tgt = host()
    rng = np.random.default_rng(0)
    # every operand 64-byte aligned, as a model's buffers are (numpy puts large arrays 16 bytes
    # past a page, which splits each 64-byte row load across two cache lines)
    a = aligned_copy(rng.integers(0, 256, (M, K), dtype=np.uint8))
    b = rng.integers(-128, 128, (K, N), dtype=np.int8)
    ref = a.astype(np.int64) @ b.astype(np.int64)
    print(env_note())
    peaks = [f"{k} {peak_gops(k, threads):.0f}" for k in ("vnni", "amx") if available(k)]
    print(f"peaks on {threads} thread(s) (GOP/s): fp32 {machine.peak_gflops(threads):.0f}"
          + "".join(f", int8 {p}" for p in peaks) + "\n")
    engines = {}        # label: (function, its arguments)

    af, bf = aligned_copy(a.astype(np.float32)), aligned_copy(b.astype(np.float32))
    fp32 = registry.select(registry.MatmulWorkload(M, N, K), tgt)
    s, args = fp32.instantiate(fp32.config(registry.MatmulWorkload(M, N, K), tgt), (M, N, K, "float32"), tgt)
    f = te.build(s, args, target=tgt)
    f.set_num_threads(threads)
    engines["tilewise fp32 (matmul)"] = f, (af, bf, aligned_copy(np.zeros((M, N), np.float32)))
    engines["numpy fp32"] = np.matmul, (af, bf)
    ort = _ort_matmul_integer(M, N, K, threads)
    if ort is not None:
        out = ort.run(None, {"a": a, "b": b})[0]
        if not np.array_equal(out, ref):
            raise SystemExit("ONNX Runtime MatMulInteger: wrong result")
        engines["ORT MatMulInteger"] = ort.run, (None, {"a": a, "b": b})
    wl = registry.MatmulWorkload(M, N, K, "uint8")
    for _, impl in registry.candidates(wl, tgt):
        if "int8" not in impl.name or impl.template is None:     # the reference kernel: qnn.py
            continue
        cfg = impl.config(wl, tgt)
        s, args = impl.instantiate(cfg, impl.args(wl), tgt, prepacked=True)
        f = te.build(s, args, target=tgt)
        f.set_num_threads(threads)
        c = aligned_copy(np.zeros((M, N), np.int32))
        bp = impl.pack_weight(b, wl, cfg, tgt)
        f(a, bp, c)
        if not np.array_equal(c, ref):
            raise SystemExit(f"{impl.name}: wrong result")
        engines[f"tilewise {impl.name}"] = f, (a, bp, c)
    with numpy_threads(threads):
        if cpu_time:
            from conv_cpu_time import cpu_times
            results = {k: ops / t / 1e9 for k, t in cpu_times(engines, rounds).items()}
        else:
            results = {k: ops / time_call(fn, *args, min_repeats=10, min_seconds=1.0)["median"] / 1e9
                       for k, (fn, args) in engines.items()}
    base, ort_g = results["tilewise fp32 (matmul)"], results.get("ORT MatMulInteger")
    rows = [[k, f"{g:.0f}", f"{g / base:.2f}x", f"{g / ort_g:.2f}x" if ort_g else "-"] for k, g in results.items()]
    how = "calling-thread CPU time, median of rounds of each engine's best of 5" if cpu_time else "median wall time"
    print(f"\nGEMM {M}x{N}x{K} u8 x s8 -> s32 (fp32 rows: the same shape in fp32), {threads} thread(s), "
          f"weights packed ahead for tilewise int8; {how}")
    print(table(["kernel", "GOP/s", "vs tilewise fp32", "vs ORT MatMulInteger"], rows))


def _ort_matmul_integer(M: int, N: int, K: int, threads: int):
    """An ONNX Runtime session (default options but the thread count) of one MatMulInteger, or
    None without onnxruntime."""
    try:
        import onnx
        import onnxruntime as ort
        from onnx import TensorProto, helper
    except ImportError:
        print("  (onnxruntime or onnx is not installed: no ORT row)")
        return None
    g = helper.make_graph([helper.make_node("MatMulInteger", ["a", "b"], ["y"])], "mmi",
                          [helper.make_tensor_value_info("a", TensorProto.UINT8, [M, K]),
                           helper.make_tensor_value_info("b", TensorProto.INT8, [K, N])],
                          [helper.make_tensor_value_info("y", TensorProto.INT32, [M, N])])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=1024, help="M = N = K (a multiple of 32; default 1024)")
    ap.add_argument("--quick", action="store_true", help="skip the slow baseline and blocking steps")
    ap.add_argument("--builds", type=int, default=5, help="builds per schedule for the build-time median")
    ap.add_argument("--int8", action="store_true",
                    help="time u8 x s8 -> s32 int8 GEMMs against fp32 and ONNX Runtime instead of the ladder")
    ap.add_argument("--threads", type=int, default=2, help="threads of every engine with --int8 (default 2)")
    ap.add_argument("--cpu-time", action="store_true",
                    help="with --int8 --threads 1: time by the calling thread's CPU time, engines alternating "
                         "(figures that hold while other processes load the machine)")
    a = ap.parse_args()
    if a.cpu_time and (not a.int8 or a.threads != 1):
        ap.error("--cpu-time needs --int8 --threads 1 (only then does each engine run on the calling thread)")
    if a.int8:
        return int8_main(a.size, a.threads, a.cpu_time)
    M = N = K = a.size
    if M % BN:
        ap.error(f"--size must be a multiple of {BN}")
    flops = 2.0 * M * N * K
    rng = np.random.default_rng(0)
    A = rng.standard_normal((M, K), dtype=np.float32)
    B = rng.standard_normal((K, N), dtype=np.float32)
    ref = A.astype(np.float64) @ B.astype(np.float64)

    print(env_note())
    peak = {n: machine.peak_gflops(n) for n in (1, 2)}
    npy = {}
    for n in (1, 2):
        with numpy_threads(n):
            npy[n] = flops / time_call(np.matmul, A, B)["median"] / 1e9
    print(f"fp32 FMA peak: {peak[1]:.0f} GFLOP/s on 1 thread, {peak[2]:.0f} on 2; "
          f"numpy.matmul: {npy[1]:.0f} GFLOP/s on 1 thread, {npy[2]:.0f} on 2\n")

    rows = []
    build_times = []
    for name, make, threads in LADDER:
        if a.quick and name in ("baseline", "blocking"):
            continue
        times = []
        for _ in range(a.builds):
            s, args = make(M, N, K)
            t = time.perf_counter()
            f = te.build(s, args, name="gemm")
            times.append(time.perf_counter() - t)
        build_ms = statistics.median(times) * 1e3
        build_times.append(build_ms)
        f.set_num_threads(threads)
        C = np.zeros((M, N), np.float32)
        f(A, B, C)
        err = np.abs(C - ref).max() / np.abs(ref).max()
        if err > 1e-4:
            raise SystemExit(f"{name}: wrong result (relative error {err:.2e})")
        slow = name in ("baseline", "blocking")
        t = time_call(f, A, B, C, min_repeats=3 if slow else 10, min_seconds=0 if slow else 1.0)
        g = flops / t["median"] / 1e9
        rows.append([name, threads, f"{t['median'] * 1e3:.2f}", f"{g:.1f}", f"{g / npy[threads]:.2f}x",
                     f"{100 * g / peak[threads]:.0f}%", f"{build_ms:.0f}"])
        print(f"  {name} ({threads} thread{'s' if threads > 1 else ''}): {g:.1f} GFLOP/s", flush=True)

    print()
    print(f"GEMM {M}x{N}x{K} fp32 — median of repeats; numpy at the same thread count")
    print(table(["step", "threads", "ms", "GFLOP/s", "vs numpy", "of peak", "build ms"], rows))
    print(f"\nmedian build time (lower + codegen + LLVM O2 + JIT): {statistics.median(build_times):.0f} ms")


if __name__ == "__main__":
    main()
