"""How steady a candidate's timing is, by the length of its repeats.

    python bench/timing_noise.py                      # the ResNet-50 3x3 conv, 8 configs
    python bench/timing_noise.py --task matmul --rounds 25

The tuner's runner times a candidate as three repeats, each running the kernel enough times to
last `min_repeat_ms`, and keeps their median.  This file builds the default config and seeded
random ones, and times each the same way with repeats of several lengths, the lengths and the
configs taking turns, round after round.  Printed per config and length: the spread (standard
deviation of the logarithm) of the median-of-three over the rounds, 0.10 meaning about 10%.  If
longer repeats do not lower the spread, the noise comes from the machine's slower changes of
speed, which longer repeats cannot average away, and shorter repeats only save tuning time.
"""
from __future__ import annotations

import argparse
import math
import os
import random
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def median_of_repeats(kernel, args, repeat_ms: float, repeat: int = 3) -> float:
    """Seconds per call, as autotune's runner measures it: a warm-up (and calibration), `repeat` timed repeats."""
    t = time.perf_counter()
    kernel(*args)
    first = time.perf_counter() - t
    warm = first
    if first < repeat_ms / 1e3:
        t = time.perf_counter()
        kernel(*args)
        warm = time.perf_counter() - t
    number = max(1, int(repeat_ms / 1e3 / max(min(first, warm), 1e-7)))
    costs = []
    for _ in range(repeat):
        t = time.perf_counter()
        for _ in range(number):
            kernel(*args)
        costs.append((time.perf_counter() - t) / number)
    return statistics.median(costs)


def main() -> None:
    import numpy as np

    import autotune
    from tune import TASKS

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", default="conv", choices=sorted(TASKS), help="which task (default conv)")
    ap.add_argument("--configs", type=int, default=7, help="random configs besides the default (default 7)")
    ap.add_argument("--rounds", type=int, default=25, help="timings per config and length (default 25)")
    ap.add_argument("--lengths", default="5,10,20", help="repeat lengths in ms, comma list (default 5,10,20)")
    ap.add_argument("--seed", type=int, default=3, help="the sample's random seed (default 3)")
    args = ap.parse_args()
    lengths = [float(x) for x in args.lengths.split(",")]

    name, targs = TASKS[args.task]
    task = autotune.create_task(name, targs)
    rng = random.Random(args.seed)
    configs = [None] + [task.config_space.sample(rng) for _ in range(args.configs)]
    inputs = [np.random.default_rng(0).random(s, dtype=np.float32) if d == "float32" else np.zeros(s, d)
              for s, d in task.arg_specs()]
    kernels = [task.build(c) for c in configs]
    times = {(k, ms): [] for k in range(len(kernels)) for ms in lengths}
    for rnd in range(args.rounds):
        for k, kernel in enumerate(kernels):
            for ms in (lengths if rnd % 2 else lengths[::-1]):
                times[(k, ms)].append(median_of_repeats(kernel, inputs, ms))
        print(f"\r{rnd + 1}/{args.rounds} rounds", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)

    def spread(k, ms):
        return statistics.pstdev([math.log(x) for x in times[(k, ms)]])

    print(f"{args.task}: the default and {args.configs} random configs (seed {args.seed}), {args.rounds} "
          f"rounds; spread of the median of three repeats (sd of log)")
    print("| config | GFLOP/s | " + " | ".join(f"{ms:g} ms" for ms in lengths) + " |")
    print("|---|---:|" + "---:|" * len(lengths))
    for k, c in enumerate(configs):
        all_times = [x for ms in lengths for x in times[(k, ms)]]
        label = "default" if c is None else str(c)
        print(f"| {label} | {task.flops / statistics.median(all_times) / 1e9:.0f} | "
              + " | ".join(f"{spread(k, ms):.3f}" for ms in lengths) + " |")
    print("| **median** | | " + " | ".join(
        f"**{statistics.median(spread(k, ms) for k in range(len(kernels))):.3f}**" for ms in lengths) + " |")


if __name__ == "__main__":
    main()
