"""Workloads for the auto-scheduler: any function returning te tensors, inputs first, outputs last.

    @autotune.register_workload
    def scores(B, H, S, D): ...; return [q, k, s]
    task = autotune.create_task(scores, args=(1, 12, 128, 64))

A workload is known by its registered name and its arguments (the same JSON workload key as a
template's), so a log written by one process is resumed and dispatched by another that
registers the same function.  Measurement workers receive the compute DAG itself, pickled:
a function defined in a script's `__main__` cannot be imported by them.
"""
from __future__ import annotations

import copyreg
import functools
import inspect
import io
import logging
import math
import pickle
from dataclasses import dataclass
from typing import Callable

import te
from te.ops.knobs import TEMPLATES, ConfigError, FallbackConfig
from te.ops.registry import freeze
from te.tensor import CommReducer

from ..task import MAX_ARGS, Task, check_arg, count_flops
from .space import StepConfig, StepSpace

log = logging.getLogger(__name__)

WORKLOADS: dict[str, Callable] = {}
# compute DAGs received from the parent process, by (name, args): a measurement worker has them
# instead of the function
_RECEIVED: dict[tuple, list] = {}
# default schedules given with a DAG (a model kernel's: what the model builds without a record)
_DEFAULTS: dict[tuple, tuple] = {}


def register_workload(func: Callable | str | None = None, name: str | None = None):
    """Decorator: register a function returning te tensors (inputs first, outputs last) as a workload.

    `@register_workload`, `@register_workload("name")` or `register_workload(func, name=...)`."""
    if isinstance(func, str):
        return functools.partial(register_workload, name=func)
    if func is None:
        return functools.partial(register_workload, name=name)
    if not callable(func):
        raise ConfigError(f"register_workload: expected a function returning te tensors, got {func!r}")
    name = name or func.__name__
    if name in TEMPLATES:
        raise ConfigError(f"register_workload: {name!r} is already a template name; register the "
                          f"workload under another name (register_workload(func, name=...))")
    old = WORKLOADS.get(name)
    if old is not None and _origin(old) != _origin(func):
        log.warning("workload %r re-registered (was %s, now %s)", name, _origin(old), _origin(func))
    WORKLOADS[name] = func
    func.workload_name = name
    return func


def _origin(func: Callable) -> str:
    return f"{getattr(func, '__module__', '?')}.{getattr(func, '__qualname__', '?')}"


def is_workload(name: str) -> bool:
    """Is `name` a registered workload (or one whose DAG this worker received)?"""
    return name in WORKLOADS or any(k[0] == name for k in _RECEIVED)


def workload_name(func: Callable | str) -> str:
    """The registered name of a workload function (or a name), ConfigError if it is not registered."""
    name = func if isinstance(func, str) else getattr(func, "workload_name", None)
    if name is None or not is_workload(name):
        what = getattr(func, "__name__", func)
        raise ConfigError(f"{what!r} is not a registered workload or template; decorate the function "
                          "with @autotune.register_workload")
    return name


def check_workload_args(name: str, args) -> None:
    """Raise ValueError unless `args` fit workload `name`'s parameters, as check_args does for templates."""
    args = list(args)
    if len(args) > MAX_ARGS:
        raise ValueError(f"{name}: {len(args)} arguments, more than {MAX_ARGS}")
    func = WORKLOADS.get(name)
    names = [f"arg{i}" for i in range(len(args))]
    if func is not None:
        try:
            bound = inspect.signature(func).bind(*args)
        except TypeError as e:
            raise ValueError(f"{name}: {len(args)} argument(s) do not fit the workload ({e})") from None
        names = list(bound.arguments)[:len(args)] + names[len(bound.arguments):]
    for pname, value in zip(names, args):
        check_arg(name, pname, value)


