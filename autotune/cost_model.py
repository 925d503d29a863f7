"""The cost model: XGBoost with a pairwise ranking objective over loop-IR features.

It only has to order candidates of one task, so each task's records form one ranking group;
records of other tasks of the same operator join as extra groups with a lower weight
(transfer learning).  The model is refit from scratch as measurements arrive: with a few
hundred records that takes milliseconds.
"""
from __future__ import annotations

import logging
import numpy as np

log = logging.getLogger(__name__)


class XGBCostModel:
    """Ranks candidates by predicted throughput (higher is better).

    `base`, a pre-trained xgboost Booster (autotune.pretrained), ranks until the first fit: it
    picks the first batch, then the task's own measurements take over (a prior trained on other
    operators misleads more than it helps once the task has data of its own: measured on a
    replayed matmul space, tests/autotune/test_timing_table.py).  It was trained on each task's
    features centred (`centred`), so it ranks the candidates centred on theirs."""

    def __init__(self, num_rounds: int = 60, seed: int = 0, base=None):
        self.num_rounds = num_rounds
        self.seed = seed
        self.base = base
        self.booster = None

    @property
    def ready(self) -> bool:
        """Can it rank yet (fitted, or pre-trained)?"""
        return self.booster is not None or self.base is not None

    def fit(self, groups: list[tuple[np.ndarray, np.ndarray, float]]) -> None:
        """Fit on groups of (features, throughput, weight); throughput 0 marks a failed config."""
        import xgboost as xgb
        groups = [(x, y, w) for x, y, w in groups if len(y) > 1]
        if not groups:
            return
        X = np.concatenate([g[0] for g in groups])
        y = np.concatenate([_relevance(g[1]) for g in groups])
        d = xgb.DMatrix(X, label=y)
        d.set_group([len(g[1]) for g in groups])
        d.set_weight(np.array([g[2] for g in groups], np.float32))
        params = {"objective": "rank:pairwise", "eta": 0.2, "max_depth": 6, "min_child_weight": 1,
                  "subsample": 1.0, "gamma": 1e-4, "lambda": 1.0, "seed": self.seed,
                  "nthread": 1, "verbosity": 0}
        self.booster = xgb.train(params, d, num_boost_round=self.num_rounds)

    def predict(self, features: np.ndarray) -> np.ndarray:
        """Scores (higher = predicted faster); before the first fit the pre-trained model's, else zeros."""
        booster = self.booster if self.booster is not None else self.base
        if booster is None:
            return np.zeros(len(features))
        import xgboost as xgb
        return booster.predict(xgb.DMatrix(features if booster is self.booster else centred(features)))


def centred(features: np.ndarray) -> np.ndarray:
    """Features minus each column's median over the rows (one task's candidates): what sets one
    config apart from the others of its task, which carries over to a task of other shapes
    better than the raw values (bench/pretrained.py --offline ranks both ways)."""
    features = np.asarray(features, np.float32)
    return features - np.median(features, axis=0) if len(features) else features


def distinct_first(order, features: np.ndarray, seen: np.ndarray | None = None) -> list[int]:
    """The ranking `order` (row indices of features) with the rows whose feature vector repeats one
    ranked before it (or one of `seen`, configs already measured) moved to the end: configs the
    features cannot tell apart (a knob that leaves the loops unchanged, as unroll_kw on a 1x1
    conv) score alike, and measuring each of them spends trials on one kernel."""
    known = {row.tobytes() for row in (seen if seen is not None else ())}
    first, later = [], []
    for i in order:
        key = features[i].tobytes()
        (later if key in known else first).append(int(i))
        known.add(key)
    return first + later


def _relevance(throughput: np.ndarray) -> np.ndarray:
    """Graded relevance for ranking: 0 for failures, up to 31 for the best of the group."""
    t = np.asarray(throughput, np.float64)
    top = t.max() if len(t) else 0.0
    if top <= 0:
        return np.zeros(len(t))
    return np.floor(31.0 * (t / top) ** 2)
