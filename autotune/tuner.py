"""Tuners: one interface, `tuner.tune(n_trial, measure_option, early_stopping, callbacks)`.

The search loop only asks `next_batch`, measures, and calls `update` and the callbacks; all
I/O (logs, progress) lives in callbacks.  XGBTuner wires the cost model and a simulated
annealing search together: fit on what was measured, anneal over the space with the model
as fitness, take the best unmeasured points (plus a few random ones: epsilon-greedy).
"""
from __future__ import annotations

import dataclasses
import logging
import math
import random
import statistics
import time

import numpy as np

from . import record as rec
from .cost_model import XGBCostModel, distinct_first, quantiles
from .features import LENGTH, config_features
from .measure import MeasureOption, Measurer

log = logging.getLogger(__name__)


class Tuner:
    """Base tuner: bookkeeping of measured configs, the best one, and the tuning loop."""

    batch_size = 8
    # After tuning, the default and the `verify_top` fastest configs are timed again in
    # `verify_rounds` alternating rounds and judged by these timings alone: on a noisy machine the
    # best of many single measurements is mostly luck (a config timed once above the default can
    # run slower than it when the two are timed side by side), and the timing that made a config
    # one of the fastest is its luckiest.
    verify_top = 3
    verify_rounds = 3
    # a default this many times slower than the median candidate beside it is no yardstick of the
    # machine's speed (_batch_speed): an auto-scheduler task's default is te's naive loop nest, 10-30x
    # slower than its candidates, whose time swung 4.4 -> 21 ms under load while theirs stayed at 0.6-0.8
    far_default = 4.0

    def __init__(self, task, seed: int = 0):
        self.task = task
        self.space = task.config_space
        self.rng = random.Random(seed)
        self.visited: set[int] = set()
        self.results: dict[int, float] = {}      # config index -> throughput (FLOP/s), 0 on error
        # config index -> every valid timing (seconds), anchored (_at_speed): the search ranks by these
        self._costs: dict[int, list[float]] = {}
        self._timed: dict[int, list[float]] = {}   # config index -> every valid timing as measured
        self._checked: dict[int, list[float]] = {}  # config index -> the final check's timings of it
        self._vs: dict[int, list[float]] = {}       # config index -> its check rounds' vs_default
        self._latest: dict[int, rec.Record] = {}   # config index -> its latest valid record
        # the default's time beside its candidates at the machine's fastest speed seen: every
        # search timing is scaled to that speed (_batch_speed, _at_speed)
        self._anchor: float | None = None
        self._anchored: set[int] = set()            # config indices with anchored timings
        # the last search batch's default ran over far_default times its candidates' median: no
        # yardstick, so the next batches re-time the incumbent beside their candidates (_yardstick)
        self._default_far = False
        # the best config as record.best() picks it from the log of these records, and its
        # measured throughput (_rank); default_flops likewise measured
        self.best_flops = 0.0
        self.best_config = None
        self.best_record: rec.Record | None = None
        self._best_index: int | None = None
        self.default_flops = 0.0
        self.trials = 0
        self.stopped = False
        self.started = time.time()

    # ------------------------------------------------------------- to override
    def next_batch(self, n: int) -> list[int]:
        """The next config indices to measure."""
        raise NotImplementedError

    def update(self, indices: list[int], records: list[rec.Record]) -> None:
        """Learn from a measured batch."""
        speed = self._batch_speed(indices, records)
        for i, r in zip(indices, records):
            self._note(i, r, speed)

    # ------------------------------------------------------------- shared
    def has_next(self) -> bool:
        return len(self.visited) < len(self.space)

    def _note(self, index: int, r: rec.Record, speed: float | None = None) -> None:
        """Take one record; speed: its batch's _batch_speed (None: the record judged alone)."""
        self.visited.add(index)
        if r.ok:
            if speed is None:
                speed = self._batch_speed([index], [r])
            anchored = self._at_speed(index, r, speed)
            self._costs.setdefault(index, []).extend(anchored)
            self._timed.setdefault(index, []).extend(r.costs)
            if r.checked:
                self._checked.setdefault(index, []).extend(r.costs)
                if r.vs_default > 0:
                    self._vs.setdefault(index, []).append(r.vs_default)
            self._latest[index] = r
        self._judge(index)
        self._rank(index)

    def _judge(self, index: int) -> None:
        """The config's throughput as the search ranks it: from its anchored judging timings."""
        costs = self._judging(index)
        cost = statistics.median(costs) if costs else 0.0
        self.results[index] = self.task.flops / cost if cost > 0 else 0.0

    def _rank(self, index: int) -> None:
        """The best config after a record of `index`, as record.best() ranks the log (rank_key on
        the pooled records), with its throughput as measured.  The anchored timings only steer the
        search: scaled by the default's time beside them, they are not measurements (a default
        whose own time swings more than the candidates' would make them look faster than the
        machine can run), and the best the tuner reports is the one a log of its records gives."""
        if index not in self._latest:
            return
        r = self._pooled_record(index)
        if index == self.space.default_index():
            self.default_flops = self.task.flops / r.cost
        if index == self._best_index:            # the best re-timed: it may have fallen behind
            index = min(self._latest, key=lambda i: rec.rank_key(self._pooled_record(i)))
            r = self._pooled_record(index)
        elif not rec.better(r, self.best_record):
            return
        self._best_index, self.best_record = index, r
        self.best_flops, self.best_config = self.task.flops / r.cost, self.space.get(index)

    def _batch_speed(self, indices: list[int], records: list[rec.Record]) -> float | None:
        """How much slower the machine ran a search batch than at its fastest speed seen (its times
        over the fastest's; None for a batch without an anchor: its timings stay as timed).

        The speed is the median of the yardsticks' ratios, a yardstick being a config timed again
        in the batch whose time at the fastest speed is known: the default timed beside the batch
        (vs_default, MeasureOption.anchor) against its fastest time, and any config timed before
        (the incumbent, _yardstick) against its anchored timings.  The default counts only while
        it runs within far_default times the batch's median candidate: a naive default much slower
        than its candidates leans on other things (memory, one thread) and its time swings apart
        from theirs.  A machine that runs at two speeds slows every yardstick alike, so the median
        cancels it; one default swinging alone is left out.  Without a yardstick the batch is
        taken at the speed seen so far (1.0).  A batch faster than that (below 1.0) becomes the
        fastest speed: every anchored timing so far is rescaled to it."""
        search = [(i, r) for i, r in zip(indices, records) if _default_time(r) > 0]
        if not search:
            return None
        d = self.space.default_index()
        now = _default_time(search[0][1])
        # a config timed before, against its anchored timings (the incumbent's own timing then
        # tells nothing new of it: the final check times it again)
        ratios = [r.cost / statistics.median(self._costs[i]) for i, r in search
                  if i != d and i in self._anchored and self._costs.get(i)]
        candidates = [r.cost for i, r in search if i != d]
        self._default_far = bool(candidates) and now > self.far_default * statistics.median(candidates)
        if not self._default_far and self._anchor is not None:
            ratios.append(now / self._anchor)
        speed = statistics.median(ratios) if ratios else 1.0
        if not self._default_far and self._anchor is None:
            self._anchor = now / speed
        if speed < 1.0:
            self._rescale(speed)
            speed = 1.0
        return speed

    def _yardstick(self, batch: list[int]) -> int | None:
        """A config to time again beside a search batch while the default is no yardstick (far
        from its candidates, _batch_speed): the incumbent, the search's fastest anchored config."""
        if not self._default_far:
            return None
        d = self.space.default_index()
        known = [i for i in self._anchored if i != d and i not in batch and i not in self._checked
                 and self.results.get(i, 0) > 0]
        return max(known, key=lambda i: self.results[i]) if known else None

    def measure_batch(self, measurer: Measurer, batch: list[int]) -> tuple[list[int], list[rec.Record]]:
        """Time a search batch, the incumbent beside it while the default is no yardstick
        (_yardstick): the config indices timed and their records, for update() and the callbacks."""
        yardstick = self._yardstick(batch)
        timed = batch + ([yardstick] if yardstick is not None else [])
        return timed, measurer.measure(self.task, [self.space.get(i) for i in timed], best_cost=self.best_cost)

    def _at_speed(self, index: int, r: rec.Record, speed: float | None) -> list[float]:
        """r's timings as if taken at the machine's fastest speed seen: a search record's divided
        by its batch's speed (_batch_speed), so configs timed minutes apart on a machine whose
        speed drifts (or that other jobs slowed for a while) compare as if timed together.
        Checked records (compared with the default round by round) and records without an
        anchor stay as timed."""
        if r.checked or r.vs_default <= 0 or speed is None:
            return list(r.costs)
        self._anchored.add(index)
        return [c / speed for c in r.costs]

    def _rescale(self, factor: float) -> None:
        """Scale every anchored timing by factor (a faster speed) and rank the configs again for the search."""
        for i in self._anchored:
            self._costs[i] = [c * factor for c in self._costs[i]]
        if self._anchor is not None:
            self._anchor *= factor
        for i in self._latest:
            self._judge(i)

    def _judging(self, index: int) -> list[float]:
        """The anchored timings the search judges a config by: the final check's if it had one."""
        return self._checked.get(index) or self._costs.get(index) or []

    @property
    def best_cost(self) -> float | None:
        """Seconds per run of the fastest config so far (None before a valid one)."""
        return self.task.flops / self.best_flops if self.best_flops > 0 else None

    def _pooled_record(self, index: int) -> rec.Record:
        """A config's record as record.pooled() makes it from a log: its timings as measured
        (rec.pooled_costs: the final check's if it had one), a checked one carrying the median
        speed-up over the default in the check's rounds."""
        r = self._latest[index]
        costs = self._checked.get(index) or self._timed[index]
        if index not in self._checked and costs == r.costs:
            return r                            # one record: as the log holds it
        vs = self._vs.get(index)
        return dataclasses.replace(r, costs=list(costs), checked=index in self._checked,
                                   vs_default=statistics.median(vs) if vs else 0.0)

    def verify(self, measurer: Measurer, callbacks=(), max_checks: int = 3) -> list[rec.Record]:
        """Time the default and the fastest configs again, in alternating rounds; re-rank by these timings.

        The best is then the re-timed config that beat the default by the most, round by round
        (rec.check_score: by more than rec.DEFAULT_MARGIN, or the default stays); its records say
        `checked` and carry that speed-up, so a log's best() judges them the same way.  A
        config that falls back on re-timing lets the next ones in: the check repeats (up to
        max_checks times) while the fastest config has not been re-timed.
        """
        if self.verify_top <= 0 or self.verify_rounds <= 0:
            return []
        d = self.space.default_index()
        checked: set[int] = set()
        out: list[rec.Record] = []
        for _ in range(max_checks):
            ranked = sorted((i for i, f in self.results.items() if f > 0), key=lambda i: -self.results[i])
            if ranked and ranked[0] in checked:
                break
            new = [i for i in ranked if i not in checked and i != d][:self.verify_top]
            if not new:
                break
            idx = [d] + new                        # side by side with the default, measured or not
            records = _versus_default(measurer.measure(self.task, [self.space.get(i) for i in idx],
                                                       rounds=self.verify_rounds), len(idx))
            for i, r in zip(idx * self.verify_rounds, records):
                self._note(i, r)
            checked.update(idx)
            out += records
            for cb in callbacks:
                cb(self, idx * self.verify_rounds, records)
        return out

    def load_history(self, records: list[rec.Record]) -> int:
        """Take earlier records of this task (same ISA) as measured: they are not measured again.
        A search batch's records (in a row, one default time beside them) are judged together,
        as when they were measured (_batch_speed)."""
        mine: list[tuple[int, rec.Record]] = []
        for r in records:
            if r.workload != self.task.workload_key or r.isa != self.task.target.isa:
                continue
            try:
                mine.append((self.space.from_json(r.config).index, r))
            except Exception:
                continue
        for batch in _search_batches(mine):
            indices, batch_records = [i for i, _ in batch], [r for _, r in batch]
            speed = self._batch_speed(indices, batch_records)
            for i, r in batch:
                self._note(i, r, speed)
        return len(mine)

    def tune(self, n_trial: int, measure_option: MeasureOption | None = None,
             early_stopping: int | None = None, callbacks=(), measurer: Measurer | None = None) -> rec.Record | None:
        """Measure up to n_trial new configs; returns the best record found (None if all failed)."""
        for cb in callbacks:
            path = getattr(cb, "history_path", None)
            if path:
                import os
                if os.path.exists(path):
                    n = self.load_history(rec.load(path))
                    if n:
                        log.info("%s: resumed from %d records in %s", self.task, n, path)
        own = measurer is None
        measurer = measurer or Measurer(measure_option)
        self.started = time.time()
        self.n_trial = n_trial
        last_improve = 0
        try:
            for cb in callbacks:
                getattr(cb, "start", lambda t: None)(self)
            while self.trials < n_trial and self.has_next() and not self.stopped:
                batch = self.next_batch(min(self.batch_size, n_trial - self.trials))
                if not batch:
                    break
                timed, records = self.measure_batch(measurer, batch)
                before = self.best_flops
                self.update(timed, records)
                self.trials += len(batch)
                if self.best_flops > before:
                    last_improve = self.trials
                for cb in callbacks:
                    cb(self, timed, records)
                if early_stopping is not None and self.trials - last_improve >= early_stopping:
                    log.info("%s: no improvement in %d trials, stopping early", self.task, early_stopping)
                    break
            if self.trials:
                self.verify(measurer, callbacks)
        finally:
            for cb in callbacks:
                getattr(cb, "finish", lambda t: None)(self)
            if own:
                measurer.close()
        return self.best_record


