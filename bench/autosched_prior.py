"""How many of an auto-scheduled task's own records the pre-trained model is worth (AutoScheduler.PRIOR_RECORDS).

    python bench/autosched.py --log-dir logs/ --skip-template      # auto-scheduler logs to study
    python bench/autosched_prior.py logs/                            # measures nothing

For every task of the logs (one record per schedule, the fastest where the final check timed it
again), the shipped pre-trained model (tuning_logs/cost_model.json: template tasks only, so
every auto-scheduled task is one it has not seen) and the task's own model, fit on n of its
records drawn at random, rank the task's other records, blended with weight k/(k+n) on the prior
(XGBCostModel.prior_records = k; k = 0 is the task's own model alone).  Printed per n: the median
over tasks and draws of the rank correlation and of the best throughput among the top 8 (over the
best of those records); then, per k, the picks a search of the logged schedules (batches of 8
ranked by the blend, refit after each) takes to one within 2% of the log's best.  The logged
schedules are the search's own picks, not a random sample: a small, biased pool, rough evidence.
"""
from __future__ import annotations

import argparse
import glob
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import autosched                                            # noqa: E402,F401  (registers the bench's workloads)
import pretrained as study                                  # noqa: E402  (bench/pretrained.py's helpers)
from autotune import pretrained                             # noqa: E402
from autotune import record as rec                          # noqa: E402
from autotune.cost_model import XGBCostModel, blend         # noqa: E402
from common import table                                    # noqa: E402

K = (0, 8, 16, 32, 64)
N = (8, 16, 32)
DRAWS = 6


def fastest_per_schedule(records: list[rec.Record]) -> list[rec.Record]:
    """One record per (workload, config): the fastest successful one (a final check re-times the best)."""
    best: dict = {}
    for r in records:
        key = (r.workload, r.config_key)
        old = best.get(key)
        if old is None or (r.ok and (not old.ok or r.cost < old.cost)):
            best[key] = r
    return list(best.values())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("logs", nargs="+", help="auto-scheduler logs (.jsonl) or folders of them")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    paths = [p for a in args.logs for p in (sorted(glob.glob(os.path.join(a, "*.jsonl"))) if os.path.isdir(a) else [a])]
    if not paths:
        sys.exit(f"no .jsonl logs in {' '.join(args.logs)}: write some with bench/autosched.py --log-dir DIR")
    records = fastest_per_schedule([r for p in paths for r in rec.load(p)])
    per_task = pretrained.task_features(records, per_task=10 ** 6, seed=args.seed)
    prior = pretrained.prior(True)
    if prior is None or not per_task:
        sys.exit("no shipped pre-trained model (tuning_logs/cost_model.json)" if prior is None
                 else "no auto-scheduled task of the logs replays on this code: log them again")
    rng = np.random.default_rng(args.seed)
    corr = {(n, k): [] for n in N for k in K}
    top = {(n, k): [] for n in N for k in K}
    picks: dict[int | None, list[int]] = {k: [] for k in (None, *K)}
    rows = []
    for key, (x, y) in per_task.items():
        ref = pretrained.default_features(*key)         # its default schedule's: how the tuner ranks
        for n in (n for n in N if n <= len(y) - 16):       # at least 16 records left to rank
            for _ in range(DRAWS):
                perm = rng.permutation(len(y))
                train, test = perm[:n], perm[n:]
                own = XGBCostModel(seed=args.seed)
                own.fit([(x[train], y[train], 1.0)])
                o_scores, p_scores = own.predict(x[test]), XGBCostModel(base=prior, reference=ref).predict(x[test])
                for k in K:
                    score = blend(o_scores, p_scores, k / (k + n))
                    corr[n, k].append(float(np.corrcoef(study._ranks(score), study._ranks(y[test]))[0, 1]))
                    top[n, k].append(y[test][np.argsort(-score, kind="stable")[:8]].max() / y[test].max())
        for k in picks:
            picks[k] += [study._search_in_log(x, y, prior, k, np.random.default_rng(d), ref) for d in range(DRAWS)]
        rows.append([key[0][:60], str(len(y))] + [f"{np.median(picks[k][-DRAWS:]):.0f}" for k in picks])
    print(table(["task", "schedules", "random"] + [f"k={k}" for k in K], rows, "lr" + "r" * (len(K) + 1)))
    print(f"\npicks to {study.NEAR_BEST:.0%} of the logged best (median of {DRAWS} draws; random order, "
          "then blends with prior weight k/(k+n))\n")
    print(table(["own records n"] + [f"k={k}" for k in K],
                [[str(n)] + [f"{np.median(corr[n, k]):.2f} / {np.median(top[n, k]):.3f}" if corr[n, k] else "-"
                             for k in K] for n in N], "l" + "r" * len(K)))
    print("\nrank correlation / best of the top 8 over the best of the other records (medians over tasks x draws)")


if __name__ == "__main__":
    main()