def _split_io(name: str, tensors) -> tuple[list, list]:
    """(inputs, outputs) of a workload's returned list, checked: placeholders first, computes last."""
    if isinstance(tensors, te.Tensor) or not isinstance(tensors, (list, tuple)) or not tensors:
        raise ConfigError(f"workload {name} must return a list of te tensors, inputs first and outputs "
                          f"last; it returned {type(tensors).__name__}")
    bad = [t for t in tensors if not isinstance(t, te.Tensor)]
    if bad:
        raise ConfigError(f"workload {name} returned {bad[0]!r}, which is not a te tensor")
    kinds = [isinstance(t.op, te.PlaceholderOp) for t in tensors]
    n_in = kinds.index(False) if False in kinds else len(kinds)
    if n_in == len(kinds) or any(kinds[n_in:]):
        raise ConfigError(f"workload {name} must return its inputs (te.placeholder) first and its "
                          "outputs (te.compute) last, at least one output")
    return list(tensors[:n_in]), list(tensors[n_in:])


# ---------------------------------------------------------------- pickling the compute DAG
def _std_reducer(name: str):
    return getattr(te, name)


def _reduce_reducer(r: CommReducer):
    if getattr(te, r.name, None) is r:      # te.sum, te.max, ...: by name
        return _std_reducer, (r.name,)
    raise pickle.PicklingError(f"custom reducer {r.name!r}")


def dump_dag(obj) -> bytes | None:
    """Tensors (in any container) pickled, standard reducers by name; None if something does not pickle."""
    buf = io.BytesIO()
    p = pickle.Pickler(buf, protocol=pickle.HIGHEST_PROTOCOL)
    p.dispatch_table = copyreg.dispatch_table.copy()
    p.dispatch_table[CommReducer] = _reduce_reducer
    for cls in CommReducer.__subclasses__():
        p.dispatch_table[cls] = _reduce_reducer
    try:
        p.dump(obj)
    except (pickle.PicklingError, TypeError, AttributeError, RecursionError) as e:
        log.debug("compute DAG does not pickle: %s", e)
        return None
    return buf.getvalue()


def receive_dag(name: str, args, data: bytes) -> None:
    """In a worker: make the parent's compute DAG of (name, args) the workload's tensors."""
    key = (name, freeze(tuple(args)))
    if key not in _RECEIVED:
        got = pickle.loads(data)
        _RECEIVED[key] = got["tensors"]
        if got["default"] is not None:
            _DEFAULTS[key] = got["default"]


# ---------------------------------------------------------------- the task
@dataclass(frozen=True)
class AutoTask(Task):
    """A workload to auto-schedule: registered function `name` applied to `args`, for `target`.

    A Task (workload key, build, dispatch, measurement) whose `config_space` is a StepSpace (a
    config is a schedule's list of steps) and whose schedules come from the compute DAG the
    function returns rather than from a template."""
    implementation = None            # no registry implementation: inputs are laid out as declared

    @functools.cached_property
    def tensors(self) -> list:
        """The workload's tensors, inputs first, outputs last (one compute DAG per task)."""
        got = _RECEIVED.get((self.name, self.args))
        if got is None:
            func = WORKLOADS.get(self.name)
            if func is None:
                raise ConfigError(f"workload {self.name!r} is not registered in this process")
            got = func(*self.args)
        _split_io(self.name, got)
        return list(got)

    @property
    def outputs(self) -> list:
        return _split_io(self.name, self.tensors)[1]

    @functools.cached_property
    def config_space(self) -> StepSpace:
        """The schedules measured or proposed so far, as a growing indexed space (0: the default)."""
        return StepSpace(self)

    @property
    def module(self) -> str | None:
        """The module that registers the workload, for a worker to import (None for __main__)."""
        mod = getattr(WORKLOADS.get(self.name), "__module__", None)
        return mod if mod and mod != "__main__" else None

    @functools.cached_property
    def dag(self) -> bytes | None:
        """The compute DAG pickled for measurement workers (None: they import `module` instead)."""
        data = dump_dag({"tensors": self.tensors, "default": _DEFAULTS.get((self.name, self.args))})
        if data is None and self.module is None:
            raise ConfigError(f"workload {self.name}: its compute does not pickle (a custom reducer?); "
                              "define the workload in an importable module so workers can import it")
        return data

    def schedule(self) -> te.Schedule:
        """A fresh schedule of the workload's outputs, no primitive applied (te's default)."""
        return te.create_schedule([t.op for t in self.outputs])

    @functools.cached_property
    def default_steps(self) -> tuple:
        """The steps of the task's default config: the schedule given with the DAG (a model
        kernel's default), else the sketch rules under their default parameters (a template's
        default is a sensible schedule too; te's loop nest as declared can take seconds for a
        large reduction, and the tuner times the default beside its best)."""
        given = _DEFAULTS.get((self.name, self.args))
        if given is not None:
            return given
        from .sketch import SketchPolicy
        policy = SketchPolicy(self)
        try:
            s, _ = policy.apply(policy.default_params())
        except (ValueError, TypeError) as e:
            log.warning("%s: the default sketch does not apply (%s); the default is te's loop nest", self, e)
            return ()
        return tuple(s.steps)

    def _config(self, config) -> StepConfig:
        """Task's reading of a config (an index, its JSON, the entity); the default is index 0."""
        config = super()._config(config)
        return self.config_space.get(0) if isinstance(config, FallbackConfig) else config

    def instantiate(self, config=None, prepacked: bool = False, fused: bool = False):
        """(schedule, tensors) for a config (a StepConfig, its JSON, an index, or None for the default
        config, index 0).  `prepacked` and `fused` change nothing: an auto-scheduled task's computation
        is already the whole kernel a model runs (a group's, epilogue included)."""
        config = self._config(config)
        s = self.schedule()
        te.replay(s, list(config.steps))
        return s, list(self.tensors)

    @functools.cached_property
    def flops(self) -> float:
        """Floating-point operations of one run, from the compute definitions (for pure data
        movement, the output elements, so throughputs still rank schedules)."""
        return count_flops(self.outputs) or float(sum(math.prod(t.shape) for t in self.outputs))


