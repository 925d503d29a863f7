"""The pre-trained cost model on a task it has not seen: trials to reach random search's best.

    python bench/pretrained.py                                 # the shipped training log, hold out one conv
    python bench/pretrained.py --hold-out '[1,128,28,28],[128,128,3,3]' --seeds 0 1 2   # three runs each
    python bench/pretrained.py --task '["conv2d_nchw",[[1,192,28,28],[64,192,1,1],[1,1],[0,0,0,0],[1,1],1,"float32"]]'
    python bench/pretrained.py --offline --hold-out '[1,128,28,28],[128,128,3,3]'   # no measuring
    python bench/pretrained.py --blend                         # the prior's weight, over all tasks
    python bench/pretrained.py --searches random --trials 200  # the prior's rank correlation, measured

The model is trained on every task of the full tuning log(s) but the held-out one (autotune.pretrained,
as `tilewise logs pretrain` trains the shipped one; --task: a workload the logs do not hold, the
model trained on all of them), then the held-out task is tuned three ways on this machine: random
search for --trials trials, and the model-guided XGBTuner for --budget trials with and without the
pre-trained model, once per seed of --seeds (random search on another seed than the guided ones:
make_tuners).  Kernels run on --threads threads, 1 by default: the runner times a call by its
undisturbed calls (those whose threads did not wait for a CPU), so a one-thread kernel's timing is
its own work even while other jobs share the machine.

The searches run interleaved, batch by batch, on one measurer (each search's batches spread evenly
over the run: a load that comes and goes slows them alike), and none trusts its own timings for
the result: a joint check re-times, side by side in alternating rounds, the default, random
search's 3 fastest configs (the best of them, re-timed, is the target: its "256-trial best") and
each guided search's fastest (joint_check).  Printed per seed: the target and the trial random
search found it at, each guided search's best within its budget (re-timed, over the target), the
trial at which it first timed a config that reaches the target (time over the target's in the
same round, median over rounds, at most 1; or within 2%), and the trials it saves against random
search's --trials; then how many seeds met the issue's target (within 32 trials with the
pre-trained model).

`--offline` measures nothing: it ranks the held-out task's own logged records with the model
(each has its measured throughput) and prints the rank correlation and the best logged
throughput among the model's top 8 and 32 against random picks of as many, how many of its picks
come before one within 5% of the log's best (configs whose features repeat a better-ranked
one's go last, as XGBTuner ranks them), for models trained on the raw features, on features
centred per task (each task's median subtracted, the candidates ranked centred on theirs: session
20's prior) and on features minus each task's default config's (the shipped prior's way, a
reference that does not move with the candidates): whether the features carry over to a shape
the model has not seen, on the machine's logged timings, in minutes of lowering and no tuning.

`--searches random` (random search alone) prints, after its joint check (random's best against the
default, re-timed side by side), how the model ranks the configs random search timed on this
machine: its rank correlation (Spearman) with their measured throughputs, the best of its top 8
and 32, and its picks to 95% of their best against random order; e.g. `--searches random --trials
200` on a held-out task asks whether the prior orders a new task's candidates at all, on this
machine's thread count rather than the logs'. With --log-dir, `--offline --logs <a log without the
task> DIR/seed<N>/random.jsonl --task KEY` ranks those same records the three --offline ways.

`--blend` measures nothing either: it holds out each task of the logs with 120 or more records in
turn, trains the prior on the others and the task's own model (as XGBTuner fits it) on n of the
task's records drawn at random, and ranks the task's other records by the two blended with weight
k/(k+n) on the prior (XGBCostModel.prior_records = k; k = 0 is the task's own model alone): how
many of a task's own records the prior is worth, over every task rather than one (--centre: the
features relative to each task's default config, as shipped, or to the ranked configs' median).

The default training data is bench/data/resnet50_emr_full.jsonl.gz: every trial of a 20-minute
`tilewise tune resnet50.onnx` on Emerald Rapids (8,798 records over 47 tasks, session 19's
defaults); the shipped tuning_logs/cost_model.json was trained on the shipped logs (`--logs
tuning_logs/*/*.jsonl`: session 20's ResNet-50 log, 49 tasks with 2+ records).
"""
from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import statistics
import sys
import tempfile
import time

