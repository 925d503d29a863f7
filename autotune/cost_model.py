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

    `base`, a pre-trained xgboost Booster (autotune.pretrained), ranks alone until the first fit.
    With `prior_records` k > 0 it keeps a share after that: the ranking is the blend of the two
    models' ranks over the candidates (`blend`), the base weighted k/(k+n) and the task's own model
    n/(k+n), n the task's own records of the last fit (the first group given to `fit`), so the
    prior counts as k measurements of the task and fades as they arrive.  With k = 0 the task's
    own model takes over at the first fit (the AutoScheduler's way).  The base was trained on each
    task's features minus its default config's (autotune.pretrained), so it ranks the candidates
    minus `reference`, the features of the task's default config (an array, or a function that
    computes them, called once: a lowering the search may never need); without one, minus the
    candidates' median (`centred`), an order that moves with the pool (used by studies only)."""

    def __init__(self, num_rounds: int = 60, seed: int = 0, base=None, prior_records: int = 0,
                 reference=None):
        self.num_rounds = num_rounds
        self.seed = seed
        self.base = base
        self.prior_records = prior_records
        self._reference = reference
        self.booster = None
        self.own_records = 0        # rows of the first group of the last fit: the task's own records

    @property
    def ready(self) -> bool:
        """Can it rank yet (fitted, or pre-trained)?"""
        return self.booster is not None or self.base is not None

    @property
    def prior_weight(self) -> float:
        """The base's share of the ranking: 1 before the first fit, then k/(k+n) (0 without a base)."""
        if self.base is None:
            return 0.0
        if self.booster is None:
            return 1.0
        k = self.prior_records
        return k / (k + self.own_records) if k > 0 else 0.0

    def fit(self, groups: list[tuple[np.ndarray, np.ndarray, float]]) -> None:
        """Fit on groups of (features, throughput, weight); throughput 0 marks a failed config."""
        import xgboost as xgb
        self.own_records = len(groups[0][1]) if groups else 0
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
        """Scores (higher = predicted faster): the task's own model's, the base's, or the blend of
        their ranks while both count (prior_weight); zeros before either can rank."""
        w = self.prior_weight
        own = self._own(features) if w < 1.0 else None
        if w <= 0.0:
            return own
        prior = self.prior_scores(features)
        return prior if w >= 1.0 else blend(own, prior, w)

    def prior_scores(self, features: np.ndarray) -> np.ndarray:
        """The base's scores of the candidates relative to the reference (as it was trained): each
        candidate's score depends on it alone, not on what else is ranked with it."""
        import xgboost as xgb
        ref = self.reference()
        features = np.asarray(features, np.float32)
        return self.base.predict(xgb.DMatrix(features - ref if ref is not None else centred(features)))

    def reference(self) -> np.ndarray | None:
        """The default config's features (computed on first use if given as a function), or None."""
        if callable(self._reference):
            self._reference = np.asarray(self._reference(), np.float32)
        return self._reference

    def _own(self, features: np.ndarray) -> np.ndarray:
        if self.booster is None:
            return np.zeros(len(features))
        import xgboost as xgb
        return self.booster.predict(xgb.DMatrix(features))


def quantiles(scores: np.ndarray) -> np.ndarray:
    """Each score's rank among the scores scaled to [0, 1], ties sharing their mean rank (a model
    that cannot tell candidates apart adds nothing to a blend's order between them)."""
    scores = np.asarray(scores)
    if len(scores) < 2:
        return np.full(len(scores), 0.5)
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    mean_rank = np.cumsum(counts) - (counts + 1) / 2
    return mean_rank[inverse] / (len(scores) - 1)


def blend(own: np.ndarray, prior: np.ndarray, prior_weight: float) -> np.ndarray:
    """Two models' scores of the same candidates as one ranking: their ranks (`quantiles`) weighted.
    Ranks, not scores: a pairwise ranking model's scores have no scale shared with another's."""
    return (1.0 - prior_weight) * quantiles(own) + prior_weight * quantiles(prior)


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
