"""The tuner's yardstick of the machine's speed (Tuner._batch_speed): scripted timings, no processes."""
import pytest

import autotune
from autotune import record as rec

FAST, SLOW = 1.0, 460 / 360          # this VM's two speeds (GFLOP/s 460 and 360), as time factors


def _true(i: int) -> float:
    """Config i's time (seconds) at the machine's fast speed: different per config."""
    return 1e-6 * (1 + (i * 7919 % 1009) / 1000)


class _Scripted:
    """A measurer whose batch k runs at machine[k] (a time factor on every config) and whose default
    takes default_factor x the median candidate, times machine[k], times its own swing[k]; the
    final check's rounds (rounds > 1) run at the fast speed and are kept in `checks`."""

    def __init__(self, default_factor: float, machine: list[float], swing: list[float]):
        self.default_factor, self.machine, self.swing = default_factor, machine, swing
        self.batches: list[list[int]] = []
        self.checks: list[list[int]] = []

    def measure(self, task, configs, rounds=1, best_cost=None):
        d = task.config_space.default_index()
        default = self.default_factor * 1.5e-6
        if rounds > 1:
            self.checks.append([c.index for c in configs])
            return [rec.Record(task.workload_key, c.to_json(), [default if c.index == d else _true(c.index)],
                               isa=task.target.isa) for _ in range(rounds) for c in configs]
        k = len(self.batches) % len(self.machine)
        self.batches.append([c.index for c in configs])
        anchor = default * self.machine[k] * self.swing[k]
        out = []
        for c in configs:
            cost = anchor if c.index == d else _true(c.index) * self.machine[k]
            out.append(rec.Record(task.workload_key, c.to_json(), [cost], isa=task.target.isa,
                                  vs_default=anchor / cost))
        return out


def _tune(measurer: _Scripted, callbacks=()) -> tuple[autotune.Tuner, list[int]]:
    """Five search batches of a random tuner and its final check; the configs searched, default aside."""
    task = autotune.create_task("matmul", (64, 64, 64, "float32"))
    tuner = autotune.RandomTuner(task, seed=3)
    tuner.tune(40, measurer=measurer, callbacks=callbacks)
    d = task.config_space.default_index()
    searched = sorted({i for b in measurer.batches for i in b} - {d})
    assert len({_true(i) for i in searched}) == len(searched)        # the true order is strict
    return tuner, searched


def test_a_slow_default_swinging_alone_does_not_rank_the_search():
    """The default runs 20x slower than the candidates and its time swings 4x between batches while
    theirs does not (an auto-scheduler task's naive default under load): it is no yardstick, the
    incumbent is timed again beside each batch instead, and the search's ranking (the evolution's
    parents come from it) and the final check's three picks follow the candidates' true order."""
    m = _Scripted(20.0, machine=[FAST] * 5, swing=[1.0, 4.0, 1.0, 4.0, 2.0])
    tuner, searched = _tune(m)
    by_search = sorted(searched, key=lambda i: -tuner.results[i])
    assert by_search == sorted(searched, key=_true)
    assert set(m.checks[0][1:]) == set(sorted(searched, key=_true)[:3])
    assert all(len(b) == 9 for b in m.batches[1:])              # a batch of 8 and the incumbent
    assert tuner.trials == 40


@pytest.mark.parametrize("default_factor", [1.5, 20.0])
def test_a_machine_at_two_speeds_is_cancelled(default_factor):
    """The machine alternates between two speeds batch by batch, slowing every config alike: with
    a default near its candidates (it is the yardstick) or far from them (the incumbent is), every
    search timing is scaled to the fast speed, so the search ranks the configs as timed together."""
    m = _Scripted(default_factor, machine=[SLOW, FAST, SLOW, FAST, SLOW], swing=[1.0] * 5)
    tuner, searched = _tune(m)
    task = tuner.task
    assert all(tuner.results[i] == pytest.approx(task.flops / _true(i)) for i in searched)
    assert sorted(searched, key=lambda i: -tuner.results[i]) == sorted(searched, key=_true)
    assert set(m.checks[0][1:]) == set(sorted(searched, key=_true)[:3])


def test_the_task_scheduler_times_the_incumbent_beside_its_rounds_too():
    """The task scheduler measures a tuner's batches itself (Tuner.measure_batch): with a slow
    default swinging alone its rounds carry the incumbent, and the ranking follows the true order."""
    from autotune.scheduler import TaskScheduler
    task = autotune.create_task("matmul", (64, 64, 64, "float32"))
    m = _Scripted(20.0, machine=[FAST] * 6, swing=[1.0, 4.0, 1.0, 4.0, 2.0, 4.0])
    s = TaskScheduler([(task, 1)], tuner="random", measurer=m, round_trials=8)
    s.tune(n_trials=33)
    tuner, d = s.states[0].tuner, task.config_space.default_index()
    searched = sorted({i for b in m.batches for i in b} - {d})
    assert m.batches[0] == [d] and any(len(b) == 9 for b in m.batches)
    assert sorted(searched, key=lambda i: -tuner.results[i]) == sorted(searched, key=_true)
    assert set(m.checks[0][1:]) == set(sorted(searched, key=_true)[:3])


def test_a_log_read_back_is_judged_batch_by_batch(tmp_path):
    """A log of a two-speed run with a slow default, read into a new tuner (load_history), ranks its
    configs as the run did: its search batches (records beside one default time) judged together."""
    path = tmp_path / "log.jsonl"
    m = _Scripted(20.0, machine=[SLOW, FAST, SLOW, FAST, SLOW], swing=[1.0] * 5)
    tuner, searched = _tune(m, callbacks=[autotune.log_to_file(path)])
    again = autotune.RandomTuner(tuner.task)
    assert again.load_history(autotune.load_records(path)) == len(autotune.load_records(path))
    assert all(again.results[i] == pytest.approx(tuner.results[i]) for i in searched)
    assert all(again.results[i] == pytest.approx(tuner.task.flops / _true(i)) for i in searched)
