"""Does the tuner time a large-weight kernel as the model runs it?  (issue 19, cold weights)

    python bench/cold_weights.py                      # ResNet-50's 3 tasks with the largest weights
    python bench/cold_weights.py --tasks 2 --repeat 5

For the model's tasks with the largest weights (the preferred implementation of each kernel,
as an untuned build runs it), the default config is timed by the tuner's runner
(autotune.Measurer) two ways, and beside it the kernel's time inside the model:

* "alone": the weight read from rotating copies that outgrow the L2s (a task made alone, or one
  of a model whose weights fit the cores' L3 share: autotune.call_timing.cold_plan);
* "as model": rotating copies as large as the model's weights (a task of a model whose weights
  outgrow the cores' L3 share, as extract_tasks gives it);
* "model": frontends.profile.time_steps(order="model"), the model run whole between two calls
  of a kernel, each call's lower quartile over the runs (autotune.call_timing.per_call: calls the
  machine's load stretched left out), the median over the kernel's calls (a workload may occur
  more than once).

The ways take turns over --rounds rounds; each figure is the median of its rounds.

Figures on a shared VM are rough: run it where nothing else runs to compare them closely.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
from dataclasses import replace

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import autotune                                             # noqa: E402
import frontends                                            # noqa: E402
from autotune.call_timing import cold_plan, llc_share, per_call  # noqa: E402
from autotune.task import workload_key                      # noqa: E402
from frontends import zoo                                   # noqa: E402
from frontends.profile import random_inputs, time_steps     # noqa: E402
from frontends.tasks import extract_tasks                   # noqa: E402
from te.target import host                                  # noqa: E402


def weight_bytes(task) -> int:
    """Bytes of a task's weight as its kernel reads it (packed, default config)."""
    import numpy as np
    impl = task.implementation
    shape = impl.weight_shape(impl.workload(task.args))
    return int(task.pack_weight(np.zeros(shape, np.float32)).nbytes)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="resnet50", help="an onnx light model (frontends.zoo)")
    ap.add_argument("--tasks", type=int, default=3, help="how many of the largest-weight tasks")
    ap.add_argument("--only", action="append", metavar="TEXT",
                    help="only tasks whose name and arguments contain TEXT (e.g. winograd); may repeat")
    ap.add_argument("--repeat", type=int, default=5, help="timed repeats per way (runner)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of the ways in turn (each figure: their median)")
    ap.add_argument("--model-runs", type=int, default=30, help="model runs timed kernel by kernel")
    args = ap.parse_args()
    target = host()
    graph = frontends.from_onnx(zoo.light_model(args.model))
    tasks = [mt for mt in extract_tasks(graph, target, algorithms="preferred")
             if mt.task.implementation is not None and mt.task.implementation.weight_index is not None]
    if args.only:
        tasks = [mt for mt in tasks if any(t in f"{mt.task.name}{mt.task.args}" for t in args.only)]
    tasks = sorted(tasks, key=lambda mt: -weight_bytes(mt.task))[:args.tasks]
    model_bytes = tasks[0].task.model_weight_bytes
    print(f"{args.model}: {model_bytes / 2**20:.1f} MiB of weights; L3 share counted on "
          f"{llc_share(target) / 2**20:.0f} MiB ({target.threads} threads, sysfs: "
          f"{target.caches.l3 / 2**20:.0f} MiB a core)")

    lib = frontends.build(graph, target)
    steps = time_steps(lib, random_inputs(lib.plan.inputs), repeat=args.model_runs, order="model")
    in_model: dict[str, list[float]] = {}
    for call, lat in steps:
        if call.task is not None:       # the runs the machine's load stretched left out, as the runner does
            in_model.setdefault(workload_key(*call.task), []).append(per_call(lat.times))

    option = autotune.measure_option(n_parallel=1, repeat=args.repeat, anchor=False)
    rows = []
    with autotune.Measurer(option) as m:
        for mt in tasks:
            ways = {"alone": replace(mt.task, model_weight_bytes=0), "as model": mt.task}
            costs: dict[str, list[float]] = {k: [] for k in ways}
            for _ in range(args.rounds):            # in turn: a change in the machine's load hits them alike
                for name, task in ways.items():
                    r = m.measure(task, [None])[0]
                    costs[name].append(r.cost if r.ok else float("nan"))
            got = {k: statistics.median(v) for k, v in costs.items()}
            model = in_model.get(mt.task.workload_key)
            got["model"] = statistics.median(model) if model else float("nan")
            plan = cold_plan(weight_bytes(mt.task), model_bytes, target)
            rows.append((str(mt.task), weight_bytes(mt.task), plan, got))
    print(f"{'task':70s} {'weight':>8s} {'copies':>7s} {'alone':>8s} {'as model':>8s} {'model':>8s}  (us)")
    for name, wb, plan, got in rows:
        print(f"{name[:70]:70s} {wb / 2**20:7.1f}M {plan.copies:7d} "
              + " ".join(f"{1e6 * got[k]:8.0f}" for k in ("alone", "as model", "model")))


if __name__ == "__main__":
    main()
