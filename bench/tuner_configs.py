"""The configs a model check found slower in the model, timed again as the tuner times them.

    python bench/tuner_configs.py resnet50 --log tune.jsonl
    python bench/tuner_configs.py resnet50 --log tune.jsonl --rounds 9 --all

For each task of the model whose log holds an in-model verdict (`tilewise tune`'s model check)
that a tuned config ran slower in the model than the default (vs_default below 1 - the records'
margin; --all: every judged config), the default and that config are built and timed by the
tuner's own measurer (autotune.Measurer: its workers, the weight and input as it meets them,
the weight prefetched where the model's kernel prefetches it, the configs taking turns over
--rounds rounds), and printed beside the model's verdict: a measurer that times configs as the
model runs them gives the ratios the model gave.  The default is the task's own (its template's);
the model's verdict is against the untuned build's kernel, which for a Winograd or GEMM task may
be another implementation's.  Run it at two commits to see what a change to
the measurer does to them.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="a name of bench/models.py's list, or an .onnx file")
    ap.add_argument("--log", required=True, help="a tuning log with the model check's in-model records")
    ap.add_argument("--rounds", type=int, default=5, help="rounds the default and the config take turns")
    ap.add_argument("--all", action="store_true", help="every judged config, not only those that lost")
    a = ap.parse_args()

    import autotune
    import frontends
    from autotune import record as rec
    from frontends.tasks import extract_tasks
    from te.target import parse

    from common import env_note, table
    from models import load
    graph = frontends.from_onnx(a.model if a.model.endswith(".onnx") else load(a.model))
    target = parse(None)
    print(env_note())
    verdicts = {}
    for r in rec.load(a.log):
        if r.in_model and r.vs_default != 1.0 and (a.all or r.vs_default < 1 - rec.DEFAULT_MARGIN):
            verdicts[r.workload, r.config_key] = r
    tasks = {t.task.workload_key: t.task for t in extract_tasks(graph, target)}
    rows = []
    with autotune.Measurer(autotune.measure_option()) as m:
        for (workload, _), r in verdicts.items():
            task = tasks.get(workload)
            if task is None:
                continue
            space = task.config_space
            records = m.measure(task, [space.get(space.default_index()), space.from_json(r.config)], rounds=a.rounds)
            default = statistics.median(x.cost for x in records[0::2])
            tuned = statistics.median(x.cost for x in records[1::2])
            rows.append([workload[:72], f"{default * 1e6:.0f}", f"{tuned * 1e6:.0f}", f"{default / tuned:.3f}",
                         f"{r.vs_default:.3f}"])
    print(table(["task", "default us", "config us", "default / config", "in the model"], rows, "lrrrr"))


if __name__ == "__main__":
    main()
