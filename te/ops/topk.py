"""TopK: the k largest (or smallest) elements along an axis, with their indices.

Without a sort primitive in te, the order is counted: the rank of element i is how many elements
come before it (larger, or equal with a lower index: ONNX's tie rule), and output position p takes
the one element whose rank is p.  NaN ranks above every number, as in numpy's sort.  That is O(n^2) compares along the axis, which suits the short
axes TopK sees in models (classes, beams, anchors) and vectorises over the other axes.
"""
from __future__ import annotations

import te

__all__ = ["topk"]

TAG = "topk"


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
    out_shape = tuple(x.shape[:ax]) + (k,) + tuple(x.shape[ax + 1:])

    def index(*i):
        j = te.reduce_axis((0, n), "j")
        return te.sum(te.if_then_else(ranks[_at(i, ax, j)] == i[ax], j.var.astype("int64"),
                                      te.const(0, "int64")), axis=j)
    indices = te.compute(out_shape, index, name=f"{name}.indices", tag=TAG)
    values = te.compute(out_shape, lambda *i: x[_at(i, ax, indices[i])], name=f"{name}.values", tag=TAG)
    return values, indices