def _default_time(r: rec.Record) -> float:
    """The default's time beside a search record's batch (0 for a record without one)."""
    return r.cost * r.vs_default if r.ok and not r.checked and r.vs_default > 0 else 0.0


def _search_batches(pairs: list[tuple[int, rec.Record]]) -> list[list[tuple[int, rec.Record]]]:
    """A log's (index, record) pairs cut into its search batches: records in a row beside the same
    default time (failed ones join the batch they are in); every other record alone."""
    out: list[list[tuple[int, rec.Record]]] = []
    last = 0.0
    for i, r in pairs:
        t = _default_time(r)
        if out and last and (not r.ok or math.isclose(t, last, rel_tol=1e-9)):
            out[-1].append((i, r))
        else:
            out.append([(i, r)])
            last = t
    return out


def _versus_default(records: list[rec.Record], width: int) -> list[rec.Record]:
    """A final check's records (rounds of `width`, the default first in each), marked checked and
    given vs_default: the default's time in the same round over theirs."""
    out = []
    for k in range(0, len(records), width):
        row = records[k:k + width]
        base = row[0].cost if row[0].ok else 0.0
        out += [dataclasses.replace(r, checked=True, vs_default=base / r.cost if base and r.ok else 0.0)
                for r in row]
    return out


class RandomTuner(Tuner):
    """Measures unvisited configs in random order."""

    def next_batch(self, n: int) -> list[int]:
        out: list[int] = []
        size = len(self.space)
        tries = 0
        while len(out) < n and len(self.visited) + len(out) < size and tries < 100 * n:
            i = self.space.sample(self.rng)
            tries += 1
            if i not in self.visited and i not in out:
                out.append(i)
        return out


