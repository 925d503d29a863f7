"""The 3x3 stride-1 convs of ResNet-50 and VGG by each algorithm, their weights warm and cold.

    python bench/conv_algorithm.py                # every shape, the host's threads
    python bench/conv_algorithm.py --rounds 5
    python bench/conv_algorithm.py --models resnet50,squeezenet   # each conv timed in its model

Each shape is built three ways, weights pre-packed as a model build packs them: F(4x4, 3x3)
Winograd, F(2x2, 3x3) Winograd and the direct conv, each with its defaults.  "warm" repeats the
call on one weight copy (the tuner's "alone"); "cold" rotates over enough copies of the packed
weights to outgrow the last-level cache twice, so every call reads its weights from memory, as
a model whose weights outgrow the caches reads them.  The weight bytes each reads and the
algorithm te.ops.conv_algorithm picks are printed beside.  Rough while others use the machine.

With --models, each model is built four times: every 3x3 stride-1 conv with >= 16 channels in
and >= 32 out by F(4x4), by F(2x2), by the direct conv, and as te.ops.conv_algorithm picks; each
conv call is timed where the model runs it (frontends.profile.time_steps, order "model": its
weights where the rest of the model left them), and the model's latency.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from common import env_note, table                         # noqa: E402
from conv_defaults import build                            # noqa: E402
import frontends                                           # noqa: E402
from frontends import profile                              # noqa: E402
from models import load                                    # noqa: E402
from te.ops import implementations, registry               # noqa: E402
from te.ops.conv_algorithm import Algorithm                # noqa: E402
from te.ops.registry import ConvWorkload                   # noqa: E402
from te.target import host                                 # noqa: E402

# (C, H, K) of 3x3 stride-1 pad-1 convs: ResNet-50's four stages, VGG's 512 @ 28x28
SHAPES = [(64, 56, 64), (128, 28, 128), (256, 14, 256), (512, 7, 512), (512, 28, 512)]
WAYS = {"F(4x4)": "conv2d.winograd", "F(2x2)": "conv2d.winograd_f2", "direct": "conv2d.direct"}


def best_time(f, args: list, weights: list[np.ndarray], rounds: int) -> float:
    """Lowest time over rounds of passes, each call reading the next weight copy (seconds)."""
    best = float("inf")
    for _ in range(rounds):
        for w in weights:
            args[1] = w
            s = time.perf_counter()
            f(*args)
            best = min(best, time.perf_counter() - s)
    return best


RULE = implementations._winograd_priority


def forced(alg: Algorithm | None):
    """A stand-in for implementations._winograd_priority that gives every gated conv `alg`
    (None: the rule's own pick); maps of any size."""
    rule = RULE

    def priority(wl, target, candidate, otherwise):
        g = wl.geometry
        if alg is None:
            return rule(wl, target, candidate, otherwise)
        return 20 if g.C >= 16 and g.K >= 32 and candidate is alg else otherwise
    return priority


def model_report(name: str, repeat: int) -> None:
    """Each gated 3x3 conv of model `name` timed in the model by each algorithm, and the latency."""
    g = frontends.from_onnx(load(name))
    ways = {"F(4x4)": Algorithm.WINOGRAD_F4, "F(2x2)": Algorithm.WINOGRAD_F2, "direct": Algorithm.DIRECT,
            "picked": None}
    libs = {}
    try:
        for label, alg in ways.items():
            implementations._winograd_priority = forced(alg)
            libs[label] = frontends.build(g)
    finally:
        implementations._winograd_priority = RULE
    feed = profile.random_inputs(libs["picked"].plan.inputs)
    # the builds alternate in rounds of a few passes, so a change in the machine's load hits them alike
    runs = {label: [] for label in ways}
    labels = list(libs)
    for r in range(max(1, repeat // 4)):
        for label in labels[r % len(labels):] + labels[:r % len(labels)]:      # each build first in turn
            lib = libs[label]
            time.sleep(0.2)         # the last build's OpenMP workers stop spinning
            lib.run(**feed)
            got = profile.time_steps(lib, feed, repeat=4, order="model")
            runs[label] = got if not runs[label] else [(st, profile.Latency(old.times + new.times))
                                                       for (st, old), (_, new) in zip(runs[label], got)]
    lat = {k: v.median for k, v in profile.time_interleaved(
        {label: (lambda lib=lib: lib.run(**feed)) for label, lib in libs.items()}, repeat=repeat).items()}
    # the conv calls the algorithms differ on: their tasks differ between the F(4x4) and direct builds
    ks = [k for k, (st, _) in enumerate(runs["direct"]) if st.task is not None and runs["F(4x4)"][k][0].task != st.task]
    us = {label: [float(np.median(r[k][1].times)) * 1e6 for k in ks] for label, r in runs.items()}
    rows = []
    for i, k in enumerate(ks):
        x, w = runs["direct"][k][0].task[1][:2]
        picked = runs["picked"][k][0].task[0].removeprefix("conv2d_nchw").lstrip("_") or "direct"
        rows.append([f"{w[1]}->{w[0]} {x[2]}x{x[3]}", *[f"{us[way][i]:.0f}" for way in ways], picked])
    rows.append(["these convs (ms)", *[f"{sum(us[way]) / 1e3:.2f}" for way in ways], ""])
    rows.append(["model latency (ms)", *[f"{lat[way] * 1e3:.2f}" for way in ways], ""])
    print(f"## {name}: 3x3 convs in the model, us (median of {repeat})")
    print(table(["conv", *ways, "picked is"], rows, "l" + "r" * len(ways) + "l"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--models", help="comma list of bench/models.py names: time the convs in these models")
    ap.add_argument("--repeat", type=int, default=20, help="passes over each model (default: %(default)s)")
    args = ap.parse_args()
    os.environ.setdefault("TILEWISE_NUM_THREADS", "2")
    target = host()
    print(env_note())
    if args.models:
        for name in args.models.split(","):
            model_report(name, args.repeat)
        return
    rows = []
    for C, H, K in SHAPES:
        wl = ConvWorkload((1, C, H, H), (K, C, 3, 3), (1, 1), (1, 1, 1, 1))
        picked = registry.select(wl, target).name
        row = [f"{C}->{K} {H}x{H}"]
        for label, impl in WAYS.items():
            f, a, _ = build(impl, wl, None, target)
            w = a[1]
            copies = [w] + [w.copy() for _ in range(max(1, int(2 * target.caches.l3 * 2 // w.nbytes)))]
            warm = best_time(f, a, [w] * 8, args.rounds)
            cold = best_time(f, a, copies, args.rounds)
            row += [f"{w.nbytes / 2**20:.1f}", f"{warm * 1e6:.0f}", f"{cold * 1e6:.0f}"]
            print(f"  {row[0]} {label}: weights {w.nbytes / 2**20:.1f} MiB, warm {warm * 1e6:.0f} us, "
                  f"cold {cold * 1e6:.0f} us", flush=True)
            del copies
        rows.append(row + [picked])
    print()
    heads = [f"{k} {h}" for k in WAYS for h in ("MiB", "warm us", "cold us")]
    print(table(["3x3 conv", *heads, "picked"], rows, "l" + "r" * len(heads) + "l"))


if __name__ == "__main__":
    main()
