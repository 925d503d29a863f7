"""Dispatch: which config a task builds with — the best record of the active history, or the default.

    with autotune.apply_history_best("log.jsonl"):
        f = task.build()

A record is used only on a CPU with the same ISA features as the one it was measured on;
`allow_other_isa=True` opts in to reuse across CPUs, and every such reuse is logged.  A
workload without a record falls back to the template's default config, said once per
workload, not once per build.
"""
from __future__ import annotations

import logging
import os
from typing import Iterable

from . import record as rec
from .space import ConfigError, FallbackConfig

log = logging.getLogger(__name__)

_STACK: list["ApplyHistoryBest"] = []
_SAID: set[str] = set()


class ApplyHistoryBest:
    """A dispatch context built from tuning records (files or Record objects)."""

    def __init__(self, logs, allow_other_isa: bool = False):
        records: list[rec.Record] = []
        items = [logs] if isinstance(logs, (str, os.PathLike, rec.Record)) else list(logs)
        for item in items:
            if isinstance(item, rec.Record):
                records.append(item)
            else:
                records.extend(rec.load(item))
        self.allow_other_isa = allow_other_isa
        self.by_isa: dict[tuple[str, str], rec.Record] = {}
        self.any_isa: dict[str, rec.Record] = {}
        for r in records:
            if not r.ok:
                continue
            k = (r.workload, r.isa)
            if k not in self.by_isa or r.cost < self.by_isa[k].cost:
                self.by_isa[k] = r
            if r.workload not in self.any_isa or r.cost < self.any_isa[r.workload].cost:
                self.any_isa[r.workload] = r

    def query(self, task):
        """The best config for the task on its target's ISA (or any ISA if allowed), else None."""
        r = self.by_isa.get((task.workload_key, task.target.isa))
        if r is None and self.allow_other_isa:
            r = self.any_isa.get(task.workload_key)
            if r is not None:
                log.warning("%s: using a record measured on another CPU (%s, ISA %s); "
                            "this CPU is %s", task, r.cpu, r.isa, task.target.isa)
        if r is None:
            return None
        try:
            return task.config_space.from_json(r.config)
        except ConfigError as e:
            log.warning("%s: best record does not fit the template (%s); using the default", task, e)
            return None

    def __enter__(self):
        _STACK.append(self)
        return self

    def __exit__(self, *exc):
        _STACK.remove(self)


def apply_history_best(logs: "str | os.PathLike | Iterable", allow_other_isa: bool = False) -> ApplyHistoryBest:
    """A context in which task.build() uses the best records of these logs."""
    return ApplyHistoryBest(logs, allow_other_isa)


def current_config(task):
    """The config task.build() uses now: the innermost context's best record, else the default."""
    for ctx in reversed(_STACK):
        cfg = ctx.query(task)
        if cfg is not None:
            return cfg
    if task.workload_key not in _SAID:
        _SAID.add(task.workload_key)
        log.info("%s: no tuning record for this CPU; using the default schedule", task)
    return FallbackConfig()
