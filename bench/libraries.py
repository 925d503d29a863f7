"""Built model libraries side by side: several .so files of one model and ONNX Runtime, alternating.

    tilewise build model.onnx -o a.so              # one build...
    tilewise build model.onnx -o b.so ...          # ...and another (other code, other logs)
    python bench/libraries.py model.onnx a.so b.so --seconds 8
    GOMP_SPINCOUNT=300000 python bench/libraries.py model.onnx a.so   # libgomp's own spin count

Each library is loaded with te.runtime.load_module and run on the same random input as an ONNX
Runtime default session (and one that does not spin, timed right after it: the default session's
threads spin on after its runs); the engines alternate in blocks in one process (frontends.profile.
time_interleaved), so a change in the machine's speed hits them alike. Printed: each one's
largest difference from ONNX Runtime's outputs (all of them), its median latency and its ratio to ORT's,
and the same of the lower deciles (steadier while other jobs share the cores).
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import onnx                                                   # noqa: E402

from frontends import profile                                 # noqa: E402
from te.runtime import load_module                            # noqa: E402


def _saturated(y: np.ndarray) -> bool:
    """Is y a one-hot vector per row (a softmax of random-weight logits)?"""
    return y.dtype.kind == "f" and y.size > 1 and bool(np.isin(np.round(y, 6), (0.0, 1.0)).all())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="the ONNX model the libraries were built from")
    ap.add_argument("libs", nargs="+", help="libraries made by 'tilewise build'")
    ap.add_argument("--seconds", type=float, default=6.0, help="about how long the alternation runs")
    args = ap.parse_args()
    mods = {os.path.basename(p): load_module(p) for p in args.libs}
    first = next(iter(mods.values()))
    rng = np.random.default_rng(0)
    feed = {i.name: rng.standard_normal(list(i.shape)).astype(np.float32) for i in first.get_inputs()}
    sess = profile.onnxruntime_session(onnx.load(args.model))
    want = sess.run(None, feed)
    if any(_saturated(w) for w in want):
        print("note: an output is a saturated (one-hot) softmax, which checks only its argmax; build the "
              "libraries from a model that also outputs the logits (frontends.zoo.with_logits)")
    for name, m in mods.items():
        got = m.run(None, feed)
        diff = max(float(np.abs(g - w).max()) for g, w in zip(got, want))
        print(f"{name}: max abs difference from ONNX Runtime over its {len(got)} output(s) {diff:.2e}")
    fns = {k: (lambda m=m: m.run(None, feed)) for k, m in mods.items()}
    fns["onnxruntime"] = lambda: sess.run(None, feed)
    # ONNX Runtime without spinning after the default session: the default one's threads spin on
    # after its runs, and the library timed next lost up to half its runs to them (session 31: a
    # median 1.7x its lower decile, whichever library came first); the no-spin session takes that
    # place, and is shown too, as bench/models.py shows it
    nospin = profile.onnxruntime_session(onnx.load(args.model), spinning=False)
    fns["onnxruntime no-spin"] = lambda: nospin.run(None, feed)
    one = None
    for _ in range(5):          # the least of a few: one stall of a busy machine would make the blocks 1 run
        t0 = time.perf_counter()
        for f in fns.values():
            f()
        one = min(one or math.inf, time.perf_counter() - t0)
    block = max(1, int(0.05 / one * len(fns)))
    res = profile.time_interleaved(fns, repeat=max(3, int(args.seconds / (one * (block + 1)))), block=block)
    base = res["onnxruntime"].median
    low = {k: sorted(lat.times)[len(lat.times) // 10] for k, lat in res.items()}   # steadier on a busy machine
    for k, lat in res.items():
        print(f"{k:28s} {lat.median * 1e3:8.3f} ms  {lat.median / base:5.2f}x onnxruntime   lower decile "
              f"{low[k] * 1e3:8.3f} ms  {low[k] / low['onnxruntime']:5.2f}x")


if __name__ == "__main__":
    main()
