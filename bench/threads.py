"""Where a model's time goes on one thread and on two: the fork-join, every kernel call, the gaps.

    python bench/threads.py                          # SqueezeNet
    python bench/threads.py --models squeezenet,mobilenet_block --repeat 50
    python bench/threads.py --models resnet50 --cache-state --threads 2   # what the model's order costs

First the fixed cost of one parallel region (a kernel whose parallel loop has one iteration per
thread, timed on two threads against the same kernel on one, which makes no fork), then per
model: every kernel call timed where the model runs it (frontends.profile.time_steps: the steps
in order, on the model's own weights and workspace, so each call meets the caches its
predecessors leave) on one thread and on two, its scaling, the forks per run (the kernels with a
parallel region), and the model's latency against the sum of its calls (the rest is between
kernels).  Timings are lower deciles over the repeats (a loaded machine stretches the others).

With --cache-state, every call is also timed right after the kernel before it only, repeated
alone, and repeated alone with its weights or its input evicted from every cache level
(time_steps' orders "after_previous", "alone", "weights_cold", "input_cold"): in the model minus
after its producer is what the rest of the model costs it (its weights evicted), after its
producer minus alone what its producer's work split costs it (an input in the other core's L2),
weights cold minus alone what reading its weights from memory would cost; per kernel and summed.  Threads are not bound to cores unless OMP_PROC_BIND says so; unbound, the OS may move
a thread between the kernel that wrote its share and the one that reads it.
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


def weight_bytes(lib, st) -> int:
    """The bytes of a kernel call's constant arguments (its weights and bias)."""
    from te.prefetch import arg_bytes
    func = next(f for f in lib.plan.funcs if f.name == st.kernel)
    return sum(n for (space, _), n in zip(st.args, arg_bytes(func)) if space == "param")


def model_report(name: str, repeat: int, threads: tuple[int, ...] = (1, 2), cache_state: bool = False) -> str:
    """The per-call table of one model on each thread count (each call also after its producer
    only and alone, with `cache_state`)."""
    lib = frontends.build(frontends.onnx.from_onnx(load(name)))
    feed = profile.random_inputs(lib.plan.inputs)
    orders = profile.STEP_ORDERS + profile.FLUSHED_ORDERS if cache_state else ("model",)
    runs, lat = {}, {}
    for t in threads:
        lib.set_num_threads(t)
        for order in orders:
            runs[t, order] = profile.time_steps(lib, feed, repeat=repeat, order=order)
        lat[t] = decile(profile.time_calls(lambda: lib.run(**feed), repeat=repeat).times)
    parallel = {f.name for f in lib.plan.funcs if "# parallel" in str(f)}
    first = runs[threads[0], "model"]
    short = {"model": "", "after_previous": " after prev", "alone": " alone", "weights_cold": " W cold",
             "input_cold": " in cold"}
    heads = ["kernel", "nodes", "W MiB"] + [f"{t} thr{short[o]} us" for t in threads for o in orders]
    scaling = threads == (1, 2)
    rows = []
    for k, (st, _) in enumerate(first):
        us = {key: decile(r[k][1].times) * 1e6 for key, r in runs.items()}
        row = [st.kernel, ",".join(st.nodes)[:24], f"{weight_bytes(lib, st) / 2**20:.2f}"] + [f"{us[t, o]:.0f}" for t in threads for o in orders]
        if scaling:
            row.append(f"{us[1, 'model'] / us[2, 'model']:.2f}")
        rows.append(row)
    forks = sum(st.kernel in parallel for st, _ in first)
    sums = {key: sum(decile(x.times) for _, x in r) for key, r in runs.items()}
    lines = [f"## {name}: {forks} of {len(first)} kernel calls fork", "",
             table(heads + (["scaling"] if scaling else []), rows), ""]
    for t in threads:
        lines.append(f"{t} thread(s): model {lat[t] * 1e3:.3f} ms, its kernel calls {sums[t, 'model'] * 1e3:.3f} ms, "
                     f"between them {(lat[t] - sums[t, 'model']) * 1e3:.3f} ms")
        if cache_state:
            m, p, a, w, i = (sums[t, o] * 1e3 for o in orders)
            lines.append(f"  the calls after their producers only {p:.3f} ms, alone {a:.3f} ms: the rest of the "
                         f"model costs them {m - p:.3f} ms, their producers' splits {p - a:.3f} ms")
            lines.append(f"  alone with the weights read from memory {w:.3f} ms (+{w - a:.3f}), with the input "
                         f"read from memory {i:.3f} ms (+{i - a:.3f})")
    if scaling:
        lines.append(f"scaling: model {lat[1] / lat[2]:.2f}x, kernel calls {sums[1, 'model'] / sums[2, 'model']:.2f}x")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="squeezenet", help="comma list of bench/models.py names (default: %(default)s)")
    ap.add_argument("--repeat", type=int, default=30, help="passes over each model (default: %(default)s)")
    ap.add_argument("--threads", default="1,2", help="comma list of thread counts (default: %(default)s)")
    ap.add_argument("--cache-state", action="store_true",
                    help="also time every call after its producer only, and repeated alone")
    a = ap.parse_args()
    threads = tuple(int(t) for t in a.threads.split(","))
    print(env_note())
    print(f"OMP_PROC_BIND={os.environ.get('OMP_PROC_BIND', '(unset: threads not bound)')}")
    two, one = fork_join_us()
    print(f"a parallel region of two threads: {two:.1f} us a call; the same kernel on one thread "
          f"(no fork): {one:.1f} us")
    for name in a.models.split(","):
        print()
        print(model_report(name.strip(), a.repeat, threads, a.cache_state))


if __name__ == "__main__":
    main()
