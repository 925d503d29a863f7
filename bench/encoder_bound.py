"""Issue 21's encoder target against this machine's FMA peak, measured in the same rounds.

    python bench/encoder_bound.py                     # 8 rounds, 2 threads
    python bench/encoder_bound.py --rounds 12 --target 0.8

The target asks the BERT-like encoder layer (frontends.zoo.encoder_layer: seq 128, hidden 768,
FFN 3072) at <= 0.8x ONNX Runtime's latency.  Whatever else the layer does (two layer norms,
softmax, GELU, transposes), its matrix products alone (1.862 GFLOP, frontends.tasks.model_flops)
must then run at products / (0.8 x ORT's time): this script times, round after round, the fp32
FMA peak (te.machine.peak_gflops: independent FMA chains, no memory), ONNX Runtime's default
session, tilewise's build of the layer (the shipped logs) and, as what a tuned BLAS reaches on the
layer's largest product, numpy's 128x768 @ 768x3072, and prints per round the rate the target
needs as a share of that round's peak.  Measuring the peak in the same rounds matters on a shared
VM: its speed swings by half within an hour, so a peak taken minutes apart says nothing.

A target above 100% of the peak cannot be met by any schedule of these products in fp32; between
the BLAS's share and 100%, only by a GEMM faster than numpy's on the same shapes.
"""
from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import frontends                                          # noqa: E402
from frontends import zoo                                 # noqa: E402
from frontends.profile import onnxruntime_session, random_inputs, time_interleaved  # noqa: E402
from frontends.tasks import model_flops                   # noqa: E402
from te.machine import peak_gflops                        # noqa: E402
from common import env_note, numpy_threads, table         # noqa: E402

SETTLE_SECONDS = 0.2        # both engines' idle threads spin a while after a run; the peak waits them out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=8, help="rounds of peak, ORT, tilewise, numpy (default 8)")
    ap.add_argument("--runs", type=int, default=40, help="runs of each engine per round (default 40)")
    ap.add_argument("--target", type=float, default=0.8, help="the latency ratio to ORT asked (default 0.8)")
    a = ap.parse_args()
    if a.rounds < 1 or a.runs < 1 or not 0 < a.target <= 2:
        ap.error("--rounds and --runs take a whole number >= 1, --target a ratio in (0, 2]")
    os.environ.setdefault("TILEWISE_NUM_THREADS", "2")
    threads = int(os.environ["TILEWISE_NUM_THREADS"])
    print(env_note())
    model = zoo.encoder_layer()
    g = frontends.from_onnx(model)
    flops = model_flops(g)
    feed = random_inputs([{"name": i.name, "shape": i.shape, "dtype": i.dtype} for i in g.inputs[:1]])
    sess = onnxruntime_session(model)
    lib = frontends.build(g)
    got, want = lib.run(**feed)[0], sess.run(None, feed)[0]
    err = float(np.abs(got - want).max() / max(np.abs(want).max(), 1e-30))
    if err > 1e-3:
        raise SystemExit(f"encoder layer: tilewise differs from ONNX Runtime by {err:.2e} (relative)")
    x = np.random.default_rng(0).standard_normal((128, 768)).astype(np.float32)
    w = np.random.default_rng(1).standard_normal((768, 3072)).astype(np.float32)
    gemm_flops = 2.0 * 128 * 768 * 3072
    fns = {"ort": lambda: sess.run(None, feed), "tilewise": functools.partial(lib.run, **feed),
           "numpy": lambda: np.matmul(x, w)}
    rows, shares, blas = [], [], []
    with numpy_threads(threads):
        time_interleaved(fns, repeat=2)                    # warm every engine once
        for r in range(a.rounds):
            time.sleep(SETTLE_SECONDS)
            peak = peak_gflops(threads, seconds=0.2, repeats=3)
            med = {k: v.median for k, v in time_interleaved(fns, repeat=1, warmup=0, block=a.runs).items()}
            need = flops / (a.target * med["ort"]) / 1e9
            shares.append(need / peak)
            blas.append(gemm_flops / med["numpy"] / 1e9 / peak)
            rows.append([r, f"{peak:.0f}", f"{med['ort'] * 1e3:.2f}", f"{med['tilewise'] * 1e3:.2f}",
                         f"{med['tilewise'] / med['ort']:.2f}x", f"{flops / med['tilewise'] / 1e9 / peak:.0%}",
                         f"{need:.0f}", f"{need / peak:.0%}", f"{blas[-1]:.0%}"])
            print(f"  round {r}: peak {peak:.0f} GFLOP/s, ORT {med['ort'] * 1e3:.2f} ms, "
                  f"tilewise {med['tilewise'] * 1e3:.2f} ms", flush=True)
    print(f"\nencoder layer (seq 128, hidden 768, FFN 3072): {flops / 1e9:.3f} GFLOP of matrix products per run; "
          f"{threads} thread(s), ONNX Runtime a default session; each round: the fp32 FMA peak, then "
          f"{a.runs} runs of each engine")
    print(table(["round", "peak GFLOP/s", "ORT ms", "tilewise ms", "tilewise / ORT",
                 "tilewise products of peak", f"{a.target}x ORT needs GFLOP/s", "of peak",
                 "numpy FFN GEMM of peak"], rows))
    print(f"\nmedian over rounds: {a.target}x ORT needs the products at {statistics.median(shares):.0%} of the "
          f"round's peak (range {min(shares):.0%}-{max(shares):.0%}); numpy's 128x768 @ 768x3072 runs at "
          f"{statistics.median(blas):.0%} of it")


if __name__ == "__main__":
    main()
