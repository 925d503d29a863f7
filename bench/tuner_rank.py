"""Does the tuner rank a task's close configs as the model does?  (issue 19: tuning that reaches the model)

    python bench/tuner_rank.py resnet50.onnx --log rn50.jsonl
    python bench/tuner_rank.py resnet50 --log rn50.jsonl --configs 3 --rounds 11 --modes cold,warm,icold

For each task of the model (the implementation an untuned build runs for each node), the log's
--configs fastest distinct configs other than the default -- the close competitors between which
a tuner must choose -- are timed by the tuner's own runner code (bench/tuner_vs_model.py
tuner_times, the runner's statistic) under each of --modes, the default config beside them:

  cold   the weight and the input activations read from rotating copies out of the caches
         (MeasureOption.cold_weights and cold_input both on)
  warm   both as they are, warm after the first call (both off)
  icold  the input cold, the weight warm;  wcold  the weight cold, the input warm

A config's predicted saving per model run is the task's kernel count x (the default's time - the
config's).  Its saving in the model: build i of the model runs config i of every task (one
record each), and frontends.step_timing.compare_builds times each piece the build changed beside
the untuned build's where the model runs it, --rounds alternating rounds.  Per mode the script
prints how often the predicted saving has the model's sign, the rank correlation (Spearman) of
predicted and model savings, and their mean absolute difference; and each task's default timed
by each mode beside its time per call in the model.

Rough on a shared machine (every figure moves with the host's load): run it alone, and say so
where a figure is quoted.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from dataclasses import replace

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np                                         # noqa: E402

import frontends                                           # noqa: E402
from autotune import measure                               # noqa: E402
from autotune import record as rec                         # noqa: E402
from autotune.task import workload_key                     # noqa: E402
from frontends.profile import random_inputs                # noqa: E402
from frontends.step_timing import compare_builds           # noqa: E402
from frontends.tasks import extract_tasks                  # noqa: E402
from te.target import parse                                # noqa: E402

from common import env_note, log_paths, table              # noqa: E402
from node_compare import load_model                        # noqa: E402
from tuner_vs_model import _label, one_record, tuner_times        # noqa: E402

# what each mode turns off of MeasureOption's defaults (cold weights and cold inputs)
MODES = {
    "cold": dict(cold_weights=True, cold_input=True),
    "warm": dict(cold_weights=False, cold_input=False),
    "icold": dict(cold_weights=False, cold_input=True),
    "wcold": dict(cold_weights=True, cold_input=False),
}


def close_configs(task, records: list, k: int) -> list:
    """The k fastest distinct configs of the task's records (by their best cost), the default left out."""
    space = task.config_space
    seen = {json.dumps(space.get(space.default_index()).to_json(), sort_keys=True)}
    out = []
    for r in sorted((r for r in records if r.workload == task.workload_key and r.error_no == 0 and not r.in_model),
                    key=lambda r: min(r.costs)):
        key = json.dumps(r.config, sort_keys=True)
        if key in seen:
            continue
        try:
            cfg = space.from_json(r.config)
        except Exception:           # a record the template no longer takes
            continue
        seen.add(key)
        out.append(cfg)
        if len(out) == k:
            break
    return out


