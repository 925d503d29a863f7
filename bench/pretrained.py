"""The pre-trained cost model on a task it has not seen: trials to reach random search's best.

    python bench/pretrained.py                                 # the shipped training log, hold out one conv
    python bench/pretrained.py --logs full.jsonl --hold-out "64,56,56" --trials 256 --budget 32
    python bench/pretrained.py --offline --hold-out '[1,128,28,28],[128,128,3,3]'   # no measuring
    python bench/pretrained.py --blend                         # the prior's weight, over all tasks

The model is trained on every task of the full tuning log(s) but the held-out one (autotune.pretrained,
as `tilewise logs pretrain` trains the shipped one), then the held-out task is tuned three ways on
this machine: random search for --trials trials, and the model-guided XGBTuner for --budget trials
with and without the pre-trained model.  Printed: the best GFLOP/s each reached, the best of each
first batch, and after how many trials each guided search reached random search's best (its top
configs re-timed beside the default, as a tune ends; the issue's target: within 32 trials with
the pre-trained model).

`--offline` measures nothing: it ranks the held-out task's own logged records with the model
(each has its measured throughput) and prints the rank correlation and the best logged
throughput among the model's top 8 and 32 against random picks of as many, how many of its picks
come before one within 5% of the log's best (configs whose features repeat a better-ranked
one's go last, as XGBTuner ranks them), for a model trained on the raw features and for one
trained on features centred per task (each task's median feature vector subtracted, the
candidates ranked centred on theirs: how the shipped prior is trained and used): whether the
features carry over to a shape the model has not seen, on the machine's logged timings, in a
few minutes of lowering and no tuning.

`--blend` measures nothing either: it holds out each task of the logs with 120 or more records in
turn, trains the prior on the others and the task's own model (as XGBTuner fits it) on n of the
task's records drawn at random, and ranks the task's other records by the two blended with weight
k/(k+n) on the prior (XGBCostModel.prior_records = k; k = 0 is the task's own model alone): how
many of a task's own records the prior is worth, over every task rather than one.

The default training data is bench/data/resnet50_emr_full.jsonl.gz: every trial of a 20-minute
`tilewise tune resnet50.onnx` on Emerald Rapids (8,798 records over 47 tasks), the log the shipped
tuning_logs/cost_model.json was trained on.
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import autotune                                            # noqa: E402
from autotune import pretrained                            # noqa: E402
from autotune import record as rec                         # noqa: E402
from autotune.task import parse_workload                   # noqa: E402
from common import env_note, table                         # noqa: E402
from te.target import host, parse                          # noqa: E402

LOG_CACHES = "-l1d=48K -l2=2M -l3=150M"
DEFAULT_LOG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "resnet50_emr_full.jsonl.gz")


def read(paths: list[str]) -> list[rec.Record]:
    out = []
    for p in paths:
        if p.endswith(".gz"):
            with gzip.open(p, "rb") as f, tempfile.NamedTemporaryFile(suffix=".jsonl", delete=False) as t:
                t.write(f.read())
            try:
                out += rec.load(t.name)
            finally:
                os.unlink(t.name)
        else:
            out += rec.load(p)
    return out


def pick(records: list[rec.Record], text: str | None) -> str:
    """The held-out workload: the first containing text, else the direct conv with most records."""
    counts: dict[str, int] = {}
    for r in records:
        counts[r.workload] = counts.get(r.workload, 0) + 1
    keys = sorted(counts, key=lambda w: -counts[w])
    if text:
        found = [w for w in keys if text in w]
        if not found:
            sys.exit(f"--hold-out {text!r}: no workload of the logs contains it")
        return found[0]
    return next(w for w in keys if w.startswith('["conv2d_nchw"'))


def curve(tuner, skip: int | None = None) -> list[float]:
    """Best GFLOP/s after each trial, in measurement order; config `skip` (the default) is
    a trial but its throughput does not count."""
    best, out = 0.0, []
    for i in tuner.results:
        if i != skip:
            best = max(best, tuner.results[i])
        out.append(best / 1e9)
    return out


def reached(c: list[float], target: float) -> str:
    """The trial after which curve c reached target, or 'not in N'."""
    return next((str(k + 1) for k, v in enumerate(c) if v >= target), f"not in {len(c)}")


def _ranks(v: np.ndarray) -> np.ndarray:
    out = np.empty(len(v))
    out[np.argsort(v, kind="stable")] = np.arange(len(v))
    return out


NEAR = 0.95         # --offline: picks until one runs within 5% of the log's best


def _picks_to(ys_in_order: np.ndarray, level: float) -> int:
    """1 + the position of the first throughput at or above level."""
    return int(np.argmax(ys_in_order >= level)) + 1


def offline(records: list[rec.Record], held: str, seed: int, caches) -> None:
    """Rank the held-out task's logged records by models trained on the other tasks (no measuring)."""
    from autotune.cost_model import XGBCostModel, centred, distinct_first
    from autotune.features import config_features

    t0 = time.time()
    groups = pretrained.training_groups(records, exclude={held}, seed=seed, caches=caches, centre=False)
    name, wargs = parse_workload(held)
    mine = [r for r in records if r.workload == held]
    task = autotune.create_task(name, wargs, pretrained.record_target(mine[0].target, caches))
    xs = np.array([config_features(task, task.config_space.from_json(r.config).index) for r in mine], np.float32)
    ys = np.array([task.flops / r.cost / 1e9 if r.ok and r.cost > 0 else 0.0 for r in mine])
    print(f"{len(groups)} training tasks, held out {held}: {len(mine)} logged records, best "
          f"{ys.max():.1f} GFLOP/s (features in {time.time() - t0:.0f} s)")
    rng = np.random.default_rng(seed)
    rows, picks = [], []
    for label, centre in (("loop-IR features", False), ("centred per task (the prior)", True)):
        def c(x):
            return centred(x) if centre else x
        model = XGBCostModel(num_rounds=120, seed=seed)
        model.fit([(c(x), y, w) for x, y, w in groups])
        score = model.predict(c(xs))
        # as XGBTuner ranks its candidates: configs with the features of one ranked before go last
        order = np.array(distinct_first(np.argsort(-score, kind="stable"), xs))
        rho = float(np.corrcoef(_ranks(score), _ranks(ys))[0, 1])
        rows.append([label, f"{rho:.2f}", f"{ys[order[:8]].max():.1f}", f"{ys[order[:32]].max():.1f}",
                     str(_picks_to(ys[order], NEAR * ys.max()))])
        picks.append(f"{label}'s first picks: " + "; ".join(
            f"{ys[i]:.0f} {json.dumps(mine[i].config, separators=(',', ':'))}" for i in order[:3]))
    rand = [[ys[rng.choice(len(ys), k, replace=False)].max() for _ in range(2000)] for k in (8, 32)]
    reach = [_picks_to(ys[rng.permutation(len(ys))], NEAR * ys.max()) for _ in range(2000)]
    rows.append(["random picks (mean of 2000)", "0", f"{np.mean(rand[0]):.1f}", f"{np.mean(rand[1]):.1f}",
                 f"{np.mean(reach):.0f}"])
    print()
    print(table(["model", "rank correlation", "best of its top 8", "best of its top 32",
                 f"picks to {NEAR:.0%} of the log's best"], rows, "lrrrr"))
    best = np.argsort(-ys, kind="stable")[:3]
    print("\nthe log's best: " + "; ".join(
        f"{ys[i]:.0f} {json.dumps(mine[i].config, separators=(',', ':'))}" for i in best))
    print("\n".join(picks))


