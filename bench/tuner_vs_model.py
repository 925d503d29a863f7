"""The tuner's figure of a config against what the config saves in the whole model.

    python bench/tuner_vs_model.py squeezenet --tasks 5 --logs tuning_logs/
    python bench/tuner_vs_model.py resnet50 --tasks 3 --only 1x1 --random 1

For each of a model's heaviest tasks (the implementation an untuned build runs), the default
config and others (the best of the logs given, `--random` random valid ones) are built and
timed by the tuner's own runner code (autotune.measure_jobs._build_job / _run_job, in this process)
with every call's time kept, so one set of calls gives each statistic a repeat could report:
the lower quartile of the calls, their median, and the whole repeat's mean.  Then the model is
built untuned and with only that task's config changed (a one-record log), and the two models
run in alternating rounds: the time the config saves per model run, against the saving each
statistic predicts (the task's kernel count x its default's time less the config's).  A
statistic is honest when its predicted savings match the model's.

Every figure is rough on a shared machine: say so where it is quoted.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import autotune                                            # noqa: E402
import frontends                                           # noqa: E402
from autotune import measure, measure_jobs                 # noqa: E402
from autotune import record as rec                         # noqa: E402
from frontends.profile import random_inputs, time_interleaved  # noqa: E402
from frontends.tasks import extract_tasks                  # noqa: E402
from te.target import parse                                # noqa: E402

from common import log_paths, table                        # noqa: E402
from models import load                                    # noqa: E402

# the statistics a repeat could report from its calls' times and waits for a CPU, each the
# median over repeats: the lower quartile of the calls, the runner's (measure_jobs.per_call: the
# median of the calls no thread of which waited for a CPU), all calls' median and their mean
STATISTICS = {
    "q25": lambda calls, waits: sorted(calls)[len(calls) // 4],
    "clean": measure_jobs.per_call,
    "median": lambda calls, waits: statistics.median(calls),
    "mean": lambda calls, waits: sum(calls) / len(calls),
}


def tuner_times(task, config, option: measure.MeasureOption, repeats: int) -> dict[str, float]:
    """Seconds per call of config under each statistic (median over `repeats` runs of the
    runner's job, each of option.repeat repeats), timed by the runner's code in this process."""
    payload = measure._payload(task, config)
    build = measure_jobs._build_job(payload)
    if build.get("error_no"):
        raise RuntimeError(build.get("error_msg"))
    calls: list[tuple[list[float], list[float] | None]] = []
    kept = measure_jobs.per_call

    def keep(times, waits=None):
        calls.append((list(times), waits and list(waits)))
        return kept(times, waits)
    measure_jobs.per_call = keep
    try:
        for _ in range(repeats):
            res = measure_jobs._run_job({"cutoff": None, "object": build["object"], "symbol": build["symbol"],
                                    "specs": build["specs"], "task": payload, "config": build["config"],
                                    "uses_openmp": build["uses_openmp"], "workload": measure.measure_key(task),
                                    "weight_arg": build.get("weight_arg"), "target": str(task.target),
                                    "option": option, "role": "reference" if config is None else "candidate"})
            if res.get("error_no"):
                raise RuntimeError(res.get("error_msg"))
    finally:
        measure_jobs.per_call = kept
    return {k: statistics.median(f(*c) for c in calls) for k, f in STATISTICS.items()}


def model_saving(graph, target, log_path: str, rounds: int) -> tuple[float, float]:
    """(untuned model's seconds per run, seconds the log's model saves per run): medians of
    alternating rounds."""
    untuned = frontends.build(graph, target)
    tuned = frontends.build(graph, target, logs=[log_path])
    feed = random_inputs(untuned.plan.inputs)
    lat = time_interleaved({"untuned": lambda: untuned.run(**feed), "tuned": lambda: tuned.run(**feed)},
                           repeat=rounds, block=3)
    pairs = [a - b for a, b in zip(lat["untuned"].times, lat["tuned"].times)]
    return lat["untuned"].median, statistics.median(pairs)


def one_record(task, config) -> rec.Record:
    """A record of config for the task that a build takes (checked against the default, faster)."""
    t = task.target
    return rec.Record(workload=task.workload_key, config=config.to_json(), costs=[1e-3], isa=t.isa, cpu=t.cpu,
                      target=f"llvm -mcpu={t.cpu}", checked=True, vs_default=2.0)


def one_record_log(task, config, path: str) -> None:
    """A log holding config as the task's only record."""
    rec.write(path, [one_record(task, config)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="a name of bench/models.py's list")
    ap.add_argument("--tasks", type=int, default=4, help="the heaviest tasks to look at")
    ap.add_argument("--only", default="", help="only tasks whose label holds this (e.g. 1x1)")
    ap.add_argument("--logs", nargs="*", default=[], help="logs whose best config of each task is timed too")
    ap.add_argument("--random", type=int, default=1, help="random valid configs per task")
    ap.add_argument("--repeats", type=int, default=3, help="runner jobs per config")
    ap.add_argument("--rounds", type=int, default=150, help="alternating model rounds per config")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    import random
    rnd = random.Random(args.seed)
    target = parse(None)
    model = load(args.model)
    graph = frontends.from_onnx(model)
    tasks = [mt for mt in extract_tasks(graph, target, algorithms="preferred")
             if args.only in _label(mt.task)][:args.tasks]
    best = rec.best(rec.load(log_paths(args.logs)), target.isa) if args.logs else {}
    option = measure.MeasureOption()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for mt in tasks:
            task = mt.task
            space = task.config_space
            configs = [("log best", space.from_json(best[task.workload_key].config))] \
                if task.workload_key in best else []
            while len([c for c in configs if c[0] == "random"]) < args.random:
                cfg = space.get(rnd.randrange(len(space)))
                configs.append(("random", cfg))
            default = tuner_times(task, None, option, args.repeats)
            for what, cfg in configs:
                try:
                    times = tuner_times(task, cfg, option, args.repeats)
                except RuntimeError as e:
                    print(f"{_label(task)} {what}: {e}", flush=True)
                    continue
                path = os.path.join(tmp, "one.jsonl")
                one_record_log(task, cfg, path)
                model, saved = model_saving(graph, target, path, args.rounds)
                pred = {k: mt.count * (default[k] - times[k]) for k in STATISTICS}
                gf = {k: task.flops / times[k] / 1e9 for k in STATISTICS}
                rows.append([_label(task), what, mt.count, "/".join(f"{gf[k]:.0f}" for k in STATISTICS),
                             *(f"{1e6 * pred[k]:+.1f}" for k in STATISTICS), f"{1e6 * saved:+.1f}",
                             f"{1e3 * model:.2f}"])
                print(" | ".join(str(x) for x in rows[-1]), flush=True)
    print()
    print(table(["task", "config", "kernels", "GFLOP/s " + "/".join(STATISTICS),
                 *(f"predicted saving us: {k}" for k in STATISTICS), "model saving us", "model ms"], rows,
                "llrr" + "r" * len(STATISTICS) + "rr"))


def _label(task) -> str:
    from tilewise.common import task_label
    return f"{task.name} {task_label(task.name, task.args)}"


if __name__ == "__main__":
    main()
