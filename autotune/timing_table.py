"""Timing tables: tune against timings measured earlier, without building or timing anything.

A `TimingTable` holds, for every config of one task, the timings it got in a few passes over
the space made at different times.  A `TableMeasurer` stands in for a `Measurer`: each time a
tuner asks for a config, it hands back one of that config's passes, drawn at random, so the
tuner sees the machine's noise as it was.  The table's own verdict on a config is the median of
all its timings.  That separates a search strategy's quality from the noise of the day: a
tuner's answer can be judged by its true speed, over many seeds, in seconds
(bench/tune_replay.py replays the tuners on a table).
"""
from __future__ import annotations

import json
import random
import statistics
from dataclasses import dataclass, field

from te.files import atomic_write

from .features import config_features
from .record import ErrorNo, Record

TABLE_VERSION = 1


@dataclass
class TimingTable:
    """Timings of configs of one task: config index -> one list of costs (seconds) per pass,
    an empty list for a pass where the config failed."""
    workload: str
    isa: str
    flops: float
    costs: dict[int, list[list[float]]] = field(default_factory=dict)
    # feature vectors computed during replays, shared by every replay of the table (not saved)
    features: dict[int, object] = field(default_factory=dict, repr=False, compare=False)

    def true_cost(self, index: int) -> float:
        """The median of all the config's timings (inf when it never ran)."""
        every = [c for p in self.costs.get(index, []) for c in p]
        return statistics.median(every) if every else float("inf")

    def true_gflops(self, index: int) -> float:
        return self.flops / self.true_cost(index) / 1e9

    def best(self) -> tuple[int, float]:
        """The fastest config on all its timings and its GFLOP/s."""
        i = min(self.costs, key=self.true_cost)
        return i, self.true_gflops(i)

    def save(self, path) -> None:
        data = {"version": TABLE_VERSION, "workload": self.workload, "isa": self.isa, "flops": self.flops,
                "costs": {str(i): p for i, p in sorted(self.costs.items())}}
        with atomic_write(path) as f:
            json.dump(data, f)

    @classmethod
    def load(cls, path) -> TimingTable:
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
            if data.get("version") != TABLE_VERSION:
                raise ValueError(f"version {data.get('version')!r}, this tilewise reads {TABLE_VERSION}")
            return cls(data["workload"], data["isa"], float(data["flops"]),
                       {int(i): [list(map(float, p)) for p in passes] for i, passes in data["costs"].items()})
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{path}: not a timing table ({e}); measure one again with "
                             f"autotune.timing_table.TimingTable.measure") from None

    @classmethod
    def measure(cls, task, indices, passes: int = 2, measurer=None, progress=None) -> TimingTable:
        """Measure `indices` of the task's space `passes` times, every other pass in reverse order
        (so no config is always timed at the same moment of the run)."""
        from .measure import Measurer
        own = measurer is None
        measurer = measurer or Measurer()
        table = cls(task.workload_key, task.target.isa, float(task.flops))
        indices = list(indices)
        try:
            for p in range(passes):
                order = indices if p % 2 == 0 else indices[::-1]
                for b in range(0, len(order), 8):
                    batch = order[b:b + 8]
                    for i, r in zip(batch, measurer.measure(task, [task.config_space.get(i) for i in batch])):
                        table.costs.setdefault(i, []).append(list(r.costs) if r.ok else [])
                    if progress:
                        progress(p * len(order) + b + len(batch), passes * len(order))
        finally:
            if own:
                measurer.close()
        return table


class TableMeasurer:
    """A Measurer that answers from a TimingTable: a config's timing is one of its recorded passes."""

    def __init__(self, table: TimingTable, seed: int = 0):
        self.table = table
        self.rng = random.Random(seed)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        pass

    def measure(self, task, configs, rounds: int = 1, best_cost=None) -> list[Record]:
        if task.workload_key != self.table.workload:
            raise ValueError(f"this timing table holds {self.table.workload}, not {task.workload_key}")
        out = []
        for _ in range(max(1, rounds)):
            for cfg in configs:
                passes = self.table.costs.get(cfg.index)
                costs = self.rng.choice(passes) if passes else []
                err = ErrorNo.NO_ERROR if costs else ErrorNo.RUNTIME_ERROR
                out.append(Record(workload=task.workload_key, config=cfg.to_json(), costs=list(costs),
                                  error_no=int(err), isa=task.target.isa,
                                  error_msg="" if costs else "no timing in the timing table"))
        return out

    def features(self, task, indices: list[int]) -> list:
        """Feature vectors, computed once per config for all replays of the table."""
        cache = self.table.features
        for i in indices:
            if i not in cache:
                cache[i] = config_features(task, i)
        return [cache[i] for i in indices]
