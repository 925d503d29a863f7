"""The AutoScheduler: the tuning loop, logs, resume, dispatch and the final check on auto-scheduled tasks."""
from __future__ import annotations

import time

import numpy as np
import pytest

import autotune
import te
from autotune import record as rec

from . import auto_workloads as wl


class InProcessMeasurer:
    """Builds and runs candidates in this process (te.build): real answers, checked against the default."""

    def __init__(self):
        self.measured: list[dict] = []
        self.reference = None
        self.kernels: dict = {}                 # a final check re-times what is already built

    def measure(self, task, configs, rounds: int = 1, best_cost=None):
        data = np.random.default_rng(0)
        ins = [data.standard_normal(t.shape).astype(np.float32) for t in task.tensors[:-1]]
        if self.reference is None:
            self.reference = np.zeros(task.tensors[-1].shape, np.float32)
            task.build(0)(*ins, self.reference)
        ref = self.reference
        out = []
        for cfg in list(configs) * rounds:
            self.measured.append(cfg.to_json())
            res = np.zeros_like(ref)
            key = str(cfg.to_json())
            f = self.kernels.get(key) or self.kernels.setdefault(key, task.build(cfg))
            t = time.perf_counter()
            f(*ins, res)
            cost = time.perf_counter() - t
            ok = np.allclose(res, ref, rtol=1e-4, atol=1e-4)
            out.append(rec.Record(workload=task.workload_key, config=cfg.to_json(), costs=[cost] if ok else [],
                                  error_no=0 if ok else int(rec.ErrorNo.WRONG_ANSWER),
                                  isa=task.target.isa, cpu=task.target.cpu))
        return out

    def close(self):
        pass


def test_tune_log_resume_and_dispatch(tmp_path):
    task = autotune.create_task(wl.as_dense_relu, (16, 32, 64))
    log_path = tmp_path / "auto.jsonl"
    m = InProcessMeasurer()
    tuner = autotune.AutoScheduler(task, seed=1, population=12, generations=1)
    best = tuner.tune(n_trial=16, callbacks=[autotune.log_to_file(log_path)], measurer=m)
    assert best is not None and best.ok and best.checked, "the final check re-timed the best beside the default"
    assert tuner.model.booster is not None, "the cost model was fit on the measured schedules"
    assert len(tuner._features) > tuner.trials, "the evolution ranked more candidates than it measured"
    records = rec.load(log_path)
    assert all(r.ok for r in records), [r.error_msg for r in records if not r.ok]
    first = {r.config_key for r in records}
    assert len(first) >= 10 and all("steps" in r.config for r in records)

    again = autotune.AutoScheduler(task, seed=2, population=12, generations=1)
    m2 = InProcessMeasurer()
    again.tune(n_trial=8, callbacks=[autotune.log_to_file(log_path)], measurer=m2)
    fresh = [c for c in m2.measured[:8]]
    assert not any(rec.Record(task.workload_key, c, []).config_key in first for c in fresh), \
        "a resumed search measures no schedule of the log again"
    assert again.best_flops > 0

    data = np.random.default_rng(5)
    a, w, b = (data.standard_normal(s).astype(np.float32) for s in ((16, 64), (32, 64), (32,)))
    out = np.zeros((16, 32), np.float32)
    with autotune.apply_history_best(log_path) as ctx:
        task.build()(a, w, b, out)
    assert ctx.used[task.workload_key].config["steps"], "the log's best schedule was dispatched"
    np.testing.assert_allclose(out, np.maximum(a @ w.T + b, 0), rtol=1e-4, atol=1e-4)


def test_auto_scheduler_refuses_a_template_task():
    task = autotune.create_task("matmul", (16, 16, 16, "float32"))
    with pytest.raises(autotune.ConfigError, match="template task: tune it with autotune.XGBTuner"):
        autotune.AutoScheduler(task)


def test_first_batch_is_the_default_then_the_register_shaped_seeds():
    task = autotune.create_task(wl.as_matmul, (128, 256, 256))
    tuner = autotune.AutoScheduler(task)
    batch = tuner.next_batch(8)
    seeds = [tuner.space.add(tuner.policy.apply(p)[0].steps) for p in tuner.policy.seeds()]
    distinct = [i for i in dict.fromkeys(seeds) if i != 0]
    m = min(len(distinct), 6)           # a batch of 8 keeps one place for a random schedule
    assert batch[0] == 0 and batch[1:1 + m] == distinct[:m]
    assert len(set(batch)) == 8, "the rest of the batch is random schedules"


def test_a_logged_schedule_the_search_reaches_again_keeps_its_parameters():
    # a config known before the search made it (a shared log's best, measured first) has
    # features but no parameters; when a mutation reaches the same schedule, the evolution
    # needs that candidate's parameters to mutate it further
    task = autotune.create_task(wl.as_matmul, (64, 128, 64))
    tuner = autotune.AutoScheduler(task)
    p = tuner.policy.seeds()[1]
    i = tuner.space.add(tuner.policy.apply(p)[0].steps)
    tuner.features([i])
    assert tuner._candidate(p) == i and tuner._params[i] == p
    tuner.results[i] = 1.0
    tuner.model.fit([(tuner.features([0, i]), np.array([0.5, 1.0]), 1.0)])
    assert all(j in tuner._params for j in tuner._evolve())
