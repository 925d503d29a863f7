"""ResNet-50's convs (bench/conv_weak.py's shapes) with knob overrides, timed where the model runs them.

    python bench/conv_in_model.py 3x3_512_7 s2_3x3_512 --var 'ic16={"tile_ic": [-1, 16]}'
    python bench/conv_in_model.py s2_3x3_256 --var 'ic4={"tile_ic": [-1, 4]}' --threads 2 --rounds 21
    python bench/conv_in_model.py 3x3_512_7 --var 'f2={"implementation": "conv2d.winograd_f2"}'
    python bench/conv_in_model.py 3x3_512_7 --model /tmp/s16/resnet50.onnx --var ...

The model is built untuned, and once per --var with a tuning record that gives each named conv
the template's default config updated by the variant's knobs (knobs a conv's template lacks are
left out; "implementation" names another of the conv's implementations, te.ops.registry), so the conv runs that config in the model and every other kernel as untuned.  Each
build's kernels are timed in the model's order (frontends.profile.time_steps, order "model": each
call meets the caches the rest of the model leaves it, its weights from memory, and its weights
prefetched as the model's entry point sets it); the builds take turns over --rounds rounds, a
round's figure per call is its lower quartile over the repeats (autotune.call_timing.per_call;
on several threads the median of its undisturbed calls, below) and the median over rounds is
printed, with the ratio untuned / variant per call of the named convs and for the sum of all
kernels.  Every variant's outputs are checked against the untuned build's.

With --threads 1 (the default) each call is timed by the calling thread's CPU time: on a machine
others load, the time the OS gave to other processes is left out (a two-thread OpenMP team under
load stalls 10-30x, PREAMBLE).  With --threads 2, wall time, and a repeat's figure is the median
of the calls during which no thread of the process waited for a CPU (per_call with the waits
`WaitingClock` reads): on a loaded machine 40-80% of the calls are such, and the medians of
untuned builds of one model agreed within 1-2% per call; other processes' cache and memory
traffic still shifts whole rounds, so compare the named convs against the other kernels' sum.
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("shapes", nargs="+", help="conv_weak.py shape names the variants apply to")
    ap.add_argument("--var", action="append", default=[], metavar="LABEL=JSON",
                    help='knob overrides of the named convs, e.g. ic16=\'{"tile_ic": [-1, 16]}\'')
    ap.add_argument("--model", default="resnet50", help="a bench/models.py name or an .onnx path (ResNet-50 v1.5)")
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--repeat", type=int, default=5, help="model passes per build and round")
    ap.add_argument("--threads", type=int, default=1)
    return ap.parse_args()


ARGS = parse_args() if __name__ == "__main__" else None
if ARGS is not None:
    os.environ["TILEWISE_NUM_THREADS"] = str(ARGS.threads)     # before te loads: the kernels' thread count

import time                                                 # noqa: E402

import numpy as np                                          # noqa: E402

import autotune                                             # noqa: E402
import conv_weak                                            # noqa: E402
import frontends                                            # noqa: E402
from autotune.call_timing import RunQueueClock, per_call    # noqa: E402
from autotune.record import Record                          # noqa: E402
from autotune.task import workload_key                      # noqa: E402
from common import env_note, knob_variants, table           # noqa: E402
from frontends.profile import random_inputs, time_steps     # noqa: E402
from models import load                                     # noqa: E402
from te.ops import registry                                 # noqa: E402
from te.target import host                                  # noqa: E402


def records(shapes: list[str], knobs: dict, target) -> tuple[list[Record], dict[str, str]]:
    """Records giving each shape's untuned implementation (or the one `knobs` names as
    "implementation") its default config updated by `knobs`, and {workload key: shape name}."""
    recs, names = [], {}
    for name in shapes:
        wl, _ = conv_weak.workload(name)
        found = {impl.name: impl for _, impl in registry.candidates(wl, target)}
        impl = found.get(knobs.get("implementation"), next(iter(found.values())))
        if knobs.get("implementation", impl.name) != impl.name:
            sys.exit(f"{name}: implementation {knobs['implementation']!r} does not run it; "
                     f"use one of {', '.join(found)}")
        task = autotune.create_task(impl.template, impl.args(wl), target)
        untuned = next(iter(found.values()))
        names[autotune.create_task(untuned.template, untuned.args(wl), target).workload_key] = name
        sp = task.config_space
        cfg = sp.default_with({k: v for k, v in knobs.items() if k in sp.space_map})
        recs.append(Record(task.workload_key, cfg.to_json(), [1e-3], isa=target.isa))
        names[task.workload_key] = name
    return recs, names


class WaitingClock:
    """time.perf_counter for time_steps, also reading how long the process's threads have waited
    for a CPU at each reading (RunQueueClock), so each timed call's wait is known.

    time_steps reads the clock before and after each kernel call (not around copies): a pass to
    warm up, then in order "model" `repeat` passes over the kernels in the model's order."""

    def __init__(self):
        self.runqueue = RunQueueClock()
        self.marks: list[float | None] = []

    def __call__(self) -> float:
        self.marks.append(self.runqueue.seconds())
        return time.perf_counter()

    def start(self) -> None:
        """Forget the readings so far and find the threads again (the team appears late)."""
        self.runqueue.refresh()
        self.marks.clear()

    def waits(self, kernels: int, repeat: int) -> list[list[float]] | None:
        """Per kernel call of the model, its timed calls' waits (seconds); None where unknown."""
        m = self.marks
        if len(m) != 2 * kernels * (repeat + 1) or any(x is None for x in m):
            return None
        pairs = [m[i + 1] - m[i] for i in range(2 * kernels, len(m), 2)]   # after the warm-up pass
        return [pairs[k::kernels] for k in range(kernels)]


