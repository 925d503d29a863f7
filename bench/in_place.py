"""Outputs written over the inputs kernels are done with (frontends/in_place.py) against fresh buffers.

    python bench/in_place.py                         # ResNet-50 (frontends.zoo), 2 threads
    python bench/in_place.py --model shufflenet --rounds 9 --reps 4
    python bench/in_place.py --model /tmp/resnet50.onnx --logs tuning_logs/

Two builds of one model, the second planned with no output written in place (in_place.aliases
returning nothing); outputs checked equal. Then, the builds alternating in one process:
the kernels that write in place, each timed where the model runs it
(frontends.step_timing.compare_builds: model order, --rounds rounds, the median round) and the
sum of all kernels; and the whole model, --reps times --runs paired runs
(frontends.profile.time_interleaved, blocks of 3), the median of fresh / in-place over the pairs
and how many pairs the in-place build won.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np                                          # noqa: E402

import frontends                                            # noqa: E402
from common import env_note, log_paths, paired, table        # noqa: E402
from frontends import in_place                              # noqa: E402
from frontends.profile import random_inputs                 # noqa: E402
from frontends.step_timing import compare_builds            # noqa: E402


def writes_in_place(call) -> bool:
    ws = [a for a in call.args if a[0] == "ws"]
    return len(set(ws)) < len(ws)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="resnet50", help="a bench/models.py name or an .onnx path")
    ap.add_argument("--logs", action="append", help="tuning logs for both builds (files or folders)")
    ap.add_argument("--rounds", type=int, default=9, help="rounds of compare_builds")
    ap.add_argument("--reps", type=int, default=3, help="whole-model comparisons")
    ap.add_argument("--runs", type=int, default=40, help="paired runs per whole-model comparison")
    args = ap.parse_args()
    from node_compare import load_model
    model = load_model(args.model)
    logs = log_paths(args.logs) if args.logs else None
    print(env_note())
    on = frontends.build(frontends.from_onnx(model), logs=logs)
    keep = in_place.aliases
    in_place.aliases = lambda *a, **k: {}
    try:
        off = frontends.build(frontends.from_onnx(model), logs=logs)
    finally:
        in_place.aliases = keep
    feed = random_inputs(on.plan.inputs)
    for a, b in zip(off.run(**feed), on.run(**feed)):
        np.testing.assert_array_equal(a, b)
    written = {st.kernel for st in on.plan.steps if writes_in_place(st)}
    print(f"{args.model}: {sum(writes_in_place(st) for st in on.plan.steps)} calls of {len(written)} kernels "
          "write their output over an input; outputs equal to the fresh-buffer build's")
    rows, ta, tb = [], 0.0, 0.0
    for p in compare_builds(off, on, feed, rounds=args.rounds):
        fa, fb = statistics.median(p.times_a), statistics.median(p.times_b)
        ta, tb = ta + fa * p.calls, tb + fb * p.calls
        if any(c.kernel in written for c in p.b):
            rows.append([" ".join(c.kernel for c in p.b), p.calls, f"{1e6 * fa:.1f}", f"{1e6 * fb:.1f}",
                         f"{fa / fb:.3f}x"])
    rows.append(["sum of all kernels", "", f"{1e6 * ta:.0f}", f"{1e6 * tb:.0f}", f"{ta / tb:.4f}x"])
    print(table(["kernel", "calls", "fresh us", "in place us", "speed-up"], rows, "lrrrr"))
    for _ in range(args.reps):
        print("whole model: " + paired(("fresh", lambda: off.run(**feed)), ("in place", lambda: on.run(**feed)),
                                       args.runs), flush=True)

if __name__ == "__main__":
    main()
