"""How long building one tuning candidate takes, phase by phase, on a seeded sample of configs.

    python bench/build_speed.py                  # 24 random configs of the ResNet-50 3x3 conv
    python bench/build_speed.py --task matmul --configs 40

Each config is built in this process (one thread) as the tuner's builders do: lower (the
template's schedule to loop IR), LLVM IR (our code generation, as text), O2 (LLVM's
pipeline), emit (the object file).  Printed: the median and the total of each phase over the
sample, and the size of the LLVM IR we hand to LLVM.  Building is most of a conv tuning run's
time (bench/RESULTS.md), so this is the figure to watch when changing code generation; compare
two commits by running this file from each (same --seed, same sample).
"""
from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

PHASES = ("lower", "LLVM IR", "O2", "emit")


def main() -> None:
    import importlib

    import autotune
    import te
    from te.codegen_llvm import codegen
    from tune import TASKS

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", default="conv", choices=sorted(TASKS), help="which task (default conv)")
    ap.add_argument("--configs", type=int, default=24, help="how many random configs (default 24)")
    ap.add_argument("--seed", type=int, default=0, help="the sample's random seed (default 0)")
    args = ap.parse_args()

    build = importlib.import_module("te.build")
    name, targs = TASKS[args.task]
    task = autotune.create_task(name, targs)
    space = task.config_space
    rng = random.Random(args.seed)
    sample = [space.sample(rng) for _ in range(args.configs)]
    times: dict[str, list[float]] = {p: [] for p in PHASES}
    lines = []
    for k, i in enumerate(sample):
        t0 = time.perf_counter()
        s, tensors = task.instantiate(space.get(i), prepacked=True)
        func = te.lower(s, tensors, "f")
        t1 = time.perf_counter()
        text = str(codegen([func], task.target).module)
        t2 = time.perf_counter()
        mod = build.optimize(text, task.target)
        t3 = time.perf_counter()
        task.target.machine().emit_object(mod)
        t4 = time.perf_counter()
        for p, a, b in zip(PHASES, (t0, t1, t2, t3), (t1, t2, t3, t4)):
            times[p].append((b - a) * 1e3)
        lines.append(text.count("\n"))
        print(f"\r{k + 1}/{len(sample)} configs built", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    print(f"{args.task}: {len(sample)} random configs (seed {args.seed}), built one after another in one process")
    print("| phase | median ms | total s |")
    print("|-------|----------:|--------:|")
    for p in PHASES:
        print(f"| {p} | {statistics.median(times[p]):.0f} | {sum(times[p]) / 1e3:.2f} |")
    total = [sum(v) for v in zip(*times.values())]
    print(f"| all | {statistics.median(total):.0f} | {sum(total) / 1e3:.2f} |")
    print(f"LLVM IR lines handed to LLVM: median {statistics.median(lines):.0f}, max {max(lines)}")


if __name__ == "__main__":
    main()
