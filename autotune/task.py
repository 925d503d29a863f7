"""Tasks: a template name + its arguments + the target, with a stable workload key."""
from __future__ import annotations

import functools
import inspect
import json
import math
import re
from dataclasses import dataclass, field

import te
from te.expr import DTYPES
from te.ops import registry
from te.ops.knobs import TEMPLATES
from te.ops.registry import freeze
from te.target import Target, parse

from .space import ConfigEntity, ConfigError, ConfigSpace, FallbackConfig, get_template

# The largest integer a workload argument may hold (a dimension, a stride, a padding): a key from
# a log with 1e12 would otherwise make the config space enumerate the divisors of 1e12.  Real
# workloads stay far below it (a 250k-word vocabulary is a large dimension for a model).
MAX_EXTENT = 1 << 20
MAX_ARGS = 16               # arguments of a template, and integers in one list argument
_NAME = re.compile(r"[A-Za-z0-9_]{1,32}")     # a string argument other than a dtype ('max', 'SAME')


def _jsonable(x):
    if isinstance(x, tuple):
        return [_jsonable(v) for v in x]
    return x


def workload_key(name: str, args: tuple) -> str:
    """The string that identifies a workload in logs and dispatch: JSON of [name, args]."""
    return json.dumps([name, _jsonable(args)], separators=(",", ":"))


def parse_workload(key: str) -> tuple[str, tuple]:
    """(template name, args) of a workload key, checked as check_args does; ValueError if unusable."""
    try:
        name, args = json.loads(key)
    except (ValueError, TypeError, RecursionError):
        raise ValueError(f"workload {key[:80]!r} is not a JSON [template, args] pair") from None
    if not isinstance(name, str) or not isinstance(args, list):
        raise ValueError(f"workload {key[:80]!r} is not a [template, args] pair")
    check_args(name, args)
    return name, freeze(args)


def check_args(name: str, args) -> None:
    """Raise ValueError unless `args` suit template (or registered workload) `name`: its parameters,
    integers (not floats) between 1 and MAX_EXTENT (a padding from 0), known dtypes, at most
    MAX_ARGS of anything."""
    from .auto_scheduler.workload import check_workload_args, is_workload
    if is_workload(name):
        return check_workload_args(name, args)
    try:
        fn = get_template(name)
    except ConfigError:
        raise ValueError(f"unknown template {name[:80]!r}") from None
    args = list(args)
    if len(args) > MAX_ARGS:
        raise ValueError(f"{name}: {len(args)} arguments, more than {MAX_ARGS}")
    try:
        bound = inspect.signature(fn).bind(None, *args)
    except TypeError as e:
        raise ValueError(f"{name}: {len(args)} argument(s) do not fit the template ({e})") from None
    sig = inspect.signature(fn).parameters
    params = []                                          # (name, value) of each argument but the config
    for pname, value in list(bound.arguments.items())[1:]:
        if sig[pname].kind is inspect.Parameter.VAR_POSITIONAL:    # a registry view's *args
            params += [(f"{pname}[{i}]", v) for i, v in enumerate(value)]
        else:
            params.append((pname, value))
    for pname, value in params:
        check_arg(name, pname, value)


def check_arg(name: str, pname: str, value) -> None:
    """Raise ValueError unless argument `pname` of template or workload `name` is usable: a
    scalar, or a shape (one level of list) of at most MAX_ARGS of them."""
    items = list(value) if isinstance(value, (list, tuple)) else [value]    # a shape: one level
    why = f"more than {MAX_ARGS} items" if len(items) > MAX_ARGS else ""
    why = why or next((w for w in (_bad_arg(pname, v) for v in items) if w), "")
    if why:
        raise ValueError(f"{name}: argument {pname}={_short_json(value)}: {why}")


def _bad_arg(pname: str, v) -> str:
    """Why one scalar of a workload argument is unusable ('' when it is fine)."""
    if isinstance(v, bool) or not isinstance(v, (int, str)):
        return "expected whole numbers (or a dtype / a name)"
    if isinstance(v, str):
        if pname == "dtype":
            return "" if v in DTYPES else f"unknown dtype; tilewise knows {', '.join(DTYPES)}"
        return "" if _NAME.fullmatch(v) else "not a name (letters, digits, '_', at most 32)"
    low = 0 if pname == "padding" else 1
    if not low <= v <= MAX_EXTENT:
        return f"{v} is outside {low}..{MAX_EXTENT} (autotune.task.MAX_EXTENT)"
    return ""


def _short_json(value) -> str:
    text = json.dumps(_jsonable(value), default=str)
    return text if len(text) <= 60 else text[:57] + "..."


