"""Where a model's time goes on one thread and on two: the fork-join, every kernel call, the gaps.

    python bench/threads.py                          # SqueezeNet
    python bench/threads.py --models squeezenet,mobilenet_block --repeat 50
    python bench/threads.py --models resnet50 --alone --threads 2   # in the model vs alone
    OMP_PROC_BIND=true python bench/threads.py --alone --threads 2 # each thread kept on one core

First the fixed cost of one parallel region (a kernel whose parallel loop has one iteration per
thread, timed on two threads against the same kernel on one, which makes no fork), then per
model: every kernel call timed where the model runs it (frontends.profile.time_steps: the steps
in order, on the model's own weights and workspace, so each call meets the caches its
predecessors leave) on one thread and on two, its scaling, the forks per run (the kernels with a
parallel region), and the model's latency against the sum of its calls (the rest is between
kernels).  Timings are lower deciles over the repeats (a loaded machine stretches the others).

With --alone, every call is also timed repeated in a row on its own buffers (time_steps(alone=True):
input and weights warm where its own last call left them): the calls in the model against the
same calls alone is what the cache state between kernels costs (cold weights, an input written
by the other core or split otherwise, an output evicted), per kernel and summed.  Threads are
not bound to cores unless OMP_PROC_BIND says so; unbound, the OS may move a thread between the
kernel that wrote its share and the one that reads it.
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


def model_report(name: str, repeat: int, threads: tuple[int, ...] = (1, 2), alone: bool = False) -> str:
    """The per-call table of one model on each thread count (and each call alone, with `alone`)."""
    lib = frontends.build(frontends.onnx.from_onnx(load(name)))
    feed = profile.random_inputs(lib.plan.inputs)
    runs, lat, solo = {}, {}, {}
    for t in threads:
        lib.set_num_threads(t)
        runs[t] = profile.time_steps(lib, feed, repeat=repeat)
        lat[t] = decile(profile.time_calls(lambda: lib.run(**feed), repeat=repeat).times)
        if alone:
            solo[t] = profile.time_steps(lib, feed, repeat=repeat, alone=True)
    parallel = {f.name for f in lib.plan.funcs if "# parallel" in str(f)}
    first = runs[threads[0]]
    heads = ["kernel", "nodes"] + [f"{t} thr us" for t in threads]
    heads += [f"{t} thr alone us" for t in threads if alone] + [f"{t} thr model/alone" for t in threads if alone]
    if threads == (1, 2):
        heads.append("scaling")
    rows = []
    for k, (st, _) in enumerate(first):
        us = {t: decile(runs[t][k][1].times) * 1e6 for t in threads}
        solo_us = {t: decile(solo[t][k][1].times) * 1e6 for t in solo}
        row = [st.kernel, ",".join(st.nodes)[:24]] + [f"{us[t]:.0f}" for t in threads]
        row += [f"{solo_us[t]:.0f}" for t in solo] + [f"{us[t] / solo_us[t]:.2f}" for t in solo]
        if threads == (1, 2):
            row.append(f"{us[1] / us[2]:.2f}")
        rows.append(row)
    forks = sum(st.kernel in parallel for st, _ in first)
    sums = {t: sum(decile(x.times) for _, x in runs[t]) for t in threads}
    lines = [f"## {name}: {forks} of {len(first)} kernel calls fork", "", table(heads, rows), ""]
    for t in threads:
        lines.append(f"{t} thread(s): model {lat[t] * 1e3:.3f} ms, its kernel calls {sums[t] * 1e3:.3f} ms, "
                     f"between them {(lat[t] - sums[t]) * 1e3:.3f} ms")
        if t in solo:
            alone_sum = sum(decile(x.times) for _, x in solo[t])
            lines.append(f"  the same calls alone (warm) {alone_sum * 1e3:.3f} ms: the cache state between "
                         f"kernels costs {(sums[t] - alone_sum) * 1e3:.3f} ms")
    if threads == (1, 2):
        lines.append(f"scaling: model {lat[1] / lat[2]:.2f}x, kernel calls {sums[1] / sums[2]:.2f}x")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="squeezenet", help="comma list of bench/models.py names (default: %(default)s)")
    ap.add_argument("--repeat", type=int, default=30, help="passes over each model (default: %(default)s)")
    ap.add_argument("--threads", default="1,2", help="comma list of thread counts (default: %(default)s)")
    ap.add_argument("--alone", action="store_true", help="also time every call repeated alone (warm)")
    a = ap.parse_args()
    threads = tuple(int(t) for t in a.threads.split(","))
    print(env_note())
    print(f"OMP_PROC_BIND={os.environ.get('OMP_PROC_BIND', '(unset: threads not bound)')}")
    two, one = fork_join_us()
    print(f"a parallel region of two threads: {two:.1f} us a call; the same kernel on one thread "
          f"(no fork): {one:.1f} us")
    for name in a.models.split(","):
        print()
        print(model_report(name.strip(), a.repeat, threads, a.alone))


if __name__ == "__main__":
    main()