# ---------------------------------------------------------------- a model's kernels
GROUP = "tilewise_group"


@register_workload(name=GROUP)
def _model_group(digest):
    """A model kernel without a template: its compute comes from the model (group_task), never from here."""
    raise ConfigError(f"workload {GROUP}[{digest}] is a model kernel: its computation comes from the "
                      "model, so build or tune it through the model (tilewise build/tune)")


def is_deferred(workload: str) -> bool:
    """Is this the key of a model kernel, whose compute only a process that has the model knows?"""
    return workload.startswith(f'["{GROUP}"')


def group_task(inputs: list, out, target=None, default: te.Schedule | None = None) -> AutoTask:
    """The auto-scheduling task of one kernel of a model (its inputs and output tensor): the key is
    a digest of the computation (te's loop nest as declared), so the same kernel in another model
    or another process has the same key.  `default`, a schedule of `out` (the one the model builds
    without a record), becomes the task's default config, so the final check keeps a tuned
    schedule only if it beats what the model runs already."""
    import hashlib

    from te.target import parse
    tensors = list(inputs) + [out]
    text = str(te.lower(te.create_schedule([out.op]), tensors, "group"))
    digest = hashlib.sha256(text.encode()).hexdigest()[:24]
    key = (GROUP, (digest,))
    _RECEIVED.setdefault(key, tensors)
    if default is not None and key not in _DEFAULTS:
        steps = tuple(default.steps)
        try:                            # the steps must rebuild the schedule on a fresh one
            te.replay(te.create_schedule([out.op]), list(steps))
            _DEFAULTS[key] = tuple((st.kind, st.stage, st.args) for st in steps)
        except (ValueError, TypeError) as e:
            log.info("%s: the model's default schedule does not replay (%s); the rules' default is used",
                     digest, e)
    return AutoTask(GROUP, (digest,), parse(target))


def dispatch_group(inputs: list, out, target, history) -> tuple[te.Schedule, object] | None:
    """(schedule, record) of a model kernel from a dispatch context's best record of its group
    task, or None when the history has none (the kernel keeps its default schedule)."""
    task = group_task(inputs, out, target)
    cfg = history.query(task)
    if cfg is None:
        return None
    s = te.create_schedule([out.op])         # these tensors: the task may hold an earlier lowering's
    te.replay(s, list(cfg.steps))
    return s, history.used[task.workload_key]


def create_auto_task(func: Callable | str, args, target=None) -> AutoTask:
    """An auto-scheduling task for a registered workload (ConfigError / ValueError on bad input)."""
    from te.target import parse
    name = workload_name(func)
    check_workload_args(name, args)
    task = AutoTask(name, freeze(tuple(args)), parse(target))
    task.tensors                    # a function that does not return tensors fails here
    return task
