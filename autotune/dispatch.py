"""Dispatch: which config a task builds with — the best record of the active history, or the default.

    with autotune.apply_history_best("log.jsonl"):
        f = task.build()

A record is used only on a CPU with the same ISA features as the one it was measured on;
`allow_other_isa=True` opts in to reuse across CPUs, and every such reuse is logged.  A
workload without a record falls back to the template's default config, said once per
workload, not once per build.  The default also wins over the records ranked below it (configs
the model check timed slower than the untuned kernel, and configs it never ran of a workload it
judged since: record.below_default).
"""
from __future__ import annotations

import logging
import os
from typing import Iterable

from . import record as rec
from .space import ConfigError, FallbackConfig

log = logging.getLogger(__name__)

_STACK: list["ApplyHistoryBest"] = []
_SAID: set[tuple[str, bool]] = set()     # (workload, in a context) already said to use the default


class ApplyHistoryBest:
    """A dispatch context built from tuning records (files, folders of them, or Record objects)."""

    def __init__(self, logs, allow_other_isa: bool = False):
        records: list[rec.Record] = []
        items = [logs] if isinstance(logs, (str, os.PathLike, rec.Record)) else list(logs)
        for item in items:
            if isinstance(item, rec.Record):
                records.append(item)
            elif os.path.isdir(item):       # a folder of logs, laid out as tuning_logs/ is
                from pathlib import Path

                from te.target import host

                from .shared_logs import find_logs
                for path in find_logs(host().isa, [Path(item)]):
                    records.extend(rec.load(path))
            else:
                records.extend(rec.load(item))
        self.allow_other_isa = allow_other_isa
        # per workload (and ISA), the valid records from fastest to slowest: a record the template
        # no longer accepts (its knobs changed) gives way to the next one
        self._ranked: dict[tuple[str, str], list[rec.Record]] = {}
        self._ranked_any: dict[str, list[rec.Record]] = {}
        for r in rec.pooled(records):          # a config measured several times: all its timings
            if r.ok:
                self._ranked.setdefault((r.workload, r.isa), []).append(r)
                self._ranked_any.setdefault(r.workload, []).append(r)
        # (workload, ISA) -> when the model check last judged its configs: the configs it has not
        # judged since rank below the judged ones and the default (record.below_default)
        self._judged = rec.judging_times(records)
        for lst in (*self._ranked.values(), *self._ranked_any.values()):
            lst.sort(key=self._rank_key)                 # as record.best
        # per workload, the configs a check compared the others with (the then default's records)
        self._baselines: dict[str, set[str]] = {}
        for lst in self._ranked_any.values():
            for r in lst:
                if (r.checked or r.in_model) and r.vs_default == 1.0:
                    self._baselines.setdefault(r.workload, set()).add(r.config_key)
        self.used: dict[str, rec.Record] = {}         # workload -> the record query() returned

    def _rank_key(self, r: rec.Record) -> tuple:
        return rec.rank_key(r, self._judged.get((r.workload, r.isa)))

    def judged_at(self, task) -> float | None:
        """When the model check last judged a config of the task's workload on its ISA, or None."""
        return self._judged.get((task.workload_key, task.target.isa))

    def has_workloads(self, prefix: str) -> bool:
        """Does any record's workload key start with prefix (e.g. the auto-scheduler's group tasks)?"""
        return any(w.startswith(prefix) for w in self._ranked_any)

    def query(self, task):
        """The best config for the task on its target's ISA (or any ISA if allowed), else None."""
        ranked = self._ranked.get((task.workload_key, task.target.isa), [])
        other = False
        if not ranked and self.allow_other_isa:
            ranked, other = self._ranked_any.get(task.workload_key, []), True
        if self._judged_against_another_default(task):
            return None
        skipped = None
        for r in ranked:
            if self._rank_key(r)[0]:        # below the default (record.rank_key): so is every next one
                self._say_default(task, r)
                break
            try:
                cfg = task.config_space.from_json(r.config)
            except (ValueError, TypeError) as e:     # ConfigError; a Record made in code is not checked as a log's is
                skipped = skipped or e
                continue
            if skipped is not None:
                log.warning("%s: the best record(s) do not fit the template (%s); using the best that does",
                            task, skipped)
            if other:
                log.warning("%s: using a record measured on another CPU (%s, ISA %s); "
                            "this CPU is %s", task, r.cpu, r.isa, task.target.isa)
            self.used[task.workload_key] = r
            return cfg
        if skipped is not None:
            log.warning("%s: no record fits the template (%s); using the default", task, skipped)
        return None

    @staticmethod
    def _say_default(task, r: rec.Record) -> None:
        """Say once per workload that the model check sent its records back to the default config."""
        said = (task.workload_key, "below default")
        if said not in _SAID:
            _SAID.add(said)
            why = ("ran slower in the model than the untuned kernel" if rec.slower_in_model(r) else
                   "were not timed in the model, which judged other configs of it since")
            log.info("%s: the best tuning record(s) %s; using the default", task, why)

    def _judged_against_another_default(self, task) -> bool:
        """Whether the task's records were checked against a default config that is no longer the
        template's (its defaults changed since): their speed-ups are over a kernel the build no
        longer runs, and a record so judged often runs slower than the newer default, so the
        default is used (said once per workload)."""
        baselines = self._baselines.get(task.workload_key)
        if not baselines:
            return False
        space = task.config_space
        current = rec.Record(task.workload_key, space.get(space.default_index()).to_json(), []).config_key
        if current in baselines:
            return False
        said = (task.workload_key, "stale")
        if said not in _SAID:
            _SAID.add(said)
            log.info("%s: the tuning records were checked against an older default config; "
                     "using the current default (tune again to compare with it)", task)
        return True

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
    said = (task.workload_key, bool(_STACK))
    if said not in _SAID:
        _SAID.add(said)
        if _STACK:          # the user asked for tuned configs: say that this one has none
            log.warning("%s: no tuning record for this CPU in the history applied; using the default "
                        "schedule (tune this task and add its log to apply_history_best)", task)
        else:
            log.info("%s: no tuning history applied; using the default schedule", task)
    return FallbackConfig()
