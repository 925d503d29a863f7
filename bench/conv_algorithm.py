"""The 3x3 stride-1 convs of ResNet-50 and VGG by each algorithm, their weights warm and cold.

    python bench/conv_algorithm.py                # every shape, the host's threads
    python bench/conv_algorithm.py --rounds 5

Each shape is built three ways, weights pre-packed as a model build packs them: F(4x4, 3x3)
Winograd, F(2x2, 3x3) Winograd and the direct conv, each with its defaults.  "warm" repeats the
call on one weight copy (the tuner's "alone"); "cold" rotates over enough copies of the packed
weights to outgrow the last-level cache twice, so every call reads its weights from memory, as
a model whose weights outgrow the caches reads them.  The weight bytes each reads and the
algorithm te.ops.conv_algorithm picks are printed beside.  Rough while others use the machine.
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
from te.ops import registry                                # noqa: E402
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    target = host()
    print(env_note())
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
