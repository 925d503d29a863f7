"""Tuning curves: best GFLOP/s against trials and wall time, XGBTuner vs RandomTuner.

    python bench/tune.py                      # matmul 1024^3 and the ResNet-50 3x3 conv
    python bench/tune.py --tasks matmul --trials 64 --random-trials 256
    python bench/tune.py --plot tune.png      # also draw the curves (needs matplotlib)

Printed next to numpy (matmul) and ONNX Runtime (conv) measured in the same run, and the
machine's measured FMA peak.  At the end the two tuners' answers are timed side by side, in
alternating rounds, to tell whether XGBTuner's 64 trials found a config as fast as RandomTuner's
256: each tuner's "best seen" is the maximum of single noisy timings.  bench/tune_replay.py
judges the same question without the noise, on a replayed fully measured space.
"""
from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import autotune                                      # noqa: E402
from frontends.profile import onnxruntime_session    # noqa: E402
from te import machine                               # noqa: E402
from common import env_note, numpy_threads, table, time_call   # noqa: E402

TASKS = {
    "matmul": ("matmul", (1024, 1024, 1024, "float32")),
    "conv": ("conv2d_nchw", ((1, 64, 56, 56), (64, 64, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1, "float32")),
}
CHECKPOINTS = (8, 16, 32, 64, 128, 256)


class Curve:
    """A callback that records (trials, seconds, best GFLOP/s) after every batch."""

    def __init__(self):
        self.points: list[tuple[int, float, float]] = []
        self.t0 = time.time()

    def start(self, tuner):
        self.t0 = time.time()

    def __call__(self, tuner, indices, records):
        self.points.append((tuner.trials, time.time() - self.t0, tuner.best_flops / 1e9))

    def at_trials(self, n: int) -> float:
        vals = [g for t, _, g in self.points if t <= n]
        return max(vals) if vals else float("nan")

    def at_seconds(self, s: float) -> float:
        vals = [g for _, t, g in self.points if t <= s]
        return max(vals) if vals else float("nan")


def reference(name: str, args) -> tuple[str, float]:
    """GFLOP/s of numpy (matmul) or ONNX Runtime (conv) on 2 threads."""
    if name == "matmul":
        M, N, K, _ = args
        a = np.random.rand(M, K).astype(np.float32)
        b = np.random.rand(K, N).astype(np.float32)
        with numpy_threads(2):
            t = time_call(np.matmul, a, b)["median"]
        return "numpy", 2.0 * M * N * K / t / 1e9
    import onnx
    from onnx import TensorProto, helper
    (n, c, h, w), (k, _, r, s), strides, pads, dil, groups, _ = args
    oh = (h + pads[0] + pads[2] - (r - 1) * dil[0] - 1) // strides[0] + 1
    ow = (w + pads[1] + pads[3] - (s - 1) * dil[1] - 1) // strides[1] + 1
    wt = np.random.rand(k, c // groups, r, s).astype(np.float32)
    node = helper.make_node("Conv", ["x", "w"], ["y"], strides=list(strides), pads=list(pads),
                            dilations=list(dil), group=groups)
    g = helper.make_graph([node], "conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [n, c, h, w])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [n, k, oh, ow])],
                          [onnx.numpy_helper.from_array(wt, "w")])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    sess = onnxruntime_session(model, 2)
    x = np.random.rand(n, c, h, w).astype(np.float32)
    t = time_call(lambda: sess.run(None, {"x": x}))["median"]
    return "onnxruntime", 2.0 * n * k * oh * ow * (c // groups) * r * s / t / 1e9


def run(tuner_cls, task, trials: int, log_dir: str, seed: int) -> tuple[Curve, float, float, object, float]:
    """The curve, trials per second (final check included), the best GFLOP/s after the final
    check (the tuner's answer: its best configs timed again beside the default), that config, and
    the seconds the measurer took to start (worker processes, the reference output), which a
    tuning session pays once, not per trial."""
    curve = Curve()
    log = os.path.join(log_dir, f"{task.name}_{tuner_cls.__name__}.jsonl")
    tuner = tuner_cls(task, seed=seed)
    with autotune.Measurer() as m:
        t = time.time()
        m.ensure_reference(task)
        startup = time.time() - t
        t = time.time()
        tuner.tune(trials, measurer=m, callbacks=[curve, autotune.log_to_file(log),
                                                  autotune.progress_bar(prefix=f"{tuner_cls.__name__:12s} ")])
        rate = tuner.trials / (time.time() - t)
    return curve, rate, tuner.best_flops / 1e9, tuner.best_config, startup


def head_to_head(task, configs: list, rounds: int) -> list[list[float]]:
    """GFLOP/s of each config in each of `rounds` rounds, the configs taking turns in every round.

    A tuner's "best seen" is the maximum of many single noisy timings, so it grows with the
    number of trials even among configs that run equally fast; which answer is faster is only
    told by timing the answers side by side."""
    with autotune.Measurer() as m:
        recs = m.measure(task, configs, rounds=rounds)
    out = [[] for _ in configs]
    for k, r in enumerate(recs):
        out[k % len(configs)].append(task.flops / r.cost / 1e9 if r.ok else 0.0)
    return out


def compare(task, xgb_cfg, rnd_cfg, rounds: int) -> str:
    """Whether XGBTuner's answer is as fast as RandomTuner's, told by timing them side by side.

    Judged on the per-round ratios of the two answers (the machine's speed changes from second to
    second and hits both alike within a round), with a sign test: if the answers ran equally fast,
    XGBTuner's would be the faster in a round with probability 1/2."""
    if xgb_cfg.index == rnd_cfg.index:
        return f"  head to head: both tuners answer config {xgb_cfg.index}: reached"
    dflt = task.config_space.get(task.config_space.default_index())
    x, r, d0 = head_to_head(task, [xgb_cfg, rnd_cfg, dflt], rounds)
    pair = sorted(xi / ri for xi, ri in zip(x, r) if ri > 0)
    ratio = statistics.median(pair)
    wins = sum(q >= 1.0 for q in pair)
    if ratio >= 1.0:
        verdict = "reached"
    elif _sign_p(wins, len(pair)) > 0.05:
        verdict = f"not told apart by the timings (XGBTuner's the faster in {wins} of {len(pair)} rounds)"
    else:
        verdict = f"not reached (XGBTuner's the slower in {len(pair) - wins} of {len(pair)} rounds)"
    return (f"  head to head, {rounds} rounds taking turns (median GFLOP/s): XGBTuner's answer (config "
            f"{xgb_cfg.index}) {statistics.median(x):.0f}, RandomTuner's (config {rnd_cfg.index}) "
            f"{statistics.median(r):.0f}, the default {statistics.median(d0):.0f} (its rounds "
            f"{min(d0):.0f}..{max(d0):.0f}: the machine's noise); XGB/Random per round: median {ratio:.3f}, "
            f"{pair[0]:.2f}..{pair[-1]:.2f}: {verdict}")


def _sign_p(wins: int, n: int) -> float:
    """P(at most `wins` wins of n fair coin flips): the one-sided sign test's p-value."""
    return sum(math.comb(n, k) for k in range(wins + 1)) / 2 ** n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", default="matmul,conv", help="comma list of: " + ", ".join(TASKS))
    ap.add_argument("--trials", type=int, default=64, help="XGBTuner trials (default 64)")
    ap.add_argument("--random-trials", type=int, default=256, help="RandomTuner trials (default 256)")
    ap.add_argument("--rounds", type=int, default=15,
                    help="rounds of the final side-by-side timing of the two tuners' answers (default 15)")
    ap.add_argument("--seed", type=int, default=0, help="the tuners' random seed (default 0)")
    ap.add_argument("--plot", help="write the curves to this PNG (needs matplotlib)")
    a = ap.parse_args()
    print(env_note())
    peak = machine.peak_gflops(2)
    print(f"fp32 FMA peak on 2 threads: {peak:.0f} GFLOP/s\n")
    rows, curves, startups = [], {}, []
    with tempfile.TemporaryDirectory() as d:
        for key in a.tasks.split(","):
            if key not in TASKS:
                ap.error(f"unknown task {key!r}; choose from {', '.join(TASKS)}")
            name, args = TASKS[key]
            try:
                task = autotune.create_task(name, args)
            except Exception as e:
                print(f"{key}: skipped ({e})")
                continue
            ref_name, ref = reference(name, args)
            xgb, xgb_rate, xgb_checked, xgb_cfg, up = run(autotune.XGBTuner, task, a.trials, d, a.seed)
            rnd, rnd_rate, rnd_checked, rnd_cfg, up2 = run(autotune.RandomTuner, task, a.random_trials, d, a.seed)
            startups.append(f"{key} {up:.1f}/{up2:.1f} s")
            curves[key] = (xgb, rnd)
            for label, c, rate, checked in (("XGBTuner", xgb, xgb_rate, xgb_checked),
                                            ("RandomTuner", rnd, rnd_rate, rnd_checked)):
                best = max(g for _, _, g in c.points)
                rows.append([key, label] + [f"{c.at_trials(n):.0f}" if n <= c.points[-1][0] else ""
                                            for n in CHECKPOINTS]
                            + [f"{c.at_seconds(60):.0f}", f"{best:.0f}", f"{checked:.0f}",
                               f"{checked / ref:.2f}x {ref_name}", f"{100 * checked / peak:.0f}%", f"{rate:.1f}"])
            reach = next((t for t, _, g in xgb.points if g >= max(g2 for _, _, g2 in rnd.points)), None)
            print(f"{key}: {ref_name} {ref:.0f} GFLOP/s; XGBTuner's best seen reaches RandomTuner's "
                  f"{a.random_trials}-trial best seen after {reach if reach else 'more than ' + str(a.trials)} "
                  f"trials; after the final checks, XGBTuner ({a.trials} trials) {xgb_checked:.0f} vs "
                  f"RandomTuner ({a.random_trials}) {rnd_checked:.0f} GFLOP/s ({xgb_checked / rnd_checked:.2f}x)")
            print(compare(task, xgb_cfg, rnd_cfg, a.rounds) + "\n")
    print("best GFLOP/s seen after N trials, after 60 s, overall; 'checked': the tuner's answer, its best")
    print("configs timed again beside the default (the best seen is the maximum of single noisy timings);")
    print("'vs reference' and 'of peak' use the checked figure; trials/s counts from the first trial to the")
    print(f"end of the final check (starting the measurer's workers and the reference run took {', '.join(startups)}")
    print("for XGBTuner/RandomTuner: once per tuning session); 2 threads")
    print(table(["task", "tuner"] + [f"{n}" for n in CHECKPOINTS] +
                ["60 s", "best seen", "checked", "vs reference", "of peak", "trials/s"], rows))
    if a.plot and curves:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, axes = plt.subplots(len(curves), 2, figsize=(10, 3.5 * len(curves)), squeeze=False)
        for row, (key, (xgb, rnd)) in zip(axes, curves.items()):
            for c, label in ((xgb, "XGBTuner"), (rnd, "RandomTuner")):
                row[0].plot([p[0] for p in c.points], [p[2] for p in c.points], label=label)
                row[1].plot([p[1] for p in c.points], [p[2] for p in c.points], label=label)
            row[0].set(title=f"{key}: best vs trials", xlabel="trials", ylabel="GFLOP/s")
            row[1].set(title=f"{key}: best vs wall time", xlabel="seconds", ylabel="GFLOP/s")
            row[0].legend()
        fig.tight_layout()
        fig.savefig(a.plot)
        print(f"\nplot written to {a.plot}")


if __name__ == "__main__":
    main()