BLEND_K = (0, 8, 16, 32, 64, 128)     # --blend: prior_records values compared (0: the task's model alone)
BLEND_N = (8, 16, 32, 64)             # --blend: the task's own records


SEARCHES = {"random order": None, "prior for the first batch, then the task's own model": 0,
            f"prior blended, k={autotune.XGBTuner.PRIOR_RECORDS}": autotune.XGBTuner.PRIOR_RECORDS}
SEARCH_BATCHES = 8
NEAR_BEST = 0.98


def _search_in_log(x: np.ndarray, y: np.ndarray, prior, k: int | None, rng) -> int:
    """Picks until one within NEAR_BEST of the best of a task's logged configs (x, y), in batches of
    8 ranked as XGBTuner ranks them (k: XGBCostModel.prior_records; None: random order), or
    SEARCH_BATCHES * 8 + 1 if none in that many; the first batch is the prior's top 8."""
    from autotune.cost_model import XGBCostModel
    if k is None:
        return _picks_to(y[rng.permutation(len(y))], NEAR_BEST * y.max())
    measured: list[int] = []
    for _ in range(SEARCH_BATCHES):
        rest = np.array([i for i in range(len(y)) if i not in set(measured)])
        model = XGBCostModel(base=prior, prior_records=k, seed=int(rng.integers(1 << 16)))
        if measured:
            model.fit([(x[measured], y[measured], 1.0)])
        measured += [int(i) for i in rest[np.argsort(-model.predict(x[rest]), kind="stable")[:8]]]
        if y[measured].max() >= NEAR_BEST * y.max():
            return _picks_to(y[measured], NEAR_BEST * y.max())
    return SEARCH_BATCHES * 8 + 1


