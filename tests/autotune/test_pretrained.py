"""The pre-trained cost model: trained on full logs, shipped, read back, and starting a search."""
from __future__ import annotations

import numpy as np
import pytest

import autotune
from autotune import pretrained
from autotune import record as rec
from autotune.features import config_features
from te.target import host


def _full_log(task, n=12, seed=0):
    """Records of n configs of task with made-up costs that favour larger tiles (any order will do)."""
    rng = np.random.default_rng(seed)
    sp = task.config_space
    out = []
    for i in rng.choice(len(sp), n, replace=False):
        i = int(i)
        if not sp.valid(i):
            continue
        cfg = sp.get(i)
        cost = 1e-3 / (1 + sum(v for v in np.ravel(config_features(task, i))[:8]))
        out.append(rec.Record(workload=task.workload_key, config=cfg.to_json(), costs=[cost],
                              isa=task.target.isa, cpu="cpu", target=str(task.target)))
    return out


def test_the_shipped_model_loads_with_this_feature_layout():
    """tuning_logs/cost_model.json must match autotune.features (remake it with 'tilewise logs pretrain')."""
    assert pretrained.MODEL_FILE.is_file()
    assert pretrained.load() is not None


def test_trained_saved_and_loaded_it_ranks_and_starts_a_large_search(tmp_path):
    tasks = [autotune.create_task("matmul", (m, 64, 64, "float32")) for m in (64, 96)]
    records = [r for t in tasks for r in _full_log(t)]
    model = pretrained.train(records)
    path = tmp_path / "model.json"
    pretrained.save(model, path)
    booster = pretrained.load(path)
    assert booster is not None
    X = np.stack([config_features(tasks[0], i) for i in range(4)])
    np.testing.assert_allclose(booster.predict(__import__("xgboost").DMatrix(X)), model.predict(X), rtol=1e-5)
    big = autotune.create_task("conv2d_nchw", ((1, 64, 56, 56), (64, 64, 3, 3), (1, 1), (1, 1, 1, 1),
                                               (1, 1), 1, "float32"))
    tuner = autotune.XGBTuner(big, pretrained=booster)
    assert len(big.config_space) > tuner.EXHAUSTIVE and tuner.model.ready     # ranks before measuring
    first = tuner.next_batch(8)
    assert len(first) == 8 and first[0] == big.config_space.default_index()
    assert len(tuner._features) >= tuner.PRIOR_SAMPLE // 2      # a wide sample was ranked by the prior
    small = autotune.XGBTuner(tasks[0], pretrained=booster)      # a small space: ranked whole by its own model
    assert not small.model.ready


def test_best_only_logs_cannot_pretrain_and_a_foreign_layout_is_ignored(tmp_path, caplog):
    task = autotune.create_task("matmul", (64, 64, 64, "float32"))
    with pytest.raises(ValueError, match="full tuning logs"):
        pretrained.train(_full_log(task)[:1])
    caplog.set_level("INFO", logger="autotune.pretrained")
    path = tmp_path / "old.json"
    path.write_text('{"features": "loop-ir-v0/1", "booster": {}}')
    assert pretrained.load(path) is None
    assert "remake it" in caplog.text


def test_the_prior_ranks_candidates_relative_to_the_default_alone():
    """Trained on each task's features minus its default config's, the prior scores a search's
    candidates minus the reference it is given (computed once, on first use): a candidate's score
    does not depend on what else is in the pool; without a reference, on the candidates' median
    (session 20's way), it does."""
    import xgboost as xgb

    from autotune.cost_model import XGBCostModel, centred
    tasks = [autotune.create_task("matmul", (m, 64, 64, "float32")) for m in (64, 96)]
    booster = pretrained.train([r for t in tasks for r in _full_log(t)]).booster
    X = np.stack([config_features(tasks[1], i) for i in range(6)])
    ref = pretrained.reference_features(tasks[1])
    calls = []
    prior = XGBCostModel(base=booster, reference=lambda: calls.append(1) or ref)
    np.testing.assert_allclose(prior.predict(X), booster.predict(xgb.DMatrix(X - ref)), rtol=1e-6)
    np.testing.assert_allclose(prior.predict(X[:2]), prior.predict(X)[:2], rtol=1e-6)
    perm = [3, 1, 5, 0, 2, 4]
    np.testing.assert_allclose(prior.predict(X[perm]), prior.predict(X)[perm], rtol=1e-6)
    assert calls == [1]
    by_median = XGBCostModel(base=booster)
    np.testing.assert_allclose(by_median.predict(X), booster.predict(xgb.DMatrix(centred(X))), rtol=1e-6)


def _small_conv():
    """A 3x3 conv whose space (9,600 configs) is over XGBTuner.EXHAUSTIVE and cheap to lower."""
    return autotune.create_task("conv2d_nchw", ((1, 16, 8, 8), (32, 16, 3, 3), (1, 1), (1, 1, 1, 1),
                                                (1, 1), 1, "float32"))


