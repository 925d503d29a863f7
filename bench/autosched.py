"""The auto-scheduler against te's default loop nest, the template tuner, numpy and ONNX Runtime.

    python bench/autosched.py                          # the issue's budgets: 128 trials, 60 s per task
    python bench/autosched.py --trials 16 --seconds 20 --ops softmax,layernorm
    python bench/autosched.py --ops softmax,softmax_vit --threads 1    # rows of 128, and of 197 (masked vectors)
    python bench/autosched.py --ops matmul --skip-template --show    # the best loop nest too
    python bench/autosched.py --ops conv3x3 --trials 256 --seconds 1200   # issue 21's conv, 256 trials
    python bench/autosched.py --ops conv3x3 --log-dir logs/     # keep the logs: which sketch won
    python bench/autosched.py --blockings '{"bn":48}' '{"bn":64,"tile_y":[-1,4]}'   # no search
    python bench/autosched.py --blockings --ops batch_matmul,batch_matmul_sv  # attention's, beside ORT

`--blockings` tunes nothing: it times a GEMM's seed schedules (blocking.py's blockings, the
sketch's defaults under each; the matmul's unless --ops names batched ones) beside the matmul
template's default config and the template configs given (JSON knob values over its default),
numpy and ONNX Runtime, in alternating rounds: which blocking a search starts from, and how the
sketch's compare with the template's and ORT's.

Every operator is declared in plain te (registered with @autotune.register_workload, no
template; the GEMMs and the conv are autotune/auto_scheduler/examples.py's; softmax multiplies by 1 / the row sum as te.ops.nn.softmax and ONNX Runtime do), tuned by `autotune.AutoScheduler` within the trial and time budget, and its best
schedule timed in alternating rounds beside: te's default schedule (the loop nest as declared,
timed once, it can take seconds), the task's default config (the sketch rules' defaults),
ONNX Runtime running the same computation as a one-node model (two for dense + GELU), for
the matmul numpy and the matmul template tuned by XGBTuner with the same budget, and for
ResNet's 3x3 conv (conv3x3: NCHW 1x64x56x56, 64 filters, pad 1) the direct conv template
conv2d_nchw tuned likewise and the Winograd template's default config (another algorithm, for
scale), both reading the weight packed ahead as in a model build (the auto-scheduled kernel
reads it as OIHW; ONNX Runtime gets it as an input, not a constant it could pre-pack).
2 threads throughout (--threads 1: one core's efficiency, steadier on a busy machine).  Beside
a busy process, te's OpenMP threads spinning at the barrier between back-to-back runs
(te.runtime.SPIN_COUNT) stall every 2-thread run of a batched matmul for a time slice (8 ms
against 0.17): `GOMP_SPINCOUNT=0 python bench/autosched.py ...` sleeps them at once, as the ONNX
Runtime sessions here do (spinning off); the footer names the spin count.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time

# OpenBLAS's worker threads spin for 2^28 cycles (~0.1 s) after each call before they sleep: in
# alternating rounds the engine timed after numpy would share a core with a spinning thread
# (measured: ~40 ms of a worker's CPU in the half second after one 1024^3 matmul, none with
# this).  Read when OpenBLAS loads, so set before numpy is imported.
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
import numpy as np                                                # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import autotune                                                   # noqa: E402
import te                                                         # noqa: E402
from autotune.auto_scheduler.examples import as_batch_matmul, as_conv2d, as_matmul   # noqa: E402
from frontends.profile import onnxruntime_session, time_interleaved   # noqa: E402
from te.ops.fastmath import fast_erf, fast_exp                   # noqa: E402
from common import env_note, numpy_threads, table, time_call      # noqa: E402

SQRT1_2 = 0.7071067811865476


# ---------------------------------------------------------------- the workloads, in plain te
# (the GEMMs and the conv: autotune/auto_scheduler/examples.py, which the tests tune too)
@autotune.register_workload
def as_bench_softmax(B, M, N):
    X = te.placeholder((B, M, N), name="X")
    k1 = te.reduce_axis((0, N), name="k1")
    k2 = te.reduce_axis((0, N), name="k2")
    mx = te.compute((B, M), lambda b, i: te.max(X[b, i, k1], axis=k1), name="mx")
    ex = te.compute((B, M, N), lambda b, i, j: fast_exp(X[b, i, j] - mx[b, i]), name="ex")
    sm = te.compute((B, M), lambda b, i: te.sum(ex[b, i, k2], axis=k2), name="sm")
    # times 1 / the sum, as te.ops.nn.softmax and ONNX Runtime compute it: one division a row
    return [X, te.compute((B, M, N), lambda b, i, j: ex[b, i, j] * (1.0 / sm[b, i]), name="Y")]


@autotune.register_workload
def as_bench_layernorm(M, N):
    X = te.placeholder((M, N), name="X")
    g = te.placeholder((N,), name="g")
    b = te.placeholder((N,), name="b")
    k1 = te.reduce_axis((0, N), name="k1")
    k2 = te.reduce_axis((0, N), name="k2")
    mean = te.compute((M,), lambda i: te.sum(X[i, k1], axis=k1), name="sum")
    mu = te.compute((M,), lambda i: mean[i] * (1.0 / N), name="mean")
    var = te.compute((M,), lambda i: te.sum((X[i, k2] - mu[i]) * (X[i, k2] - mu[i]), axis=k2), name="ssq")
    rstd = te.compute((M,), lambda i: te.rsqrt(var[i] * (1.0 / N) + 1e-5), name="rstd")
    return [X, g, b, te.compute((M, N), lambda i, j: (X[i, j] - mu[i]) * rstd[i] * g[j] + b[j], name="Y")]


@autotune.register_workload
def as_bench_dense_gelu(M, N, K):
    A = te.placeholder((M, K), name="A")
    W = te.placeholder((K, N), name="W")
    bias = te.placeholder((N,), name="bias")
    k = te.reduce_axis((0, K), name="k")
    D = te.compute((M, N), lambda i, j: te.sum(A[i, k] * W[k, j], axis=k), name="D")
    E = te.compute((M, N), lambda i, j: D[i, j] + bias[j], name="E")
    return [A, W, bias, te.compute((M, N), lambda i, j: E[i, j] * 0.5 * (fast_erf(E[i, j] * SQRT1_2) + 1.0),
                                   name="gelu")]


OPS = {
    "matmul": (as_matmul, (1024, 1024, 1024)),
    "batch_matmul": (as_batch_matmul, (1, 12, 128, 64, 128)),      # attention's Q x K^T
    "batch_matmul_sv": (as_batch_matmul, (1, 12, 128, 128, 64)),   # its scores x V
    "softmax": (as_bench_softmax, (12, 128, 128)),
    "softmax_vit": (as_bench_softmax, (12, 197, 197)),   # ViT-B/16's: rows of 197, no vector divides them
    "layernorm": (as_bench_layernorm, (128, 768)),
    "dense_gelu": (as_bench_dense_gelu, (128, 3072, 768)),
    "conv3x3": (as_conv2d, (1, 64, 56, 56, 64, 3, 3)),            # ResNet-18/50's 56x56 3x3 conv
}


def templates(op: str, args) -> list[tuple[str, str, tuple, bool, bool]]:
    """The template tasks an op is compared with: (row label, template, its arguments, tuned?,
    weight packed ahead?: a conv's is a model's constant, the matmul's B an input like A)."""
    if op == "matmul":
        return [("template (XGBTuner)", "matmul", (*args, "float32"), True, False)]
    if op == "conv3x3":
        N, C, H, W, K, R, S = args
        conv = ((N, C, H, W), (K, C, R, S), (1, 1), (R // 2, S // 2, R // 2, S // 2), (1, 1), 1, "float32")
        # ResNet's direct conv, tuned; Winograd is another algorithm (fewer multiplies): its
        # default config only, for scale
        return [("template conv2d_nchw (XGBTuner)", "conv2d_nchw", conv, True, True),
                ("Winograd template, default config", "conv2d_nchw_winograd", conv, False, True)]
    return []


# ---------------------------------------------------------------- ONNX Runtime references
def onnx_model(op: str, args):
    """The same computation as an ONNX model, and its input names."""
    from onnx import TensorProto, helper
    f = TensorProto.FLOAT
    vi = helper.make_tensor_value_info
    if op == "matmul":
        M, N, K = args
        nodes = [helper.make_node("MatMul", ["A", "B"], ["C"])]
        ins, out = [vi("A", f, [M, K]), vi("B", f, [K, N])], vi("C", f, [M, N])
    elif op.startswith("batch_matmul"):
        B, H, M, K, N = args
        nodes = [helper.make_node("MatMul", ["X", "Y"], ["Z"])]
        ins, out = [vi("X", f, [B, H, M, K]), vi("Y", f, [B, H, K, N])], vi("Z", f, [B, H, M, N])
    elif op.startswith("softmax"):
        nodes = [helper.make_node("Softmax", ["X"], ["Y"], axis=-1)]
        ins, out = [vi("X", f, list(args))], vi("Y", f, list(args))
    elif op == "layernorm":
        M, N = args
        nodes = [helper.make_node("LayerNormalization", ["X", "g", "b"], ["Y"], axis=-1, epsilon=1e-5)]
        ins, out = [vi("X", f, [M, N]), vi("g", f, [N]), vi("b", f, [N])], vi("Y", f, [M, N])
    elif op == "conv3x3":
        N, C, H, W, K, R, S = args
        nodes = [helper.make_node("Conv", ["X", "W"], ["Y"], pads=[R // 2, S // 2, R // 2, S // 2])]
        ins, out = [vi("X", f, [N, C, H, W]), vi("W", f, [K, C, R, S])], vi("Y", f, [N, K, H, W])
    else:
        M, N, K = args
        nodes = [helper.make_node("MatMul", ["A", "W"], ["AW"]), helper.make_node("Add", ["AW", "bias"], ["E"]),
                 helper.make_node("Gelu", ["E"], ["Y"])]
        ins, out = [vi("A", f, [M, K]), vi("W", f, [K, N]), vi("bias", f, [N])], vi("Y", f, [M, N])
    g = helper.make_graph(nodes, op, ins, [out])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 20)]), [i.name for i in ins]


# ---------------------------------------------------------------- tuning
class TimeLimit:
    """Stop the search once `seconds` have passed (the final check still runs)."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.t0 = time.time()

    def start(self, tuner):
        self.t0 = time.time()

    def __call__(self, tuner, indices, records):
        if time.time() - self.t0 > self.seconds:
            tuner.stopped = True


def tune(tuner, trials: int, seconds: float, log: str, label: str) -> tuple[float, int]:
    """Tune within the budget; (wall seconds, trials measured)."""
    t = time.time()
    with autotune.Measurer() as m:
        tuner.tune(trials, measurer=m, callbacks=[TimeLimit(seconds), autotune.log_to_file(log),
                                                  autotune.progress_bar(prefix=f"{label:22s} ")])
    return time.time() - t, tuner.trials


def bench_op(op: str, a, log_dir: str) -> list:
    func, args = OPS[op]
    task = autotune.create_task(func, args)
    rng = np.random.default_rng(0)
    ins = [rng.standard_normal(t.shape).astype(np.float32) for t in task.tensors if isinstance(t.op, te.PlaceholderOp)]
    out_shape = task.tensors[-1].shape
    outs = {}

    def runner(kernel, args=None):
        o = np.zeros(out_shape, np.float32)
        outs[id(kernel)] = o
        args = args or ins
        return lambda: kernel(*args, o)

    def template_runner(tmpl, config, prepacked: bool):
        if not prepacked:
            return runner(tmpl.build(config))
        # the weight packed ahead, as a model build passes a conv's constant weight
        s, tensors = tmpl.instantiate(config, prepacked=True)
        kernel = te.build(s, tensors, target=tmpl.target)
        return runner(kernel, [ins[0], tmpl.pack_weight(ins[1], config), *ins[2:]])

    s0 = task.schedule()
    naive = te.build(s0, task.tensors)
    t_naive = time_call(runner(naive), min_repeats=1, min_seconds=0.0, warmup=0)["median"]
    auto = autotune.AutoScheduler(task, seed=a.seed)
    wall, n = tune(auto, a.trials, a.seconds, os.path.join(log_dir, f"{op}_auto.jsonl"), f"{op} auto")
    fns = {"default config": runner(task.build(0)), "auto-scheduled": runner(task.build(auto.best_config))}
    if a.show:
        s, tensors = task.instantiate(auto.best_config)
        print(f"\n{op}: the best schedule's loop nest\n{te.lower(s, tensors, op)}", file=sys.stderr)
    model, names = onnx_model(op, args)
    sess = onnxruntime_session(model, a.threads, spinning=False)
    feeds = dict(zip(names, ins))
    fns["onnxruntime"] = lambda: sess.run(None, feeds)
    want = sess.run(None, feeds)[0]
    if op == "matmul":
        fns["numpy"] = lambda: np.matmul(*ins)
    for label, name, targs, tuned, prepacked in [] if a.skip_template else templates(op, args):
        tmpl = autotune.create_task(name, targs)
        if tuned:
            xgb = autotune.XGBTuner(tmpl, seed=a.seed)
            tune(xgb, a.trials, a.seconds, os.path.join(log_dir, f"{op}_{name}.jsonl"), f"{op} {name}")
        fns[label] = template_runner(tmpl, xgb.best_config if tuned else None, prepacked)
    with numpy_threads(a.threads):
        lat = time_interleaved(fns, repeat=a.rounds)
    for key in list(outs):
        err = float(np.abs(outs[key] - want).max())
        if err > 1e-3 * max(1.0, float(np.abs(want).max())):
            raise SystemExit(f"{op}: a tilewise kernel differs from ONNX Runtime by {err:.3g}")
    gf = task.flops / 1e9
    best = lat["auto-scheduled"].median
    rows = [[op, "te default loop nest", f"{t_naive * 1e3:.3f}", f"{gf / t_naive:.1f}", f"{t_naive / best:.2f}x", ""]]
    for name, l in lat.items():
        rows.append([op, name, f"{l.median * 1e3:.3f}", f"{gf / l.median:.1f}", f"{l.median / best:.2f}x",
                     f"{n} trials, {wall:.0f} s" if name == "auto-scheduled" else ""])
    return rows


def bench_blockings(a, template_knobs: list[str], op: str = "matmul") -> list:
    """A GEMM's seed schedules (`op`: the matmul or a batched one), the matmul template's configs,
    numpy and ONNX Runtime timed side by side (no search)."""
    import json

    from autotune.auto_scheduler.sketch import SketchPolicy
    func, args = OPS[op]
    task = autotune.create_task(func, args)
    policy = SketchPolicy(task)
    out_name = task.tensors[-1].op.name
    rng = np.random.default_rng(0)
    ins = [rng.standard_normal(t.shape).astype(np.float32) for t in task.tensors[:2]]
    want = np.matmul(*ins)
    fns = {}

    def add(label, kernel):
        out = np.zeros(want.shape, np.float32)
        kernel(*ins, out)
        if not np.allclose(out, want, rtol=1e-3, atol=1e-2):
            raise SystemExit(f"{label}: differs from numpy by {float(np.abs(out - want).max()):.3g}")
        fns[label] = lambda: kernel(*ins, out)
    rank = len(want.shape)
    for p in policy.seeds():
        (s1, s2, mr), (c1, c2, nr) = p[f"tile:{out_name}:{rank - 2}"], p[f"tile:{out_name}:{rank - 1}"]
        r1, r2 = p[f"rtile:{out_name}:0"]
        where = {0: " B in place", 3: " B's panel packed by its task",
                 4: " B packed once in panels"}.get(p[f"pack:{out_name}"], "")
        label = (f"sketch {mr}x{nr}{' padded' if p[f'pad:{out_name}'] else ''} tile {s1 * s2 * mr}x{c1 * c2 * nr} "
                 f"kc {r1 * r2}{' A packed' if p[f'packa:{out_name}'] else ''}{where}")
        if p[f"at:{out_name}"]:
            label += " per register tile"
        s, tensors = policy.apply(p)
        add(label, te.build(s, tensors))
    if op == "matmul":
        tmpl = autotune.create_task("matmul", (*args, "float32"))
        space = tmpl.config_space
        default = json.loads(str(space.get(space.default_index())))
        for knobs in ["{}", *template_knobs]:
            try:
                cfg = space.from_json({**default, **json.loads(knobs)})
            except (ValueError, TypeError) as e:
                raise SystemExit(f"--blockings {knobs}: not a config of the matmul template ({e})") from None
            add(f"template {cfg}", tmpl.build(cfg.index))
    elif template_knobs:
        raise SystemExit(f"--blockings {template_knobs[0]}: template configs are the matmul's; drop them for {op}")
    fns["numpy"] = lambda: np.matmul(*ins)
    model, names = onnx_model(op, args)
    sess = onnxruntime_session(model, a.threads, spinning=False)
    feeds = dict(zip(names, ins))
    fns["onnxruntime"] = lambda: sess.run(None, feeds)
    with numpy_threads(a.threads):
        lat = time_interleaved(fns, repeat=a.rounds)
    return [[op, k, f"{v.median * 1e3:.3f}", f"{task.flops / v.median / 1e9:.1f}"]
            for k, v in sorted(lat.items(), key=lambda kv: kv[1].median)]


def spin_note() -> str:
    """The libgomp spin count te's threads wait with (te.runtime sets it unless the user did)."""
    spin = os.environ.get("GOMP_SPINCOUNT")
    return f", GOMP_SPINCOUNT {spin}" if spin else f", OMP_WAIT_POLICY {os.environ.get('OMP_WAIT_POLICY', 'unset')}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ops", default=",".join(OPS), help="comma list of: " + ", ".join(OPS))
    ap.add_argument("--trials", type=int, default=128, help="trials per task (default 128)")
    ap.add_argument("--seconds", type=float, default=60.0, help="search time per task (default 60)")
    ap.add_argument("--rounds", type=int, default=20, help="alternating timing rounds (default 20)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-template", action="store_true", help="no template rows (matmul's, conv3x3's)")
    ap.add_argument("--threads", type=int, default=2, help="threads of every engine (default 2)")
    ap.add_argument("--log-dir", metavar="DIR",
                    help="keep the tuning logs (<op>_auto.jsonl, ...) in DIR, an existing directory "
                         "(default: a temporary one)")
    ap.add_argument("--show", action="store_true", help="print each op's best schedule as a loop nest (stderr)")
    ap.add_argument("--blockings", nargs="*", metavar="KNOBS",
                    help="no search: time the matmul's seed blockings beside the template's configs "
                         "(its default and these JSON knob values) and numpy")
    a = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if a.threads < 1:
        raise SystemExit(f"--threads {a.threads}: give 1 or more")
    os.environ["TILEWISE_NUM_THREADS"] = str(a.threads)
    if a.blockings is not None:
        gemms = [op for op in a.ops.split(",") if op.startswith(("matmul", "batch_matmul"))] \
            if a.ops != ",".join(OPS) else ["matmul"]
        if not gemms:
            raise SystemExit(f"--blockings: --ops {a.ops} has no GEMM; give matmul, batch_matmul or batch_matmul_sv")
        rows = [r for op in gemms for r in bench_blockings(a, a.blockings, op)]
        print(table(["op", "engine", "ms (median)", "GFLOP/s"], rows))
        print(env_note() + f"; {a.threads} thread(s){spin_note()}; timings of {a.rounds} alternating rounds")
        return
    rows = []
    if a.log_dir and not os.path.isdir(a.log_dir):
        raise SystemExit(f"--log-dir {a.log_dir}: no such directory; create it first")
    # a log already there would be resumed (and appended to): a benchmark starts from none
    held = sorted(f for f in os.listdir(a.log_dir) if f.endswith(".jsonl")
                  and any(f.startswith(op + "_") for op in a.ops.split(","))) if a.log_dir else []
    if held:
        raise SystemExit(f"--log-dir {a.log_dir}: holds {held[0]} already (it would be resumed); "
                         "give an empty directory")
    with tempfile.TemporaryDirectory() as tmp:
        for op in a.ops.split(","):
            if op not in OPS:
                raise SystemExit(f"unknown op {op!r}; choose from {', '.join(OPS)}")
            rows += bench_op(op, a, a.log_dir or tmp)
    print()
    print(table(["op", "engine", "ms (median)", "GFLOP/s", "vs auto-scheduled", "search"], rows))
    print()
    print(env_note() + f"; {a.threads} thread(s){spin_note()}; budget {a.trials} trials / {a.seconds:.0f} s per task; "
          f"timings of {a.rounds} alternating rounds (the te default loop nest: one run)")


if __name__ == "__main__":
    main()
