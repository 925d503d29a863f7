"""A tuning run never dies on an empty batch, an empty candidate pool or an exhausted space
(a 12-minute ResNet-50 run died with `cannot reshape array of size 0 into shape (0,newaxis)`)."""
from __future__ import annotations

import numpy as np
import pytest

import autotune
from autotune import tuner as tuner_mod
from autotune.features import LENGTH
from autotune.scheduler import TaskScheduler

from . import autotune_templates  # noqa: F401  (registers test_vadd: a space of 25 configs at n=16)
from .fake_measurer import FakeMeasurer


def cheap_features(task, index: int) -> np.ndarray:
    """Stand-in loop-IR features: a lowering per config would make these tests slow."""
    return np.array([(index * 31 + k) % 17 for k in range(LENGTH)], np.float32)


class Measurer(FakeMeasurer):
    def features(self, task, indices):
        return [cheap_features(task, i) for i in indices]


@pytest.fixture(autouse=True)
def no_lowering(monkeypatch):
    monkeypatch.setattr(tuner_mod, "config_features", cheap_features)


def test_annealing_that_finds_no_fresh_config():
    """The annealing's pool gets no new config (here: a budget of 0; on a long run: every config it
    saw already had features): its features of no configs were the crash."""
    task = autotune.create_task("conv2d_nchw", ((1, 8, 8, 8), (8, 8, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1,
                                                "float32"))
    assert len(task.config_space) > autotune.XGBTuner.EXHAUSTIVE
    t = autotune.XGBTuner(task, feature_budget=0)
    t.tune(n_trial=24, measurer=Measurer())
    assert t.trials == 24 and t.best_flops > 0


def test_an_empty_batch_is_nothing_to_learn():
    t = autotune.XGBTuner(autotune.create_task("test_vadd", (16,)))
    t.update([], [])
    assert t.features([]).shape == (0, LENGTH) and t._knobs([]).shape == (0, len(t.space.dims()))


@pytest.mark.parametrize("cls", [autotune.XGBTuner, autotune.RandomTuner, autotune.GridSearchTuner])
def test_a_tiny_space_is_tuned_until_exhausted(cls):
    task = autotune.create_task("test_vadd", (16,))
    t = cls(task)
    t.tune(n_trial=10 * len(task.config_space), measurer=Measurer())
    assert t.trials == len(task.config_space) and not t.has_next()


@pytest.mark.parametrize("tuner", ["xgb", "random", "grid"])
def test_every_task_exhausted_at_once_then_the_final_check(tuner):
    a, b = autotune.create_task("test_vadd", (16,)), autotune.create_task("test_vadd", (32,))
    s = TaskScheduler([(a, 1), (b, 2)], tuner=tuner, measurer=Measurer())
    s.tune(time_budget=600)         # ends when every task is done, long before the budget
    assert [st.dead for st in s.states] == ["search space exhausted"] * 2
    assert s.total_trials == len(a.config_space) + len(b.config_space) and s.checked == 2


def test_every_task_stopped_early_at_once():
    a, b = autotune.create_task("matmul", (8, 8, 8, "float32")), autotune.create_task("matmul", (8, 8, 16, "float32"))
    s = TaskScheduler([(a, 1), (b, 1)], tuner="xgb", measurer=Measurer(), task_patience=1)
    s.tune(time_budget=600)
    assert all(st.dead.startswith("no improvement") for st in s.states) and s.checked == 2
