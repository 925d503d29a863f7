"""Shared helpers for the benchmarks: timing with medians, thread control, table printing."""
from __future__ import annotations

import contextlib
import os
import statistics
import time

import numpy as np


def time_call(fn, *args, min_repeats: int = 5, min_seconds: float = 0.5, warmup: int = 1) -> dict:
    """Run fn(*args) repeatedly; return median/min/max seconds over at least min_repeats runs."""
    for _ in range(warmup):
        fn(*args)
    times = []
    start = time.perf_counter()
    while len(times) < min_repeats or (time.perf_counter() - start < min_seconds and len(times) < 200):
        t = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - t)
    return {"median": statistics.median(times), "min": min(times), "max": max(times), "n": len(times)}


@contextlib.contextmanager
def numpy_threads(n: int):
    """Limit numpy's BLAS to n threads inside the block."""
    from threadpoolctl import threadpool_limits
    with threadpool_limits(limits=n):
        yield


def blas_info() -> str:
    """Which BLAS numpy uses, and which kernel it picked (threadpoolctl)."""
    from threadpoolctl import threadpool_info
    infos = [f"{d.get('internal_api')} {d.get('version')} ({d.get('architecture')})"
             for d in threadpool_info() if d.get("user_api") == "blas"]
    return ", ".join(infos) or "unknown"


def table(headers: list[str], rows: list[list], aligns: str | None = None) -> str:
    """A Markdown table."""
    cells = [[str(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    aligns = aligns or "l" + "r" * (len(headers) - 1)

    def fmt(r):
        return "| " + " | ".join(c.ljust(w) if a == "l" else c.rjust(w)
                                 for c, w, a in zip(r, widths, aligns)) + " |"
    sep = "|" + "|".join(("-" * (w + 1) + ":") if a == "r" else ("-" * (w + 2))
                         for w, a in zip(widths, aligns)) + "|"
    return "\n".join([fmt(headers), sep] + [fmt(r) for r in cells])


def env_note() -> str:
    """A one-line description of the machine and settings a table was measured on."""
    import te
    t = te.target.host()
    blas = os.environ.get("OPENBLAS_CORETYPE")
    note = f"CPU {t.cpu} ({t.isa}), {os.cpu_count()} cores, numpy {np.__version__} with {blas_info()}"
    if blas:
        note += f", OPENBLAS_CORETYPE={blas}"
    return note


def knob_variants(specs: list[str]) -> dict[str, dict]:
    """{label: knob overrides} of --var LABEL=JSON arguments; exits with a one-line message on a bad one."""
    import json
    import sys
    out = {}
    for v in specs:
        label, _, text = v.partition("=")
        try:
            out[label] = json.loads(text)
        except json.JSONDecodeError as e:
            sys.exit(f"--var {v!r}: write LABEL=JSON, e.g. k2='{{\"tile_k\": [-1, 2]}}' ({e.msg})")
    return out


def log_paths(paths) -> list[str]:
    """Tuning logs given on a command line: a file as it is, a folder as its *.jsonl and those under
    its sub-folder for this CPU's ISA (as shared logs are found)."""
    from pathlib import Path

    from autotune.shared_logs import find_logs
    from te.target import host
    out: list[str] = []
    for p in paths or []:
        out += [str(x) for x in find_logs(host().isa, [Path(p)])] if os.path.isdir(p) else [p]
    return out


def paired(base: tuple[str, object], new: tuple[str, object], runs: int) -> str:
    """Two runs of one model, (label, callable) each, timed in alternating blocks of 3
    (frontends.profile.time_interleaved): their medians, the median of base / new over the
    paired runs and how many pairs the new one won."""
    import statistics

    from frontends.profile import time_interleaved
    (a, fa), (b, fb) = base, new
    lat = time_interleaved({a: fa, b: fb}, repeat=runs, block=3)
    pairs = [x / y for x, y in zip(lat[a].times, lat[b].times)]
    return (f"{a} {1e3 * lat[a].median:.2f} ms, {b} {1e3 * lat[b].median:.2f} ms, paired {a} / {b} "
            f"{statistics.median(pairs):.4f}x, {b} faster in {sum(p > 1 for p in pairs)}/{len(pairs)}")


def build_ab_arguments(ap, reps: int) -> None:
    """The arguments of a benchmark that times two builds of one model (build_ab)."""
    ap.add_argument("--model", default="resnet50", help="a bench/models.py name or an .onnx path")
    ap.add_argument("--logs", action="append", help="tuning logs for both builds (files or folders)")
    ap.add_argument("--rounds", type=int, default=9, help="rounds of compare_builds")
    ap.add_argument("--reps", type=int, default=reps, help="whole-model comparisons")
    ap.add_argument("--runs", type=int, default=40, help="paired runs per whole-model comparison")
    ap.add_argument("--swap", action="store_true",
                    help="make the changed build second (a model of large weights can run faster built first)")


def build_ab(args, without, labels: tuple[str, str], show) -> None:
    """Two builds of args.model: as the code builds it (made first, second with args.swap) and
    inside the context manager `without` (a mock.patch of what the change does); their outputs
    checked equal.  Then, the builds alternating in one process: the kernels `show(new build,
    pair, base seconds, new seconds)` picks, each timed where the model runs it
    (frontends.step_timing.compare_builds: model order, args.rounds rounds, the median round),
    and the sum of all kernels; and the whole model, args.reps times args.runs paired runs
    (`paired`)."""
    import frontends
    from frontends.profile import random_inputs
    from frontends.step_timing import compare_builds
    from node_compare import load_model
    model = load_model(args.model)
    logs = log_paths(args.logs) if args.logs else None
    print(env_note())
    builds = {}
    for which in (("base", "new") if args.swap else ("new", "base")):
        with without if which == "base" else contextlib.nullcontext():
            builds[which] = frontends.build(frontends.from_onnx(model), logs=logs)
    base, new = builds["base"], builds["new"]
    feed = random_inputs(new.plan.inputs)
    for a, b in zip(base.run(**feed), new.run(**feed)):
        np.testing.assert_array_equal(a, b)
    print(f"{args.model}: outputs equal to the {labels[0]} build's")
    rows, ta, tb = [], 0.0, 0.0
    for p in compare_builds(base, new, feed, rounds=args.rounds):
        fa, fb = statistics.median(p.times_a), statistics.median(p.times_b)
        ta, tb = ta + fa * p.calls, tb + fb * p.calls
        if show(new, p, fa, fb):
            rows.append([" ".join(c.kernel for c in p.b), p.calls, f"{1e6 * fa:.1f}", f"{1e6 * fb:.1f}",
                         f"{fa / fb:.3f}x"])
    rows.append(["sum of all kernels", "", f"{1e6 * ta:.0f}", f"{1e6 * tb:.0f}", f"{ta / tb:.4f}x"])
    print(table(["kernel", "calls", f"{labels[0]} us", f"{labels[1]} us", "speed-up"], rows, "lrrrr"))
    for _ in range(args.reps):
        print("whole model: " + paired((labels[0], lambda: base.run(**feed)), (labels[1], lambda: new.run(**feed)),
                                       args.runs), flush=True)
