"""Does the tuner time a large-weight kernel as the model runs it?  (issue 19, cold weights)

    python bench/cold_weights.py                      # ResNet-50's 3 tasks with the largest weights
    python bench/cold_weights.py --tasks 2 --repeat 5

For the model's tasks with the largest weights (the preferred implementation of each kernel,
as an untuned build runs it), the default config is timed by the tuner's runner
(autotune.Measurer) three ways, and beside it the kernel's time inside the model:

* "L3": the weight read from rotating copies that outgrow the L2s (a task made alone, or one of
  a model whose weights fit the cores' L3 share: autotune.call_timing.cold_plan);
* "flush": the weight's lines flushed from every cache before each call (a task of a model whose
  weights outgrow the L3 share, on a CPU with clflushopt);
* "copies": rotating copies as large as the model's weights (the same task on a target without
  clflushopt);
* "model": frontends.profile.time_steps(order="model"), the model run whole between two calls
  of a kernel; the median over the kernel's calls (a workload may occur more than once).

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
from autotune.call_timing import cold_plan, llc_share       # noqa: E402
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


def without_clflushopt(task):
    """The task on its target without clflushopt: cold_plan times it on copies instead of a flush."""
    t = task.target
    feats = ",".join(f for f in t.features.split(",") if f != "+clflushopt") + ",-clflushopt"
    return replace(task, target=replace(t, features=feats))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="resnet50", help="an onnx light model (frontends.zoo)")
    ap.add_argument("--tasks", type=int, default=3, help="how many of the largest-weight tasks")
    ap.add_argument("--repeat", type=int, default=5, help="timed repeats per way (runner) and model runs")
    args = ap.parse_args()
    target = host()
    graph = frontends.from_onnx(zoo.light_model(args.model))
    tasks = [mt for mt in extract_tasks(graph, target, algorithms="preferred")
             if mt.task.implementation is not None and mt.task.implementation.weight_index is not None]
    tasks = sorted(tasks, key=lambda mt: -weight_bytes(mt.task))[:args.tasks]
    model_bytes = tasks[0].task.model_weight_bytes
    print(f"{args.model}: {model_bytes / 2**20:.1f} MiB of weights; L3 share counted on "
          f"{llc_share(target) / 2**20:.0f} MiB ({target.threads} threads, sysfs: "
          f"{target.caches.l3 / 2**20:.0f} MiB a core)")

    lib = frontends.build(graph, target)
    steps = time_steps(lib, random_inputs(lib.plan.inputs), repeat=args.repeat, order="model")
    in_model: dict[str, list[float]] = {}
    for call, lat in steps:
        if call.task is not None:
            in_model.setdefault(workload_key(*call.task), []).append(lat.median)

    option = autotune.measure_option(n_parallel=1, repeat=args.repeat, anchor=False)
    rows = []
    with autotune.Measurer(option) as m:
        for mt in tasks:
            ways = {"L3": replace(mt.task, model_weight_bytes=0), "flush": mt.task,
                    "copies": without_clflushopt(mt.task)}
            got = {}
            for name, task in ways.items():
                r = m.measure(task, [None])[0]
                got[name] = r.cost if r.ok else float("nan")
            model = in_model.get(mt.task.workload_key)
            got["model"] = statistics.median(model) if model else float("nan")
            plan = cold_plan(weight_bytes(mt.task), model_bytes, target)
            rows.append((str(mt.task), weight_bytes(mt.task), plan, got))
    print(f"{'task':70s} {'weight':>8s} {'plan':>8s} {'L3':>8s} {'flush':>8s} {'copies':>8s} {'model':>8s}  (us)")
    for name, wb, plan, got in rows:
        print(f"{name[:70]:70s} {wb / 2**20:7.1f}M {plan.where:>8s} "
              + " ".join(f"{1e6 * got[k]:8.0f}" for k in ("L3", "flush", "copies", "model")))


if __name__ == "__main__":
    main()
