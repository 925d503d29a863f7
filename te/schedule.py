"""Schedules: stages, the primitives that reshape their loops, and the recorded steps.

Names and argument orders follow TVM: `split` returns (outer, inner), `reorder` lists the
outermost loop first, `compute_at(parent_stage, axis)`.  Every primitive checks its inputs
and raises ScheduleError (naming the stage, the axis and the reason) before anything is
compiled, and appends a Step so a schedule can be printed, hashed and replayed.  The
primitives that add a stage (cache_write, cache_read, rfactor) are in te/dataflow.py.
"""
from __future__ import annotations

import enum
import hashlib
import json
from dataclasses import dataclass, field

from .expr import Var
from .tensor import ComputeOp, IterKind, IterVar, Operation, PlaceholderOp, Tensor


class ScheduleError(ValueError):
    """An invalid schedule: names the stage, the axis and the reason."""


class ForKind(enum.Enum):
    SERIAL = "serial"
    PARALLEL = "parallel"
    VECTORIZED = "vectorized"
    UNROLLED = "unrolled"


class AttachType(enum.Enum):
    ROOT = "root"
    INLINE = "inline"
    SCOPE = "scope"


@dataclass(frozen=True)
class Split:
    parent: IterVar
    outer: IterVar
    inner: IterVar
    factor: int | None
    nparts: int | None


@dataclass(frozen=True)
class Fuse:
    outer: IterVar
    inner: IterVar
    fused: IterVar


@dataclass(frozen=True)
class Step:
    """One primitive applied to one stage; axis arguments are kept by name so steps replay."""
    kind: str
    stage: str
    args: tuple

    def __str__(self) -> str:
        return f"s[{self.stage}].{self.kind}({', '.join(map(str, self.args))})"

    def to_json(self) -> list:
        return [self.kind, self.stage, list(self.args)]


