"""A cost model pre-trained on full tuning logs, shipped beside the shared logs, that starts every search.

A new search has measured nothing, so its own cost model cannot rank its first batch: without a
prior that batch is random.  The loop-IR features (autotune.features) have one length for every
kernel, template or auto-scheduled, so one XGBoost ranking model trained on many tasks' records
(each task one ranking group: only the order within a task matters, so throughputs need no
normalising across tasks) ranks configs of a task it has never seen.  Each task's features are
taken relative to its default config's (the template's default, the auto-scheduler's default
schedule): what sets a config apart from the task's reference carries over to other shapes better
than the raw values, and a candidate's score then depends on it alone.  Session 20 centred on the
candidates' median instead, and the prior's order moved with the pool (adding the default's 64
neighbours took its top 8 of 200 measured configs of a 1x1 conv from 0.97-1.0x to 0.87-0.88x of
their best); `bench/pretrained.py --offline` compares the three.  `train` makes it from full
tuning logs (every trial, not the best-only logs most of tuning_logs/ keeps) and `save` writes it
to tuning_logs/cost_model.json; the tuners (XGBTuner, AutoScheduler) load it with `load` and rank
their first batch by it (XGBCostModel's `base`, with their default's features as its
`reference`), then their own measurements take over.

The file records the feature layout it was trained on (FEATURES, the vector length); a model of
another layout is ignored with one log line (`tilewise logs pretrain` remakes it).
"""
from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import random
from pathlib import Path

import numpy as np

from te.caches import OPTIONS, Caches
from te.files import atomic_write
from te.target import Target, parse

from . import record as rec
from .features import LENGTH, config_features
from .shared_logs import REPO_LOGS

log = logging.getLogger(__name__)

MODEL_FILE = REPO_LOGS / "cost_model.json"
# bump the version when autotune.features changes meaning; "default": trained on features minus the
# task's default config's
FEATURES = f"loop-ir-v2-default/{LENGTH}"
PER_TASK = 96                            # records per task used for training (a random sample)


def record_target(target: str, caches: Caches | None = None) -> Target:
    """The Target of a record's target string; `caches`, the sizes of the machine that measured
    it, stand in when the string names none (logs written before targets carried them would
    otherwise be featurised against te.caches.CONSERVATIVE, not the caches they ran with)."""
    t = parse(target or None)
    if caches is not None and not any(f"-{o}=" in (target or "") for o in OPTIONS):
        t = dataclasses.replace(t, caches=caches)
    return t


def task_features(records: list[rec.Record], per_task: int = PER_TASK, seed: int = 0,
                  exclude: set[str] = frozenset(), caches: Caches | None = None,
                  ) -> dict[tuple[str, str], tuple[np.ndarray, np.ndarray]]:
    """(features, throughput) of up to per_task records (a random sample) per template workload
    and target with 2 or more usable records (successful or failed; throughput 0 for a failure), the features
    as measured (not centred); workloads in `exclude` are left out (a held-out task); `caches`:
    see record_target."""
    from .task import create_task, parse_workload
    by_task: dict[tuple[str, str], list[rec.Record]] = {}
    for r in records:
        if r.workload not in exclude:
            by_task.setdefault((r.workload, r.target), []).append(r)
    rng = random.Random(seed)
    out = {}
    for (workload, target), rs in by_task.items():
        if len(rs) < 2:
            continue
        try:
            name, args = parse_workload(workload)
            task = create_task(name, args, record_target(target, caches))
        except Exception as e:          # an auto-scheduled model kernel (no DAG here), a stale template
            log.debug("pretraining: %s skipped (%s)", workload[:80], e)
            continue
        sample = rng.sample(rs, min(per_task, len(rs)))
        xs, ys = [], []
        for r in sample:
            try:
                idx = task.config_space.from_json(r.config).index
            except (ValueError, TypeError):
                continue
            xs.append(config_features(task, idx))
            ys.append(task.flops / r.cost if r.ok and r.cost > 0 else 0.0)
        if len(ys) > 1 and max(ys) > 0:
            out[workload, target] = (np.array(xs, np.float32), np.array(ys))
    return out


