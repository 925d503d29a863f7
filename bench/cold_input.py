"""The tuner's timing of one node's implementations with its input warm and cold, beside the model's.

    python bench/cold_input.py resnet50 --log rn50.jsonl --match "[1,512,28,28],[128,512,1,1],[1,1]"

For each task of the model whose workload key holds --match (the same conv node under each of its
implementations: the 1x1 GEMM and the direct conv), the log's best config (the default where the
log has none) is timed by the tuner's runner code (bench/tuner_vs_model.py tuner_times, per_call
of clean calls) with MeasureOption.cold_input off and on, alternating, --rounds times.  Then the
model built untuned and with the log runs its kernels where the model runs them
(frontends.profile.time_steps, order "model"), so the two tuner figures can be held against the
model's for the same node.  Rough on a shared machine: 2-thread kernels stall at every barrier
while other jobs hold the cores; say so where a figure is quoted.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import autotune                                            # noqa: E402
import frontends                                           # noqa: E402
from autotune import measure                               # noqa: E402
from autotune.call_timing import per_call                  # noqa: E402
from frontends.profile import random_inputs, time_steps    # noqa: E402
from frontends.tasks import extract_tasks                  # noqa: E402

from models import load                                    # noqa: E402
from tuner_vs_model import tuner_times                     # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="a name of bench/models.py's list, or an .onnx path")
    ap.add_argument("--log", required=True, help="the tuning log whose best configs are timed")
    ap.add_argument("--match", required=True, help="a piece of the workload key (spaces left out)")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    import onnx
    model = onnx.load(args.model) if args.model.endswith(".onnx") else load(args.model)
    g = frontends.from_onnx(model)
    history = autotune.apply_history_best([args.log])
    tasks = [mt.task for mt in extract_tasks(g) if args.match in mt.task.workload_key.replace(" ", "")]
    if not tasks:
        raise SystemExit(f"cold_input: no task of {args.model} has {args.match!r} in its workload key")
    figures: dict[tuple[str, bool], list[float]] = {}
    for _ in range(args.rounds):
        for task in tasks:
            for cold in (False, True):
                opt = measure.MeasureOption(cold_input=cold, repeat=5)
                figures.setdefault((task.name, cold), []).append(
                    tuner_times(task, history.query(task), opt, 2)["clean"])
    for (name, cold), ts in figures.items():
        print(f"tuner  {name:18s} input {'cold' if cold else 'warm'}: {statistics.median(ts) * 1e6:8.0f} us")
    libs = {"untuned": frontends.build(g), "log": frontends.build(g, logs=[args.log])}
    feed = random_inputs(libs["untuned"].plan.inputs)
    for name, lib in libs.items():
        rows = time_steps(lib, feed, repeat=20, order="model")
        for st, lat in rows:
            task = st.task
            if task is not None and args.match in autotune.task.workload_key(*task).replace(" ", ""):
                print(f"model  {name:7s} {st.nodes[0]:>6s} {task[0]:18s} {per_call(lat.times) * 1e6:8.0f} us")


if __name__ == "__main__":
    main()
