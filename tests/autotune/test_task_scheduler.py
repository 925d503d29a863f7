"""autotune.scheduler.TaskScheduler with a fake measurer: budget, weights, defaults first, resume, failures."""
from __future__ import annotations

import math

import pytest

import autotune
from autotune.scheduler import TaskScheduler

from .fake_measurer import FakeMeasurer


def mm(n: int) -> autotune.Task:
    return autotune.create_task("matmul", (n, n, n, "float32"))


def test_budget_defaults_first_and_every_record_logged(tmp_path):
    a, b = mm(64), mm(32)
    m = FakeMeasurer()
    log = tmp_path / "s.jsonl"
    s = TaskScheduler([(a, 1), (b, 1)], tuner="random", measurer=m, callbacks=[autotune.log_to_file(log)])
    s.tune(n_trials=20)
    assert s.total_trials == 20 and s.trials_this_run == 20
    recs = autotune.load_records(log)
    assert len({(r.workload, r.config_key) for r in recs}) == 20
    # then the final check re-timed each task's default and best configs, and logged it
    assert s.checked >= 1 and len(recs) > 20 and all(r.checked for r in recs[20:])
    # the first round of each task is its default config alone, the heavier task first
    assert m.calls[0] == (a.workload_key, [a.config_space.default_index()])
    assert m.calls[1] == (b.workload_key, [b.config_space.default_index()])
    rows = s.summary()
    assert sum(r.share for r in rows) == pytest.approx(1.0)
    assert all(r.default_flops > 0 and r.speedup >= 1.0 for r in rows)
    # the speed-up reported is the one the final check chose on: round by round against the default
    checked = [(r, st.tuner.best_record) for r, st in zip(rows, s.states) if st.tuner.best_record.checked]
    assert checked and all(r.speedup == pytest.approx(b.vs_default) for r, b in checked)


def test_heavier_tasks_get_more_trials():
    light, heavy = mm(32), mm(48)
    m = FakeMeasurer(slow={heavy.workload_key: 5.0})
    s = TaskScheduler([(light, 1), (heavy, 20)], tuner="random", measurer=m, eps_greedy=0.0, round_trials=4)
    s.tune(n_trials=40)
    trials = {st.task.workload_key: st.trials for st in s.states}
    assert trials[heavy.workload_key] > 2 * trials[light.workload_key]
    assert s.gradient(1) < s.gradient(0)


def test_a_task_that_cannot_be_measured_is_dropped_not_fatal():
    good, bad = mm(32), mm(40)
    s = TaskScheduler([(good, 1), (bad, 1)], tuner="random", measurer=FakeMeasurer(fail={bad.workload_key}))
    s.tune(n_trials=10)
    assert s.states[1].dead.startswith("cannot be measured")
    assert s.states[0].trials == 10


def test_history_is_not_measured_again_and_counts_towards_the_budget():
    a = mm(32)
    m = FakeMeasurer()
    first = TaskScheduler([(a, 1)], tuner="random", measurer=m)
    first.states[0].tuner.verify_top = 0             # no final check: only the search's calls
    first.tune(n_trials=9)
    calls = list(m.calls)
    history = [r for _, idx in calls for r in FakeMeasurer().measure(a, [a.config_space.get(i) for i in idx])]
    m2 = FakeMeasurer()
    again = TaskScheduler([(a, 1)], tuner="random", measurer=m2, history=history)
    again.states[0].tuner.verify_top = 0
    assert again.total_trials == 9
    again.tune(n_trials=15)
    seen = [i for _, idx in calls for i in idx]
    new = [i for _, idx in m2.calls for i in idx]
    assert len(new) == 6 and not set(new) & set(seen)


def test_seeds_are_measured_in_the_first_round():
    a = mm(32)
    other = a.config_space.get((a.config_space.default_index() + 3) % len(a.config_space))
    m = FakeMeasurer()
    s = TaskScheduler([(a, 1)], tuner="random", measurer=m, seeds={a.workload_key: [other.to_json(), {"bad": 1}]})
    s.tune(n_trials=2)
    assert m.calls[0][1] == [a.config_space.default_index(), other.index]


def test_time_budget_and_stop():
    a = mm(32)
    s = TaskScheduler([(a, 1)], tuner="random", measurer=FakeMeasurer())
    s.tune(time_budget=0.0)
    assert s.total_trials == 0
    with pytest.raises(ValueError):
        s.tune()


def test_estimated_time_is_the_weighted_sum_of_best_costs():
    a, b = mm(32), mm(64)
    s = TaskScheduler([(a, 3), (b, 1)], tuner="random", measurer=FakeMeasurer())
    s.tune(n_trials=6)
    want = sum(st.weight * st.task.flops / st.best_flops for st in s.states)
    assert s.estimated_time() == pytest.approx(want)
    assert all(math.isfinite(r.est_time) for r in s.summary())


def test_xgb_tuner_runs_under_the_scheduler():
    a = mm(32)
    s = TaskScheduler([(a, 1)], tuner="xgb", measurer=FakeMeasurer())
    s.tune(n_trials=9)            # the default, then a batch: the model is fitted once
    assert s.total_trials == 9 and s.states[0].tuner.model.booster is not None


def test_unknown_tuner():
    with pytest.raises(ValueError, match="unknown tuner"):
        TaskScheduler([(mm(32), 1)], tuner="annealing")


def test_alternatives_count_once_and_a_hopeless_one_gets_few_rounds():
    """Two implementations of one kernel (a group): the estimate counts the faster only, and once
    one is far ahead the rounds go to it, not to the alternative that cannot catch up."""
    fast = autotune.create_task("dense", (1, 256, 512, "float32"))
    slow = autotune.create_task("dense_dot", (1, 256, 512, "float32"))
    m = FakeMeasurer(slow={slow.workload_key: 50.0})
    s = TaskScheduler([(fast, 2, "fc"), (slow, 2, "fc")], tuner="random", measurer=m, eps_greedy=0.0,
                      round_trials=4)
    s.tune(n_trials=40)
    best = min(st.best_cost for st in s.states)
    assert s.estimated_time() == pytest.approx(2 * best)
    trials = {st.task.name: st.trials for st in s.states}
    assert trials["dense"] > 3 * trials["dense_dot"]
    assert s.gradient(1) == 0.0         # the slow one cannot take anything off the group's best