import numpy as np


def _threads_argument() -> str:
    """--threads N of the command line (default 1), read before te loads: te reads its thread count once."""
    argv = sys.argv[1:]
    for k, a in enumerate(argv):
        if a == "--threads" and k + 1 < len(argv):
            return argv[k + 1]
        if a.startswith("--threads="):
            return a.split("=", 1)[1]
    return "1"


os.environ["TILEWISE_NUM_THREADS"] = _threads_argument()
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


RANKING_HEADER = ["model", "rank correlation (Spearman)", "best of its top 8 (GFLOP/s)", "best of its top 32",
                  f"picks to {NEAR:.0%} of the best"]


def ranking_row(label: str, score: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """How a model's scores of configs (features xs) rank their measured throughputs ys: its order
    (as XGBTuner ranks candidates: configs whose features repeat a better-ranked one's go last) and
    a RANKING_HEADER row."""
    from autotune.cost_model import distinct_first
    order = np.array(distinct_first(np.argsort(-score, kind="stable"), xs))
    rho = float(np.corrcoef(_ranks(score), _ranks(ys))[0, 1])
    return order, [label, f"{rho:.2f}", f"{ys[order[:8]].max():.1f}", f"{ys[order[:32]].max():.1f}",
                   str(_picks_to(ys[order], NEAR * ys.max()))]


def random_row(ys: np.ndarray, rng, draws: int = 2000) -> list[str]:
    """The RANKING_HEADER row of picks in random order (means over draws)."""
    best = [[ys[rng.choice(len(ys), min(k, len(ys)), replace=False)].max() for _ in range(draws)] for k in (8, 32)]
    reach = [_picks_to(ys[rng.permutation(len(ys))], NEAR * ys.max()) for _ in range(draws)]
    return [f"random picks (mean of {draws})", "0", f"{np.mean(best[0]):.1f}", f"{np.mean(best[1]):.1f}",
            f"{np.mean(reach):.0f}"]


def prior_vs_measured(model, task, tuner) -> None:
    """How the pre-trained model ranks the configs a search measured on this machine (a live run of
    random search alone: a random sample of the task, each timed once, anchored on the default
    beside it): a held-out task's rank correlation on this machine's timings (--threads), where
    --offline has only the logged ones of the logs' machine and thread count."""
    from autotune.cost_model import XGBCostModel
    from autotune.features import config_features
    idx = [i for i in tuner.results if i != task.config_space.default_index()]
    xs = np.array([config_features(task, i) for i in idx], np.float32)
    ys = np.array([tuner.results[i] / 1e9 for i in idx])
    _, row = ranking_row("pre-trained (relative to the default)", XGBCostModel(base=pretrained.prior(model)).prior_scores(xs), xs, ys)
    print(f"\nthe prior on the {len(idx)} configs random search measured (search timings anchored on the default, best "
          f"{ys.max():.1f} GFLOP/s):")
    print(table(RANKING_HEADER, [row, random_row(ys, np.random.default_rng(0))], "lrrrr"))


def offline(records: list[rec.Record], held: str, seed: int, caches) -> None:
    """Rank the held-out task's logged records by models trained on the other tasks (no measuring)."""
    from autotune.cost_model import XGBCostModel, centred
    from autotune.features import config_features

    t0 = time.time()
    per_task = pretrained.task_features(records, exclude={held}, seed=seed, caches=caches)
    groups = pretrained.centre_groups(per_task, False)
    by_default = pretrained.centre_groups(per_task, "default", caches)
    name, wargs = parse_workload(held)
    mine = [r for r in records if r.workload == held]
    task = autotune.create_task(name, wargs, pretrained.record_target(mine[0].target, caches))
    xs = np.array([config_features(task, task.config_space.from_json(r.config).index) for r in mine], np.float32)
    ys = np.array([task.flops / r.cost / 1e9 if r.ok and r.cost > 0 else 0.0 for r in mine])
    print(f"{len(groups)} training tasks, held out {held}: {len(mine)} logged records, best "
          f"{ys.max():.1f} GFLOP/s (features in {time.time() - t0:.0f} s)")
    rng = np.random.default_rng(seed)
    rows, picks = [], []
    default = config_features(task, task.config_space.default_index())
    for label, centre in (("loop-IR features", False), ("centred per task (session 20's prior)", True),
                          ("minus the default config's (the prior)", "default")):
        def c(x):
            return x - default if centre == "default" else centred(x) if centre else x
        model = XGBCostModel(num_rounds=120, seed=seed)
        model.fit(by_default if centre == "default" else [(c(x), y, w) for x, y, w in groups])
        order, row = ranking_row(label, model.predict(c(xs)), xs, ys)
        rows.append(row)
        picks.append(f"{label}'s first picks: " + "; ".join(
            f"{ys[i]:.0f} {json.dumps(mine[i].config, separators=(',', ':'))}" for i in order[:3]))
    rows.append(random_row(ys, rng))
    print()
    print(table(RANKING_HEADER, rows, "lrrrr"))
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


def _search_in_log(x: np.ndarray, y: np.ndarray, prior, k: int | None, rng, reference=None) -> int:
    """Picks until one within NEAR_BEST of the best of a task's logged configs (x, y), in batches of
    8 ranked as XGBTuner ranks them (k: XGBCostModel.prior_records; None: random order), or
    SEARCH_BATCHES * 8 + 1 if none in that many; the first batch is the prior's top 8."""
    from autotune.cost_model import XGBCostModel
    if k is None:
        return _picks_to(y[rng.permutation(len(y))], NEAR_BEST * y.max())
    measured: list[int] = []
    for _ in range(SEARCH_BATCHES):
        rest = np.array([i for i in range(len(y)) if i not in set(measured)])
        model = XGBCostModel(base=prior, prior_records=k, seed=int(rng.integers(1 << 16)), reference=reference)
        if measured:
            model.fit([(x[measured], y[measured], 1.0)])
        measured += [int(i) for i in rest[np.argsort(-model.predict(x[rest]), kind="stable")[:8]]]
        if y[measured].max() >= NEAR_BEST * y.max():
            return _picks_to(y[measured], NEAR_BEST * y.max())
    return SEARCH_BATCHES * 8 + 1


def blend_study(records: list[rec.Record], seed: int, caches, centre: str = "default", min_records: int = 120,
                repeats: int = 4) -> None:
    """How many of a task's own records the pre-trained model is worth (XGBCostModel.prior_records).

    Every task of the logs with min_records or more records is held out in turn: the prior is
    trained on the others, the task's own model (as XGBTuner fits it) on n of its records drawn at
    random, and both, blended with weight k/(k+n) on the prior, rank the task's other records.
    Printed per n: the median over tasks and draws of the rank correlation and of the best
    throughput among the top 8 (over the best of those records), for each k.  `centre`: each task's
    features minus its default config's (the shipped way), or minus the median of the configs
    ranked (session 20's)."""
    from autotune.cost_model import XGBCostModel, blend, centred

    t0 = time.time()
    per_task = pretrained.task_features(records, per_task=10 ** 6, seed=seed, caches=caches)
    held = [key for key, (x, y) in per_task.items() if len(y) >= min_records]
    ref = {key: pretrained.default_features(*key, caches) if centre == "default" else None for key in per_task}
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
                xs = x[sample]
                others.append((xs - ref[other] if ref[other] is not None else centred(xs), y[sample], 1.0))
        prior = XGBCostModel(num_rounds=120, seed=seed)
        prior.fit(others)
        x, y = per_task[key]
        for n in BLEND_N:
            for _ in range(repeats):
                perm = rng.permutation(len(y))
                train, test = perm[:n], perm[n:]
                own = XGBCostModel(seed=seed)
                own.fit([(x[train], y[train], 1.0)])
                p_scores = XGBCostModel(base=prior.booster, reference=ref[key]).predict(x[test])
                o_scores = own.predict(x[test])
                for k in BLEND_K:
                    score = blend(o_scores, p_scores, k / (k + n))
                    corr[n, k].append(float(np.corrcoef(_ranks(score), _ranks(y[test]))[0, 1]))
                    top[n, k].append(y[test][np.argsort(-score, kind="stable")[:8]].max() / y[test].max())
        for draw in range(repeats):
            for label, k in SEARCHES.items():
                searches[label].append(_search_in_log(x, y, prior.booster, k, np.random.default_rng(draw), ref[key]))
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


SEARCH_KINDS = {"random": "random", "pretrained": "xgb, pre-trained", "no-prior": "xgb, no prior"}
CHECK_ROUNDS = 9     # the joint check's alternating rounds (a 1x1 conv's configs re-timed in 7 rounds
                     # under load moved by up to 30% from one check to the next)
CHECK_NEAR = 0.85    # a guided search's configs re-timed: those its search timed within this of random's best
CHECK_MAX = 8        # ... at most this many per search (its fastest), and at least its 2 fastest
RANDOM_SEED = 1000   # random search's seed offset (make_tuners)
TIE = 0.98           # "within 2%": a config this close to the target differs from it by the noise of a check


def make_tuners(task, seed: int, model, kinds: list[str]) -> dict:
    """The searches compared, by label; none re-times its own best at the end (verify_top = 0):
    the joint check does, for all of them together.  Random search draws from another seed
    (RANDOM_SEED + seed): on the same seed it would sample the configs a guided search's random
    first batch samples, and that search would reach its best by drawing the same lot."""
    make = {"random": lambda: autotune.RandomTuner(task, seed=RANDOM_SEED + seed),
            "pretrained": lambda: autotune.XGBTuner(task, seed=seed, pretrained=model),
            "no-prior": lambda: autotune.XGBTuner(task, seed=seed, pretrained=False)}
    out = {}
    for kind in kinds:
        out[SEARCH_KINDS[kind]] = tuner = make[kind]()
        tuner.verify_top = 0
    return out


def log_name(label: str) -> str:
    """The file of a search's records in a seed's --log-dir (what --recheck reads)."""
    return label.replace(", ", "_").replace(" ", "_") + ".jsonl"


def interleaved(tuners: dict, trials: dict[str, int], measurer, log_dir: str | None) -> dict[str, float]:
    """Run the searches batch by batch on one measurer, each search's batches spread evenly over
    the whole run (a 32-trial search's 4 batches among a 256-trial one's 32), so a machine whose
    speed drifts, or that other jobs load for a while, slows them alike; the seconds each took."""
    size = autotune.Tuner.batch_size
    steps = []
    for label, n in trials.items():
        k = math.ceil(n / size)
        steps += [((j + 0.5) / k, label, min(n, (j + 1) * size)) for j in range(k)]
    secs = dict.fromkeys(tuners, 0.0)
    for _, label, upto in sorted(steps):
        callbacks = []
        if log_dir:
            path = os.path.join(log_dir, log_name(label))
            callbacks = [lambda tuner, idx, records, path=path: rec.append(path, records)]
        t0 = time.time()
        tuners[label].tune(upto, measurer=measurer, callbacks=callbacks)
        secs[label] += time.time() - t0
    return secs


def _fastest(tuner, n: int, floor: float = 0.0) -> list[int]:
    """A search's fastest configs as its search judged them, the default aside: its 2 fastest, then
    those at or above floor (FLOP/s), n at most."""
    d = tuner.space.default_index()
    ranked = sorted((i for i, f in tuner.results.items() if f > 0 and i != d), key=lambda i: -tuner.results[i])
    return [i for k, i in enumerate(ranked) if k < 2 or tuner.results[i] >= floor][:n]


def joint_check(measurer, task, tuners: dict, rounds: int = CHECK_ROUNDS) -> dict:
    """Re-time side by side, in alternating rounds, the configs the comparison rests on: the default,
    random search's 3 fastest (its best of them is the target) and each guided search's fastest
    (CHECK_NEAR, CHECK_MAX).  Search timings are single timings minutes apart, each a config's
    luckiest among many on a shared machine; here every config meets the same load, round by
    round.  A config reaches the target when its time over the target's, taken in the same round,
    has a median at or below 1 (within TIE: at or below 1/TIE).  Returned: per search label, the
    trial (1-based, the search's own order) of its first config that reaches the target, that of
    its first within TIE, and its best re-timed throughput; for random search, its best's trial."""
    d = task.config_space.default_index()
    rand = tuners[SEARCH_KINDS["random"]]
    targets = _fastest(rand, 3)
    floor = CHECK_NEAR * max(rand.results[i] for i in targets)
    picks = {label: _fastest(t, CHECK_MAX, floor) for label, t in tuners.items() if t is not rand}
    idx = list(dict.fromkeys([d] + targets + [i for v in picks.values() for i in v]))
    records = measurer.measure(task, [task.config_space.get(i) for i in idx], rounds=rounds)
    costs: dict[int, list[float]] = {i: [] for i in idx}
    for i, r in zip(idx * rounds, records):
        costs[i].append(r.cost if r.ok else math.inf)
    med = {i: statistics.median(c) for i, c in costs.items()}
    target = min(targets, key=lambda i: med[i])

    def speedup(i: int) -> float:            # the target's time over i's, round by round (median)
        return statistics.median(a / b for a, b in zip(costs[target], costs[i]))

    def trial(tuner, i: int) -> int:
        return list(tuner.results).index(i) + 1

    out = {"target": task.flops / med[target] / 1e9, "default": task.flops / med[d] / 1e9,
           "target_trial": trial(rand, target), "checked": len(idx)}
    for label, mine in picks.items():
        t = tuners[label]
        reach = [trial(t, i) for i in mine if speedup(i) >= 1.0]
        near = [trial(t, i) for i in mine if speedup(i) >= TIE]
        best = max(mine, key=lambda i: speedup(i)) if mine else None
        out[label] = {"reach": min(reach) if reach else None, "near": min(near) if near else None,
                      "best": task.flops / med[best] / 1e9 if best is not None else 0.0,
                      "best_vs": speedup(best) if best is not None else 0.0, "trials": t.trials}
    return out


def live(records: list[rec.Record], held: str, in_logs: bool, args, caches) -> None:
    """Tune the held-out task by each search for each seed, interleaved, then check them jointly."""
    t0 = time.time()
    if args.model and os.path.exists(args.model):
        model = pretrained.load(args.model)
        if model is None:
            sys.exit(f"--model {args.model}: not a pre-trained model of these features; delete it to retrain")
        print(f"read the model trained without {held} from {args.model}")
    else:
        model = pretrained.train(records, exclude={held}, caches=caches)
        print(f"trained on {model.trained_on[1]} records of {model.trained_on[0]} tasks "
              f"({'held out' if in_logs else 'not in the logs'}: {held}) in {time.time() - t0:.0f} s")
        if args.model:
            pretrained.save(model, args.model)
    name, wargs = parse_workload(held)
    task = autotune.create_task(name, wargs, host())
    print(f"task {task}: {len(task.config_space)} configs, {task.target.threads} thread(s)")
    kinds = args.searches
    trials = {SEARCH_KINDS[k]: args.trials if k == "random" else args.budget for k in kinds}
    verdicts = Verdicts(args.trials, args.budget, args.check_rounds)
    with autotune.Measurer(autotune.MeasureOption()) as measurer:
        for seed in args.seeds:
            log_dir = None
            if args.log_dir:
                log_dir = os.path.join(args.log_dir, f"seed{seed}")
                os.makedirs(log_dir, exist_ok=True)
                if os.listdir(log_dir):
                    sys.exit(f"--log-dir {log_dir}: not empty; give a new directory")
            tuners = make_tuners(task, seed, model, kinds)
            secs = interleaved(tuners, trials, measurer, log_dir)
            for label, t in tuners.items():
                print(f"  seed {seed}, {label}: {t.trials} trials in {secs[label]:.0f} s, search's best "
                      f"{t.best_flops / 1e9:.1f} GFLOP/s", flush=True)
            verdicts.add(str(seed), joint_check(measurer, task, tuners, args.check_rounds))
            if kinds == ["random"]:
                prior_vs_measured(model, task, tuners[SEARCH_KINDS["random"]])
    if kinds != ["random"]:
        verdicts.print(task.target.threads)


def recheck(log_dir: str, args) -> None:
    """The joint check again, on the searches of an earlier run's --log-dir (one seed<N> folder per
    seed): each search's records replayed in their order (Tuner.load_history, judged as when they
    were measured), then its configs re-timed side by side as joint_check does, e.g. on a quiet
    machine, or with more --check-rounds."""
    seeds = sorted(d for d in os.listdir(log_dir) if os.path.isfile(os.path.join(log_dir, d, log_name("random"))))
    if not seeds:
        sys.exit(f"--recheck {log_dir}: no seed<N>/{log_name('random')} in it")
    verdicts = task = None
    with autotune.Measurer(autotune.MeasureOption()) as measurer:
        for seed in seeds:
            tuners = {}
            for label in SEARCH_KINDS.values():
                path = os.path.join(log_dir, seed, log_name(label))
                if not os.path.isfile(path):
                    continue
                records = rec.load(path)
                if task is None:
                    name, wargs = parse_workload(records[0].workload)
                    task = autotune.create_task(name, wargs, host())
                    print(f"task {task}: {len(task.config_space)} configs, {task.target.threads} thread(s)")
                tuners[label] = tuner = autotune.Tuner(task)
                tuner.load_history(records)
                tuner.trials = len(tuner.results)
            rand = tuners[SEARCH_KINDS["random"]]
            budget = max(t.trials for t in tuners.values() if t is not rand)
            verdicts = verdicts or Verdicts(rand.trials, budget, args.check_rounds)
            verdicts.add(seed.removeprefix("seed"), joint_check(measurer, task, tuners, args.check_rounds))
    verdicts.print(task.target.threads)


class Verdicts:
    """The joint checks' verdicts, one row per seed and guided search, and how many seeds met the target."""

    def __init__(self, trials: int, budget: int, rounds: int):
        self.trials, self.budget, self.rounds = trials, budget, rounds
        self.rows: list[list[str]] = []
        self.per_search: dict[str, list[dict]] = {}

    def add(self, seed: str, c: dict) -> None:
        print(f"  seed {seed}: checked {c['checked']} configs in {self.rounds} rounds: random's "
              f"{self.trials}-trial best {c['target']:.1f} GFLOP/s (trial {c['target_trial']}), "
              f"the default {c['default']:.1f}", flush=True)
        for label, g in c.items():
            if not isinstance(g, dict):
                continue
            self.per_search.setdefault(label, []).append(g)
            print(f"    {label}: best in {g['trials']} re-timed {g['best']:.1f} GFLOP/s = {g['best_vs']:.3f}x "
                  f"random's best; reached it at trial {g['reach'] or '-'} (within {1 - TIE:.0%}: "
                  f"{g['near'] or '-'})", flush=True)
            self.rows.append([seed, f"{c['target']:.1f} (trial {c['target_trial']})", label,
                              f"{g['best']:.1f} ({g['best_vs']:.3f}x)",
                              str(g["reach"]) if g["reach"] else f"not in {g['trials']}",
                              str(g["near"]) if g["near"] else f"not in {g['trials']}",
                              str(self.trials - g["reach"]) if g["reach"] else "-"])

    def print(self, threads: int) -> None:
        print()
        print(table(["seed", f"random's {self.trials}-trial best GFLOP/s", "search",
                     f"its best in {self.budget} (x target)", "trials to reach it", f"... within {1 - TIE:.0%}",
                     "trials saved"], self.rows, "lrlrrrr"))
        print(f"\n(re-timed side by side, {self.rounds} alternating rounds, {threads} thread(s); "
              "trials count the default where a search timed it)")
        for label, v in self.per_search.items():
            print(f"{label}: reached random's best within {self.budget} trials for "
                  f"{sum(g['reach'] is not None for g in v)} of {len(v)} seeds "
                  f"(within {1 - TIE:.0%}: {sum(g['near'] is not None for g in v)})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--logs", nargs="+", default=[DEFAULT_LOG], help="full tuning logs to train on")
    ap.add_argument("--hold-out", help="text of the workload key to hold out (default: the direct conv "
                                       "with most records)")
    ap.add_argument("--task", help="a workload key to tune instead (the model trained without it), "
                                   "e.g. a 1x1 conv the logs do not hold: see above")
    ap.add_argument("--trials", type=int, default=256, help="random search's trials")
    ap.add_argument("--budget", type=int, default=32, help="the guided searches' trials")
    ap.add_argument("--seed", type=int, default=0, help="--offline, --blend: the sampling seed")
    ap.add_argument("--seeds", type=int, nargs="+", help="the searches' seeds, one run of each per seed "
                                                          "(default: --seed)")
    ap.add_argument("--searches", nargs="+", choices=list(SEARCH_KINDS), default=list(SEARCH_KINDS),
                    help="the searches run (random always)")
    ap.add_argument("--threads", type=int, default=1,
                    help="the kernels' threads (read before te loads; default 1: on a shared machine a "
                         "one-thread kernel's undisturbed calls time its own work)")
    ap.add_argument("--log-caches", default=LOG_CACHES,
                    help="cache sizes of the machine the logs were measured on, for records whose target "
                         "names none (default: Emerald Rapids', the machine of the default log)")
    ap.add_argument("--offline", action="store_true",
                    help="measure nothing: rank the held-out task's logged records (see above)")
    ap.add_argument("--blend", action="store_true",
                    help="measure nothing: how many of a task's records the prior is worth (see above)")
    ap.add_argument("--centre", choices=["default", "median"], default="default",
                    help="--blend: features relative to each task's default config or the ranked configs' median")
    ap.add_argument("--model", help="the held-out model's file: read if it exists (it must have been "
                                     "trained without the held-out task), else trained and written there")
    ap.add_argument("--log-dir", help="write each search's records to DIR/seed<N>/<search>.jsonl")
    ap.add_argument("--recheck", metavar="DIR", help="tune nothing: the joint check again on an earlier "
                                                      "run's --log-dir DIR (see recheck)")
    ap.add_argument("--check-rounds", type=int, default=CHECK_ROUNDS, help="the joint check's rounds")
    ap.add_argument("--prior-sample", type=int, help="the configs the prior ranks for the first batch")
    args = ap.parse_args()
    autotune.XGBTuner.PRIOR_SAMPLE = args.prior_sample or autotune.XGBTuner.PRIOR_SAMPLE
    args.seeds = args.seeds or [args.seed]
    if "random" not in args.searches:
        args.searches = ["random"] + args.searches
    print(env_note())
    if args.recheck:
        recheck(args.recheck, args)
        return
    records = read(args.logs)
    caches = parse(f"llvm {args.log_caches}").caches
    if args.blend:
        blend_study(records, args.seed, caches, args.centre)
        return
    if args.task:
        held = json.dumps(json.loads(args.task), separators=(",", ":"))
        in_logs = any(r.workload == held for r in records)
    else:
        held, in_logs = pick(records, args.hold_out), True
    if args.offline:
        offline(records, held, args.seed, caches)
        return
    live(records, held, in_logs, args, caches)


if __name__ == "__main__":
    main()
