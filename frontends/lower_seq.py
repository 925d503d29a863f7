"""Lowerings of the ordering operators: TopK (see lowering.py).

TopK has two outputs; canonical.py gives each used one a node of its own (the node's `output`
attribute says which: "values" or "indices"), as a kernel computes one tensor.
"""
from __future__ import annotations

import numpy as np

from .lowering import _ops, checks, lowers

def _k(attrs) -> int:
    return int(np.asarray(attrs["k"]).reshape(-1)[0])


@lowers("TopK")
def _topk(node, ins, attrs, opset, out_shapes):
    x = ins[0]
    # opset 1 holds k as an attribute, later ones as the input the importer folds into "k"
    values, indices = _ops().topk(x, _k(attrs), axis=int(attrs.get("axis", -1)),
                                  largest=bool(attrs.get("largest", 1)), name=node.name)
    return [indices if attrs.get("output") == "indices" else values]


@checks("TopK")
def _check_topk(node, ins, opset):
    x = ins[0]
    rank = len(x.shape)
    axis = int(node.attrs.get("axis", -1))
    if not -rank <= axis < rank:
        return f"axis {axis} is outside [-{rank}, {rank - 1}] for a rank-{rank} input"
    if "k" not in node.attrs:
        return "k is missing; give it as a constant input"
    k = _k(node.attrs)
    if not 0 <= k <= x.shape[axis]:
        return f"k = {k} is outside [0, {x.shape[axis]}], the extent of axis {axis}"
    if x.dtype == "bool":
        return "TopK of bool values is not supported; cast them to uint8 first"
    return None
