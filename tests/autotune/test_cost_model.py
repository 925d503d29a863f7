"""The cost model's blend of a pre-trained ranking with the task's own (XGBCostModel.prior_records)."""
from __future__ import annotations

import numpy as np

from autotune.cost_model import XGBCostModel, blend, centred, quantiles


def _ranker(column: int, seed: int = 0) -> XGBCostModel:
    """A model fitted to rank rows by one feature column (higher is faster)."""
    X = np.random.default_rng(seed).random((64, 4), np.float32)
    model = XGBCostModel(seed=seed)
    model.fit([(centred(X), 1.0 + X[:, column], 1.0)])
    return model


def test_quantiles_share_ties_and_blend_weighs_ranks():
    np.testing.assert_allclose(quantiles(np.array([3.0, 1.0, 2.0])), [1.0, 0.0, 0.5])
    np.testing.assert_allclose(quantiles(np.array([5.0, 5.0, 1.0, 9.0])), [0.5, 0.5, 0.0, 1.0])
    np.testing.assert_allclose(quantiles(np.array([7.0])), [0.5])
    own, prior = np.array([0.1, 0.2, 0.3]), np.array([30.0, 20.0, 10.0])    # opposite orders, other scales
    np.testing.assert_allclose(blend(own, prior, 0.75), [0.75, 0.5, 0.25])
    np.testing.assert_allclose(blend(own, prior, 0.0), quantiles(own))


def test_the_prior_fades_as_the_task_s_own_records_arrive():
    """The prior counts as k records: before any fit it ranks alone, after n records with weight
    k/(k+n), so it leads over a few records and the task's own model leads over many."""
    prior = _ranker(0).booster
    # candidates on which the two columns' orders are opposite: the prior ranks by column 0, the
    # task's own records (below) rank by column 1
    cand = np.zeros((5, 4), np.float32)
    cand[:, 0] = np.linspace(0.1, 0.9, 5)
    cand[:, 1] = np.linspace(0.9, 0.1, 5)
    model = XGBCostModel(base=prior, prior_records=32)
    assert model.prior_weight == 1.0
    np.testing.assert_allclose(model.predict(cand), model.prior_scores(cand))
    assert np.argmax(model.predict(cand)) == 4

    rng = np.random.default_rng(1)
    for n, leader in ((8, 4), (128, 0)):
        X = rng.random((n, 4), np.float32)
        model.fit([(X, 1.0 + X[:, 1], 1.0)])
        assert model.own_records == n and model.prior_weight == 32 / (32 + n)
        assert np.argmax(model.predict(cand)) == leader, n
    alone = XGBCostModel(base=prior)                # prior_records 0: the own model takes over at once
    alone.fit([(X, 1.0 + X[:, 1], 1.0)])
    assert alone.prior_weight == 0.0
    np.testing.assert_allclose(alone.predict(cand), alone._own(cand))
    assert XGBCostModel().prior_weight == 0.0 and not XGBCostModel().predict(cand).any()
