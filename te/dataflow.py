"""The dataflow rewrites of a schedule: primitives that add a stage and change what reads what.

cache_write computes a stage into a new cache stage (the stage becomes a copy out of it),
cache_read copies a tensor into a new stage its readers read instead (in GEMM panels if asked),
and rfactor factors a reduction axis out into a stage of partial reductions.  te.Schedule's
methods of those names call these; like every primitive they check their inputs, raise
ScheduleError naming the stage, and append a Step so the schedule replays.
"""
from __future__ import annotations

from .expr import Logic, LogicKind, Reduce, TensorLoad, Var, substitute, transform
from .schedule import AttachType, Schedule, ScheduleError, Split, Stage, Step
from .tensor import ComputeOp, IterKind, IterVar, Tensor


def cache_write(sch: Schedule, tensor: Tensor, scope: str = "local", order: tuple | None = None) -> Tensor:
    """Compute `tensor` into a new cache stage of `sch` (Schedule.cache_write)."""
    st = sch[tensor]
    nd = len(tensor.shape)
    if order is not None:
        order = tuple(order)
        if sorted(order) != list(range(nd)) or any(isinstance(d, bool) for d in order):
            raise st._error(f"cache_write: order={order!r} must be a permutation of 0..{nd - 1}")
        if order == tuple(range(nd)):
            order = None
    st._check_compute("cache_write")
    if st.relations or st.iter_attrs or any(s.attach_stage is st for s in sch.stages):
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
    cache_st = Stage(cache_op, sch, cache_op.name, scope=scope)
    st.origin_op = st.origin_op or old
    st.op = copy_op
    st.leaf_iter_vars = list(copy_op.axis)
    st.all_iter_vars = list(copy_op.axis)
    sch.stage_map[copy_op] = st
    sch.stage_map[cache_op] = cache_st
    sch.stages.insert(sch.stages.index(st), cache_st)
    sch.steps.append(Step("cache_write", st.name, (scope,) + ((perm,) if order else ())))
    return cache_t

def rfactor(sch: Schedule, tensor: Tensor, axis: IterVar, factor_axis: int = 0) -> Tensor:
    """Factor reduction axis `axis` of `tensor` into a new stage of `sch` (Schedule.rfactor)."""
    st = sch[tensor]
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
            or any(s.attach_stage is st for s in sch.stages) or st.attach_type is not AttachType.ROOT):
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
    taken = {x.name for x in sch.stages}
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
    sch.stage_map[new_op] = st
    rf_st = Stage(rf_op, sch, rf_op.name)
    sch.stage_map[rf_op] = rf_st
    sch.stages.insert(sch.stages.index(st), rf_st)
    sch.steps.append(Step("rfactor", st.name, (name, factor_axis)))
    return rf_t

def cache_read(sch: Schedule, tensor: Tensor, scope: str, readers: list, panel: int = 0, axis: int = -1) -> Tensor:
    """Copy `tensor` into a new stage of `sch` that `readers` read instead (Schedule.cache_read)."""
    src = sch[tensor]
    nd = len(tensor.shape)
    if isinstance(axis, bool) or not isinstance(axis, int) or not -nd <= axis < nd:
        raise ScheduleError(f"cache_read of {src.name}: axis={axis!r} must be an axis of its "
                            f"{nd} axes (-{nd}..{nd - 1})")
    axis %= nd
    reader_stages = [sch[r] for r in readers]
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
        sch.stage_map[new_op] = rs
    st = Stage(op, sch, op.name, scope=scope)
    sch.stage_map[op] = st
    first = min(sch.stages.index(rs) for rs in reader_stages)
    sch.stages.insert(max(first, sch.stages.index(src) + 1), st)
    sch.steps.append(Step("cache_read", src.name, (scope, tuple(r.name for r in reader_stages))
                           + ((panel,) if panel else ()) + ((axis,) if panel and axis != nd - 1 else ())))
    return new_t


def _axis_label(st: Stage, iv: IterVar) -> str:
    """The name of an axis for a new stage: its stage-unique name, without the '#n' suffix."""
    return st._name(iv).replace("#", "_")
