"""Where a model loses to ONNX Runtime, node by node: ORT's per-node profile beside tilewise's kernels.

    python bench/node_compare.py squeezenet                 # a bench/models.py name, or an .onnx path
    python bench/node_compare.py /tmp/resnet50.onnx --runs 10 --rounds 6 --logs tuning_logs/
    python bench/node_compare.py squeezenet --top 10 --threads 1

ONNX Runtime runs as a default session (its idle threads spinning) with its profiler on: each
node's kernel time per run (the JSON profile's "Node" events).  tilewise runs the model's kernel
calls in the model's order, each call timed where the model runs it (frontends.profile.time_steps,
order "model").  The two alternate in blocks of runs in this process, so a change in the
machine's load hits both.  Units of both engines are matched by the ONNX nodes they compute
(frontends/node_match.py: ORT's fused or NCHWc nodes, tilewise's fused kernels and free concats),
one row per shared piece of work, the largest loss (tilewise us - ORT us) first.  Per-unit times
are medians over runs (--quantile 0.1: lower deciles, steadier on a shared machine); the totals compare the sums with each engine's whole-model latency (the
rest is between nodes / kernels: ORT's reorders and scheduling, tilewise's fork-joins and cache
misses the calls alone do not show).
"""
from __future__ import annotations

import argparse
import functools
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import onnx                                               # noqa: E402

import frontends                                          # noqa: E402
from frontends import node_match, profile                 # noqa: E402
from common import env_note, log_paths, table             # noqa: E402


def load_model(spec: str):
    """An ONNX model from a path, or by a bench/models.py name."""
    if os.path.exists(spec):
        return onnx.load(spec)
    from models import MODELS, load
    if spec not in MODELS:
        raise SystemExit(f"node_compare: '{spec}' is neither a file nor a model of bench/models.py "
                         f"({', '.join(MODELS)}); give an .onnx path or one of those names")
    return load(spec)


def shape_note(row: node_match.Row, graph) -> str:
    """The row's first conv or matrix product, shortly: 'Conv 3x3 48->192 13x13'."""
    nodes = {n.name: n for n in graph.nodes}
    for name in row.nodes:
        n = nodes.get(name)
        if n is None or n.op not in ("Conv", "Gemm", "MatMul"):
            continue
        if n.op == "Conv":
            k, c, r, s = graph.info(n.inputs[1]).shape
            y = graph.info(n.outputs[0]).shape
            stride = n.attrs.get("strides", [1, 1])[0]
            return f"Conv {r}x{s}{'/' + str(stride) if stride != 1 else ''} {c * n.attrs.get('group', 1)}->{k} {y[2]}x{y[3]}"
        a, b = graph.info(n.inputs[0]).shape, graph.info(n.inputs[1]).shape
        return f"{n.op} {'x'.join(map(str, a))} @ {'x'.join(map(str, b))}"
    return ""


def label(row: node_match.Row, width: int = 40) -> str:
    """The row's nodes and ops, shortened: 'n9..n11 Concat+Conv+Relu' (first..last)."""
    if not row.nodes:
        return f"(ORT only) {'+'.join(u.name for u in row.ort)}"[:width]
    names = row.nodes[0] if len(row.nodes) == 1 else f"{row.nodes[0]}..{row.nodes[-1]}"
    return f"{names} {'+'.join(row.ops)}"[:width]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="an .onnx file or a bench/models.py name (squeezenet, resnet50, ...)")
    ap.add_argument("--runs", type=int, default=10, help="runs of each engine per block (default: %(default)s)")
    ap.add_argument("--rounds", type=int, default=4, help="alternating blocks of each (default: %(default)s)")
    ap.add_argument("--threads", type=int, default=None,
                    help="both engines on this many threads (default: tilewise on 2, ORT's default session)")
    ap.add_argument("--logs", nargs="*", default=None, help="tuning logs (files or folders) for tilewise's build")
    ap.add_argument("--quantile", type=float, default=0.5,
                    help="which of each unit's times per run to compare: 0.5 the median (default), 0.1 the "
                         "lower decile, steadier while other jobs share the cores")
    ap.add_argument("--top", type=int, default=0, help="print only the N largest losses (default: all rows)")
    a = ap.parse_args()
    if a.runs < 1 or a.rounds < 1:
        ap.error(f"--runs {a.runs} --rounds {a.rounds}: give at least 1 of each")
    if not 0.0 <= a.quantile <= 1.0:
        ap.error(f"--quantile {a.quantile}: give a value from 0 to 1 (0.5: the median)")
    threads = a.threads or int(os.environ.get("TILEWISE_NUM_THREADS", "2"))
    model = node_match.named(load_model(a.model))
    graph = frontends.from_onnx(model)
    lib = frontends.build(graph, logs=log_paths(a.logs) or None)
    lib.set_num_threads(threads)
    feed = profile.random_inputs(lib.plan.inputs)
    prof = node_match.OrtProfile(model, threads=a.threads)
    timed = []
    for _ in range(a.rounds):
        prof.run(a.runs)
        timed.append(profile.time_steps(lib, feed, repeat=a.runs))
    units = prof.units(), node_match.tilewise_units(lib, timed)
    for u in units[0] + units[1]:
        u.quantile = a.quantile
    rows = node_match.match(model, *units)
    # whole-model latencies, alternating, ORT without its profiler
    sess = profile.onnxruntime_session(model, threads=a.threads)
    fns = {"ort": lambda: sess.run(None, prof.feed), "tilewise": functools.partial(lib.run, **feed)}
    once = min(profile.time_calls(fns["ort"], repeat=5).times)
    # blocks of ~0.1 s: a run right after the other engine's meets its spinning threads
    lat = profile.time_interleaved(fns, repeat=a.rounds * 5, block=max(1, min(50, int(0.1 / once))))
    print(env_note())
    print(f"{graph.name}: tilewise on {threads} thread(s), ONNX Runtime on "
          f"{a.threads or 'its default'} thread(s); quantile {a.quantile} of {a.rounds * a.runs} runs, us")
    shown = rows[:a.top] if a.top else rows
    body = []
    for r in shown:
        o, t = r.ort_seconds * 1e6, r.tilewise_seconds * 1e6
        body.append([label(r), shape_note(r, graph), f"{o:.0f}", f"{t:.0f}",
                     f"{t / o:.2f}" if o > 0 else "-", f"{t - o:+.0f}",
                     "+".join(sorted({u.op for u in r.ort})), len(r.tilewise)])
    print(table(["node(s)", "what", "ORT us", "tilewise us", "ratio", "loss us", "ORT ops", "kernels"], body,
                "llrrrrlr"))
    o_sum = sum(r.ort_seconds for r in rows)
    t_sum = sum(r.tilewise_seconds for r in rows)
    o_lat, t_lat = (float(np.quantile(lat[k].times, a.quantile)) for k in ("ort", "tilewise"))
    print(f"\nsum over nodes: ORT {o_sum * 1e3:.3f} ms, tilewise {t_sum * 1e3:.3f} ms ({t_sum / o_sum:.2f}x); "
          f"losses {sum(max(0.0, r.loss) for r in rows) * 1e3:.3f} ms, gains {-sum(min(0.0, r.loss) for r in rows) * 1e3:.3f} ms")
    print(f"whole model: ORT {o_lat * 1e3:.3f} ms, tilewise {t_lat * 1e3:.3f} ms ({t_lat / o_lat:.2f}x); between "
          f"nodes: ORT {(o_lat - o_sum) * 1e3:.3f} ms, tilewise {(t_lat - t_sum) * 1e3:.3f} ms")


if __name__ == "__main__":
    main()
