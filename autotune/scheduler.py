"""The task scheduler: one trial budget spread over the tasks of a model, where it pays.

A model's run time is estimated as the sum over its tasks of weight (how many kernels use
the task) times the task's best time so far (FLOPs / best FLOP/s).  Tuning a task is worth
what it is expected to take off that sum, so each round goes to the task with the steepest
expected decrease, as in Ansor's gradient task scheduler (Zheng et al., OSDI 2020):

    backward = (cost after the last round - cost `window` rounds earlier) / window
    forward  = min(cost - cost / rounds,                       # 1/t diminishing returns
                   beta * flops / best FLOP/s of similar tasks) - cost
    gradient = weight * (alpha * backward + (1 - alpha) * forward)

Every task starts with its default config measured (plus any seed configs, e.g. the best
records of shared logs), heaviest tasks first, so the estimate and the speed-up column are
grounded in this machine's timings.  The scheduler drives the tuners through their
`next_batch` / `update` protocol and does no I/O: logging and progress are callbacks, called
as `cb(tuner, indices, records)` after every measured batch (autotune.log_to_file works as
is), with optional `schedule_start(scheduler)` / `schedule_finish(scheduler)` hooks.

    sched = TaskScheduler([(task, count) for ...], tuner="xgb", callbacks=[log_to_file("m.jsonl")])
    sched.tune(n_trials=200)
    for row in sched.summary(): ...

Alternatives: a task given as (task, weight, group) is one of several implementations of the
same kernel of the model (the 1x1 GEMM and the direct conv of one conv, say); the model runs the
fastest of a group, so the estimate counts the group's best and a round goes to an alternative
only for what it may take off that best.
"""
from __future__ import annotations

import logging
import math
import os
import random
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

from . import record as rec
from .measure import MeasureOption, Measurer
from .task import Task
from .tuner import GridSearchTuner, RandomTuner, Tuner, XGBTuner

log = logging.getLogger(__name__)

TUNERS: dict[str, type[Tuner]] = {"xgb": XGBTuner, "random": RandomTuner, "grid": GridSearchTuner}


@dataclass
class TaskState:
    """What the scheduler knows about one task."""
    task: Task
    weight: float
    tuner: Tuner
    rounds: int = 0                                        # batches measured (history included)
    best_costs: list[float] = field(default_factory=list)  # best cost (s) after each round
    seeds: list[int] = field(default_factory=list)         # config indices to measure first
    dead: str = ""                                         # why tuning stopped ('' = still tuned)
    last_improved: int = 0                                 # the round that last improved the best
    group: object = None                                   # alternatives of one kernel share it

    @property
    def trials(self) -> int:
        """Configs measured for this task, history included."""
        return len(self.tuner.results)

    @property
    def best_flops(self) -> float:
        """Best throughput measured so far (FLOP/s; 0 while nothing ran)."""
        return self.tuner.best_flops

    @property
    def best_cost(self) -> float:
        """Best time of one run in seconds (inf while nothing ran)."""
        return self.task.flops / self.best_flops if self.best_flops > 0 else math.inf

    @property
    def default_flops(self) -> float:
        """Throughput of the template's default config (0 if not measured or failed): after the
        final check, as the check compared it with the best round by round (best / vs_default),
        so the speed-up reported is the one the best was chosen on."""
        r = self.tuner.best_record
        if r is not None and r.checked and r.vs_default > 0 and self.best_flops > 0:
            return self.best_flops / r.vs_default
        return self.tuner.default_flops

    @property
    def measured_default(self) -> bool:
        return self.tuner.space.default_index() in self.tuner.visited


@dataclass
class TaskSummary:
    """One row of the scheduler's report."""
    task: Task
    weight: float
    trials: int
    best_flops: float            # FLOP/s, 0 if nothing valid
    default_flops: float         # FLOP/s, 0 if not measured
    est_time: float              # weight * best cost, seconds (inf if unknown)
    share: float                 # est_time / model estimate (nan if unknown)
    dead: str
    group: object = None         # alternatives of one kernel share it (None: a kernel of its own)

    @property
    def speedup(self) -> float:
        """Best over default throughput (nan when either is missing)."""
        if self.best_flops > 0 and self.default_flops > 0:
            return self.best_flops / self.default_flops
        return math.nan


