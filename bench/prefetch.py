"""Kernels prefetching their weights ahead or not (te/prefetch.py): whole models A/B in one process,
and per kernel.

    python bench/prefetch.py                                   # ResNet-50, SqueezeNet
    python bench/prefetch.py --models resnet50 --kernels       # and every kernel call in model order
    python bench/prefetch.py --models vgg19,densenet121 --rounds 20

Each model is built twice (frontends.build(prefetch=False / True)), their
outputs compared with each other and with ONNX Runtime's, then the two run in alternating
rounds beside an ONNX Runtime default session (frontends.profile.time_interleaved), so a change
in the machine's load hits them alike.  With --kernels, every kernel call of both builds is also
timed in model order (frontends.profile.time_steps), and of the build without prefetch alone,
alone with its weights read from memory (te.cache_flush) and alone with its input read from
memory: where the model's order costs a kernel time, and whether prefetching gives it back.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import frontends                                          # noqa: E402
from frontends import profile                             # noqa: E402
from common import env_note, table                        # noqa: E402
from models import load                                   # noqa: E402
from threads import weight_bytes                          # noqa: E402


def kernel_table(libs: dict, feed: dict, repeat: int) -> str:
    """Per kernel call: weights, and its fastest time of the repeats in each order (us): on a
    shared machine the other repeats carry other processes' time."""
    base = libs["no prefetch"]
    runs = {("no prefetch", o): profile.time_steps(base, feed, repeat=repeat, order=o)
            for o in ("model", "alone", "weights_cold", "input_cold")}
    runs["prefetch", "model"] = profile.time_steps(libs["prefetch"], feed, repeat=repeat)
    heads = ["kernel", "nodes", "W MiB", "model", "alone", "W cold", "in cold", "prefetch model"]
    rows, sums = [], dict.fromkeys(runs, 0.0)
    for k, (st, _) in enumerate(runs["no prefetch", "model"]):
        us = {key: r[k][1].min * 1e6 for key, r in runs.items()}
        for key in sums:
            sums[key] += us[key] / 1e3
        rows.append([st.kernel, ",".join(st.nodes)[:22], f"{weight_bytes(base, st) / 2**20:.2f}"]
                    + [f"{us[key]:.0f}" for key in runs])
    rows.append(["sum (ms)", "", ""] + [f"{v:.2f}" for v in sums.values()])
    return table(heads, rows)


def model_report(name: str, rounds: int, kernels: bool, repeat: int) -> str:
    """Both builds of one model against each other and ONNX Runtime."""
    model = load(name)
    libs = {label: frontends.build(frontends.onnx.from_onnx(model), prefetch=p)
            for label, p in (("no prefetch", False), ("prefetch", True))}
    feed = profile.random_inputs(libs["no prefetch"].plan.inputs)
    sess = profile.onnxruntime_session(model)
    ref = sess.run(None, feed)
    outs = {k: lib.run(**feed) for k, lib in libs.items()}
    diff = {k: max(float(np.abs(a - b).max()) for a, b in zip(o, ref)) for k, o in outs.items()}
    same = all(np.array_equal(a, b) for a, b in zip(outs["no prefetch"], outs["prefetch"]))
    fns = {k: (lambda lib=lib: lib.run(**feed)) for k, lib in libs.items()}
    fns["onnxruntime"] = lambda: sess.run(None, feed)
    lat = profile.time_interleaved(fns, repeat=rounds, block=3)
    ort = lat["onnxruntime"].median
    spans = [st.prefetch[1] for st in libs["prefetch"].plan.steps if st.prefetch]
    lines = [f"## {name}: weights {libs['prefetch'].plan.param_bytes / 2**20:.1f} MiB, "
             f"{len(spans)} calls prefetch; outputs identical with and without: {same}", ""]
    rows = []
    for k, x in lat.items():
        paired = [a / b for a, b in zip(lat["no prefetch"].times, x.times)]
        rows.append([k, f"{x.median * 1e3:.3f}", f"{x.min * 1e3:.3f}", f"{x.median / ort:.3f}x", f"{statistics.median(paired):.3f}",
                     f"{diff[k]:.2e}" if k in diff else ""])
    lines.append(table(["engine", "median ms", "fastest ms", "/ ort", "no-prefetch time / this (paired)",
                        "max diff vs ort"], rows))
    if kernels:
        lines += ["", kernel_table(libs, feed, repeat)]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="resnet50,squeezenet", help="comma list of bench/models.py names")
    ap.add_argument("--rounds", type=int, default=30, help="alternating rounds of 3 calls each (default: %(default)s)")
    ap.add_argument("--kernels", action="store_true", help="also time every kernel call (model order, alone, cold)")
    ap.add_argument("--repeat", type=int, default=20, help="passes per kernel timing order (default: %(default)s)")
    a = ap.parse_args()
    print(env_note())
    for name in a.models.split(","):
        print()
        print(model_report(name.strip(), a.rounds, a.kernels, a.repeat))


if __name__ == "__main__":
    main()