def main() -> None:
    args = ARGS
    unknown = [s for s in args.shapes if s not in conv_weak.SHAPES]
    if unknown:
        sys.exit(f"unknown shape(s) {', '.join(unknown)}; use conv_weak.py's: {', '.join(conv_weak.SHAPES)}")
    variants = knob_variants(args.var)
    if not variants:
        sys.exit("give at least one --var LABEL=JSON to compare with the untuned build")
    target = host()
    print(env_note())
    try:
        graph = frontends.from_onnx(load(args.model) if not args.model.endswith(".onnx") else args.model)
    except frontends.ModelError as e:
        sys.exit(f"--model {args.model}: {e}")
    names: dict[str, str] = {}          # workload key of a named conv in any build -> its shape name
    libs = {"untuned": frontends.build(graph, target)}
    for label, knobs in variants.items():
        recs, keys = records(args.shapes, knobs, target)
        names.update(keys)
        libs[label] = frontends.build(graph, target, logs=recs)
    feed = random_inputs(libs["untuned"].plan.inputs)
    outs = {k: [np.empty(s["shape"], s["dtype"]) for s in lib.plan.outputs] for k, lib in libs.items()}
    clock = time.thread_time if args.threads == 1 else WaitingClock()
    # per build, (shape name, its n-th call in the model) -> times: another implementation may
    # run other kernels around the conv (Winograd's transforms), so step indices differ
    calls: dict[str, dict[tuple[str, int], list[float]]] = {k: {} for k in libs}
    sums: dict[str, list[float]] = {k: [] for k in libs}
    for _ in range(args.rounds):
        for label, lib in libs.items():     # in turn: a change in the machine's load hits them alike
            if isinstance(clock, WaitingClock):
                clock.start()
            steps = time_steps(lib, feed, repeat=args.repeat, outputs=outs[label], order="model", clock=clock)
            waits = clock.waits(len(steps), args.repeat) if isinstance(clock, WaitingClock) else None
            figure = [per_call(lat.times, waits[i] if waits else None) for i, (_, lat) in enumerate(steps)]
            sums[label].append(sum(figure))
            seen: dict[str, int] = {}
            for (call, _), t in zip(steps, figure):
                name = names.get(workload_key(*call.task)) if call.task else None
                if name:
                    seen[name] = seen.get(name, -1) + 1
                    calls[label].setdefault((name, seen[name]), []).append(t)
    for label in variants:
        for a, b in zip(outs["untuned"], outs[label]):
            if not np.allclose(a, b, rtol=1e-3, atol=1e-4):
                sys.exit(f"{label}: the model's output differs from the untuned build's "
                         f"(max |diff| {float(np.abs(a - b).max()):.3g})")
    print(f"{args.model}, {args.threads} thread(s), {'CPU' if args.threads == 1 else 'wall'} time, "
          f"{args.rounds} rounds; outputs agree")
    rows = []
    for key, times in sorted(calls["untuned"].items()):
        base = float(np.median(times))
        for label in libs:
            t = float(np.median(calls[label].get(key, [np.nan])))
            rows.append([f"{key[0]} call {key[1] + 1}", label, f"{t * 1e6:.1f}", f"{base / t:.3f}x"])
    base = float(np.median(sums["untuned"]))
    for label in libs:
        t = float(np.median(sums[label]))
        rows.append(["sum of kernels", label, f"{t * 1e6:.1f}", f"{base / t:.3f}x"])
    print(table(["call", "build", "us", "untuned / this"], rows, "llrr"))


if __name__ == "__main__":
    main()