def blend_study(records: list[rec.Record], seed: int, caches, min_records: int = 120, repeats: int = 4) -> None:
    """How many of a task's own records the pre-trained model is worth (XGBCostModel.prior_records).

    Every task of the logs with min_records or more records is held out in turn: the prior is
    trained on the others, the task's own model (as XGBTuner fits it) on n of its records drawn at
    random, and both, blended with weight k/(k+n) on the prior, rank the task's other records.
    Printed per n: the median over tasks and draws of the rank correlation and of the best
    throughput among the top 8 (over the best of those records), for each k."""
    from autotune.cost_model import XGBCostModel, blend, centred

    t0 = time.time()
    per_task = pretrained.task_features(records, per_task=10 ** 6, seed=seed, caches=caches)
    held = [key for key, (x, y) in per_task.items() if len(y) >= min_records]
    print(f"{len(per_task)} tasks, {len(held)} with {min_records}+ records held out in turn "
          f"(features in {time.time() - t0:.0f} s)")
    rng = np.random.default_rng(seed)
    corr = {(n, k): [] for n in BLEND_N for k in BLEND_K}
    top = {(n, k): [] for n in BLEND_N for k in BLEND_K}
    searches = {label: [] for label in SEARCHES}
    for key in held:
        others = []
        for other, (x, y) in per_task.items():
            if other[0] != key[0]:              # as pretrained.train samples each task
                sample = rng.permutation(len(y))[:pretrained.PER_TASK]
                others.append((centred(x[sample]), y[sample], 1.0))
        prior = XGBCostModel(num_rounds=120, seed=seed)
        prior.fit(others)
        x, y = per_task[key]
        for n in BLEND_N:
            for _ in range(repeats):
                perm = rng.permutation(len(y))
                train, test = perm[:n], perm[n:]
                own = XGBCostModel(seed=seed)
                own.fit([(x[train], y[train], 1.0)])
                p_scores = XGBCostModel(base=prior.booster).predict(x[test])
                o_scores = own.predict(x[test])
                for k in BLEND_K:
                    score = blend(o_scores, p_scores, k / (k + n))
                    corr[n, k].append(float(np.corrcoef(_ranks(score), _ranks(y[test]))[0, 1]))
                    top[n, k].append(y[test][np.argsort(-score, kind="stable")[:8]].max() / y[test].max())
        for draw in range(repeats):
            for label, k in SEARCHES.items():
                searches[label].append(_search_in_log(x, y, prior.booster, k, np.random.default_rng(draw)))
    rows = [[str(n)] + [f"{np.median(corr[n, k]):.2f} / {np.median(top[n, k]):.3f}" for k in BLEND_K]
            for n in BLEND_N]
    rows.append(["mean"] + [f"{np.mean([np.median(corr[n, k]) for n in BLEND_N]):.2f} / "
                            f"{np.mean([np.median(top[n, k]) for n in BLEND_N]):.3f}" for k in BLEND_K])
    print()
    print(table(["own records n"] + [f"k={k}" + (" (own model)" if k == 0 else "") for k in BLEND_K],
                rows, "l" + "r" * len(BLEND_K)))
    print("\nrank correlation / best of the top 8 over the best of the held-out records (medians over "
          f"{len(held)} tasks x {repeats} draws); prior weight k/(k+n)")
    budget = SEARCH_BATCHES * 8
    print()
    print(table(["search of the held-out task's logged configs", f"picks to {NEAR_BEST:.0%} of their best (median)",
                 "reached within 32", f"reached within {budget}"],
                [[label, f"{np.median(v):.0f}", f"{np.mean(np.array(v) <= 32):.0%}", f"{np.mean(np.array(v) <= budget):.0%}"]
                 for label, v in searches.items()], "lrrr"))
    print(f"\n(batches of 8 ranked by the model, {len(held)} tasks x {repeats} draws; not reached = {budget + 1})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--logs", nargs="+", default=[DEFAULT_LOG], help="full tuning logs to train on")
    ap.add_argument("--hold-out", help="text of the workload key to hold out (default: the direct conv "
                                       "with most records)")
    ap.add_argument("--trials", type=int, default=256, help="random search's trials")
    ap.add_argument("--budget", type=int, default=32, help="the guided searches' trials")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--log-caches", default=LOG_CACHES,
                    help="cache sizes of the machine the logs were measured on, for records whose target "
                         "names none (default: Emerald Rapids', the machine of the default log)")
    ap.add_argument("--offline", action="store_true",
                    help="measure nothing: rank the held-out task's logged records (see above)")
    ap.add_argument("--blend", action="store_true",
                    help="measure nothing: how many of a task's records the prior is worth (see above)")
    ap.add_argument("--model", help="the held-out model's file: read if it exists (it must have been "
                                     "trained without the held-out task), else trained and written there")
    ap.add_argument("--log-dir", help="write each search's records to DIR/<search>.jsonl")
    args = ap.parse_args()
    print(env_note())
    records = read(args.logs)
    caches = parse(f"llvm {args.log_caches}").caches
    if args.blend:
        blend_study(records, args.seed, caches)
        return
    held = pick(records, args.hold_out)
    if args.offline:
        offline(records, held, args.seed, caches)
        return
    t0 = time.time()
    if args.model and os.path.exists(args.model):
        model = pretrained.load(args.model)
        if model is None:
            sys.exit(f"--model {args.model}: not a pre-trained model of these features; delete it to retrain")
        print(f"read the model trained without {held} from {args.model}")
    else:
        model = pretrained.train(records, exclude={held}, caches=caches)
        print(f"trained on {model.trained_on[1]} records of {model.trained_on[0]} tasks (held out: {held}) "
              f"in {time.time() - t0:.0f} s")
        if args.model:
            pretrained.save(model, args.model)
    name, wargs = parse_workload(held)
    task = autotune.create_task(name, wargs, host())
    print(f"task {task}: {len(task.config_space)} configs")
    if args.log_dir:
        os.makedirs(args.log_dir, exist_ok=True)
        if os.listdir(args.log_dir):        # log_to_file resumes from a log that exists
            sys.exit(f"--log-dir {args.log_dir}: not empty; give a new directory (a search resumes from its log)")
    runs = {}
    for label, make, n in (("random", lambda: autotune.RandomTuner(task, seed=args.seed), args.trials),
                           ("xgb, pre-trained", lambda: autotune.XGBTuner(task, seed=args.seed, pretrained=model),
                            args.budget),
                           ("xgb, no prior", lambda: autotune.XGBTuner(task, seed=args.seed, pretrained=False),
                            args.budget)):
        tuner = make()
        if label != "random":
            tuner.verify_top = 0                # the search's own timings: trials, not a final check
        # random search's best (the target) is re-timed beside the default (Tuner.verify): a
        # config timed once far above the machine's peak under load (1386 GFLOP/s against a
        # 340 GFLOP/s FMA peak) made a target no search could reach
        t0 = time.time()
        logs = [autotune.log_to_file(os.path.join(args.log_dir, label.replace(", ", "_").replace(" ", "_") + ".jsonl"))
                ] if args.log_dir else []
        tuner.tune(n, callbacks=logs)
        runs[label] = (curve(tuner), curve(tuner, skip=task.config_space.default_index()), time.time() - t0)
        default = tuner.results.get(task.config_space.default_index(), 0.0) / 1e9
        print(f"  {label}: {n} trials in {runs[label][2]:.0f} s, best {runs[label][0][-1]:.1f} GFLOP/s"
              + (f", the default {default:.1f}" if default else ""), flush=True)
    target = runs["random"][0][-1]
    rows = []
    for label, (c, others, secs) in runs.items():
        guided = label != "random"
        rows.append([label, len(c), f"{c[min(7, len(c) - 1)]:.1f}", f"{c[-1]:.1f}",
                     reached(c, target) if guided else "-", reached(others, target) if guided else "-",
                     f"{secs:.0f}"])
    print()
    # the guided searches time the default first: on a task whose default is about as fast as
    # random search's best that alone reaches it, so the column after counts other configs only
    print(table(["search", "trials", "best after 8", "best", f"trials to reach random's {args.trials}-trial best",
                 "... by a config not the default", "seconds"], rows, "lrrrrrr"))


if __name__ == "__main__":
    main()