def test_the_prior_picks_the_first_batch_and_keeps_its_share_after_it():
    """Nothing measured: the knob model learns the prior's ranking and anneals beyond the random
    sample, and the first batch is the default then the prior's favourites (epsilon 0).  After a
    batch that says the opposite, the prior still leads the ranking with weight k/(k+8), where a
    tuner without the blend (prior_records 0) follows the 8 records alone."""
    import xgboost as xgb

    from autotune.cost_model import XGBCostModel, blend, distinct_first, quantiles
    task = _small_conv()
    sp = task.config_space
    rng = np.random.default_rng(0)
    idx = [int(i) for i in rng.choice(len(sp), 40, replace=False) if sp.valid(int(i))]
    X = np.stack([config_features(task, i) for i in idx])
    booster = XGBCostModel()
    ref = pretrained.reference_features(task)
    booster.fit([(X - ref, 1.0 + rng.random(len(idx)), 1.0)])
    tuners = []
    for k in (autotune.XGBTuner.PRIOR_RECORDS, 0):
        t = autotune.XGBTuner(task, seed=0, epsilon=0.0, pretrained=booster.booster)
        t.PRIOR_SAMPLE, t.feature_budget, t.sa_steps = 48, 12, 8       # a small pool: a fast test
        t.model.prior_records = k
        tuners.append(t)
    blended, alone = tuners
    first = blended.next_batch(8)
    assert first[0] == sp.default_index() and blended.knob_model.booster is not None
    sampled = len(blended._features)
    assert sampled > 48 // 2
    d = sp.default_index()
    near = [i for i in blended._features if sum(a != b for a, b in zip(sp.point(i), sp.point(d))) == 1]
    assert len(near) >= 48 // 8                     # the default's neighbours joined the random sample
    pool = [i for i in blended._features if i != first[0]]
    F = blended.features(pool)
    scores = booster.booster.predict(xgb.DMatrix(F - ref))
    expect = [pool[k] for k in distinct_first(np.argsort(-scores, kind="stable"), F)[:7]]
    assert first[1:] == expect                      # the prior's top 7 of its pool
    assert alone.next_batch(8) == first             # the same start: the blend only matters after a fit

    # the batch measured the reverse of the prior's order: its favourite slowest
    records = [rec.Record(workload=task.workload_key, config=sp.get(i).to_json(), costs=[1e-3 * (k + 1)],
                          isa=task.target.isa, cpu="cpu") for k, i in enumerate(reversed(first))]
    for t in tuners:
        t.update(list(reversed(first)), records)
    k = autotune.XGBTuner.PRIOR_RECORDS
    assert blended.model.prior_weight == k / (k + 8) and alone.model.prior_weight == 0.0
    assert blended._prior_group()[0][2] == pytest.approx(k / 8) and alone._prior_group() == []
    plans, lead = [], []
    for t in tuners:
        plan = t._search()
        cand = [i for i in t._features if i not in t.visited]
        F = t.features(cand)
        prior, own = t.model.prior_scores(F), t.model._own(F)
        score = blend(own, prior, t.model.prior_weight)
        assert plan == [cand[k] for k in distinct_first(np.argsort(-score, kind="stable"), F,
                                                         t.features(list(t.results)))][:len(plan)]
        rank = dict(zip(cand, quantiles(prior)))
        plans.append(plan)
        lead.append(np.mean([rank[i] for i in plan[:8]]))
    assert plans[0] != plans[1] and lead[0] > lead[1]   # the blend's top is more the prior's
    assert len(blended._features) > sampled          # the annealing added configs the prior likes


def test_groups_centred_on_the_default_config_do_not_move_with_the_sample():
    """centre="default": each task's features minus its default config's, whatever else was sampled
    (a median moves with the candidates in the pool; docs/architecture.md, 'Not built yet')."""
    task = autotune.create_task("matmul", (64, 64, 64, "float32"))
    sp = task.config_space
    records = _full_log(task, n=10)
    d = sp.get(sp.default_index())
    records.append(rec.Record(workload=task.workload_key, config=d.to_json(), costs=[1e-3],
                              isa=task.target.isa, cpu="cpu", target=str(task.target)))
    per_task = pretrained.task_features(records, per_task=100)
    (x, y, _), = pretrained.centre_groups(per_task, "default")
    (raw, _, _), = pretrained.centre_groups(per_task, False)
    ref = config_features(task, sp.default_index())
    np.testing.assert_allclose(x, raw - ref, atol=1e-6)
    assert np.any(np.all(np.abs(x) < 1e-6, axis=1))          # the default's own row is all zero
    smaller = pretrained.centre_groups({k: (v[0][:4], v[1][:4]) for k, v in per_task.items()}, "default")
    np.testing.assert_allclose(smaller[0][0], x[:4], atol=1e-6)