def default_features(workload: str, target: str, caches: Caches | None = None) -> np.ndarray:
    """Features of a task's default config: the reference of centre="default" (training_groups)."""
    from .task import create_task, parse_workload
    name, args = parse_workload(workload)
    return reference_features(create_task(name, args, record_target(target, caches)))


def reference_features(task) -> np.ndarray:
    """The features the prior ranks a task's candidates relative to: its default config's (a
    template's default_index; an auto-scheduled task's default schedule is config 0 of its space)."""
    return config_features(task, task.config_space.default_index())


def training_groups(records: list[rec.Record], per_task: int = PER_TASK, seed: int = 0,
                    exclude: set[str] = frozenset(), caches: Caches | None = None, centre="default",
                    ) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """(features, throughput, weight) per template workload of the records (task_features), the
    features minus the task's default config's (centre="default", how the prior is trained and
    ranks: a reference that does not move with the sample), centred on the sample's median
    (centre=True, cost_model.centred: session 20's prior) or raw (False)."""
    return centre_groups(task_features(records, per_task, seed, exclude, caches), centre, caches)


def centre_groups(per_task: dict, centre=True, caches: Caches | None = None) -> list:
    """task_features' (features, throughput) per task as training groups, centred (training_groups)."""
    from .cost_model import centred
    if centre == "default":
        return [(x - default_features(w, t, caches), y, 1.0) for (w, t), (x, y) in per_task.items()]
    return [(centred(x) if centre else x, y, 1.0) for x, y in per_task.values()]


def train(records: list[rec.Record], exclude: set[str] = frozenset(), rounds: int = 120,
          caches: Caches | None = None):
    """The pre-trained XGBCostModel of the records' tasks (see training_groups)."""
    from .cost_model import XGBCostModel
    groups = training_groups(records, exclude=exclude, caches=caches)
    if not groups:
        raise ValueError("no task in the logs has two or more usable records to rank: pretraining "
                         "needs full tuning logs (every trial), not best-only ones")
    model = XGBCostModel(num_rounds=rounds)
    model.fit(groups)
    model.trained_on = (len(groups), sum(len(g[1]) for g in groups))
    return model


def save(model, path: str | os.PathLike = MODEL_FILE) -> None:
    """Write the model with its feature layout (atomically)."""
    raw = bytearray(model.booster.save_raw("json"))
    body = {"features": FEATURES, "tasks": model.trained_on[0], "records": model.trained_on[1],
            "booster": json.loads(raw.decode())}
    with atomic_write(path) as f:
        json.dump(body, f, separators=(",", ":"))


@functools.lru_cache(maxsize=4)
def load(path: str | os.PathLike = MODEL_FILE):
    """The pre-trained xgboost Booster, or None (no file, or one of another feature layout)."""
    p = Path(path)
    if not p.is_file():
        return None
    try:
        body = json.loads(p.read_text())
        if body.get("features") != FEATURES:
            log.info("%s was trained on features %s, these are %s: not used (remake it with "
                     "'tilewise logs pretrain')", p, body.get("features"), FEATURES)
            return None
        import xgboost as xgb
        booster = xgb.Booster()
        booster.load_model(bytearray(json.dumps(body["booster"]).encode()))
        return booster
    except (OSError, ValueError, KeyError) as e:
        log.warning("%s: not a pre-trained cost model (%s); searches start without one", p, e)
        return None


def prior(pretrained):
    """A tuner's `pretrained` argument as the Booster its cost model starts from: True the shipped
    model (None if there is none), False none, else the Booster (or XGBCostModel) given."""
    if pretrained is True:
        return load()
    if pretrained is False or pretrained is None:
        return None
    return getattr(pretrained, "booster", pretrained)
