"""Peeled vector tails (te/peel.py) against the guarded loop they replace, on one thread.

    python bench/peel.py                         # softmax over rows of 197 (ViT) and 77 (CLIP's text)
    python bench/peel.py --shapes 12,197,197 --rounds 21

Each softmax is bench/autosched.py's workload under the auto-scheduler's default schedule (the
sketch rules' defaults: rows no vector width divides run masked vectors), built twice from the
same schedule: as te.lower returns it (whole vectors in a loop with no guard, then one masked
step) and as it was before peeling (every vector step under its lane guard).  The two must agree
bit for bit.  Timed by the calling thread's CPU time (bench/conv_cpu_time.py's `cpu_times`:
alternating rounds, a round's figure the fastest of 5 calls, the median printed), beside ONNX
Runtime on one thread timed the same way.
"""
from __future__ import annotations

import os

os.environ["TILEWISE_NUM_THREADS"] = "1"        # before te loads: the kernels' thread count

import argparse                                  # noqa: E402
import sys                                       # noqa: E402

import numpy as np                               # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import autotune                                  # noqa: E402
import te                                        # noqa: E402
from autosched import as_bench_softmax, onnx_model   # noqa: E402
from autotune.auto_scheduler.sketch import SketchPolicy   # noqa: E402
from common import table                         # noqa: E402
from conv_cpu_time import cpu_times              # noqa: E402
from frontends.profile import onnxruntime_session   # noqa: E402
from te.simplify import simplify_func            # noqa: E402


def variants(shape: tuple[int, ...]) -> dict:
    """{label: (callable, arguments)}: the peeled and the guarded kernel, and ONNX Runtime."""
    task = autotune.create_task(as_bench_softmax, shape)
    policy = SketchPolicy(task)
    s, tensors = policy.apply(policy.default_params())
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    peeled = te.build(te.lower(s, tensors, "peeled"))
    guarded = te.build(simplify_func(te.lower(s, tensors, "guarded", simple=False)))
    outs = [np.zeros(shape, np.float32) for _ in range(2)]
    peeled(x, outs[0])
    guarded(x, outs[1])
    if not np.array_equal(*outs):
        raise SystemExit(f"softmax {shape}: the peeled kernel differs from the guarded one by "
                         f"{float(np.abs(outs[0] - outs[1]).max()):.3g}")
    e = np.exp(x - x.max(-1, keepdims=True))
    if not np.allclose(outs[0], e / e.sum(-1, keepdims=True), rtol=1e-4, atol=1e-6):
        raise SystemExit(f"softmax {shape}: differs from numpy")
    model, names = onnx_model("softmax", shape)
    sess = onnxruntime_session(model, 1, spinning=False)
    return {"peeled": (peeled, (x, outs[0])), "guarded": (guarded, (x, outs[1])),
            "onnxruntime": (lambda feeds: sess.run(None, feeds), ({names[0]: x},))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", nargs="*", default=["12,197,197", "12,77,77"], help="softmax inputs, B,M,N")
    ap.add_argument("--rounds", type=int, default=11)
    a = ap.parse_args()
    rows = []
    for text in a.shapes:
        try:
            shape = tuple(int(d) for d in text.split(","))
        except ValueError:
            raise SystemExit(f"--shapes {text}: give a softmax input as B,M,N, e.g. 12,197,197") from None
        secs = cpu_times(variants(shape), a.rounds)
        rows += [[text, k, f"{v * 1e3:.3f}", f"{v / secs['peeled']:.2f}x"] for k, v in secs.items()]
    print(table(["softmax", "kernel", "ms (1 thread, CPU time)", "vs peeled"], rows))


if __name__ == "__main__":
    main()
