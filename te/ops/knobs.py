"""The knob API: config spaces that templates declare and configs that templates read.

It lives in te.ops, beside the templates that use it, so the operator library stands alone;
autotune (which searches these spaces) re-exports it as autotune.space.

A template is a function `template(cfg, *args, target=None) -> (schedule, tensors)` that builds
for `target` (a te Target; None: this machine); the templates of te.ops.registry's
implementations also take `prepacked=True` (the weight as the implementation packs it).  It declares its
knobs with `cfg.define_split / define_reorder / define_knob` and reads them with `cfg[name]`.
The same function runs against three kinds of cfg:

* `ConfigSpace`  - collects the knobs (reads return the defaults, so the template still builds);
* `ConfigEntity` - one point of the space, e.g. from a tuning record;
* `FallbackConfig` - the defaults the template declared: what runs with no tuning at all.

Names follow AutoTVM: XxxSpace holds all options of a knob, XxxEntity one of them, and
`entity.apply(...)` is the one place a config touches a schedule.
"""
from __future__ import annotations

import itertools
import json
import math
import random
from dataclasses import dataclass
from typing import Any, Callable


class ConfigError(ValueError):
    """A config that does not fit its space (unknown knob, bad value)."""


# ---------------------------------------------------------------- entities

@dataclass(frozen=True)
class SplitEntity:
    """Factors of one split, outermost first; -1 (first only) means 'whatever is left'."""
    size: tuple[int, ...]

    def apply(self, s, stage, axis) -> list:
        """Split `axis` of `stage` by these factors; returns the new axes, outermost first."""
        stage = s[stage] if not hasattr(stage, "split") else stage
        axes = []
        for f in reversed(self.size[1:]):
            axis, inner = stage.split(axis, factor=int(f))
            axes.append(inner)
        axes.append(axis)
        return list(reversed(axes))

    def to_json(self):
        return list(self.size)


@dataclass(frozen=True)
class ReorderEntity:
    """A permutation of a list of axes."""
    perm: tuple[int, ...]

    def apply(self, s, stage, axes: list) -> list:
        """Reorder `axes` of `stage` by this permutation; returns them in the new order."""
        stage = s[stage] if not hasattr(stage, "reorder") else stage
        ordered = [axes[i] for i in self.perm]
        stage.reorder(*ordered)
        return ordered

    def to_json(self):
        return list(self.perm)


@dataclass(frozen=True)
class OtherOptionEntity:
    """One value of a plain knob."""
    val: Any

    def to_json(self):
        return self.val


# ---------------------------------------------------------------- spaces (all options of a knob)

MAX_SPLIT_EXTENT = 1 << 31     # the longest axis a split knob takes: its divisors are found by trial
                               # division up to sqrt(extent), about 46k steps at this bound


