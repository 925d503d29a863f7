"""Where a model's time goes on one thread and on two: the fork-join, every kernel call, the gaps.

    python bench/threads.py                          # SqueezeNet
    python bench/threads.py --models squeezenet,mobilenet_block --repeat 50

First the fixed cost of one parallel region (a kernel whose parallel loop has one iteration per
thread, timed on two threads against the same kernel on one, which makes no fork), then per
model: every kernel call timed where the model runs it (frontends.profile.time_steps: the steps
in order, on the model's own weights and workspace, so each call meets the caches its
predecessors leave) on one thread and on two, its scaling, the forks per run (the kernels with a
parallel region), and the model's latency against the sum of its calls (the rest is between
kernels).  Timings are lower deciles over the repeats (a loaded machine stretches the others).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import frontends                                          # noqa: E402
import te                                                 # noqa: E402
from frontends import profile                             # noqa: E402
from common import env_note, table                        # noqa: E402
from models import load                                   # noqa: E402


def decile(times: list[float]) -> float:
    """The lower decile of times (seconds)."""
    return sorted(times)[len(times) // 10]


def fork_join_us(repeat: int = 2000) -> tuple[float, float]:
    """(us per call on two threads, on one) of a kernel with a two-iteration parallel loop."""
    a = te.placeholder((2,), name="a")
    b = te.compute((2,), lambda i: a[i] * 2.0, name="b")
    s = te.create_schedule(b.op)
    s[b].parallel(b.op.axis[0])
    k = te.build(s, [a, b], name="fork_join")
    ptrs = k.check([np.ones(2, np.float32), np.zeros(2, np.float32)])
    out = []
    for threads in (2, 1):
        k.set_num_threads(threads)
        times = []
        for _ in range(repeat):
            t = time.perf_counter()
            k.call_unchecked(ptrs)
            times.append(time.perf_counter() - t)
        out.append(decile(times) * 1e6)
    return out[0], out[1]


def model_report(name: str, repeat: int) -> str:
    """The per-call table of one model on one and two threads."""
    lib = frontends.build(frontends.onnx.from_onnx(load(name)))
    feed = profile.random_inputs(lib.plan.inputs)
    runs, lat = {}, {}
    for threads in (1, 2):
        lib.set_num_threads(threads)
        runs[threads] = profile.time_steps(lib, feed, repeat=repeat)
        lat[threads] = decile(profile.time_calls(lambda: lib.run(**feed), repeat=repeat).times)
    parallel = {f.name for f in lib.plan.funcs if "# parallel" in str(f)}
    rows = []
    for (st, one), (_, two) in zip(runs[1], runs[2]):
        t1, t2 = decile(one.times) * 1e6, decile(two.times) * 1e6
        rows.append([st.kernel, ",".join(st.nodes)[:24], f"{t1:.0f}", f"{t2:.0f}", f"{t1 / t2:.2f}"])
    forks = sum(st.kernel in parallel for st, _ in runs[1])
    sums = {t: sum(decile(x.times) for _, x in runs[t]) for t in (1, 2)}
    lines = [f"## {name}: {forks} of {len(runs[1])} kernel calls fork", "",
             table(["kernel", "nodes", "1 thread us", "2 threads us", "scaling"], rows), ""]
    for t in (1, 2):
        lines.append(f"{t} thread(s): model {lat[t] * 1e3:.3f} ms, its kernel calls {sums[t] * 1e3:.3f} ms, "
                     f"between them {(lat[t] - sums[t]) * 1e3:.3f} ms")
    lines.append(f"scaling: model {lat[1] / lat[2]:.2f}x, kernel calls {sums[1] / sums[2]:.2f}x")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="squeezenet", help="comma list of bench/models.py names (default: %(default)s)")
    ap.add_argument("--repeat", type=int, default=30, help="passes over each model (default: %(default)s)")
    a = ap.parse_args()
    print(env_note())
    two, one = fork_join_us()
    print(f"a parallel region of two threads: {two:.1f} us a call; the same kernel on one thread "
          f"(no fork): {one:.1f} us")
    for name in a.models.split(","):
        print()
        print(model_report(name.strip(), a.repeat))


if __name__ == "__main__":
    main()
