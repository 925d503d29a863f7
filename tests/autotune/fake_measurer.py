"""A stand-in for autotune.measure.Measurer, shared by the task-scheduler and tuner tests."""
from __future__ import annotations

from autotune import record as rec


class FakeMeasurer:
    """Costs from the config index: deterministic, different per config; no processes."""

    def __init__(self, fail: set[str] = frozenset(), slow: dict[str, float] | None = None):
        self.calls: list[tuple[str, list[int]]] = []
        self.fail = fail
        self.slow = slow or {}

    def measure(self, task, configs, rounds: int = 1, best_cost=None):
        if task.workload_key in self.fail:
            raise RuntimeError("the default schedule does not build")
        self.calls.append((task.workload_key, [c.index for c in configs] * rounds))
        out = []
        for c in configs * rounds:
            speed = 1e9 * (1 + (c.index * 7919 % 101) / 10) / self.slow.get(task.workload_key, 1.0)
            out.append(rec.Record(workload=task.workload_key, config=c.to_json(), costs=[task.flops / speed],
                                  isa=task.target.isa, cpu=task.target.cpu))
        return out

    def close(self):
        pass
