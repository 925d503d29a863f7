"""Search quality on a replayed space: XGBTuner against RandomTuner, judged by true speeds.

    python bench/tune_replay.py                          # time matmul 1024^3's whole space 3 times
                                                         # (500 configs, about 8 minutes), replay 50 seeds
    python bench/tune_replay.py --table mm.json          # keep the measured table there, or reuse it
    python bench/tune_replay.py --table mm.json --seeds 200

On a shared machine a tuner's "best seen" is the maximum of many single noisy timings, so it
grows with the number of trials even among configs that run equally fast, and one run of
bench/tune.py says little about which tuner searches better.  Here every config of the space is
timed in three passes (every other one in reverse order); the median of all its timings is its true
speed.  The tuners then run many times on a TableMeasurer that answers each measurement with one
of the config's recorded passes, drawn at random: the same noise, nothing timed, and each
tuner's answer judged by its true speed.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import autotune                                      # noqa: E402
from autotune.timing_table import TableMeasurer, TimingTable   # noqa: E402
from common import env_note, table                  # noqa: E402

TASK = ("matmul", (1024, 1024, 1024, "float32"))


def replay(tuner_cls, task, tab: TimingTable, trials: int, seed: int) -> tuple[list[int], int]:
    """The configs the tuner measured, in order, and its answer after its final check."""
    order: list[int] = []
    tuner = tuner_cls(task, seed=seed)
    top = tuner.verify_top
    tuner.verify_top = 0                       # the search alone first, then the final check
    with TableMeasurer(tab, seed=10_000 + seed) as m:
        tuner.tune(trials, measurer=m, callbacks=[lambda t, idx, recs: order.extend(idx)])
        tuner.verify_top = top
        tuner.verify(m)
    return order, tuner.best_config.index


def noise(tab: TimingTable) -> tuple[int, float, float]:
    """Configs within 2% of the best, and the 10th/90th percentile of the ratio between a
    config's two passes among the configs within 20% of the best."""
    _, best = tab.best()
    near = sum(tab.true_gflops(i) >= 0.98 * best for i in tab.costs)
    ratios = sorted(statistics.median(p[0]) / statistics.median(p[1]) for i, p in tab.costs.items()
                    if len(p) >= 2 and p[0] and p[1] and tab.true_gflops(i) >= 0.8 * best)
    return near, ratios[len(ratios) // 10], ratios[9 * len(ratios) // 10]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--table", help="timing table: measured and saved there if missing, else reused")
    ap.add_argument("--seeds", type=int, default=50, help="replays of each tuner (default 50)")
    ap.add_argument("--passes", type=int, default=3, help="timings of every config when measuring the table (default 3)")
    ap.add_argument("--trials", type=int, default=64, help="XGBTuner trials (default 64)")
    ap.add_argument("--random-trials", type=int, default=256, help="RandomTuner trials (default 256)")
    a = ap.parse_args()
    print(env_note())
    task = autotune.create_task(*TASK)
    if a.table and os.path.exists(a.table):
        tab = TimingTable.load(a.table)
        if tab.workload != task.workload_key:
            ap.error(f"{a.table} holds {tab.workload}, not {task.workload_key}")
        print(f"timing table {a.table}: {len(tab.costs)} configs, measured on {tab.isa}")
    else:
        t0 = time.time()

        def progress(done, total):
            print(f"\rmeasuring the whole space, {a.passes} passes: {done}/{total}, {time.time() - t0:.0f} s",
                  end="", flush=True)
        tab = TimingTable.measure(task, range(len(task.config_space)), passes=a.passes, progress=progress)
        print()
        if a.table:
            tab.save(a.table)
            print(f"timing table saved to {a.table}")
    best_i, best = tab.best()
    near, lo, hi = noise(tab)
    print(f"space: {len(tab.costs)} configs; the fastest on all its timings {best:.0f} GFLOP/s (config {best_i}); "
          f"{near} configs within 2% of it; a config's pass 1 / pass 2 among the top: {lo:.2f}..{hi:.2f} "
          f"(10th..90th percentile)\n")

    rows, xs, rs, reach, reach1, xv, rv = [], [], [], [], 0, [], []
    for seed in range(a.seeds):
        x_order, x_ans = replay(autotune.XGBTuner, task, tab, a.trials, seed)
        r_order, r_ans = replay(autotune.RandomTuner, task, tab, a.random_trials, seed)
        xs.append(tab.true_gflops(x_ans))
        rs.append(tab.true_gflops(r_ans))
        target = max(tab.true_gflops(i) for i in r_order)
        xv.append(max(tab.true_gflops(i) for i in x_order))
        rv.append(target)
        hit = next((k + 1 for k, i in enumerate(x_order) if tab.true_gflops(i) >= target), None)
        reach.append(hit)
        reach1 += any(tab.true_gflops(i) >= 0.99 * target for i in x_order)
        rows.append([seed, f"{xs[-1]:.0f}", f"{rs[-1]:.0f}", f"{xv[-1]:.0f}", f"{target:.0f}", hit or f"> {a.trials}"])
    print("true GFLOP/s (median of all the config's timings) per seed: each tuner's answer after its final")
    print("check, the fastest config each visited, and the trial at which XGBTuner first visited a config as")
    print(f"fast as RandomTuner's fastest of {a.random_trials}")
    print(table(["seed", f"XGB answer ({a.trials})", f"Random answer ({a.random_trials})", "XGB visited best",
                 "Random visited best", "XGB reaches it at"], rows))
    won = sum(x >= r for x, r in zip(xs, rs))
    hits = [h for h in reach if h]
    print(f"\nXGBTuner ({a.trials} trials): answer {statistics.mean(xs) / best:.1%} of the space's fastest on "
          f"average (worst {min(xs) / best:.1%}); RandomTuner ({a.random_trials}): {statistics.mean(rs) / best:.1%} "
          f"(worst {min(rs) / best:.1%}); XGBTuner's answer at least as fast as RandomTuner's in {won} of {a.seeds} seeds")
    print(f"the fastest config visited: XGBTuner {statistics.mean(xv) / best:.1%}, RandomTuner {statistics.mean(rv) / best:.1%} "
          "of the space's fastest on average")
    print(f"XGBTuner visited a config as fast as RandomTuner's {a.random_trials}-trial best within {a.trials} trials "
          f"in {len(hits)} of {a.seeds} seeds" + (f" (median trial {statistics.median(hits):.0f})" if hits else "")
          + f", one within 1% of it in {reach1} of {a.seeds}")


if __name__ == "__main__":
    main()