class GridSearchTuner(Tuner):
    """Measures configs in index order."""

    def __init__(self, task, seed: int = 0):
        super().__init__(task, seed)
        self._next = 0

    def next_batch(self, n: int) -> list[int]:
        out = []
        while len(out) < n and self._next < len(self.space):
            if self._next not in self.visited and self.space.valid(self._next):
                out.append(self._next)
            self._next += 1
        return out


class XGBTuner(Tuner):
    """Model-guided search: XGBoost ranking models + simulated annealing, epsilon-greedy batches.

    Two models learn from the same measurements.  The main one reads loop-IR features, which
    cost a lowering each (computed on the measurer's builder processes, in parallel, between
    timings); a second one reads only the knob values, which cost nothing.  The annealing runs
    on the knob model, so it can score a few thousand configs per batch; its walkers persist
    from one batch to the next (as AutoTVM's do).  The `feature_budget` best configs it found
    get loop-IR features and join a pool that the main model re-ranks after every refit; the
    batch is taken from the top of that ranking.

    With a pre-trained model (autotune.pretrained) both models start from it: the main model's
    ranking blends it with the task's own until the task has many more than PRIOR_RECORDS records
    (XGBCostModel.prior_weight), and the knob model learns its ranking of the pool as one more
    group of that weight, so from the first batch on the annealing walks towards what the prior
    ranks high, not at random.
    """

    EXHAUSTIVE = 512     # spaces up to this size are ranked whole by the main model instead
    # configs the pre-trained model ranks for a larger space's first batch: its top picks are only as
    # good as the pool's best, and random search's 256-trial best is the best of a pool of 256.  On a
    # held-out 1x1 conv (192->64 @28, one thread, bench/pretrained.py --prior-sample, under load) 256
    # reached that best within 32 trials on 2 of 5 seeds, 1024 on 5 of 5 (1.01-1.23x of it), for
    # ~5 s more lowering per task on a quiet machine (2.2 -> 7.4 s CPU for ResNet-50's 1x1 and 3x3
    # convs; ~20 s under load), about a tenth of a 20-minute ResNet-50 tune over its 24 tasks; the
    # count is of configs, so it holds on any CPU
    PRIOR_SAMPLE = 1024
    # the pre-trained model counts as this many of the task's own records: over the 37 tasks of the
    # shipped log held out in turn, blends with 32-128 ranked best from 8 to 64 own records, 64 the
    # best on average (bench/pretrained.py --blend)
    PRIOR_RECORDS = 64

    def __init__(self, task, seed: int = 0, plan_size: int = 64, epsilon: float = 0.1,
                 sa_steps: int = 40, sa_walkers: int = 64, feature_budget: int = 24,
                 transfer: list[rec.Record] | None = None, pretrained=True):
        super().__init__(task, seed)
        from .pretrained import prior
        # the pre-trained model picks the first batch of a large space, where a random batch is
        # weakest; a space of up to EXHAUSTIVE configs is ranked whole by the task's own model after
        # one batch, and on a replayed matmul space the prior's cluster of near-best configs made
        # the final pick worse, not better (tests/autotune/test_timing_table.py)
        large = len(self.space) > self.EXHAUSTIVE
        # the prior ranks configs relative to the default's features, as it was trained (pretrained.py)
        self.model = XGBCostModel(seed=seed, base=prior(pretrained) if large else None,
                                  prior_records=self.PRIOR_RECORDS,
                                  reference=lambda: self.feature(self.space.default_index()))
        self.knob_model = XGBCostModel(seed=seed)
        self.plan_size = plan_size
        self.epsilon = epsilon
        self.sa_steps = sa_steps
        self.sa_walkers = sa_walkers
        self.feature_budget = feature_budget
        self._features: dict[int, np.ndarray] = {}
        self._plan: list[int] = []
        self._walkers: list[int] = []
        self._transfer = self._transfer_groups(transfer or [])
        self._transfer_seen: set[str] = {r.workload for r in transfer or []}
        self._started_default = False
        self._measurer: Measurer | None = None

    def feature(self, index: int) -> np.ndarray:
        return self.features([index])[0]

    def features(self, indices: list[int]) -> np.ndarray:
        """Feature vectors of configs (cached; new ones computed on the builders when tuning)."""
        missing = [i for i in dict.fromkeys(indices) if i not in self._features]
        if missing:
            if self._measurer is not None and len(missing) > 2:
                feats = self._measurer.features(self.task, missing)
            else:
                feats = [config_features(self.task, i) for i in missing]
            self._features.update(zip(missing, feats))
        # the width is explicit: reshape(0, -1) of no rows (no fresh config to score) cannot infer it
        return np.array([self._features[i] for i in indices], np.float32).reshape(len(indices), LENGTH)

    def _transfer_groups(self, records: list[rec.Record]) -> list:
        """Records of other tasks of the same template: extra ranking groups at lower weight."""
        from .task import create_task
        by_wl: dict[str, list] = {}
        for r in records:
            if r.workload != self.task.workload_key and r.workload.startswith(f'["{self.task.name}"'):
                by_wl.setdefault(r.workload, []).append(r)
        groups = []
        for wl, rs in list(by_wl.items())[:8]:
            try:
                import json
                name, args = json.loads(wl)
                other = create_task(name, args, self.task.target)
                xs, ys = [], []
                for r in rs[:200]:
                    idx = other.config_space.from_json(r.config).index
                    xs.append(config_features(other, idx))
                    ys.append(other.flops / r.cost if r.ok else 0.0)
                groups.append((np.array(xs), np.array(ys), 0.3))
            except Exception as e:          # a foreign record that no longer fits: skip it
                log.debug("transfer: skipped %s (%s)", wl, e)
        return groups

    def load_history(self, records: list[rec.Record]) -> int:
        n = super().load_history(records)
        # other workloads seed the model once, however often the history is loaded
        others = [r for r in records if r.workload != self.task.workload_key
                  and r.workload not in self._transfer_seen]
        if others:
            self._transfer_seen |= {r.workload for r in others}
            self._transfer += self._transfer_groups(others)
        return n

    def tune(self, n_trial, measure_option=None, early_stopping=None, callbacks=(), measurer=None):
        own = measurer is None
        measurer = measurer or Measurer(measure_option)
        self._measurer = measurer
        try:
            return super().tune(n_trial, measure_option, early_stopping, callbacks, measurer)
        finally:
            self._measurer = None
            if own:
                measurer.close()

    def update(self, indices, records) -> None:
        super().update(indices, records)
        if not indices:             # nothing new to learn from (an empty batch): keep the models
            return
        idx = list(self.results)
        X = self.features(idx)
        y = np.array([self.results[i] for i in idx])
        self.model.fit([(X, y, 1.0)] + self._transfer)
        if len(self.space) > self.EXHAUSTIVE:
            self.knob_model.fit([(self._knobs(idx), y, 1.0)] + self._prior_group())
        self._plan = []

    def _prior_group(self) -> list:
        """The pre-trained model's ranking of every config with features, as a ranking group for the
        knob model weighted as the main model weighs the prior against the task's own records
        (w/(1-w), the own group's weight being 1); none once the prior has no share."""
        w = self.model.prior_weight
        if w <= 0.0 or len(self._features) < 2:
            return []
        pool = list(self._features)
        rank = quantiles(self.model.prior_scores(self.features(pool)))
        # relevance grows with throughput and 0 means failed: the worst-ranked config stays above 0
        return [(self._knobs(pool), 0.01 + rank, w / (1.0 - w) if w < 1.0 else 1.0)]

    def _knobs(self, indices) -> np.ndarray:
        """Knob features: each knob's option index (free to compute, unlike loop-IR features)."""
        return np.array([self.space.point(i) for i in indices], np.float32).reshape(len(indices),
                                                                                   len(self.space.dims()))

    def next_batch(self, n: int) -> list[int]:
        out: list[int] = []
        if not self._started_default:
            self._started_default = True
            d = self.space.default_index()
            if d not in self.visited:
                out.append(d)
        if not self._plan and self.model.ready:
            self._plan = self._search()
        tries = 0
        while len(out) < n and len(self.visited) + len(out) < len(self.space) and tries < 100 * n:
            tries += 1
            use_plan = bool(self._plan) and self.rng.random() > self.epsilon
            i = self._plan.pop(0) if use_plan else self.space.sample(self.rng)
            if i not in self.visited and i not in out:
                out.append(i)
        return out

    def _search(self) -> list[int]:
        """The unvisited configs the main model ranks highest (the whole space, or the pool)."""
        size = len(self.space)
        if size <= self.EXHAUSTIVE:
            cand = [i for i in range(size) if i not in self.visited and self.space.valid(i)]
        else:
            if self.knob_model.booster is None and self.model.base is not None:
                # nothing measured: a wide sample ranked by the prior teaches the knob model where
                # to walk (_prior_group), then the annealing finds more configs the prior likes.
                # A quarter of the sample, and some walkers, are the default's neighbours: a
                # template's default is its author's pick for any shape, often near the best
                # (random search's best of 256 ran within 4% of it on ResNet-50's 3x3 convs), so the
                # configs one knob away are where the prior's ranking pays most
                near = self.space.neighbours(self.space.default_index(), self.rng, self.PRIOR_SAMPLE // 4)
                sample = set(near) | {self.space.sample(self.rng) for _ in range(self.PRIOR_SAMPLE - len(near))}
                self.features([i for i in sample if i not in self.visited])
                self._walkers = list(dict.fromkeys(near))[:self.sa_walkers // 4]
                self.knob_model.fit(self._prior_group())
            if self.knob_model.booster is not None:
                self._anneal()
            cand = [i for i in self._features if i not in self.visited]
        if not cand:
            return []
        X = self.features(cand)
        order = np.argsort(-np.asarray(self.model.predict(X)), kind="stable")
        order = distinct_first(order, X, self.features(list(self.results)))
        return [cand[k] for k in order[:self.plan_size]]

    def _anneal(self) -> None:
        """Walk uphill on the knob model's score; the best configs seen get loop-IR features."""
        top = sorted(self.results, key=lambda i: -self.results[i])[:self.sa_walkers // 8]
        walkers = list(dict.fromkeys(top + self._walkers))[:self.sa_walkers]
        walkers += [self.space.sample(self.rng) for _ in range(self.sa_walkers - len(walkers))]
        scores = self.knob_model.predict(self._knobs(walkers))
        seen = dict(zip(walkers, scores))
        for step in range(self.sa_steps):
            temp = 1.0 - step / self.sa_steps        # cools within the search, in units of the score spread
            spread = float(np.std(scores)) or 1.0
            nxt = [(self.space.neighbours(w, self.rng, 1) or [w])[0] for w in walkers]
            nscores = self.knob_model.predict(self._knobs(nxt))
            seen.update(zip(nxt, nscores))
            for k, (s_old, s_new) in enumerate(zip(scores, nscores)):
                if s_new >= s_old or self.rng.random() < math.exp((s_new - s_old) / (spread * max(temp, 1e-3))):
                    walkers[k], scores[k] = nxt[k], s_new
        self._walkers = walkers
        fresh = sorted((i for i in seen if i not in self.visited and i not in self._features),
                       key=lambda i: -seen[i])
        self.features(fresh[:self.feature_budget])
