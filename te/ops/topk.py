"""TopK: the k largest (or smallest) elements along an axis, with their indices.

The order: larger first (smallest: smaller first), equal values by lower index (ONNX's tie rule),
NaN above every number (numpy's sort order).  Without a sort primitive in te, two ways:

* a few of many (k <= SELECT_MAX_K, k * 4 < n): k selection steps, each finding the first element
  in the order after the one the step before found (a NaN by lowest index, else the extreme value,
  then the lowest index holding it): O(k n) compares;
* otherwise by counting: the rank of element i is how many elements come before it, and output
  position p takes the one element whose rank is p: O(n^2) compares, vectorised over the other axes.
"""
from __future__ import annotations

import numpy as np

import te

__all__ = ["topk"]

TAG = "topk"
SELECT_MAX_K = 16       # beyond this many steps, counting ranks builds a smaller kernel


def _at(idx: tuple, ax: int, v) -> tuple:
    return idx[:ax] + (v,) + idx[ax + 1:]


def topk(x: te.Tensor, k: int, axis: int = -1, largest: bool = True,
         name: str = "topk") -> tuple[te.Tensor, te.Tensor]:
    """(values, int64 indices) of the k largest (smallest) elements along axis, in order."""
    nd = x.ndim
    if not -nd <= axis < nd:
        raise ValueError(f"{name}: axis {axis} is outside [-{nd}, {nd - 1}] for a rank-{nd} input")
    ax = axis % nd
    n = x.shape[ax]
    if not 0 <= k <= n:
        raise ValueError(f"{name}: k = {k} is outside [0, {n}], the extent of axis {ax}")

    out_shape = tuple(x.shape[:ax]) + (k,) + tuple(x.shape[ax + 1:])
    if k <= SELECT_MAX_K and 4 * k < n:
        indices = _select(x, k, ax, largest, out_shape, name)
        values = te.compute(out_shape, lambda *i: x[_at(i, ax, indices[i])], name=f"{name}.values", tag=TAG)
        return values, indices

    def rank(*i):
        e = te.reduce_axis((0, n), "e")
        xe, xi = x[_at(i, ax, e)], x[i]
        ahead = (xe > xi) if largest else (xe < xi)
        same = xe == xi
        if x.dtype.startswith("float"):
            # NaN ranks above every number (numpy's sort order): first when largest, last when smallest
            nan_e, nan_i = xe != xe, xi != xi
            ahead = ahead | ((nan_e & ~nan_i) if largest else (nan_i & ~nan_e))
            same = same | (nan_e & nan_i)
        tie = same & (e.var < i[ax])
        return te.sum(te.if_then_else(ahead | tie, te.const(1, "int32"), te.const(0, "int32")), axis=e)
    ranks = te.compute(tuple(x.shape), rank, name=f"{name}.rank", tag=TAG)

    def index(*i):
        j = te.reduce_axis((0, n), "j")
        return te.sum(te.if_then_else(ranks[_at(i, ax, j)] == i[ax], j.var.astype("int64"),
                                      te.const(0, "int64")), axis=j)
    indices = te.compute(out_shape, index, name=f"{name}.indices", tag=TAG)
    values = te.compute(out_shape, lambda *i: x[_at(i, ax, indices[i])], name=f"{name}.values", tag=TAG)
    return values, indices


def _select(x: te.Tensor, k: int, ax: int, largest: bool, out_shape: tuple, name: str) -> te.Tensor:
    """The int64 indices of the first k elements in the order, by k selection steps."""
    n = x.shape[ax]
    is_float = x.dtype.startswith("float")
    step_shape = _at(tuple(x.shape), ax, 1)
    far = te.const(n, "int64")
    if is_float:
        worst = te.const(-np.inf if largest else np.inf, x.dtype)
    else:
        info = np.iinfo(x.dtype)
        worst = te.const(int(info.min if largest else info.max), x.dtype)
    extreme = te.max if largest else te.min
    chosen: list[te.Tensor] = []
    for p in range(k):
        prev = chosen[-1] if chosen else None

        def after(i, e, prev=prev):
            """Does element e come after the one the step before chose (always, at the first step)?"""
            xe = x[_at(i, ax, e)]
            if prev is None:
                return te.const(True, "bool")
            j = prev[_at(i, ax, 0)]
            v = x[_at(i, ax, j)]
            ahead = (v > xe) if largest else (v < xe)
            same = v == xe
            if is_float:
                nan_v, nan_e = v != v, xe != xe
                ahead = ahead | ((nan_v & ~nan_e) if largest else (nan_e & ~nan_v))
                same = same | (nan_v & nan_e)
            return ahead | (same & (e > j))

        def number(i, e):
            return x[_at(i, ax, e)] == x[_at(i, ax, e)] if is_float else te.const(True, "bool")

        def best(*i, after=after):
            e = te.reduce_axis((0, n), "e")
            ok = after(i, e.var) & number(i, e.var)
            return extreme(te.if_then_else(ok, x[_at(i, ax, e)], worst), axis=e)
        top = te.compute(step_shape, best, name=f"{name}.best{p}", tag=TAG)

        def first(*i, after=after, top=top):
            e = te.reduce_axis((0, n), "e")
            at = e.var.astype("int64")
            num = after(i, e.var) & number(i, e.var) & (x[_at(i, ax, e)] == top[i])
            if not is_float:
                return te.min(te.if_then_else(num, at, far), axis=e)
            nan = after(i, e.var) & ~number(i, e.var)
            # NaNs come first when largest, last when smallest
            lead, tail = (nan, num) if largest else (num, nan)
            return te.min(te.if_then_else(lead, at, te.if_then_else(tail, at + n, 2 * far)), axis=e)
        pick = te.compute(step_shape, first, name=f"{name}.pick{p}", tag=TAG)
        chosen.append(te.compute(step_shape, lambda *i, pick=pick: pick[i] % n if is_float else pick[i],
                                 name=f"{name}.step{p}", tag=TAG))

    def gather(*i):
        q = _at(i, ax, 0)
        out = chosen[-1][q]
        for p in range(k - 2, -1, -1):
            out = te.if_then_else(i[ax] == p, chosen[p][q], out)
        return out
    return te.compute(out_shape, gather, name=f"{name}.indices", tag=TAG)
