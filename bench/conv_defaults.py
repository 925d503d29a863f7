"""ResNet-50's 1x1 convs: the untuned 1x1 GEMM against its old defaults and the direct conv, alternating.

    python bench/conv_defaults.py                 # every 1x1 shape of ResNet-50, 2 threads
    python bench/conv_defaults.py --rounds 15     # more alternating rounds

Each shape is built four ways, weights pre-packed as a model build packs them: the direct conv
(conv2d.direct, its defaults), the 1x1 GEMM (conv2d.gemm1x1) with today's defaults (the input
packed into panels two vectors wide, te.ops.conv2d.gemm_bn), the same reading its input in place
(the `pack_input` knob off), and with the defaults before session 12 (in place, one vector where
two do not divide the pixels).  They run in alternating rounds in one process, so a change in the
machine's speed hits them alike; the median of the rounds' best times is quoted.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import autotune                                            # noqa: E402
import te                                                  # noqa: E402
from common import env_note, table                         # noqa: E402
from te.ops import registry                                # noqa: E402
from te.ops.common import pick_lanes                       # noqa: E402
from te.ops.registry import ConvWorkload                   # noqa: E402
from te.target import host                                 # noqa: E402

# (C, H, K, stride) of ResNet-50's 1x1 convs
SHAPES = [(64, 56, 64, 1), (64, 56, 256, 1), (256, 56, 64, 1), (256, 56, 128, 1), (512, 28, 128, 1),
          (128, 28, 512, 1), (512, 28, 256, 1), (1024, 14, 256, 1), (256, 14, 1024, 1), (1024, 14, 512, 1),
          (2048, 7, 512, 1), (512, 7, 2048, 1), (256, 56, 512, 2), (512, 28, 1024, 2), (1024, 14, 2048, 2)]


def build(impl: str, wl: ConvWorkload, overrides: dict | None, target):
    im = registry.IMPLEMENTATIONS[impl]
    task = autotune.create_task(im.template, im.args(wl), target)
    cfg = None
    if overrides is not None:
        sp = task.config_space
        cfg = sp.default_with(overrides)
    s, tensors = task.instantiate(cfg, prepacked=True)
    f = te.build(s, tensors, target=target)
    return f, [np.random.rand(*t.shape).astype(t.dtype) for t in tensors], task.flops


def alternate(variants: dict, rounds: int, per: float = 0.04) -> dict[str, float]:
    """Median over rounds of each variant's best time in the round (seconds)."""
    times = {k: [] for k in variants}
    for f, a in variants.values():
        f(*a)
    for _ in range(rounds):
        for k, (f, a) in variants.items():
            best, t0 = float("inf"), time.perf_counter()
            while time.perf_counter() - t0 < per:
                s = time.perf_counter()
                f(*a)
                best = min(best, time.perf_counter() - s)
            times[k].append(best)
    return {k: float(np.median(v)) for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=9)
    args = ap.parse_args()
    target = host()
    print(env_note())
    rows = []
    for C, H, K, st in SHAPES:
        wl = ConvWorkload((1, C, H, H), (K, C, 1, 1), (st, st), (0, 0, 0, 0))
        P = (H // st) ** 2
        old = {"bn": pick_lanes(P, target)}
        if st == 1:
            old["pack_input"] = P % old["bn"] != 0
        ways = {"direct": ("conv2d.direct", None), "gemm": ("conv2d.gemm1x1", None),
                "gemm in place": ("conv2d.gemm1x1", {"pack_input": False}) if st == 1 and P % 32 == 0 else None,
                "gemm, old defaults": ("conv2d.gemm1x1", old)}
        variants, flops = {}, 0.0
        for label, way in ways.items():
            if way is None:
                continue
            f, a, flops = build(way[0], wl, way[1], target)
            variants[label] = (f, a)
        ms = {k: v * 1e3 for k, v in alternate(variants, args.rounds).items()}
        rows.append([f"{C}->{K} {H}x{H} s{st}", *[f"{ms[k]:.3f}" if k in ms else "-" for k in ways],
                     f"{ms['gemm, old defaults'] / ms['gemm']:.2f}x"])
        print(f"  {rows[-1][0]}: " + ", ".join(f"{k} {v:.3f} ms" for k, v in ms.items()), flush=True)
    print()
    print(table(["1x1 conv", "direct ms", "gemm ms", "gemm in place ms", "gemm old defaults ms",
                 "old / new gemm"], rows, "lrrrrr"))


if __name__ == "__main__":
    main()
