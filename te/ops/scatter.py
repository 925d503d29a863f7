"""ScatterND and ScatterElements: data with updates written (or combined) at given indices.

Without a store to a computed address in te, each output element looks for the updates aimed
at it: a reduction over the update positions u of "does indices[u] name me".  That is
O(output x updates) compares, which suits the small index sets these ops carry in models (a
cache update, a mask fill); large scatters would want a scatter primitive.

reduction "none" takes the last update that names the element (ONNX leaves duplicates undefined;
its reference applies updates in order, so the last wins); "add", "mul", "max" and "min"
combine data with every update that names it.  Negative indices count from the end; an index
outside the axis names no element (ONNX calls such input invalid).
"""
from __future__ import annotations

import numpy as np

import te

__all__ = ["scatter_nd", "scatter_elements", "REDUCTIONS"]

TAG = "scatter"
REDUCTIONS = ("none", "add", "mul", "max", "min")


def _normalised(i, extent: int):
    """An index with negative values counted from the end."""
    return te.if_then_else(i < 0, i + extent, i)


def _combine(reduction: str, dtype: str):
    """(the te reducer, its value for an update that does not apply, the elementwise combine)."""
    if reduction == "add":
        return te.sum, te.const(0, dtype), lambda a, b: a + b
    if reduction == "mul":
        return te.prod, te.const(1, dtype), lambda a, b: a * b
    if reduction in ("max", "min"):
        if dtype.startswith("float"):
            far = -np.inf if reduction == "max" else np.inf
        else:
            info = np.iinfo(dtype)
            far = info.min if reduction == "max" else info.max
        pick = te.max_of if reduction == "max" else te.min_of
        return (te.max if reduction == "max" else te.min), te.const(far, dtype), pick
    raise ValueError(f"scatter: reduction {reduction!r} is not one of {', '.join(REDUCTIONS)}")


def _unravel(flat, shape: tuple) -> tuple:
    out = []
    for extent in reversed(shape):
        out.append(flat % extent)
        flat = flat // extent
    return tuple(reversed(out))


def _scatter(data: te.Tensor, updates: te.Tensor, upd_shape: tuple, names, target_at, reduction: str,
             name: str) -> te.Tensor:
    """The common part: `names(u, p)` says whether update position u (a tuple over upd_shape)
    names output element p; `target_at(u, p)` is the update's element that goes to p."""
    shape = tuple(data.shape)
    if reduction == "none":
        # the last update position naming p, as a flat index (-1 for none)
        def last(*p):
            us = [te.reduce_axis((0, n), f"u{k}") for k, n in enumerate(upd_shape)]
            u = tuple(a.var for a in us)
            flat = te.const(0, "int64")
            for a, n in zip(u, upd_shape):
                flat = flat * n + a
            return te.max(te.if_then_else(names(u, p), flat, te.const(-1, "int64")), axis=us)
        winner = te.compute(shape, last, name=f"{name}.last", tag=TAG)

        def body(*p):
            w = winner[p]
            u = _unravel(te.max_of(w, 0), upd_shape)        # a valid address even where unused
            return te.if_then_else(w >= 0, updates[target_at(u, p)], data[p])
        return te.compute(shape, body, name=name, tag=TAG)
    reducer, neutral, pick = _combine(reduction, data.dtype)

    def gathered(*p):
        us = [te.reduce_axis((0, n), f"u{k}") for k, n in enumerate(upd_shape)]
        u = tuple(a.var for a in us)
        return reducer(te.if_then_else(names(u, p), updates[target_at(u, p)], neutral), axis=us)
    acc = te.compute(shape, gathered, name=f"{name}.acc", tag=TAG)
    return te.compute(shape, lambda *p: pick(data[p], acc[p]), name=name, tag=TAG)


def scatter_nd(data: te.Tensor, indices: te.Tensor, updates: te.Tensor, reduction: str = "none",
               name: str = "scatter_nd") -> te.Tensor:
    """ONNX ScatterND: data with updates[u] written at data[indices[u]] (a slice when indices'
    last axis is shorter than data's rank), combined by `reduction`."""
    K = indices.shape[-1]
    lead = tuple(indices.shape[:-1])
    if K > data.ndim or tuple(updates.shape) != lead + tuple(data.shape[K:]):
        raise ValueError(f"{name}: updates have shape {updates.shape}; for indices {indices.shape} into data "
                         f"{data.shape} they must have shape {lead + tuple(data.shape[K:])}")

    def names(u, p):
        return te.all(*[_normalised(indices[u + (k,)], data.shape[k]) == p[k] for k in range(K)])
    return _scatter(data, updates, lead, names, lambda u, p: u + tuple(p[K:]), reduction, name)


def scatter_elements(data: te.Tensor, indices: te.Tensor, updates: te.Tensor, axis: int = 0,
                     reduction: str = "none", name: str = "scatter_elements") -> te.Tensor:
    """ONNX ScatterElements: updates[u] written at data's element u with its `axis` coordinate
    replaced by indices[u], combined by `reduction`."""
    nd = data.ndim
    if not -nd <= axis < nd:
        raise ValueError(f"{name}: axis {axis} is outside [-{nd}, {nd - 1}] for rank-{nd} data")
    ax = axis % nd
    if tuple(indices.shape) != tuple(updates.shape) or indices.ndim != nd:
        raise ValueError(f"{name}: indices {indices.shape} and updates {updates.shape} must have one shape "
                         f"of data's rank {nd}")
    if any(i > d for k, (i, d) in enumerate(zip(indices.shape, data.shape)) if k != ax):
        raise ValueError(f"{name}: indices {indices.shape} exceed data {data.shape} on an axis other than {ax}")
    shape = tuple(indices.shape)
    # element p of the output receives from updates along the axis only: u differs from p there
    along = (shape[ax],)

    short = [k for k in range(nd) if k != ax and shape[k] < data.shape[k]]

    def target_at(u, p):
        # p's coordinates on the other axes, kept inside the indices' extent: where p lies
        # beyond it, names() is false and the address only has to be valid
        return tuple(u[0] if k == ax else te.min_of(p[k], shape[k] - 1) if k in short else p[k]
                     for k in range(nd))

    def names(u, p):
        hit = _normalised(indices[target_at(u, p)], data.shape[ax]) == p[ax]
        return te.all(hit, *[p[k] < shape[k] for k in short]) if short else hit
    return _scatter(data, updates, along, names, target_at, reduction, name)