@dataclass(eq=False)
class Stage:
    """The schedule of one operation: its loop structure and where it is computed."""
    op: Operation
    schedule: "Schedule"
    name: str
    origin_op: Operation | None = None
    leaf_iter_vars: list[IterVar] = field(default_factory=list)
    all_iter_vars: list[IterVar] = field(default_factory=list)
    relations: list = field(default_factory=list)
    iter_attrs: dict = field(default_factory=dict)          # IterVar -> ForKind
    pragmas: dict = field(default_factory=dict)             # IterVar -> [(key, value)]
    attach_type: AttachType = AttachType.ROOT
    attach_stage: "Stage | None" = None
    attach_ivar: IterVar | None = None
    is_output: bool = False
    scope: str = "global"

    def __post_init__(self):
        self.axis_names: dict = {}          # IterVar -> a name unique in this stage (for steps)
        if isinstance(self.op, ComputeOp):
            self.leaf_iter_vars = list(self.op.axis) + list(self.op.reduce_axis)
            self.all_iter_vars = list(self.leaf_iter_vars)
            for iv in self.all_iter_vars:
                self._name(iv)

    def _name(self, iv: IterVar) -> str:
        """The stage-unique name of an axis (two reduce axes may both be called 'rv')."""
        name = self.axis_names.get(iv)
        if name is None:
            taken = set(self.axis_names.values())
            name, n = iv.name, 1
            while name in taken:
                name, n = f"{iv.name}#{n}", n + 1
            self.axis_names[iv] = name
        return name

    def __repr__(self) -> str:
        return f"Stage({self.name})"

    # ------------------------------------------------------------- helpers
    def _error(self, msg: str) -> ScheduleError:
        return ScheduleError(f"stage {self.name}: {msg}")

    def _check_compute(self, prim: str) -> None:
        if not isinstance(self.op, ComputeOp):
            raise self._error(f"{prim} needs a compute stage; {self.name} is a placeholder (an input)")

    def _leaf(self, iv, prim: str) -> IterVar:
        self._check_compute(prim)
        if not isinstance(iv, IterVar):
            raise self._error(f"{prim}: expected an axis (IterVar), got {iv!r}")
        if iv in self.leaf_iter_vars:
            return iv
        owner = self.schedule._owner_of(iv)
        if owner is not None and owner is not self:
            raise self._error(f"{prim}: axis {iv.name} belongs to stage {owner.name}, not to {self.name}")
        if iv in self.all_iter_vars:
            raise self._error(f"{prim}: axis {iv.name} was already split or fused; use the axes it returned")
        raise self._error(f"{prim}: axis {iv.name} is not an axis of this stage")

    def _record(self, kind: str, *args) -> None:
        self.schedule.steps.append(Step(kind, self.name, tuple(args)))

    def _new_iv(self, name: str, kind: IterKind) -> IterVar:
        taken = {v.name for v in self.all_iter_vars}
        base, n = name, 1
        while name in taken:
            name = f"{base}{n}"
            n += 1
        iv = IterVar(Var(name), None, kind)
        self.all_iter_vars.append(iv)
        self._name(iv)
        return iv

    def leaf_of(self, iv: IterVar) -> IterVar:
        """The leaf loop whose body is the body of axis iv (after later splits and fuses)."""
        while iv not in self.leaf_iter_vars:
            nxt = None
            for rel in self.relations:
                if isinstance(rel, Split) and rel.parent is iv:
                    nxt = rel.inner
                elif isinstance(rel, Fuse) and iv in (rel.outer, rel.inner):
                    nxt = rel.fused
            if nxt is None:
                raise self._error(f"axis {iv.name} is not a loop of this stage")
            iv = nxt
        return iv

    def _touch(self, prim: str) -> None:
        if self.attach_type is AttachType.INLINE:
            raise self._error(f"{prim}: the stage was compute_inline'd and has no loops of its own")

    # ------------------------------------------------------------- loop primitives
    def split(self, parent: IterVar, factor: int | None = None, nparts: int | None = None):
        """Split an axis into (outer, inner); inner has `factor` iterations (or outer has `nparts`)."""
        self._touch("split")
        parent = self._leaf(parent, "split")
        if (factor is None) == (nparts is None):
            raise self._error(f"split of {parent.name}: give exactly one of factor= or nparts=")
        n = factor if factor is not None else nparts
        if hasattr(n, "__index__") and not isinstance(n, bool):
            n = int(n.__index__())
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise self._error(f"split of {parent.name}: factor/nparts must be a positive int, got {n!r}")
        outer = self._new_iv(f"{parent.name}.outer", parent.kind)
        inner = self._new_iv(f"{parent.name}.inner", parent.kind)
        self.relations.append(Split(parent, outer, inner, factor, nparts))
        i = self.leaf_iter_vars.index(parent)
        self.leaf_iter_vars[i:i + 1] = [outer, inner]
        self._record("split", self._name(parent), "factor" if factor is not None else "nparts", n)
        return outer, inner

    def tile(self, x_parent: IterVar, y_parent: IterVar, x_factor: int, y_factor: int):
        """Tile two axes: returns (x_outer, y_outer, x_inner, y_inner), in that loop order."""
        xo, xi = self.split(x_parent, factor=x_factor)
        yo, yi = self.split(y_parent, factor=y_factor)
        self.reorder(xo, yo, xi, yi)
        return xo, yo, xi, yi

    def reorder(self, *order: IterVar) -> None:
        """Reorder leaf axes: the given axes take the positions they held, outermost first."""
        self._touch("reorder")
        if len(order) == 1 and isinstance(order[0], (list, tuple)):
            order = tuple(order[0])
        ivs = [self._leaf(iv, "reorder") for iv in order]
        if len(set(map(id, ivs))) != len(ivs):
            raise self._error("reorder: an axis is listed twice: " + ", ".join(i.name for i in ivs))
        positions = sorted(self.leaf_iter_vars.index(iv) for iv in ivs)
        for pos, iv in zip(positions, ivs):
            self.leaf_iter_vars[pos] = iv
        self._record("reorder", *[self._name(iv) for iv in ivs])

    def fuse(self, *axes: IterVar) -> IterVar:
        """Fuse adjacent axes (outermost first) into one."""
        self._touch("fuse")
        if len(axes) == 1 and isinstance(axes[0], (list, tuple)):
            axes = tuple(axes[0])
        if len(axes) < 2:
            raise self._error("fuse needs at least two axes")
        ivs = [self._leaf(iv, "fuse") for iv in axes]
        names = [self._name(iv) for iv in ivs]
        pos = [self.leaf_iter_vars.index(iv) for iv in ivs]
        if pos != list(range(pos[0], pos[0] + len(pos))):
            order = ", ".join(v.name for v in self.leaf_iter_vars)
            raise self._error(f"fuse({', '.join(names)}): the axes are not adjacent and in order "
                              f"(current loop order: {order}); reorder them first")
        if len({iv.kind for iv in ivs}) != 1:
            raise self._error(f"fuse({', '.join(names)}): cannot fuse a reduction axis with a data axis")
        fused = ivs[0]
        for iv in ivs[1:]:
            new = self._new_iv(f"{fused.name}.{iv.name}.fused", iv.kind)
            self.relations.append(Fuse(fused, iv, new))
            i = self.leaf_iter_vars.index(fused)
            self.leaf_iter_vars[i:i + 2] = [new]
            fused = new
        self._record("fuse", *names)
        return fused

    def _annotate(self, iv: IterVar, kind: ForKind, prim: str) -> None:
        self._touch(prim)
        iv = self._leaf(iv, prim)
        if iv.kind is IterKind.REDUCE and kind in (ForKind.PARALLEL, ForKind.VECTORIZED):
            raise self._error(f"{prim}: {iv.name} is a reduction axis; its iterations all write the "
                              "same element, so they cannot run in parallel lanes or threads")
        old = self.iter_attrs.get(iv)
        if old is not None and old is not kind:
            raise self._error(f"{prim}: axis {iv.name} is already marked {old.value}")
        self.iter_attrs[iv] = kind
        self._record(prim, self._name(iv))

    def vectorize(self, iv: IterVar) -> None:
        """Run the loop as SIMD lanes (explicit LLVM vectors); its extent must be a constant."""
        self._annotate(iv, ForKind.VECTORIZED, "vectorize")

    def unroll(self, iv: IterVar) -> None:
        """Unroll the loop completely in the generated IR."""
        self._annotate(iv, ForKind.UNROLLED, "unroll")

    def parallel(self, iv: IterVar) -> None:
        """Run the loop's iterations on the OpenMP thread pool."""
        self._annotate(iv, ForKind.PARALLEL, "parallel")

    def pragma(self, iv: IterVar, key: str, value=None) -> None:
        """Attach an annotation (key, value) to a loop; kept in the loop IR for later passes."""
        self._touch("pragma")
        iv = self._leaf(iv, "pragma")
        self.pragmas.setdefault(iv, []).append((str(key), value))
        self._record("pragma", self._name(iv), str(key), value)

    def tensorize(self, iv: IterVar, intrin: str) -> None:
        """Compute the loop nest under iv with a tensor intrinsic (te/tensorize.py: "vpdpbusd",
        "amx", ...); lowering checks the nest is what the intrinsic computes, codegen emits it."""
        from .tensorize import get
        self._check_compute("tensorize")
        get(intrin)                         # a ScheduleError naming the known intrinsics
        self.pragma(iv, "tensorize", intrin)

    # ------------------------------------------------------------- placement primitives
    def compute_at(self, parent: "Stage", iv: IterVar) -> None:
        """Compute this stage inside loop `iv` of the consuming stage `parent`."""
        self._check_compute("compute_at")
        if not isinstance(parent, Stage):
            raise self._error(f"compute_at: expected a stage (s[T]), got {parent!r}")
        if self.is_output:
            raise self._error("compute_at: an output stage must stay at the root")
        if parent is self:
            raise self._error("compute_at: a stage cannot be computed inside itself")
        if iv not in parent.leaf_iter_vars:
            owner = self.schedule._owner_of(iv)
            where = f"it belongs to stage {owner.name}" if owner else "it is not an axis of the schedule"
            raise self._error(f"compute_at: axis {getattr(iv, 'name', iv)} is not a loop of stage "
                              f"{parent.name} ({where})")
        if not self.schedule._depends(parent, self):
            raise self._error(f"compute_at: stage {parent.name} does not read {self.name}; a stage can "
                              "only be computed inside a loop of a stage that consumes it")
        s = parent
        while s is not None:
            if s is self:
                raise self._error(f"compute_at: {parent.name} is itself computed inside {self.name}")
            s = s.attach_stage
        self.attach_type, self.attach_stage, self.attach_ivar = AttachType.SCOPE, parent, iv
        self._record("compute_at", parent.name, parent._name(iv))

    def compute_inline(self) -> None:
        """Substitute this stage's expression into its consumers; it gets no buffer or loops."""
        self._check_compute("compute_inline")
        if self.is_output:
            raise self._error("compute_inline: an output stage cannot be inlined")
        if self.op.reduce_axis:
            raise self._error("compute_inline: a reduction cannot be inlined; use compute_at")
        if self.relations or self.iter_attrs:
            raise self._error("compute_inline: the stage already has loop primitives applied")
        for st in self.schedule.stages:
            if st.attach_stage is self:
                raise self._error(f"compute_inline: stage {st.name} is computed at this stage")
        self.attach_type, self.attach_stage, self.attach_ivar = AttachType.INLINE, None, None
        self._record("compute_inline")

    def rfactor(self, axis: IterVar, factor_axis: int = 0) -> Tensor:
        """s[C].rfactor(ki) is s.rfactor(C, ki): partial reductions over axis ki in a new stage."""
        return self.schedule.rfactor(self.op.output(0), axis, factor_axis)

    def compute_root(self) -> None:
        """Compute this stage at the root, in its own loop nest (the default)."""
        self._check_compute("compute_root")
        self.attach_type, self.attach_stage, self.attach_ivar = AttachType.ROOT, None, None
        self._record("compute_root")