class TaskScheduler:
    """Spreads trials over weighted tasks by expected gain; see the module docstring."""

    SIGNIFICANT = 0.01      # an improvement smaller than this does not reset a task's patience

    def __init__(self, tasks: Sequence[tuple[Task, float] | tuple[Task, float, object]], tuner: str | Callable[[Task], Tuner] = "xgb",
                 measurer: Measurer | None = None, measure_option: MeasureOption | None = None,
                 callbacks: Iterable = (), history: Iterable[rec.Record] = (),
                 seeds: dict[str, list[dict]] | None = None, round_trials: int | None = None,
                 alpha: float = 0.2, beta: float = 2.0, backward_window: int = 3,
                 eps_greedy: float = 0.05, task_patience: int | None = None, seed: int = 0):
        if not tasks:
            raise ValueError("the task scheduler needs at least one task")
        if isinstance(tuner, str):
            if tuner not in TUNERS:
                raise ValueError(f"unknown tuner {tuner!r}; choose one of {', '.join(TUNERS)}")
            cls = TUNERS[tuner]
            from .auto_scheduler import AutoScheduler, AutoTask      # a task without a template
            make = lambda t, k: (AutoScheduler if isinstance(t, AutoTask) else cls)(t, seed=seed + k)  # noqa: E731
        else:
            make = lambda t, k: tuner(t)                    # noqa: E731
        self.states = [TaskState(t[0], float(t[1]), make(t[0], k), group=t[2] if len(t) > 2 else None)
                       for k, t in enumerate(tasks)]
        self.callbacks = list(callbacks)
        self.checked, self.checking = 0, False      # tasks given the final check; in it now
        self._touched: set[int] = set()
        self.measurer = measurer
        self.measure_option = measure_option
        self.round_trials = round_trials
        self.alpha, self.beta, self.window = alpha, beta, backward_window
        self.eps_greedy = eps_greedy
        self.task_patience = task_patience
        self.rng = random.Random(seed)
        self.stopped = False
        self.started = time.time()
        self.trials_this_run = 0
        self.current: int | None = None            # index of the task being measured
        history = list(history)
        for cb in self.callbacks:                  # log_to_file(path) doubles as the resume source
            path = getattr(cb, "history_path", None)
            if path and os.path.exists(path):
                history += rec.load(path)
        if history:
            self.load_history(history)
        for wl, configs in (seeds or {}).items():
            self.add_seeds(wl, configs)

    # ------------------------------------------------------------- set-up
    def load_history(self, records: list[rec.Record]) -> int:
        """Earlier measurements of these tasks (this ISA): not measured again. Returns how many matched."""
        n = 0
        for s in self.states:
            got = s.tuner.load_history(records)
            if got:
                batch = getattr(s.tuner, "batch_size", 8)
                s.rounds = max(s.rounds, math.ceil(got / batch))
                s.best_costs.append(s.best_cost)
                n += got
        return n

    def add_seeds(self, workload: str, configs: list[dict]) -> int:
        """Configs (JSON form) of a workload to measure in its first round; unfit ones are ignored."""
        n = 0
        for s in self.states:
            if s.task.workload_key != workload:
                continue
            for c in configs:
                try:
                    i = s.tuner.space.from_json(c).index
                except Exception as e:
                    log.debug("%s: seed config ignored (%s)", s.task, e)
                    continue
                if i not in s.seeds and i not in s.tuner.visited:
                    s.seeds.append(i)
                    n += 1
        return n

    # ------------------------------------------------------------- state
    @property
    def total_trials(self) -> int:
        """Configs measured over all tasks, history included."""
        return sum(s.trials for s in self.states)

    @property
    def elapsed(self) -> float:
        return time.time() - self.started

    def _cost_estimate(self, s: TaskState) -> float:
        """Best cost, or a pessimistic guess for a task with no valid measurement yet."""
        if s.best_flops > 0:
            return s.best_cost
        known = [x.best_flops for x in self.states if x.best_flops > 0]
        return s.task.flops / (min(known) if known else 1e9)

    def _group_best(self, s: TaskState) -> float:
        """The best cost estimate of s's alternatives (not s itself); inf without any."""
        if s.group is None:
            return math.inf
        return min((self._cost_estimate(x) for x in self.states if x.group == s.group and x is not s),
                   default=math.inf)

    def estimated_time(self) -> float:
        """The model's estimated run time in seconds: sum of weight * best cost, the fastest
        alternative of each group counted once."""
        total, seen = 0.0, set()
        for s in self.states:
            if s.group is None:
                total += s.weight * self._cost_estimate(s)
            elif s.group not in seen:
                seen.add(s.group)
                total += s.weight * min(self._cost_estimate(x) for x in self.states if x.group == s.group)
        return total

    def summary(self) -> list[TaskSummary]:
        """One row per task, in the order given."""
        total = self.estimated_time()
        rows = []
        for s in self.states:
            est = s.weight * s.best_cost
            rows.append(TaskSummary(s.task, s.weight, s.trials, s.best_flops, s.default_flops, est,
                                    est / total if math.isfinite(est) and total > 0 else math.nan, s.dead,
                                    s.group))
        return rows

    # ------------------------------------------------------------- choosing
    def gradient(self, k: int) -> float:
        """Expected change of the model's time per round spent on task k (more negative = better)."""
        s = self.states[k]
        cost = self._cost_estimate(s)
        hist = [c for c in s.best_costs if math.isfinite(c)]
        backward = (hist[-1] - hist[-1 - self.window]) / self.window if len(hist) > self.window else 0.0
        g1 = cost - cost / max(1, s.rounds)
        similar = max((x.best_flops for x in self.states if x.task.name == s.task.name), default=0.0)
        g2 = self.beta * s.task.flops / similar if similar > 0 else math.inf
        other = self._group_best(s)
        if other < math.inf:             # what this task may take off the best of its group
            backward = backward if cost <= other else 0.0
            forward = min(g1, g2, other) - min(cost, other)
        else:
            forward = min(g1, g2) - cost
        return s.weight * (self.alpha * backward + (1 - self.alpha) * forward)

    def _alive(self) -> list[int]:
        return [k for k, s in enumerate(self.states) if not s.dead]

    def next_task(self) -> int | None:
        """The task the next round goes to (None when every task is done)."""
        alive = self._alive()
        if not alive:
            return None
        fresh = [k for k in alive if not self.states[k].measured_default or self.states[k].seeds]
        if fresh:       # defaults (and seeds) first, heaviest tasks first
            return max(fresh, key=lambda k: self.states[k].weight * self.states[k].task.flops)
        if len(alive) > 1 and self.rng.random() < self.eps_greedy:
            return self.rng.choice(alive)
        return min(alive, key=self.gradient)

    def _batch(self, k: int, n: int) -> list[int]:
        s = self.states[k]
        out: list[int] = []
        d = s.tuner.space.default_index()
        if d not in s.tuner.visited:
            out.append(d)
        while s.seeds and len(out) < n:
            i = s.seeds.pop(0)
            if i not in s.tuner.visited and i not in out:
                out.append(i)
        s.seeds = [i for i in s.seeds if i not in s.tuner.visited]
        if not out:
            out = s.tuner.next_batch(n)
        return out[:n]

    # ------------------------------------------------------------- the loop
    def tune(self, n_trials: int | None = None, time_budget: float | None = None) -> None:
        """Measure rounds until n_trials (history included) or time_budget seconds are spent, or every task is done."""
        if n_trials is None and time_budget is None:
            raise ValueError("give n_trials, time_budget, or both")
        own = self.measurer is None
        if own:
            self.measurer = Measurer(self.measure_option)
        self.started = time.time()
        self._touched.clear()
        self.checked, self.checking = 0, False
        try:
            for cb in self.callbacks:
                getattr(cb, "schedule_start", lambda s: None)(self)
            while not self.stopped:
                left = n_trials - self.total_trials if n_trials is not None else math.inf
                if left <= 0 or (time_budget is not None and self.elapsed >= time_budget):
                    break
                k = self.next_task()
                if k is None:
                    break
                s = self.states[k]
                size = self.round_trials or getattr(s.tuner, "batch_size", 8)
                batch = self._batch(k, int(min(size, left)))
                if not batch:
                    s.dead = "search space exhausted"
                    continue
                self._measure(k, batch)
            if not self.stopped:
                self.verify()
        finally:
            self.current = None
            for cb in self.callbacks:
                getattr(cb, "schedule_finish", lambda s: None)(self)
            if own:
                self.measurer.close()
                self.measurer = None

    def verify(self) -> None:
        """The tuners' final check: each task's default and best configs timed again, side by side."""
        self.checking = True
        try:
            for k, s in enumerate(self.states):
                if self.stopped:
                    break
                if k in self._touched:                 # measured in this run
                    self.current = k
                    try:
                        if s.tuner.verify(self.measurer, self.callbacks):
                            self.checked += 1
                    except Exception as e:      # a failed check keeps the tuning results as they were
                        log.warning("%s: final check failed: %s", s.task, e)
        finally:
            self.checking = False

    def _measure(self, k: int, batch: list[int]) -> None:
        s = self.states[k]
        self.current = k
        before = s.best_flops
        try:
            timed, records = s.tuner.measure_batch(self.measurer, batch)
        except Exception as e:        # e.g. the default schedule does not build: give up this task only
            s.dead = f"cannot be measured: {e}"
            log.warning("%s: %s", s.task, s.dead)
            return
        s.tuner.update(timed, records)
        self._touched.add(k)
        s.tuner.trials += len(batch)
        s.tuner.n_trial = s.tuner.trials
        self.trials_this_run += len(batch)
        s.rounds += 1
        s.best_costs.append(s.best_cost)
        if s.best_flops > before * (1 + self.SIGNIFICANT):
            s.last_improved = s.rounds
        for cb in self.callbacks:
            cb(s.tuner, timed, records)
        if s.tuner.stopped:
            s.dead = "stopped by a callback"
        elif not s.tuner.has_next():
            s.dead = "search space exhausted"
        elif self.task_patience and s.rounds - s.last_improved >= self.task_patience:
            s.dead = f"no improvement in {self.task_patience} rounds"
