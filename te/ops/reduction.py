"""Reductions over any axes: sum, mean, max, min, prod (with keepdims), argmax/argmin, and the building blocks
that softmax, layer norm and global pooling reuse.

A reduction axis cannot be vectorized, so a reduction whose innermost (contiguous) axis is
reduced is written in two stages, the rfactor of TVM done in the compute:

    partial[rows..., l] = reduce over (other reduced axes, ko) of x[rows..., ko*L + l]
    out[rows...]        = reduce over l of partial[rows..., l]

The partial stage runs L lanes in vector registers (L = one or two registers, or the whole
innermost axis when it is short), and is computed per row inside the output's loop, so its
buffer stays in L1.  A reduction that keeps the innermost axis is one stage; its schedule
vectorizes that axis and puts the reduction loops around it.
"""
from __future__ import annotations

import math
from typing import Callable

import te
from te.target import Target, parse
from te.tensor import IterKind

from .common import largest_divisor, tagged
from .injective import (MAX_WHOLE_LANES, inline_injective, parallel_outer, vector_lanes,
                        vectorize_inner)

REDUCERS = {"sum": te.sum, "max": te.max, "min": te.min, "prod": te.prod}
PARTIAL_TAG = "reduce_partial"
FOLD_TAG = "reduce_fold"
MAX_UNROLLED_STEPS = 8
SPLIT_ALL_MIN = 1 << 15      # a reduction of everything this large runs in two parallel steps
SPLIT_ALL_BLOCKS = 256


def normalize_axes(axis, ndim: int) -> tuple[int, ...]:
    """Sorted, non-negative, unique axes; None means all axes."""
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    out = set()
    for a in axes:
        if not -ndim <= a < ndim:
            raise ValueError(f"axis {a} is out of range for a tensor of {ndim} dimensions")
        out.add(a % ndim)
    return tuple(sorted(out))


def rfactor_lanes(extent: int, target: Target, dtype: str = "float32") -> int:
    """Lanes of the partial stage for a reduced innermost axis of this extent (1: no rfactor)."""
    lanes = target.lanes(dtype)
    if extent % (2 * lanes) == 0 and extent >= 16 * lanes:
        return 2 * lanes
    if extent % lanes == 0:
        return lanes
    if extent <= MAX_WHOLE_LANES:
        return extent
    d = largest_divisor(extent, MAX_WHOLE_LANES)
    return d if d >= lanes // 2 else 1