def divisors(n: int) -> list[int]:
    """The divisors of n >= 1 in increasing order, by trial division up to sqrt(n)."""
    small, large = [], []
    for d in range(1, math.isqrt(n) + 1):
        if n % d == 0:
            small.append(d)
            if d != n // d:
                large.append(n // d)
    return small + large[::-1]


def _factorizations(n: int, parts: int, max_factor: int | None) -> list[tuple[int, ...]]:
    """Every way to write n as a product of `parts` factors, the inner ones at most max_factor."""
    divs = [d for d in divisors(n) if max_factor is None or d <= max_factor]
    out = []

    def rec(rem: int, k: int, acc: tuple):
        if k == 1:
            out.append((rem,) + acc)
            return
        for d in divs:
            if d > rem:
                break
            if rem % d == 0:
                rec(rem // d, k - 1, (d,) + acc)
    rec(n, parts, ())
    return [(-1,) + f[1:] for f in out]


@dataclass
class SplitSpace:
    """All ways to split an extent into num_outputs factors (outer factor implied)."""
    extent: int
    num_outputs: int
    policy: str = "factors"
    max_factor: int | None = None
    candidates: list | None = None

    def __post_init__(self):
        if self.candidates is not None:
            self.entities = [SplitEntity(tuple(c)) for c in self.candidates]
        elif self.policy == "factors":
            self.entities = [SplitEntity(f) for f in
                             _factorizations(self.extent, self.num_outputs, self.max_factor)]
        elif self.policy == "power2":
            pows = [1 << i for i in range(int(math.log2(max(1, self.extent))) + 1)
                    if self.max_factor is None or (1 << i) <= self.max_factor]
            self.entities = [SplitEntity((-1,) + c)
                             for c in itertools.product(pows, repeat=self.num_outputs - 1)
                             if math.prod(c) <= self.extent]
        else:
            raise ConfigError(f"split policy {self.policy!r}: use 'factors', 'power2' or candidates=")
        if not self.entities:
            self.entities = [SplitEntity((-1,) + (1,) * (self.num_outputs - 1))]

    def from_json(self, v) -> SplitEntity:
        e = SplitEntity(tuple(int(x) for x in v))
        if len(e.size) != self.num_outputs:
            raise ConfigError(f"split needs {self.num_outputs} factors, got {list(v)}")
        return e


@dataclass
class ReorderSpace:
    """Orders of n axes: all permutations, or the given candidates."""
    n: int
    candidates: list | None = None

    def __post_init__(self):
        perms = self.candidates or list(itertools.permutations(range(self.n)))
        self.entities = [ReorderEntity(tuple(p)) for p in perms]

    def from_json(self, v) -> ReorderEntity:
        p = tuple(int(x) for x in v)
        if sorted(p) != list(range(self.n)):
            raise ConfigError(f"reorder needs a permutation of 0..{self.n - 1}, got {list(v)}")
        return ReorderEntity(p)


@dataclass
class OtherOptionSpace:
    """A list of plain values."""
    candidates: list

    def __post_init__(self):
        self.entities = [OtherOptionEntity(c) for c in self.candidates]

    def from_json(self, v) -> OtherOptionEntity:
        if v not in self.candidates:
            raise ConfigError(f"value {v!r} is not one of {self.candidates}")
        return OtherOptionEntity(v)


# ---------------------------------------------------------------- configs

class _Config:
    """What templates see: define_* and cfg[name]."""

    def __init__(self):
        self.space_map: dict[str, Any] = {}
        self.defaults: dict[str, Any] = {}

    def _define(self, name: str, space, default) -> None:
        if name not in self.space_map:
            self.space_map[name] = space
            self.defaults[name] = default if default is not None else space.entities[0]

    def define_split(self, name: str, extent: int, num_outputs: int = 2, policy: str = "factors",
                     max_factor: int | None = None, candidates=None, default=None) -> None:
        """A knob that splits an axis of `extent` (1..MAX_SPLIT_EXTENT) into num_outputs factors."""
        extent = int(extent)
        if not 1 <= extent <= MAX_SPLIT_EXTENT:
            raise ConfigError(f"knob {name!r}: cannot split an axis of extent {extent}; split knobs "
                              f"take extents from 1 to {MAX_SPLIT_EXTENT} (2**31): use a smaller workload")
        sp = SplitSpace(extent, num_outputs, policy, max_factor, candidates)
        d = None if default is None else sp.from_json(default)
        self._define(name, sp, d)

    def define_reorder(self, name: str, n: int, candidates=None, default=None) -> None:
        """A knob that picks an order of n axes."""
        sp = ReorderSpace(n, candidates)
        self._define(name, sp, None if default is None else sp.from_json(default))

    def define_knob(self, name: str, candidates: list, default=None) -> None:
        """A knob with a list of plain values."""
        sp = OtherOptionSpace(list(candidates))
        self._define(name, sp, None if default is None else sp.from_json(default))

    def define_constraint(self, why: str, ok: Callable[["ConfigEntity"], bool]) -> None:
        """Configs for which ok(config) is false are not worth a trial (e.g. a register tile
        larger than the register file): the tuners do not propose them.  They still build, so
        a record of one (from an older template or another tool) remains usable."""

    def __getitem__(self, name: str):
        if name not in self.defaults:
            raise ConfigError(f"knob {name!r} is read before it is defined")
        return self.defaults[name]

    @property
    def is_fallback(self) -> bool:
        return False


class ConfigSpace(_Config):
    """All knobs a template declares; index <-> config by mixed radix in definition order.

    len(space) counts every combination; `valid(i)` says whether config i meets the template's
    constraints, and `sample` / `neighbours` only return valid configs (where one exists)."""

    def __init__(self):
        super().__init__()
        self.constraints: list[tuple[str, Callable]] = []
        self._valid: dict[int, bool] = {}

    def define_constraint(self, why: str, ok) -> None:
        if all(w != why for w, _ in self.constraints):
            self.constraints.append((why, ok))

    def valid(self, index: int) -> bool:
        """Does config `index` meet every constraint of the template?"""
        v = self._valid.get(index)
        if v is None:
            cfg = self.get(index)
            v = all(ok(cfg) for _, ok in self.constraints)
            self._valid[index] = v
        return v

    def __len__(self) -> int:
        return math.prod(len(sp.entities) for sp in self.space_map.values())

    def get(self, index: int) -> "ConfigEntity":
        """The config at `index` (0 <= index < len(space))."""
        if not 0 <= index < len(self):
            raise ConfigError(f"config index {index} is outside the space of {len(self)} configs")
        values, rest = {}, index
        for name, sp in self.space_map.items():
            rest, i = divmod(rest, len(sp.entities))
            values[name] = sp.entities[i]
        return ConfigEntity(self, values, index)

    def index_of(self, values: dict) -> int:
        """The index of a config given as {knob: entity}."""
        idx, mult = 0, 1
        for name, sp in self.space_map.items():
            try:
                i = sp.entities.index(values[name])
            except ValueError:
                raise ConfigError(f"knob {name}: {values[name]} is not in its space") from None
            idx += i * mult
            mult *= len(sp.entities)
        return idx

    def default_index(self) -> int:
        """The index of the template's declared defaults (its untuned config)."""
        return self.index_of(self.defaults)

    def default_with(self, knobs: dict) -> "ConfigEntity":
        """The template's defaults with some knobs set, given in their JSON form ({knob: value})."""
        return self.from_json({**self.get(self.default_index()).to_json(), **knobs})

    def from_json(self, data: dict) -> "ConfigEntity":
        """A config from its JSON form ({knob: value}); raises ConfigError if it does not fit."""
        if not isinstance(data, dict):
            raise ConfigError(f"a config must be a JSON object of knobs, got {data!r}")
        missing = set(self.space_map) - set(data)
        extra = set(data) - set(self.space_map)
        if missing or extra:
            raise ConfigError(f"config knobs do not match the template: missing {sorted(missing)}, "
                              f"unknown {sorted(extra)}")
        values = {n: self.space_map[n].from_json(data[n]) for n in self.space_map}
        return ConfigEntity(self, values, self.index_of(values))

    def sample(self, rng: random.Random) -> int:
        """A uniformly random valid index (any index if no valid one turns up in 1000 draws)."""
        i = rng.randrange(len(self))
        for _ in range(1000):
            if self.valid(i):
                return i
            i = rng.randrange(len(self))
        return i

    def dims(self) -> list[int]:
        """The number of options of each knob, in definition order."""
        return [len(sp.entities) for sp in self.space_map.values()]

    def point(self, index: int) -> list[int]:
        """Per-knob option indices of a config index."""
        out, rest = [], index
        for n in self.dims():
            rest, i = divmod(rest, n)
            out.append(i)
        return out

    def index_from_point(self, point: list[int]) -> int:
        """Inverse of point()."""
        idx, mult = 0, 1
        for i, n in zip(point, self.dims()):
            idx += i * mult
            mult *= n
        return idx

    def neighbours(self, index: int, rng: random.Random, n: int = 1) -> list[int]:
        """Configs that differ from `index` in one knob (for local search)."""
        p = self.point(index)
        dims = self.dims()
        movable = [k for k, d in enumerate(dims) if d > 1]
        out = []
        for _ in range(n if movable else 0):
            for _ in range(50):         # a few draws to find a valid neighbour
                q = list(p)
                k = rng.choice(movable)
                q[k] = rng.choice([i for i in range(dims[k]) if i != p[k]])
                j = self.index_from_point(q)
                if self.valid(j):
                    out.append(j)
                    break
        return out


class ConfigEntity(_Config):
    """One point of a space: the template reads these values instead of the defaults."""

    def __init__(self, space: ConfigSpace, values: dict, index: int):
        super().__init__()
        self.space = space
        self.values = dict(values)
        self.index = index

    def _define(self, name, space, default) -> None:
        pass

    def __getitem__(self, name: str):
        try:
            return self.values[name]
        except KeyError:
            raise ConfigError(f"knob {name!r} is not part of this config") from None

    def to_json(self) -> dict:
        """{knob: value} as plain JSON data."""
        return {n: e.to_json() for n, e in self.values.items()}

    def __str__(self) -> str:
        return json.dumps(self.to_json(), separators=(",", ":"))

    __repr__ = __str__


class FallbackConfig(_Config):
    """The template's declared defaults: the untuned schedule."""

    @property
    def is_fallback(self) -> bool:
        return True


# ---------------------------------------------------------------- template registry

TEMPLATES: dict[str, Callable] = {}


def register_template(name: str):
    """Decorator: register `fn(cfg, *args, target=None) -> (schedule, tensors)` as the template `name`."""
    def deco(fn):
        TEMPLATES[name] = fn
        fn.template_name = name
        return fn
    return deco


def get_template(name: str) -> Callable:
    """The template registered under `name`."""
    try:
        return TEMPLATES[name]
    except KeyError:
        raise ConfigError(f"unknown template {name!r}; known: {', '.join(sorted(TEMPLATES))}") from None