def spearman(a: list[float], b: list[float]) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1]) if len(a) > 2 else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="an .onnx path or a bench/models.py name")
    ap.add_argument("--log", nargs="+", required=True, help="tuning logs whose configs compete")
    ap.add_argument("--configs", type=int, default=3, help="close configs per task (default 3)")
    ap.add_argument("--modes", default="cold,warm,icold", help=f"comma list of {', '.join(MODES)}")
    ap.add_argument("--only", default="", help="only tasks whose label holds this (e.g. 1x1)")
    ap.add_argument("--repeats", type=int, default=3, help="runner jobs per config and mode")
    ap.add_argument("--rounds", type=int, default=9, help="alternating model rounds per build")
    a = ap.parse_args()
    modes = [m for m in a.modes.split(",") if m]
    if not modes or any(m not in MODES for m in modes):
        ap.error(f"--modes: give some of {', '.join(MODES)}")
    print(env_note())
    target = parse(None)
    graph = frontends.from_onnx(load_model(a.model))
    records = rec.load(log_paths(a.log))
    picked = []                 # (model task, its close configs)
    for mt in extract_tasks(graph, target, algorithms="preferred"):
        if a.only in _label(mt.task):
            cfgs = close_configs(mt.task, records, a.configs)
            if cfgs:
                picked.append((mt, cfgs))
    if not picked:
        sys.exit("no task of the model has a config in the logs other than its default")
    options = {m: replace(measure.MeasureOption(), **MODES[m]) for m in modes}
    tuned: dict[tuple, float] = {}          # (task index, mode, config index or -1: default) -> seconds per call
    for t, (mt, cfgs) in enumerate(picked):
        for m, opt in options.items():
            for i, cfg in enumerate([None, *cfgs], start=-1):
                tuned[t, m, i] = tuner_times(mt.task, cfg, opt, a.repeats)["clean"]
        print(f"timed {_label(mt.task)}", flush=True)

    untuned = frontends.build(graph, target)
    feed = random_inputs(untuned.plan.inputs)
    in_model: dict[tuple, tuple[float, float]] = {}    # (task index, config index) -> (saving per run s, ratio)
    default_per_call: dict[int, list[float]] = {}
    index = {mt.task.workload_key: t for t, (mt, _) in enumerate(picked)}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(a.configs):
            path = os.path.join(tmp, f"build{i}.jsonl")
            rec.write(path, [one_record(mt.task, cfgs[i]) for mt, cfgs in picked if i < len(cfgs)])
            lib = frontends.build(graph, target, logs=[path])
            for p in compare_builds(untuned, lib, feed, a.rounds):
                keys = {workload_key(*c.task) for c in p.b if c.task is not None} & set(index)
                for key in keys:
                    t = index[key]
                    a_med, b_med = statistics.median(p.times_a), statistics.median(p.times_b)
                    in_model[t, i] = (p.calls * (a_med - b_med), p.ratio)
                    default_per_call.setdefault(t, []).append(a_med / max(1, sum(c.task is not None for c in p.a)))
            print(f"built and compared build {i}", flush=True)

    rows, pairs = [], {m: [] for m in modes}
    for t, (mt, cfgs) in enumerate(picked):
        for i in range(len(cfgs)):
            if (t, i) not in in_model:
                continue
            saved, ratio = in_model[t, i]
            pred = {m: mt.count * (tuned[t, m, -1] - tuned[t, m, i]) for m in modes}
            for m in modes:
                pairs[m].append((pred[m], saved))
            rows.append([_label(mt.task)[:58], i, mt.count, *(f"{1e6 * pred[m]:+.0f}" for m in modes),
                         f"{1e6 * saved:+.0f}", f"{ratio:.3f}"])
    print()
    print(table(["task", "config", "kernels", *(f"{m} predicts us" for m in modes), "model saves us",
                 "model ratio"], rows, "lrr" + "r" * len(modes) + "rr"))
    print()
    print(table(["task", *(f"default {m} us" for m in modes), "default in model us/call"],
                [[_label(mt.task)[:58], *(f"{1e6 * tuned[t, m, -1]:.0f}" for m in modes),
                  f"{1e6 * statistics.median(default_per_call[t]):.0f}" if t in default_per_call else "-"]
                 for t, (mt, _) in enumerate(picked)], "l" + "r" * (len(modes) + 1)))
    print()
    summary = []
    for m in modes:
        pr = pairs[m]
        agree = sum((p > 0) == (s > 0) for p, s in pr)
        summary.append([m, f"{agree}/{len(pr)}", f"{spearman([p for p, _ in pr], [s for _, s in pr]):.2f}",
                        f"{1e6 * statistics.mean(abs(p - s) for p, s in pr):.0f}" if pr else "-"])
    print(table(["mode", "sign agrees", "Spearman", "mean abs diff us"], summary, "lrrr"))


if __name__ == "__main__":
    main()