def reduce_over(shape: tuple, axes: tuple, source: Callable, kind: str, name: str,
                keepdims: bool = False, scale: float | None = None, tag: str = "reduce",
                attrs: dict | None = None, lanes: int | None = None,
                target: Target | str | None = None) -> te.Tensor:
    """out = reduce(kind) over `axes` of source(index of a tensor of `shape`), times scale.

    `source` maps a full index tuple to the value; the result drops (or, with keepdims,
    keeps as 1) the reduced axes.  Uses the two-stage form when the innermost axis is reduced,
    with `lanes` partial lanes (by default rfactor_lanes of the innermost extent on `target`,
    this machine when None).
    """
    ndim = len(shape)
    red = REDUCERS[kind]
    kept = [d for d in range(ndim) if d not in axes]
    out_shape = tuple(1 if d in axes else n for d, n in enumerate(shape)) if keepdims \
        else tuple(shape[d] for d in kept)
    kept_pos = [d for d in range(ndim) if d not in axes] if keepdims else list(range(len(kept)))
    attrs = {"kind": kind, "axes": tuple(axes), **(attrs or {})}

    def full(kept_idx, red_idx: dict):
        idx = dict(zip(kept, kept_idx))
        idx.update(red_idx)
        return tuple(idx[d] for d in range(ndim))

    def scaled(v):
        return v if scale is None else v * scale

    W = shape[-1] if ndim else 1
    L = rfactor_lanes(W, parse(target), "float32") if ndim and ndim - 1 in axes else 1
    if lanes is not None and L > 1:
        if W % lanes:
            raise ValueError(f"{name}: {lanes} lanes do not divide the innermost extent {W}")
        L = lanes
    others = [d for d in axes if d != ndim - 1]
    if L > 1 and (W // L > 1 or others):
        ro = [te.reduce_axis(shape[d], f"r{d}") for d in others]
        ko = te.reduce_axis(W // L, "ko")
        t = te.compute(
            tuple(shape[d] for d in kept) + (L,),
            lambda *i: red(source(full(i[:-1], {**dict(zip(others, ro)), ndim - 1: ko * L + i[-1]})),
                           axis=ro + [ko]),
            name=f"{name}.partial", tag=PARTIAL_TAG)
        # fold the lanes pairwise (a tree of log2 L vector steps, not a chain of L scalar ones)
        while L % 2 == 0 and L > 2:
            t, L = _halve(t, L // 2, red, name), L // 2

        def row(o):
            return tuple(o[p] for p in kept_pos)
        attrs = {**attrs, "rfactor": L}
        if L == 2:
            return te.compute(out_shape, lambda *o: scaled(red.combine(t[row(o) + (0,)],
                                                                       t[row(o) + (1,)])),
                              name=name, tag=tag, attrs=attrs)
        lane = te.reduce_axis(L, "l")
        return te.compute(out_shape, lambda *o: red(scaled(t[row(o) + (lane,)]), axis=lane),
                          name=name, tag=tag, attrs=attrs)
    rs = {d: te.reduce_axis(shape[d], f"r{d}") for d in axes}
    return te.compute(out_shape, lambda *o: red(scaled(source(full([o[p] for p in kept_pos], rs))),
                                                axis=list(rs.values())),
                      name=name, tag=tag, attrs={**attrs, "rfactor": 0})


def _halve(t: te.Tensor, h: int, red, name: str) -> te.Tensor:
    return te.compute(t.shape[:-1] + (h,), lambda *i: red.combine(t[i[:-1] + (i[-1],)],
                                                                  t[i[:-1] + (i[-1] + h,)]),
                      name=f"{name}.fold{h}", tag=FOLD_TAG)


def _reduce(kind: str, x: te.Tensor, axis, keepdims: bool, name: str, target: Target,
            scale: float | None = None) -> te.Tensor:
    axes = normalize_axes(axis, x.ndim)
    if not axes:
        raise ValueError(f"{name}: no axis to reduce")
    n = math.prod(x.shape)
    if len(axes) == x.ndim and n >= SPLIT_ALL_MIN:
        # everything to one value: first per block, in parallel, then the blocks
        lead = [d for d in axes[:-1] if x.shape[d] > 1]
        if lead:        # blocks along the first axis longer than 1
            d = lead[0]
            blocks = reduce_over(x.shape, tuple(a for a in axes if a != d), lambda idx: x[idx], kind,
                                 f"{name}.blocks", target=target)
        else:           # only the last axis is longer than 1: cut it into p blocks of m
            p = largest_divisor(x.shape[-1], SPLIT_ALL_BLOCKS)
            m = x.shape[-1] // p
            blocks = reduce_over((p, m), (1,), lambda idx: x[(0,) * (x.ndim - 1) + (idx[0] * m + idx[1],)],
                                 kind, f"{name}.blocks", target=target)
        r = te.reduce_axis(blocks.shape[0], "b")
        red = REDUCERS[kind]
        return te.compute((1,) * x.ndim if keepdims else (),
                          lambda *o: red(blocks[r] if scale is None else blocks[r] * scale, axis=r),
                          name=name, tag="reduce", attrs={"kind": kind, "axes": axes, "rfactor": 0})
    return reduce_over(x.shape, axes, lambda idx: x[idx], kind, name, keepdims, scale, target=target)


def sum(x: te.Tensor, axis=None, keepdims: bool = False, name: str = "sum",
        target: Target | str | None = None) -> te.Tensor:  # noqa: A001
    """Sum over the given axes (all by default)."""
    return _reduce("sum", x, axis, keepdims, name, parse(target))


def mean(x: te.Tensor, axis=None, keepdims: bool = False, name: str = "mean",
         target: Target | str | None = None) -> te.Tensor:
    """Arithmetic mean over the given axes (all by default); integers give float32."""
    axes = normalize_axes(axis, x.ndim)
    n = math.prod(x.shape[d] for d in axes)
    src = x if te.expr.is_float(x.dtype) else _as_float32(x)
    return _reduce("sum", src, axes, keepdims, name, parse(target), scale=1.0 / n)


def max(x: te.Tensor, axis=None, keepdims: bool = False, name: str = "max",
        target: Target | str | None = None) -> te.Tensor:  # noqa: A001
    """Maximum over the given axes (all by default)."""
    return _reduce("max", x, axis, keepdims, name, parse(target))


def min(x: te.Tensor, axis=None, keepdims: bool = False, name: str = "min",
        target: Target | str | None = None) -> te.Tensor:  # noqa: A001
    """Minimum over the given axes (all by default)."""
    return _reduce("min", x, axis, keepdims, name, parse(target))


def prod(x: te.Tensor, axis=None, keepdims: bool = False, name: str = "prod",
        target: Target | str | None = None) -> te.Tensor:
    """Product over the given axes (all by default)."""
    return _reduce("prod", x, axis, keepdims, name, parse(target))


# the ONNX/Relay names
reduce_sum, reduce_mean, reduce_max, reduce_min, reduce_prod = sum, mean, max, min, prod


def _arg(kind: str, x: te.Tensor, axis: int, keepdims: bool, select_last_index: bool,
         name: str, target: Target) -> te.Tensor:
    ax = normalize_axes(axis, x.ndim)
    n = x.shape[ax[0]]
    best = reduce_over(x.shape, ax, lambda i: x[i], kind, f"{name}.{kind}", keepdims=True, target=target)

    def hit(i):
        # the index where x reaches the extreme value, else a value the reduction ignores
        at = te.expr.convert(i[ax[0]]).astype("int64")
        miss = te.const(-1 if select_last_index else n, "int64")
        found = x[i] == best[tuple(0 if d in ax else v for d, v in enumerate(i))]
        if te.expr.is_float(x.dtype):
            found = te.any(found, x[i] != x[i])     # a NaN row still answers an index inside it
        return te.if_then_else(found, at, miss)
    return reduce_over(x.shape, ax, hit, "max" if select_last_index else "min", name, keepdims,
                       target=target)


def argmax(x: te.Tensor, axis: int = 0, keepdims: bool = True, select_last_index: bool = False,
           name: str = "argmax", target: Target | str | None = None) -> te.Tensor:
    """The index (int64) of the maximum along axis: the first one, or the last with
    select_last_index (ONNX ArgMax; in a row with a NaN, the index of a NaN or of the maximum)."""
    return _arg("max", x, axis, keepdims, select_last_index, name, parse(target))


def argmin(x: te.Tensor, axis: int = 0, keepdims: bool = True, select_last_index: bool = False,
           name: str = "argmin", target: Target | str | None = None) -> te.Tensor:
    """The index (int64) of the minimum along axis (ONNX ArgMin), as argmax."""
    return _arg("min", x, axis, keepdims, select_last_index, name, parse(target))


def _as_float32(x: te.Tensor) -> te.Tensor:
    return te.compute(x.shape, lambda *i: x[i].astype("float32"), name=f"{x.name}.f32",
                      tag="elemwise")


# ---------------------------------------------------------------- schedules

def lane_stages(t: te.Tensor) -> list[te.Tensor]:
    """The stages between a two-stage reduction and its source: folds (nearest first), then the partial."""
    chain = []
    while True:
        nxt = [x for x in t.op.input_tensors if getattr(x.op, "tag", "") in (PARTIAL_TAG, FOLD_TAG)]
        if not nxt:
            return chain
        t = nxt[0]
        chain.append(t)


def partial_of(t: te.Tensor) -> te.Tensor | None:
    """The partial (rfactor) stage a two-stage reduction reads, or None."""
    chain = lane_stages(t)
    return chain[-1] if chain else None


def _work(out: te.Tensor) -> int:
    """Elements a reduction reads: output size times the extents of its (and its partial's) reductions."""
    partial = partial_of(out)
    if partial is not None:
        return math.prod(partial.shape) * math.prod(a.dom[1] for a in partial.op.reduce_axis)
    return math.prod(out.shape) * math.prod(a.dom[1] for a in out.op.reduce_axis)


def _data_leaves(st: te.Stage) -> list:
    return [iv for iv in st.leaf_iter_vars if iv.kind is IterKind.DATA_PAR]


def schedule_lanes(s: te.Schedule, out: te.Tensor, parent: te.Stage | None, axis) -> None:
    """Vectorize the partial and fold stages of `out` across their lanes, each computed inside its
    consumer's row loop (the partial's reduction loops outside its lanes); the first at parent/axis."""
    for t in lane_stages(out):
        st = s[t]
        data = list(t.op.axis)
        if t.op.reduce_axis:
            inline_injective(s, t)
            st.reorder(*data[:-1], *t.op.reduce_axis, data[-1])
            if len(t.op.reduce_axis) == 1 and t.op.reduce_axis[0].dom[1] <= MAX_UNROLLED_STEPS:
                # a short accumulation in straight-line code keeps its lanes in registers
                st.unroll(t.op.reduce_axis[0])
        st.vectorize(data[-1])
        if parent is not None:
            st.compute_at(parent, axis)
        parent, axis = st, data[-2] if len(data) > 1 else None
        if axis is None:
            parent = None


def schedule_reduce_stage(s: te.Schedule, out: te.Tensor, target: Target, parent: te.Stage | None = None,
                          axis=None, parallel: bool = True, rows_only: bool = False) -> None:
    """Schedule one reduction stage (and its partial): vectorized, parallel over output rows.

    With parent/axis, the stage is computed inside that loop of its consumer instead of at the
    root (and is not parallelized itself); rows_only says that loop fixes every output axis
    (one element per visit), so only a partial stage has lanes to vectorize.
    """
    st = s[out]
    inline_injective(s, out)
    partial = partial_of(out)
    data = list(out.op.axis)
    total = _work(out)
    if partial is not None:
        # one row per output element: its partial lives in registers/L1 inside the row loop
        row = None
        if data and parent is None and parallel:
            row = parallel_outer(st, data, list(out.shape), total, target)
            leaves = _data_leaves(st)
            row = leaves[-1] if leaves else None
        elif data:
            row = data[-1]
        schedule_lanes(s, out, st if row is not None else None, row)
    else:
        red = list(out.op.reduce_axis)
        if data and not rows_only:
            n = out.shape[-1]
            outer, inner = vectorize_inner(st, data[-1], n, target, out.dtype)
            rows = data[:-1]
            row_iters = math.prod(out.shape[:-1])
            if row_iters >= target.threads or outer is None:
                # stream whole rows: reduction loops outside the innermost output axis
                st.reorder(*rows, *red, *[a for a in (outer, inner) if a is not None])
                if parent is None and parallel:
                    parallel_outer(st, rows, list(out.shape[:-1]), total, target)
            else:
                # few rows: parallelize over blocks of the innermost axis instead
                st.reorder(*rows, outer, *red, *[a for a in (inner,) if a is not None])
                if parent is None and parallel:
                    parallel_outer(st, rows + [outer], list(out.shape[:-1]) +
                                   [n // vector_lanes(n, target, out.dtype)], total, target)
    if parent is not None:
        st.compute_at(parent, axis)


@tagged("reduce")
def schedule_reduce(s: te.Schedule, out: te.Tensor, target: Target) -> te.Schedule:
    """The default schedule of a reduction output (sum/mean/max/min/prod, global pooling)."""
    schedule_reduce_stage(s, out, target)
    for t in out.op.input_tensors:     # the blocks of a reduction of everything
        st = s[t]
        if getattr(t.op, "tag", "") == "reduce" and st.attach_type.value == "root" and not st.relations:
            schedule_reduce(s, t, target)
    return s


__all__ = ["sum", "mean", "max", "min", "prod", "reduce_sum", "reduce_mean", "reduce_max",
           "reduce_min", "reduce_prod", "argmax", "argmin", "reduce_over", "schedule_reduce"]