class Schedule:
    """The schedule of a set of output operations and everything they read."""

    def __init__(self, outputs: list[Operation]):
        self.outputs = list(outputs)
        self.steps: list[Step] = []
        self.stages: list[Stage] = []
        self.stage_map: dict[Operation, Stage] = {}
        names: set[str] = set()
        for op in topo_order(self.outputs):
            name, n = op.name, 1
            while name in names:
                name, n = f"{op.name}_{n}", n + 1
            names.add(name)
            st = Stage(op, self, name)
            st.is_output = op in self.outputs
            self.stages.append(st)
            self.stage_map[op] = st

    def __getitem__(self, t) -> Stage:
        op = t.op if isinstance(t, Tensor) else t
        st = self.stage_map.get(op)
        if st is None:
            raise ScheduleError(f"{getattr(op, 'name', op)!r} is not part of this schedule "
                                f"(stages: {', '.join(s.name for s in self.stages)})")
        return st

    def stage(self, name: str) -> Stage:
        """Look a stage up by name."""
        for st in self.stages:
            if st.name == name:
                return st
        raise ScheduleError(f"no stage named {name!r} (stages: {', '.join(s.name for s in self.stages)})")

    def _owner_of(self, iv: IterVar) -> Stage | None:
        for st in self.stages:
            if iv in st.all_iter_vars:
                return st
        return None

    def _reads(self, consumer: Stage, producer: Stage) -> bool:
        """Does consumer read producer, directly or through inlined stages?"""
        todo = [t.op for t in consumer.op.input_tensors]
        seen = set()
        while todo:
            op = todo.pop()
            if id(op) in seen:
                continue
            seen.add(id(op))
            st = self.stage_map.get(op)
            if st is producer:
                return True
            if st is not None and st.attach_type is AttachType.INLINE:
                todo.extend(t.op for t in st.op.input_tensors)
        return False

    def _depends(self, consumer: Stage, producer: Stage) -> bool:
        """Does consumer read producer through any chain of stages?  (A stage may be computed at a
        loop of a later consumer when the stages between are computed at the same loop.)"""
        todo, seen = [consumer.op], set()
        while todo:
            op = todo.pop()
            if id(op) in seen or not hasattr(op, "input_tensors"):
                continue
            seen.add(id(op))
            for t in op.input_tensors:
                st = self.stage_map.get(t.op)
                if st is producer:
                    return True
                if st is not None:
                    todo.append(st.op)
        return False

    # ------------------------------------------------------------- dataflow rewrites (te/dataflow.py)
    def cache_write(self, tensor: Tensor, scope: str = "local", order: tuple | None = None) -> Tensor:
        """Compute `tensor` into a new cache stage; the original stage becomes a copy out of it.

        `order` (a permutation of the axis positions) lays the cache out with its axes in that
        order (Ansor's layout rewrite): a conv's NCHW accumulators as N, H, W, C, so a vector of
        output channels is contiguous in the cache."""
        from . import dataflow      # it builds on Stage and Step: imported when first used
        return dataflow.cache_write(self, tensor, scope, order)

    def rfactor(self, tensor: Tensor, axis: IterVar, factor_axis: int = 0) -> Tensor:
        """Factor reduction axis `axis` out of `tensor`'s reduction into a new stage (TVM's rfactor).

        The new stage (named `<stage>.rf`, then .rf2, ...) holds partial reductions with `axis` as a data axis,
        at position `factor_axis` of its shape; the original stage then reduces over that axis
        only.  `axis` is a reduction axis of the stage or a part of one from a split, and the
        split of that axis is the only primitive applied to the stage before.  Returns the new
        stage's tensor."""
        from . import dataflow      # it builds on Stage and Step: imported when first used
        return dataflow.rfactor(self, tensor, axis, factor_axis)

    def cache_read(self, tensor: Tensor, scope: str, readers: list, panel: int = 0, axis: int = -1) -> Tensor:
        """Copy `tensor` into a new stage read by `readers` instead of the original.

        panel > 0 lays the copy out in column panels, as a GEMM packs B: (..., K, N) becomes
        (..., N / panel, K, panel), a panel's columns contiguous over the whole of K, and the
        readers' loads [..., k, j] become [..., j // panel, k, j % panel].  `axis` names another
        axis to pack in panels: its blocks take its place and its panel is innermost, as a conv
        template packs OIHW weights: axis 0 of (K, C, R, S) gives (K / panel, C, R, S, panel)."""
        from . import dataflow      # it builds on Stage and Step: imported when first used
        return dataflow.cache_read(self, tensor, scope, readers, panel, axis)

    # ------------------------------------------------------------- printing, hashing, replay
    def __str__(self) -> str:
        return "\n".join(str(s) for s in self.steps) or "(default schedule)"

    def to_json(self) -> list:
        """The steps as plain JSON data."""
        return [s.to_json() for s in self.steps]

    def hash(self) -> str:
        """A stable hash of the steps."""
        return hashlib.sha256(json.dumps(self.to_json(), default=str).encode()).hexdigest()[:16]


