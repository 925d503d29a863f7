"""The AutoScheduler's cost model keeps the pre-trained model's share of the ranking, k/(k+n), as the
template tuner's does."""
from __future__ import annotations

import random

import numpy as np

import autotune
from autotune.auto_scheduler import AutoScheduler
from autotune.cost_model import XGBCostModel, blend
from autotune.features import LENGTH

from . import auto_workloads as wl


def _candidates(tuner: AutoScheduler, n: int) -> list[int]:
    rng = random.Random(4)
    out: list[int] = []
    for p in tuner.policy.seeds() + [tuner.policy.sample(rng) for _ in range(8 * n)]:
        i = tuner._candidate(p)
        if i is not None and i not in out:
            out.append(i)
        if len(out) == n:
            break
    return out


def _prior() -> XGBCostModel:
    """A small stand-in for the shipped model: fitted on random features, it ranks anything."""
    data = np.random.default_rng(0)
    x = data.standard_normal((40, LENGTH)).astype(np.float32)
    m = XGBCostModel(num_rounds=10, seed=0)
    m.fit([(x, data.random(40) + 0.1, 1.0)])
    return m


def test_the_prior_ranks_first_then_blends_with_the_tasks_own_model():
    task = autotune.create_task(wl.as_matmul, (64, 128, 64))
    tuner = AutoScheduler(task, pretrained=_prior())
    assert tuner.model.ready and tuner.model.prior_weight == 1.0, "before any measurement the prior ranks alone"
    idx = _candidates(tuner, 12)
    x = tuner.features(idx)
    y = np.linspace(1.0, 2.0, len(idx))
    tuner.model.fit([(x, y, 1.0)])
    k = AutoScheduler.PRIOR_RECORDS
    assert k > 0 and tuner.model.prior_weight == k / (k + len(idx)), "the prior counts as k of the task's records"
    own = XGBCostModel(seed=0)
    own.fit([(x, y, 1.0)])
    want = blend(own.predict(x), tuner.model.prior_scores(x), k / (k + len(idx)))
    np.testing.assert_allclose(tuner.model.predict(x), want)
    assert AutoScheduler(task, pretrained=False).model.prior_weight == 0.0


def test_the_prior_ranks_schedules_relative_to_the_default_schedule():
    """The AutoScheduler has no template default; its reference is its default schedule (config 0),
    so a candidate's prior score does not depend on the pool it is ranked in."""
    import xgboost as xgb
    task = autotune.create_task(wl.as_matmul, (64, 128, 64))
    prior = _prior()
    tuner = AutoScheduler(task, pretrained=prior)
    idx = _candidates(tuner, 6)
    x = tuner.features(idx)
    ref = tuner.features([task.config_space.default_index()])[0]
    np.testing.assert_allclose(tuner.model.prior_scores(x), prior.booster.predict(xgb.DMatrix(x - ref)), rtol=1e-6)
    np.testing.assert_allclose(tuner.model.prior_scores(x[:2]), tuner.model.prior_scores(x)[:2], rtol=1e-6)
