"""The auto-scheduler's search: random annotation of the sketch, then evolution ranked by the cost model.

    autotune.AutoScheduler(task).tune(n_trial=128, callbacks=[autotune.log_to_file("t.jsonl")])

It is a `Tuner`: the tuning loop, the measurement, the records, resuming from a log and the
final check (the default and the best schedules timed again side by side) are the template
tuner's.  What differs is where candidates come from.  The first batch is random annotations
of the sketch (`SketchPolicy.sample`).  After every measured batch the XGBoost ranking model
(autotune.cost_model) is refit on the loop-IR features (autotune.features) of everything
measured, and the next batch comes from an evolutionary search: a population of the best
measured schedules' parameters and fresh random ones, mutated for a few generations, each
generation keeping the candidates the model ranks highest; the top `plan` of one evolution
serve the next batches (lowering candidates for their features is what the search costs); a
few random candidates join every batch (epsilon-greedy), so the model keeps seeing what it
does not predict.

The pre-trained model (autotune.pretrained) ranks the first evolution alone and keeps a share
after that, as in the template tuner: the ranking blends it with the task's own model, weighted
k/(k+n) with n the task's records and k = PRIOR_RECORDS.
"""
from __future__ import annotations

import logging
import random

import numpy as np

import te

from ..cost_model import XGBCostModel
from ..features import LENGTH, extract
from ..tuner import Tuner
from .sketch import SketchPolicy

log = logging.getLogger(__name__)


class AutoScheduler(Tuner):
    """Tunes an AutoTask (autotune.create_task of a registered workload) without a template."""

    batch_size = 8
    # the pre-trained model counts as this many of the task's own records (XGBTuner's k is 64): over
    # the auto-scheduler logs of bench/autosched.py's 7 operators, blends with k = 8-16 ranked best
    # from 8 to 16 own records and k = 8 still at 32, where k = 64 fell behind the task's model alone
    # (bench/autosched_prior.py)
    PRIOR_RECORDS = 16

    def __init__(self, task, seed: int = 0, population: int = 32, generations: int = 2,
                 epsilon: float = 0.1, plan: int = 16, pretrained=True):
        from .workload import AutoTask
        if not isinstance(task, AutoTask):
            from te.ops.knobs import ConfigError
            raise ConfigError(f"AutoScheduler tunes workloads registered with @autotune.register_workload; "
                              f"{task} is a template task: tune it with autotune.XGBTuner")
        super().__init__(task, seed)
        self.policy = SketchPolicy(task)
        from ..pretrained import prior
        # the prior ranks schedules relative to the default schedule's features (config 0), as it
        # was trained on template tasks relative to their default config's (autotune.pretrained)
        self.model = XGBCostModel(seed=seed, base=prior(pretrained), prior_records=self.PRIOR_RECORDS,
                                  reference=lambda: self.features([self.space.default_index()])[0])
        self.population = population
        self.generations = generations
        self.epsilon = epsilon
        self.plan = plan                            # candidates taken from one evolution
        self._params: dict[int, dict] = {}          # config index -> the parameters that made it
        self._features: dict[int, np.ndarray] = {}   # config index -> loop-IR features (None: invalid)
        self._pending: list[int] = []               # ranked candidates not measured yet
        self._seeded = False

    def has_next(self) -> bool:
        return True                 # the space is unbounded; the trial budget ends the search

    # ------------------------------------------------------------- candidates
    def _candidate(self, params: dict) -> int | None:
        """The config index of a parameter set (its schedule lowered for features), None if invalid."""
        try:
            s, tensors = self.policy.apply(params)
        except (ValueError, TypeError) as e:           # ScheduleError: the combination does not fit
            log.debug("%s: candidate rejected: %s", self.task, e)
            return None
        i = self.space.add(s.steps)
        # also when the config is known already without parameters (from a log): the evolution
        # mutates the parameters of every candidate it keeps
        self._params.setdefault(i, params)
        if i not in self._features:
            try:
                self._features[i] = extract(te.lower(s, tensors, "f"))
            except (ValueError, TypeError) as e:
                log.debug("%s: candidate does not lower: %s", self.task, e)
                self._features[i] = None
        return i if self._features[i] is not None else None

    def features(self, indices: list[int]) -> np.ndarray:
        """Loop-IR features of configs (a config from a log is lowered from its steps)."""
        for i in indices:
            if i not in self._features:
                try:
                    s, tensors = self.task.instantiate(i)
                    self._features[i] = extract(te.lower(s, tensors, "f"))
                except (ValueError, TypeError):
                    self._features[i] = None
        rows = [self._features[i] if self._features[i] is not None else np.zeros(LENGTH, np.float32)
                for i in indices]
        return np.array(rows, np.float32).reshape(len(indices), LENGTH)

    def _random(self, n: int) -> list[int]:
        out: list[int] = []
        for _ in range(n * 10):
            if len(out) >= n:
                break
            i = self._candidate(self.policy.sample(self.rng))
            if i is not None and i not in self.visited and i not in out:
                out.append(i)
        return out

    def _score(self, indices: list[int]) -> np.ndarray:
        return np.asarray(self.model.predict(self.features(indices)))

    def _evolve(self) -> list[int]:
        """Unmeasured candidates, best predicted first, from an evolution of the best known schedules."""
        measured = sorted((i for i in self.results if self.results[i] > 0 and i in self._params),
                          key=lambda i: -self.results[i])
        pop = list(dict.fromkeys(measured[:self.population // 2]))
        pop += self._random(self.population - len(pop))
        for _ in range(self.generations):
            if not pop:
                break
            scores = self._score(pop)
            weights = np.exp((scores - scores.max()) / (scores.std() + 1e-9))
            children = []
            for _ in range(self.population):
                parent = self.rng.choices(pop, weights)[0]
                child = self._candidate(self.policy.mutate(self._params[parent], self.rng))
                if child is not None:
                    children.append(child)
            pool = list(dict.fromkeys(pop + children))
            ranked = np.argsort(-self._score(pool), kind="stable")
            pop = [pool[k] for k in ranked[:self.population]]
        return [i for i in pop if i not in self.visited][:self.plan]

    def next_batch(self, n: int) -> list[int]:
        out: list[int] = []
        if 0 not in self.visited:
            out.append(0)                       # the default schedule: the reference speed
        if not self._seeded:                    # register-shaped blockings before random ones
            self._seeded = True
            seeds = [self._candidate(p) for p in self.policy.seeds()]
            self._pending = [i for i in dict.fromkeys(seeds) if i is not None and i != 0] + self._pending
        self._pending = [i for i in self._pending if i not in self.visited]
        if self.model.ready and len(self._pending) < n:
            # lowering candidates for features is the search's cost: one evolution serves `plan` trials
            self._pending += [i for i in self._evolve() if i not in self._pending]
        n_random = (max(1, int(round(n * self.epsilon))) if self.model.ready
                    else max(0, n - len(out) - len(self._pending)))
        while len(out) < n - n_random and self._pending:
            i = self._pending.pop(0)
            if i not in self.visited and i not in out:
                out.append(i)
        out += [i for i in self._random(n - len(out)) if i not in out]
        return out[:n]

    def update(self, indices, records) -> None:
        super().update(indices, records)
        if not indices:
            return
        idx = [i for i in self.results]
        self.model.fit([(self.features(idx), np.array([self.results[i] for i in idx]), 1.0)])