def topo_order(outputs: list[Operation]) -> list[Operation]:
    """Every operation the outputs are computed from, themselves included, producers first."""
    order: list[Operation] = []
    state: dict[int, int] = {}

    def visit(op: Operation) -> None:
        st = state.get(id(op))
        if st == 2:
            return
        if st == 1:
            raise ScheduleError(f"cycle through {op.name}")
        state[id(op)] = 1
        for t in op.input_tensors:
            visit(t.op)
        state[id(op)] = 2
        order.append(op)

    for op in outputs:
        visit(op)
    return order


def create_schedule(ops) -> Schedule:
    """A default schedule (every stage at the root, loops in axis order) for the given outputs."""
    if not isinstance(ops, (list, tuple)):
        ops = [ops]
    ops = [o.op if isinstance(o, Tensor) else o for o in ops]
    for o in ops:
        if not isinstance(o, Operation):
            raise TypeError(f"create_schedule expects operations or tensors, got {o!r}")
        if isinstance(o, PlaceholderOp):
            raise ScheduleError(f"{o.name} is a placeholder; schedule the compute that produces the output")
    return Schedule(ops)


def replay(sch: Schedule, steps: list) -> Schedule:
    """Apply recorded steps (Step objects or their JSON form) to a fresh schedule of the same ops."""
    for st in steps:
        kind, stage_name, args = (st.kind, st.stage, st.args) if isinstance(st, Step) else st
        stage = sch.stage(stage_name)

        def ax(name, stage=stage):
            for iv, unique in stage.axis_names.items():
                if unique == name:
                    return iv
            raise ScheduleError(f"replay: stage {stage.name} has no axis named {name!r}")
        if kind == "split":
            parent, how, n = args
            stage.split(ax(parent), **{how: n})
        elif kind == "reorder":
            stage.reorder(*[ax(a) for a in args])
        elif kind == "fuse":
            stage.fuse(*[ax(a) for a in args])
        elif kind in ("vectorize", "unroll", "parallel"):
            getattr(stage, kind)(ax(args[0]))
        elif kind == "pragma":
            stage.pragma(ax(args[0]), args[1], args[2])
        elif kind == "compute_at":
            parent = sch.stage(args[0])
            stage.compute_at(parent, ax(args[1], parent))
        elif kind in ("compute_inline", "compute_root"):
            getattr(stage, kind)()
        elif kind == "cache_write":
            sch.cache_write(stage.op.output(0), args[0], *args[1:2])
        elif kind == "rfactor":
            sch.rfactor(stage.op.output(0), ax(args[0]), args[1])
        elif kind == "cache_read":
            sch.cache_read(stage.op.output(0), args[0], [sch.stage(n).op for n in args[1]], *args[2:4])
        else:
            raise ScheduleError(f"replay: unknown step {kind!r}")
    return sch
