"""The auto-scheduler's config space: a config is a schedule, kept as its list of steps.

Unlike a template's space, it is not enumerated up front: the search adds the schedules it
proposes, and a log adds the ones it holds, each getting the next index (0 is the task's
default schedule).  `from_json` checks a config by replaying its steps on a fresh schedule
of the workload, so a record that no longer fits (the workload changed) is refused as a
template's would be.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import te
from te.ops.knobs import ConfigError

MAX_STEPS = 256
MAX_STEP_ARGS = 64      # a reorder of a conv's split loops names 20 and more axes
_SCALAR = (str, int, type(None))


@dataclass(frozen=True)
class StepConfig:
    """One schedule of an auto-scheduled task: its steps in te.Step JSON form."""
    index: int
    steps: tuple

    def to_json(self) -> dict:
        return {"steps": [[k, st, [list(a) if isinstance(a, tuple) else a for a in args]]
                          for k, st, args in self.steps]}

    def __str__(self) -> str:
        return "; ".join(str(te.Step(k, st, tuple(a))) for k, st, a in self.steps) or "(default schedule)"


def steps_problem(v) -> str:
    """Why a record's config is not a schedule's steps in JSON ('' when it is one)."""
    if not isinstance(v, dict) or set(v) != {"steps"} or not isinstance(v["steps"], list):
        return "not a {\"steps\": [...]} schedule"
    if len(v["steps"]) > MAX_STEPS:
        return f"more than {MAX_STEPS} steps"
    for s in v["steps"]:
        ok = (isinstance(s, list) and len(s) == 3 and isinstance(s[0], str) and isinstance(s[1], str)
              and len(s[0]) <= 32 and len(s[1]) <= 256 and isinstance(s[2], list) and len(s[2]) <= MAX_STEP_ARGS
              and all(_arg_ok(a) for a in s[2]))
        if not ok:
            return f"step {json.dumps(s)[:60]} is not [kind, stage, [arguments]]"
    return ""


def _arg_ok(a) -> bool:
    if isinstance(a, list):
        # stage names (cache_read's readers) or axis positions (cache_write's order)
        return len(a) <= 16 and all((isinstance(x, str) and len(x) <= 256)
                                    or (isinstance(x, int) and not isinstance(x, bool) and 0 <= x < 64) for x in a)
    return (isinstance(a, _SCALAR) and not isinstance(a, bool) and (not isinstance(a, str) or len(a) <= 256)
            and (not isinstance(a, int) or abs(a) < 1 << 31))


def _freeze_step(s) -> tuple:
    kind, stage, args = (s.kind, s.stage, s.args) if isinstance(s, te.Step) else s
    return (kind, stage, tuple(tuple(a) if isinstance(a, (list, tuple)) else a for a in args))


class StepSpace:
    """The schedules of one task seen so far, indexed; index 0 is the task's default schedule."""

    def __init__(self, task):
        self.task = task
        self._configs: list[StepConfig] = []
        self._index: dict[str, int] = {}
        self.add(task.default_steps)

    @staticmethod
    def _key(steps: tuple) -> str:
        return json.dumps(steps, separators=(",", ":"))

    def __len__(self) -> int:
        return len(self._configs)

    def default_index(self) -> int:
        return 0

    def valid(self, index: int) -> bool:
        return 0 <= index < len(self._configs)

    def get(self, index: int) -> StepConfig:
        """The config of an index."""
        if not self.valid(index):
            raise ConfigError(f"{self.task}: no schedule with index {index} (0..{len(self._configs) - 1})")
        return self._configs[index]

    def add(self, steps) -> int:
        """The index of a schedule given by its steps (Step objects or JSON), new or already seen."""
        frozen = tuple(_freeze_step(s) for s in steps)
        key = self._key(frozen)
        i = self._index.get(key)
        if i is None:
            i = self._index[key] = len(self._configs)
            self._configs.append(StepConfig(i, frozen))
        return i

    def from_json(self, d) -> StepConfig:
        """The config of a record's JSON, checked by replaying its steps (ConfigError if they do not fit)."""
        if d == {}:                     # the default config, as a template's log writes it
            return self._configs[0]
        why = steps_problem(d)
        if why:
            raise ConfigError(f"{self.task}: config {why}")
        try:
            te.replay(self.task.schedule(), d["steps"])
        except (ValueError, TypeError, KeyError, IndexError) as e:
            raise ConfigError(f"{self.task}: the logged schedule does not apply to this workload ({e})") from None
        return self.get(self.add(d["steps"]))
