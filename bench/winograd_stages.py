"""Winograd 3x3 convs (te.ops.winograd) timed alone per stage on one thread and on two.

    PYTHONPATH=$PWD python bench/winograd_stages.py [--repeat 200] [--only squeezenet|resnet50] [--m 0|2|4] [--threads 1,2]

Per conv three kernels are built from the same expression: the input transform alone (V), the
transform and the GEMMs (M), and the whole conv; the stages' times are the differences.  Each
kernel is timed on one thread and on two in one process (lower deciles, as a loaded machine
stretches the rest; the best of three rounds, all kernels in turn).  The last column is the
whole conv built with its NCHW output store as scatters (code generation's transposed stores
off: te/codegen_vector.py), an A/B of that store in one process.
"""
from __future__ import annotations

import argparse
import os
import sys
from contextlib import contextmanager, nullcontext

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import te                                                 # noqa: E402
from frontends import profile                             # noqa: E402
from te.codegen_llvm import CodeGenLLVM                   # noqa: E402
from te.ops import winograd                               # noqa: E402
from te.ops.conv2d import geometry                        # noqa: E402
from te.ops.conv_algorithm import choose                  # noqa: E402
from te.ops.schedule import input_stage                   # noqa: E402
from common import table                                  # noqa: E402
from threads import decile                                # noqa: E402

# (C, K, H): the 3x3 stride-1 convs with one pixel of padding
CONVS = {
    "squeezenet": [(16, 64, 55), (32, 128, 27), (48, 192, 13), (64, 256, 13)],
    "resnet50": [(64, 64, 56), (128, 128, 28), (256, 256, 14), (512, 512, 7)],
}


@contextmanager
def scattered_stores():
    """Builds inside emit strided vector stores as scatters (no register transpose)."""
    saved = CodeGenLLVM._transposed_stores
    CodeGenLLVM._transposed_stores = lambda self, s: False
    try:
        yield
    finally:
        CodeGenLLVM._transposed_stores = saved


def stage_kernels(C: int, K: int, H: int, target: te.target.Target, m: int = 0):
    """(name, kernel, arrays) for the input transform, transform + GEMMs, and the whole conv, by
    F(m x m) (0: the untuned choice, te.ops.conv_algorithm; F(4x4) where it picks the direct conv)."""
    x = np.random.default_rng(0).standard_normal((1, C, H, H)).astype(np.float32)
    w = np.random.default_rng(1).standard_normal((K, C, 3, 3)).astype(np.float32)
    g = geometry(x.shape, w.shape, (1, 1), (1, 1, 1, 1))
    m = m or choose(g, target).value or 4
    bn = winograd.default_bn(g, target)
    bm = winograd.default_bm(bn, target, C, K, winograd.tiles(g, m))
    U = winograd.transform_weight_numpy(w, m, bn)
    X = te.placeholder(x.shape, "float32", name="x")
    Ut = te.placeholder(U.shape, "float32", name="u")
    out = []
    for stage in ("v", "m", "conv", "scatter"):
        y = winograd.conv2d_winograd(X, winograd.WinogradWeight(Ut, w.shape, m), g, m=m, bn=bn, bm=bm)
        o1 = input_stage(y, "winograd.o1")
        M = input_stage(o1, "winograd.m")
        V = input_stage(input_stage(M, "winograd.acc"), "winograd.v")
        t = {"v": V, "m": M}.get(stage, y)
        s = te.create_schedule(t.op)
        work = g.flops / 4
        if stage in ("conv", "scatter"):
            winograd.schedule_winograd(s, y, None, target)
        else:
            if stage == "m":
                winograd.schedule_gemm(s, M, input_stage(M, "winograd.acc"), bm, bn,
                                       winograd.default_tile_k(C, fused=False), work)
            winograd.schedule_input(s, V, work, target.lanes(), rows=True)
        ins = [(X, x)] if stage == "v" else [(X, x), (Ut, U)]      # V does not read U
        with scattered_stores() if stage == "scatter" else nullcontext():
            k = te.build(s, [a for a, _ in ins] + [t], name=f"wg_{stage}")
        out.append((stage, k, [v for _, v in ins] + [np.zeros(t.shape, np.float32)]))
    return out, g, m


def time_kernel(k, arrays, threads: int, repeat: int) -> float:
    """Lower-decile microseconds of one call on `threads` threads."""
    k.set_num_threads(threads)
    ptrs = k.check(arrays)
    return decile(profile.time_calls(lambda: k.call_unchecked(ptrs), repeat=repeat, warmup=3).times) * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=200)
    ap.add_argument("--only", choices=sorted(CONVS))
    ap.add_argument("--m", type=int, default=0, choices=(0, 2, 4), help="output tile (0: the untuned choice)")
    ap.add_argument("--threads", default="1,2", help="thread counts to time, e.g. 1")
    args = ap.parse_args()
    target = te.target.host()
    rows = []
    for model, convs in CONVS.items():
        if args.only and model != args.only:
            continue
        for C, K, H in convs:
            kernels, g, m = stage_kernels(C, K, H, target, args.m)
            t: dict = {}
            ns = [int(n) for n in args.threads.split(",")]
            for _ in range(3):           # every kernel in turn, three times: the best of three
                for st, k, a in kernels:
                    for n in ns:
                        t[st, n] = min(t.get((st, n), float("inf")), time_kernel(k, a, n, args.repeat))
            np.testing.assert_allclose(kernels[2][2][-1], kernels[3][2][-1], rtol=1e-5, atol=1e-4)
            stages = {n: (t["v", n], t["m", n] - t["v", n], t["conv", n] - t["m", n], t["conv", n]) for n in ns}
            scaling = f"{t['conv', 1] / t['conv', 2]:.2f}" if set(ns) >= {1, 2} else "-"
            rows.append([model, f"{C}->{K} @{H} F({m})"]
                        + ["/".join(f"{stages[n][i]:.0f}" for n in ns) for i in range(4)]
                        + [scaling, "/".join(f"{t['scatter', n]:.0f}" for n in ns)])
            print(rows[-1], flush=True)
    print(table(["model", "conv", f"input us {args.threads} thr", "gemm", "output", "conv", "scaling",
                 "conv, scattered store"], rows))


if __name__ == "__main__":
    main()
