"""Schedules: stages, the primitives that reshape their loops, and the recorded steps.

Names and argument orders follow TVM: `split` returns (outer, inner), `reorder` lists the
outermost loop first, `compute_at(parent_stage, axis)`.  Every primitive checks its inputs
and raises ScheduleError (naming the stage, the axis and the reason) before anything is
compiled, and appends a Step so a schedule can be printed, hashed and replayed.
"""
from __future__ import annotations

import enum
import hashlib
import json
from dataclasses import dataclass, field

from .expr import Logic, LogicKind, Reduce, TensorLoad, Var, substitute, transform
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
        for op in _topo_order(self.outputs):
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

    # ------------------------------------------------------------- caches
    def cache_write(self, tensor: Tensor, scope: str = "local", order: tuple | None = None) -> Tensor:
        """Compute `tensor` into a new cache stage; the original stage becomes a copy out of it.

        `order` (a permutation of the axis positions) lays the cache out with its axes in that
        order (Ansor's layout rewrite): a conv's NCHW accumulators as N, H, W, C, so a vector of
        output channels is contiguous in the cache."""
        st = self[tensor]
        nd = len(tensor.shape)
        if order is not None:
            order = tuple(order)
            if sorted(order) != list(range(nd)) or any(isinstance(d, bool) for d in order):
                raise st._error(f"cache_write: order={order!r} must be a permutation of 0..{nd - 1}")
            if order == tuple(range(nd)):
                order = None
        st._check_compute("cache_write")
        if st.relations or st.iter_attrs or any(s.attach_stage is st for s in self.stages):
            raise st._error("cache_write must come before any other primitive on the stage")
        if st.op.num_outputs != 1:
            raise st._error("cache_write of a multi-output stage is not supported")
        old: ComputeOp = st.op
        perm = order or tuple(range(nd))
        cache_axis = tuple(IterVar(Var(f"{old.axis[d].name}.c"), old.axis[d].dom, old.axis[d].kind) for d in perm)
        vmap = {old.axis[d].var: c.var for d, c in zip(perm, cache_axis)}
        body = tuple(substitute(b, vmap) for b in old.body)
        cache_op = ComputeOp(f"{old.name}.{scope}", tuple(old.shape[d] for d in perm), cache_axis, body,
                             old.tag, old.attrs)
        cache_t = cache_op.output(0)
        copy_op = ComputeOp(old.name, old.shape, old.axis,
                            (cache_t[tuple(old.axis[d].var for d in perm)],), old.tag, old.attrs)
        cache_st = Stage(cache_op, self, cache_op.name, scope=scope)
        st.origin_op = st.origin_op or old
        st.op = copy_op
        st.leaf_iter_vars = list(copy_op.axis)
        st.all_iter_vars = list(copy_op.axis)
        self.stage_map[copy_op] = st
        self.stage_map[cache_op] = cache_st
        self.stages.insert(self.stages.index(st), cache_st)
        self.steps.append(Step("cache_write", st.name, (scope,) + ((perm,) if order else ())))
        return cache_t

    def rfactor(self, tensor: Tensor, axis: IterVar, factor_axis: int = 0) -> Tensor:
        """Factor reduction axis `axis` out of `tensor`'s reduction into a new stage (TVM's rfactor).

        The new stage (named `<stage>.rf`, then .rf2, ...) holds partial reductions with `axis` as a data axis,
        at position `factor_axis` of its shape; the original stage then reduces over that axis
        only.  `axis` is a reduction axis of the stage or a part of one from a split, and the
        split of that axis is the only primitive applied to the stage before.  Returns the new
        stage's tensor."""
        st = self[tensor]
        st._check_compute("rfactor")
        old: ComputeOp = st.op
        if old.num_outputs != 1 or not isinstance(old.body[0], Reduce):
            raise st._error("rfactor needs a stage whose body is one reduction (te.sum, te.max, ...)")
        iv = st._leaf(axis, "rfactor")
        if iv.kind is not IterKind.REDUCE:
            raise st._error(f"rfactor: {iv.name} is a data axis; give a reduction axis (or a part of one)")
        splits = [r for r in st.relations if isinstance(r, Split)]
        if (len(splits) != len(st.relations) or len(splits) > 1 or st.iter_attrs or st.pragmas
                or any(sp.parent.kind is not IterKind.REDUCE for sp in splits)
                or any(s.attach_stage is st for s in self.stages) or st.attach_type is not AttachType.ROOT):
            raise st._error("rfactor must come right after the split of its reduction axis, before any "
                            "other primitive on the stage")
        red: Reduce = old.body[0]
        if splits:
            sp = splits[0]
            if iv not in (sp.outer, sp.inner) or sp.parent not in old.reduce_axis:
                raise st._error(f"rfactor: {iv.name} is not a part of the split reduction axis")
            root, total = sp.parent, sp.parent.dom[1]
            inner_ext = sp.factor if sp.factor is not None else -(-total // sp.nparts)
            outer_ext = -(-total // inner_ext)
            factored, kept = (sp.inner, sp.outer) if iv is sp.inner else (sp.outer, sp.inner)
            ext = {sp.inner: inner_ext, sp.outer: outer_ext}
        else:
            root, total = iv, iv.dom[1]
            factored, kept, ext = iv, None, {iv: total}
        nd = len(old.shape)
        if isinstance(factor_axis, bool) or not isinstance(factor_axis, int) or not 0 <= factor_axis <= nd:
            raise st._error(f"rfactor: factor_axis must be an int in 0..{nd}, got {factor_axis!r}")
        # the partial stage: data axes = the stage's axes with the factored axis inserted
        data = [IterVar(Var(a.name), a.dom, IterKind.DATA_PAR) for a in old.axis]
        f_iv = IterVar(Var(_axis_label(st, factored)), (0, ext[factored]), IterKind.DATA_PAR)
        data.insert(factor_axis, f_iv)
        others = [IterVar(Var(a.name), a.dom, IterKind.REDUCE) for a in old.reduce_axis if a is not root]
        vmap = {a.var: d.var for a, d in zip(old.axis, data[:factor_axis] + data[factor_axis + 1:])}
        vmap.update({a.var: o.var for a, o in zip([a for a in old.reduce_axis if a is not root], others)})
        cond = red.condition
        if kept is None:
            value = f_iv.var + root.dom[0] if root.dom[0] else f_iv.var
            raxes = list(others)
        else:
            k_iv = IterVar(Var(_axis_label(st, kept)), (0, ext[kept]), IterKind.REDUCE)
            o_var, i_var = (k_iv.var, f_iv.var) if factored is sp.inner else (f_iv.var, k_iv.var)
            value = o_var * inner_ext + i_var
            if inner_ext * outer_ext > total:          # the split does not divide: skip the overhang
                bound = value < total
                cond = bound if cond is None else Logic(LogicKind.AND, cond, bound)
            if root.dom[0]:
                value = value + root.dom[0]
            pos = [a for a in old.reduce_axis].index(root)
            raxes = others[:pos] + [k_iv] + others[pos:]     # where the split axis was
        vmap[root.var] = value
        source = substitute(red.source, vmap)
        cond = None if cond is None else substitute(cond, vmap)
        shape = tuple(data[d].dom[1] for d in range(nd + 1))
        rf_body = Reduce(red.combiner, source, tuple(raxes), cond, red.dtype) if raxes else source
        # a second rfactor of the stage (partial lanes folded again) gets .rf2, ...: replay finds stages by name
        taken = {x.name for x in self.stages}
        rf_name = next(n for n in [f"{old.name}.rf"] + [f"{old.name}.rf{k}" for k in range(2, len(taken) + 2)]
                       if n not in taken)
        rf_op = ComputeOp(rf_name, shape, tuple(data), (rf_body,), old.tag)
        rf_t = rf_op.output(0)
        # the original stage: a reduction of the partial results over the factored axis
        rv = IterVar(Var(f"{f_iv.name}.v"), (0, ext[factored]), IterKind.REDUCE)
        idx = [a.var for a in old.axis]
        idx.insert(factor_axis, rv.var)
        new_op = ComputeOp(old.name, old.shape, old.axis,
                           (Reduce(red.combiner, rf_t[tuple(idx)], (rv,), None, red.dtype),),
                           old.tag, old.attrs)
        name = st._name(iv)
        st.origin_op = st.origin_op or old
        st.op = new_op
        st.relations = []
        st.leaf_iter_vars = list(new_op.axis) + list(new_op.reduce_axis)
        st.all_iter_vars = list(st.leaf_iter_vars)
        st.axis_names = {}
        for a in st.all_iter_vars:
            st._name(a)
        self.stage_map[new_op] = st
        rf_st = Stage(rf_op, self, rf_op.name)
        self.stage_map[rf_op] = rf_st
        self.stages.insert(self.stages.index(st), rf_st)
        self.steps.append(Step("rfactor", st.name, (name, factor_axis)))
        return rf_t

    def cache_read(self, tensor: Tensor, scope: str, readers: list, panel: int = 0, axis: int = -1) -> Tensor:
        """Copy `tensor` into a new stage read by `readers` instead of the original.

        panel > 0 lays the copy out in column panels, as a GEMM packs B: (..., K, N) becomes
        (..., N / panel, K, panel), a panel's columns contiguous over the whole of K, and the
        readers' loads [..., k, j] become [..., j // panel, k, j % panel].  `axis` names another
        axis to pack in panels: its blocks take its place and its panel is innermost, as a conv
        template packs OIHW weights: axis 0 of (K, C, R, S) gives (K / panel, C, R, S, panel)."""
        src = self[tensor]
        nd = len(tensor.shape)
        if isinstance(axis, bool) or not isinstance(axis, int) or not -nd <= axis < nd:
            raise ScheduleError(f"cache_read of {src.name}: axis={axis!r} must be an axis of its "
                                f"{nd} axes (-{nd}..{nd - 1})")
        axis %= nd
        reader_stages = [self[r] for r in readers]
        for rs in reader_stages:
            if not any(t.op is tensor.op for t in getattr(rs.op, "input_tensors", [])):
                raise rs._error(f"cache_read: stage {rs.name} does not read {src.name}; list only its readers")
        shape = tensor.shape
        if panel and (isinstance(panel, bool) or not isinstance(panel, int) or panel < 0 or len(shape) < 2
                      or shape[axis] % panel):
            which = "last axis" if axis == nd - 1 else f"axis {axis}"
            raise ScheduleError(f"cache_read of {src.name}: panel={panel!r} must be a positive int dividing "
                                f"its {which} (shape {tuple(shape)}, 2 axes or more)")
        # where the blocks of the panel axis go: its own place, or before the axis it follows
        # when it is the last (a GEMM's B: (..., N / panel, K, panel))
        block = min(axis, nd - 2)
        others = [d for d in range(nd) if d != axis]
        if panel:
            shape = (*[shape[d] for d in others[:block]], shape[axis] // panel,
                     *[shape[d] for d in others[block:]], panel)
        axes = tuple(IterVar(Var(f"ax{d}"), (0, n)) for d, n in enumerate(shape))
        idx = [a.var for a in axes]
        if panel:           # copy[..., jo, k, ji] = tensor[..., k, jo * panel + ji] (jo at `block`)
            rest = idx[:block] + idx[block + 1:-1]
            src_idx = [None] * nd
            for d, v in zip(others, rest):
                src_idx[d] = v
            src_idx[axis] = idx[block] * panel + idx[-1]
            idx = src_idx
        op = ComputeOp(f"{src.name}.{scope}", shape, axes, (tensor[tuple(idx)],))
        new_t = op.output(0)

        def moved(indices: tuple) -> tuple:
            if not panel:
                return indices
            rest = [indices[d] for d in others]
            j = indices[axis]
            return (*rest[:block], j // panel, *rest[block:], j % panel)
        for rs in reader_stages:
            if rs.relations or rs.iter_attrs:
                raise rs._error("cache_read must come before loop primitives on its readers")
            old: ComputeOp = rs.op
            remap = (lambda e, ot=tensor, nt=new_t:
                     TensorLoad(nt, moved(e.indices), e.dtype) if isinstance(e, TensorLoad) and e.tensor.op is ot.op
                     and e.tensor.value_index == ot.value_index else None)
            new_op = ComputeOp(old.name, old.shape, old.axis,
                               tuple(transform(b, remap) for b in old.body), old.tag, old.attrs)
            rs.origin_op = rs.origin_op or old
            rs.op = new_op
            self.stage_map[new_op] = rs
        st = Stage(op, self, op.name, scope=scope)
        self.stage_map[op] = st
        first = min(self.stages.index(rs) for rs in reader_stages)
        self.stages.insert(max(first, self.stages.index(src) + 1), st)
        self.steps.append(Step("cache_read", src.name, (scope, tuple(r.name for r in reader_stages))
                               + ((panel,) if panel else ()) + ((axis,) if panel and axis != nd - 1 else ())))
        return new_t

    # ------------------------------------------------------------- printing, hashing, replay
    def __str__(self) -> str:
        return "\n".join(str(s) for s in self.steps) or "(default schedule)"

    def to_json(self) -> list:
        """The steps as plain JSON data."""
        return [s.to_json() for s in self.steps]

    def hash(self) -> str:
        """A stable hash of the steps."""
        return hashlib.sha256(json.dumps(self.to_json(), default=str).encode()).hexdigest()[:16]


def _axis_label(st: Stage, iv: IterVar) -> str:
    """The name of an axis for a new stage: its stage-unique name, without the '#n' suffix."""
    return st._name(iv).replace("#", "_")


def _topo_order(outputs: list[Operation]) -> list[Operation]:
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
