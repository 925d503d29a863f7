"""Where a model's time between kernels goes: per kernel call, its time in the model's order
against its time alone, and what the difference is made of; and prefetch settings A/B in the
model's order without a rebuild.

    python bench/model_gap.py                                  # /tmp/s16/resnet50.onnx, 1 thread
    python bench/model_gap.py --top 20 --repeat 10
    python bench/model_gap.py --variant lead=2 --variant lead=0 --variant min_mib=0.5

With one thread (the default) each call is timed by the calling thread's CPU time, which holds on
a machine other processes load (their cache traffic still counts); with --threads 2 by the wall
clock, usable only on a quiet machine, or with --clock process by both threads' CPU time, idle
threads sleeping (OMP_WAIT_POLICY=passive): a call's work and memory stalls on every thread, but
not its load imbalance or fork-join, which only the wall clock shows.  Each call's fastest of
--repeat passes is taken in each of frontends.profile.time_steps' orders: model, after_previous (only its producer before it), alone,
weights_cold and input_cold (alone with those evicted, te/cache_flush.py).  Columns:
model - alone (what the model's order costs the call), weights_cold - alone (what reading its
weights from memory would cost it unhidden), after_previous - alone (its input where its producer
left it, with no other traffic); the split column names the main parallel loop's fused axes
(outermost first), to see where a producer and its consumer split the work differently.  The
whole model against the sum of its calls in model order is the time outside the kernels (the
entry point, copies, and on the wall clock the fork-joins).  bench/threads.py --cache-state
prints the same orders on the wall clock for one thread and two, with the fork-join cost.

A --variant changes what each call prefetches (the range the model's entry point would store,
te/prefetch.py) in place, for the model-order timing only: lead=N (eighths of a thread's slice; 0
starts at its start), min_mib=X[:LEAD] (calls whose weights exceed X MiB prefetch them, lead 1
unless given; the FC too), min_share=N[:LEAD] (te/prefetch.py's MIN_SHARE at N: calls whose weights
exceed the cores' L2s / N prefetch them, the FC still not), own=KERNEL:LEAD (that kernel's calls
prefetch their own weights), dense_ahead=X (a call with more than X MiB of weights that prefetches
none has them prefetched by the last prefetching call before it, instead of that call's own),
next_small=X (a call that prefetches nothing, with at most X MiB of weights, prefetches the next
weighted call's when those are at most X MiB and not prefetched by their own call: small weights
arrive during a kernel that does not stream its own), input_ahead=X / input_own=X (an activation
input of more than X MiB that neither of the two calls before wrote, a residual from further back,
is prefetched by the call before, lead 0, or by the call itself, lead 1), output_ahead=X /
output_own=X (a call's largest written activation of more than X MiB, whose lines its stores would
fetch, likewise), off; min_share, next_small and the input and output ones keep a call's own range.
The variants run in alternating passes in one process (each round starting with the next one), the
last column pairing each with the base pass of the same round.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import types

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def _clocked(profile, clock) -> None:
    """Make time_steps time each call with `clock` (bench/conv_in_model.py passes clock=; this
    checkout's time_steps reads time.perf_counter)."""
    profile.time = types.SimpleNamespace(perf_counter=clock)


def split_of(lib, kernel: str) -> str:
    """The variable of a kernel's last parallel loop (its main stage; pad and pack stages come
    first): which axes its threads split, outermost first (i1/k: output channels, i2/oh: rows)."""
    from te.schedule import ForKind
    from te.stmt import For, walk_stmt
    func = next(f for f in lib.plan.funcs if f.name == kernel)
    loops = [s for s in walk_stmt(func.body) if isinstance(s, For) and s.kind is ForKind.PARALLEL]
    return f"{loops[-1].var.name}/{loops[-1].extent}" if loops else "-"


def far_inputs(lib, calls: list[int], i: int, least: float) -> list[tuple[int, int]]:
    """(workspace offset, bytes) of the activations of more than `least` bytes that kernel call
    calls[i] reads and that no call since calls[i - 2] wrote (a residual from further back)."""
    from te.build import arg_specs
    from te.prefetch import arg_bytes

    def args(k: int) -> list[tuple[int, int, bool]]:
        st = lib.plan.steps[k]
        func = next(f for f in lib.plan.funcs if f.name == st.kernel)
        return [(v, n, spec.written) for (space, v), spec, n in zip(st.args, arg_specs(func), arg_bytes(func))
                if space == "ws"]
    recent = [(v, n) for k in calls[max(0, i - 2):i] for v, n, w in args(k) if w]
    return [(v, n) for v, n, w in args(calls[i])
            if not w and n > least and not any(v < rv + rn and rv < v + n for rv, rn in recent)]


def variant_ranges(lib, spec: str) -> list:
    """Each step's prefetch tuple under a --variant spec (see the module docstring)."""
    from te import prefetch
    from threads import weight_bytes
    base = [st.prefetch for st in lib.plan.steps]
    if spec == "base":
        return base
    if spec == "off":
        return [None] * len(base)
    key, _, value = spec.partition("=")
    if key == "lead":
        return [(p[0], p[1], int(value)) if p else None for p in base]
    if key == "min_mib":
        # X[:LEAD]: calls with more than X MiB of weights prefetch their own at that lead
        mib, _, lead = value.partition(":")
        spans = prefetch.constant_spans(lib.plan.steps, lib.plan.funcs)
        kernels = {f.name for f in lib.plan.funcs}
        return [(s[0], s[1], int(lead or 1))
                if s and st.kernel in kernels and weight_bytes(lib, st) > float(mib) * 2**20 else None
                for st, s in zip(lib.plan.steps, spans)]
    if key == "min_share":
        # N[:LEAD]: te/prefetch.py's MIN_SHARE at N (kernels whose constants exceed the cores' L2s / N
        # prefetch them, lead 1 unless given); calls the build leaves alone above its own threshold (few
        # reuses: the FC) stay alone
        share, _, lead = value.partition(":")
        spans = prefetch.constant_spans(lib.plan.steps, lib.plan.funcs)
        kernels = {f.name for f in lib.plan.funcs}
        l2s = lib.target.threads * lib.target.caches.l2
        least, most = l2s / float(share), l2s // prefetch.MIN_SHARE
        return [p or ((s[0], s[1], int(lead or 1)) if s and st.kernel in kernels and least < s[1] <= most else None)
                for st, s, p in zip(lib.plan.steps, spans, base)]
    if key == "next_small":
        # X: a call that prefetches nothing and has at most X MiB of weights (or none) prefetches those of
        # the next call with weights (lead 0) where they are at most X MiB and it prefetches none
        spans = prefetch.constant_spans(lib.plan.steps, lib.plan.funcs)
        kernels = {f.name for f in lib.plan.funcs}
        small = [bool(s) and not base[k] and weight_bytes(lib, st) <= float(value) * 2**20
                 for k, (st, s) in enumerate(zip(lib.plan.steps, spans))]
        out = list(base)
        for k, st in enumerate(lib.plan.steps):
            nxt = next((j for j in range(k + 1, len(spans)) if spans[j]), None)
            if st.kernel in kernels and not base[k] and (not spans[k] or small[k]) and nxt is not None and small[nxt]:
                out[k] = (spans[nxt][0], spans[nxt][1], 0)
        return out
    if key in ("output_own", "output_ahead"):
        # X: a call's largest written activation of more than X MiB (its output or scratch, whose
        # lines a write must first fetch) is prefetched by the call itself (lead 1) or by the call
        # before it (lead 0), where that call prefetches nothing else
        from te.build import arg_specs
        from te.prefetch import arg_bytes
        out = list(base)
        calls = [k for k, st in enumerate(lib.plan.steps) if st.kernel in {f.name for f in lib.plan.funcs}]
        for i, k in enumerate(calls):
            st = lib.plan.steps[k]
            func = next(f for f in lib.plan.funcs if f.name == st.kernel)
            writes = [(n, v) for (space, v), spec, n in zip(st.args, arg_specs(func), arg_bytes(func))
                      if space == "ws" and spec.written and n > float(value) * 2**20]
            at = k if key == "output_own" else calls[i - 1] if i else None
            if writes and at is not None and not out[at]:
                n, v = max(writes)
                out[at] = (v, n, 1 if key == "output_own" else 0, "ws")
        return out
    if key in ("input_ahead", "input_own"):
        # X: a call's activation input of more than X MiB that a call before the previous one
        # wrote (the residual) is prefetched by the previous call (input_ahead, lead 0) or by
        # the call itself (input_own, lead 1), where that call prefetches nothing else
        out = list(base)
        calls = [k for k, st in enumerate(lib.plan.steps) if st.kernel in {f.name for f in lib.plan.funcs}]
        for i, k in enumerate(calls[1:], 1):
            for off, n in far_inputs(lib, calls, i, float(value) * 2**20):
                at = calls[i - 1] if key == "input_ahead" else k
                if not out[at]:
                    out[at] = (off, n, 0 if key == "input_ahead" else 1, "ws")
        return out
    if key == "own":
        # KERNEL:LEAD: that kernel's calls prefetch their own weights at that lead
        name, _, lead = value.partition(":")
        spans = prefetch.constant_spans(lib.plan.steps, lib.plan.funcs)
        return [(s[0], s[1], int(lead or 1)) if s and st.kernel == name else p
                for st, s, p in zip(lib.plan.steps, spans, base)]
    if key == "dense_ahead":
        # a kernel that streams its weights without prefetching them (the FC) has them prefetched
        # by the last prefetching call before it, instead of that call's own (lead 0)
        spans = prefetch.constant_spans(lib.plan.steps, lib.plan.funcs)
        out = list(base)
        for k, (st, s) in enumerate(zip(lib.plan.steps, spans)):
            if s and not base[k] and weight_bytes(lib, st) > float(value or 1) * 2**20:
                j = max((i for i in range(k) if base[i]), default=None)
                if j is not None:
                    out[j] = (s[0], s[1], 0)
        return out
    raise SystemExit(f"model_gap: --variant {spec!r}; use lead=N, min_mib=X[:LEAD], own=KERNEL:LEAD, dense_ahead=MiB, "
                     "min_share=N[:LEAD], next_small=MiB, input_ahead=MiB, input_own=MiB, output_ahead=MiB, "
                     "output_own=MiB or off")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="/tmp/s16/resnet50.onnx", help="an ONNX file (default: %(default)s)")
    ap.add_argument("--threads", type=int, default=1, help="kernel threads (default: %(default)s)")
    ap.add_argument("--clock", choices=["auto", "process", "wall"], default="auto",
                    help="auto: the thread's CPU time on 1 thread, else the wall clock; process: all "
                         "threads' CPU time, waiting threads asleep (OMP_WAIT_POLICY=passive)")
    ap.add_argument("--repeat", type=int, default=8, help="passes per order (default: %(default)s)")
    ap.add_argument("--top", type=int, default=25, help="calls shown, largest model - alone first (default: %(default)s)")
    ap.add_argument("--variant", action="append", default=[], help="prefetch variant to A/B in model order")
    ap.add_argument("--rounds", type=int, default=6, help="alternating rounds of the variants (default: %(default)s)")
    ap.add_argument("--no-orders", action="store_true", help="skip the per-call table (variants only)")
    a = ap.parse_args()
    os.environ["TILEWISE_NUM_THREADS"] = str(a.threads)       # before te loads
    if a.clock == "process":
        os.environ["OMP_WAIT_POLICY"] = "passive"   # a waiting thread sleeps: no spin counted as work

    import numpy as np
    import frontends
    from frontends import profile
    from common import env_note, table
    from threads import weight_bytes

    clock = (time.process_time if a.clock == "process" else time.perf_counter if a.clock == "wall" or a.threads > 1
             else time.thread_time)
    print(env_note(), f"| {a.threads} thread(s), clock {clock.__name__}", flush=True)
    lib = frontends.build(frontends.onnx.from_onnx(a.model))
    feed = profile.random_inputs(lib.plan.inputs)
    ref = profile.onnxruntime_session(a.model, threads=1).run(None, feed)
    got = lib.run(**feed)
    got = got if isinstance(got, (list, tuple)) else [got]
    print(f"max |tilewise - ORT| = {max(float(np.abs(x - y).max()) for x, y in zip(got, ref)):.2e}", flush=True)
    _clocked(profile, clock)

    if not a.no_orders:
        orders = ("model", "after_previous", "alone", "weights_cold", "input_cold")
        runs = {o: profile.time_steps(lib, feed, repeat=a.repeat, order=o) for o in orders}
        whole = []
        for _ in range(a.repeat):
            t = clock()
            lib.run(**feed)
            whole.append(clock() - t)
        us = {o: [lat.min * 1e6 for _, lat in r] for o, r in runs.items()}
        steps = [st for st, _ in runs["model"]]
        rows = []
        for k, st in enumerate(steps):
            m, ap_, al, wc, ic = (us[o][k] for o in orders)
            rows.append((m - al, [st.kernel[:28], ",".join(st.nodes)[:18], split_of(lib, st.kernel)[:40],
                                  f"{weight_bytes(lib, st) / 2**20:.2f}",
                                  f"{st.prefetch[1] / 2**20:.1f}/{st.prefetch[2]}" if st.prefetch else "-",
                                  f"{m:.0f}", f"{al:.0f}", f"{m - al:+.0f}", f"{wc - al:+.0f}", f"{ic - al:+.0f}",
                                  f"{ap_ - al:+.0f}"]))
        rows.sort(key=lambda r: -r[0])
        heads = ["kernel", "nodes", "split (parallel loop)", "W MiB", "pf MiB/lead", "model us", "alone us", "model-alone",
                 "Wcold-alone", "incold-alone", "afterprev-alone"]
        print(table(heads, [r for _, r in rows[:a.top]]))
        sums = {o: sum(v) / 1e3 for o, v in us.items()}
        print("sums (ms): " + ", ".join(f"{o} {v:.2f}" for o, v in sums.items())
              + f"; whole model (fastest) {min(whole) * 1e3:.2f}, median {sorted(whole)[len(whole) // 2] * 1e3:.2f}")
        gap = [us["model"][k] - us["alone"][k] for k in range(len(steps))]
        large = sum(g for g, st in zip(gap, steps) if weight_bytes(lib, st) > 2**20)
        print(f"model - alone: {sum(gap) / 1e3:.2f} ms over {len(gap)} calls, of which calls with weights "
              f"> 1 MiB {large / 1e3:.2f} ms", flush=True)

    if a.variant:
        labels = ["base"] + a.variant
        ranges = {v: variant_ranges(lib, v) for v in labels}
        totals: dict[str, list[float]] = {v: [] for v in labels}
        touched: dict[str, list[float]] = {v: [] for v in labels}
        # the calls a variant changes and the call after each: where its effect is, beside the noise
        steps = lib.plan.steps
        near = {v: {id(x) for k in range(len(steps)) if ranges[v][k] != ranges["base"][k] for x in steps[k:k + 2]}
                for v in labels}
        for r in range(a.rounds):
            for v in labels[r % len(labels):] + labels[:r % len(labels)]:     # each first in turn
                for st, p in zip(lib.plan.steps, ranges[v]):
                    st.prefetch = p
                r = profile.time_steps(lib, feed, repeat=3, order="model")
                totals[v].append(sum(lat.min for _, lat in r) * 1e3)
                touched[v].append([sum(lat.min for st, lat in r if id(st) in near[w]) * 1e3 for w in labels])
        for st, p in zip(lib.plan.steps, ranges["base"]):
            st.prefetch = p
        base = sorted(totals["base"])[len(totals["base"]) // 2]
        def med(xs: list[float]) -> float:
            return sorted(xs)[len(xs) // 2]

        rows = []
        for i, (v, t) in enumerate(totals.items()):
            mine = med([x[i] for x in touched[v]])
            theirs = med([x[i] for x in touched["base"]])
            # paired by round: the round's base pass ran next to this variant's
            ratios = [x[i] / y[i] for x, y in zip(touched[v], touched["base"]) if near[v]]
            wins = sum(r < 1 for r in ratios)
            rows.append([v, sum(p is not None for p in ranges[v]), f"{med(t):.2f}", f"{min(t):.2f}",
                         f"{med(t) / base:.3f}", f"{mine:.3f} / {theirs:.3f}" if near[v] else "-",
                         f"{med(ratios):.3f}, {wins}/{len(ratios)}" if near[v] else "-"])
        print(table(["variant", "calls prefetching", "sum of calls, median ms", "fastest", "/ base",
                     "changed calls + next: this / base (ms)", "paired per round: median, rounds faster"], rows))


if __name__ == "__main__":
    main()