@dataclass(frozen=True)
class Task:
    """One tunable workload: template `name` applied to `args`, for `target`."""
    name: str
    args: tuple
    target: Target = field(compare=False)
    # the fused chain a model runs after this anchor (autotune.epilogue); not part of the
    # workload key: a record is of the anchor's config, whatever chain the candidate was timed with
    epilogue: tuple = field(default=(), compare=False)
    # bytes of weights the model this task comes from holds (frontends.tasks.extract_tasks; 0 for a
    # task made alone): beyond the cores' L3 share, candidates read their weight from copies that
    # hold as much (autotune.call_timing.cold_plan); not part of the workload key either
    model_weight_bytes: int = field(default=0, compare=False)

    @property
    def workload_key(self) -> str:
        return workload_key(self.name, self.args)

    @functools.cached_property
    def config_space(self) -> ConfigSpace:
        """All knobs of the template for these arguments."""
        cfg = ConfigSpace()
        get_template(self.name)(cfg, *self.args, target=self.target)
        return cfg

    @functools.cached_property
    def implementation(self):
        """The te.ops.registry implementation this task builds, or None for a template of its own."""
        return registry.resolve(self.name, self.args, self.target) if registry.has_template(self.name) else None

    def _config(self, config):
        if config is None:
            return FallbackConfig()
        if isinstance(config, int):
            return self.config_space.get(config)
        if isinstance(config, dict):
            return self.config_space.from_json(config)
        return config

    def instantiate(self, config: ConfigEntity | FallbackConfig | dict | int | None = None,
                    prepacked: bool = False, fused: bool = False):
        """(schedule, tensors) for a config (an entity, its JSON, an index, or None for the default);
        `prepacked`: the weight input laid out by the implementation's pack_weight, as a model
        build passes its constants; `fused`: prepacked, and with the task's epilogue fused after
        the anchor, its inputs after the template's (the tuner's builders build candidates so)."""
        config = self._config(config)
        if fused and self.epilogue and self.implementation is not None:
            from .epilogue import instantiate_fused
            impl = self.implementation
            return instantiate_fused(impl, impl.workload(self.args), config, self.target, self.epilogue)
        if (prepacked or fused) and self.implementation is not None:
            return self.implementation.instantiate(config, self.args, self.target, prepacked=True)
        return get_template(self.name)(config, *self.args, target=self.target)

    def pack_weight(self, w, config=None):
        """The logical weight w as the prepacked kernel of `config` reads it (w itself where the
        implementation reads it as it is)."""
        impl = self.implementation
        if impl is None or not impl.packs_weight:
            return w
        wl = impl.workload(self.args)
        return impl.pack_weight(w, wl, impl.config(wl, self.target, self._config(config)), self.target)

    def build(self, config=None) -> te.Kernel:
        """Compile with `config`; with None, the best record of the active dispatch context or the default."""
        if config is None:
            from .dispatch import current_config
            config = current_config(self)
        s, tensors = self.instantiate(config)
        return te.build(s, tensors, target=self.target, name=_symbol(self.name))

    @functools.cached_property
    def flops(self) -> float:
        """Arithmetic operations of one run (multiply-add counts 2; integer ones too), from the compute definitions."""
        _, tensors = self.instantiate(None)
        return count_flops(tensors)

    def arg_specs(self) -> list[tuple[tuple, str]]:
        """(shape, dtype) of each argument, in order."""
        _, tensors = self.instantiate(None)
        return [(t.shape, t.dtype) for t in tensors]

    @property
    def module(self) -> str | None:
        """The module that registers the template, for a worker to import (None for __main__)."""
        mod = getattr(get_template(self.name), "__module__", None)
        return mod if mod and mod != "__main__" else None

    dag = None                      # a template is rebuilt from its name; no compute DAG to send

    def __str__(self) -> str:
        return f"{self.name}{self.args}"


def _symbol(name: str) -> str:
    return "tw_" + "".join(c if c.isalnum() else "_" for c in name)


def create_task(name, args, target=None, epilogue=()):
    """A task for the registered template `name` with these arguments (target: this CPU by default);
    ValueError for arguments no template call should see (see check_args).  `epilogue`: the chain a
    model fuses after the anchor (autotune.epilogue), which candidates are timed with.  A function
    registered with @autotune.register_workload (or its name) gives an auto-scheduling task instead."""
    from .auto_scheduler.workload import create_auto_task, is_workload
    if callable(name) or (isinstance(name, str) and name not in TEMPLATES and is_workload(name)):
        return create_auto_task(name, args, target)
    get_template(name)
    check_args(name, args)
    from .epilogue import check_epilogue
    task = Task(name, freeze(tuple(args)), parse(target), check_epilogue(epilogue))
    task.implementation             # a template of the registry that does not apply fails here
    return task


def count_flops(tensors) -> float:
    """Arithmetic of the compute stages reachable from the tensors (reductions count per element);
    an op whose attrs declare "flops" counts that for itself and everything it reads."""
    from te.expr import BinOp, BinOpKind, Call, Reduce, TensorLoad, children, walk
    seen, total = set(), 0.0
    todo = [t.op for t in tensors]
    while todo:
        op = todo.pop()
        if id(op) in seen or not isinstance(op, te.ComputeOp):
            continue
        seen.add(id(op))
        if "flops" in getattr(op, "attrs", {}):      # declared by the op (e.g. a Winograd conv:
            total += op.attrs["flops"]                # the direct conv's count, as TVM reports it)
            continue
        todo.extend(t.op for t in op.input_tensors)
        for body in op.body:
            n_red = 1
            inner = body
            if isinstance(body, Reduce):
                n_red = math.prod(a.dom[1] for a in body.axis)
                inner = body.source
            # the values' arithmetic, float or integer (an int8 GEMM's widened multiply-add counts
            # as a float one does); not the index arithmetic inside the loads
            ops = sum(1 for x in walk(inner, kids=lambda e: () if isinstance(e, TensorLoad) else children(e))
                      if (isinstance(x, BinOp) and x.dtype != "bool"
                          and x.op in (BinOpKind.ADD, BinOpKind.SUB, BinOpKind.MUL,
                                       BinOpKind.DIV, BinOpKind.MAX, BinOpKind.MIN))
                      or isinstance(x, Call))
            if isinstance(body, Reduce):
                ops += 1      # the combine
            total += math.prod(op.shape) * n_red * ops
    return total
