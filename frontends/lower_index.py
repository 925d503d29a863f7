"""Lowerings of the indexed writes and the grid sampler: ScatterND, ScatterElements (and its
opset 9-10 name Scatter), GridSample (see lowering.py; te/ops/scatter.py, te/ops/grid_sample.py)."""
from __future__ import annotations

from .lowering import _ops, _str, checks, lowers

INDEX_DTYPES = ("int32", "int64")


@lowers("ScatterND")
def _scatter_nd(node, ins, attrs, opset, out_shapes):
    return [_ops().scatter_nd(ins[0], ins[1], ins[2], _str(attrs.get("reduction"), "none"), name=node.name)]


@lowers("ScatterElements", "Scatter")
def _scatter_elements(node, ins, attrs, opset, out_shapes):
    return [_ops().scatter_elements(ins[0], ins[1], ins[2], int(attrs.get("axis", 0)),
                                    _str(attrs.get("reduction"), "none"), name=node.name)]


def _check_scatter_common(node, ins) -> str | None:
    from te.ops.scatter import REDUCTIONS
    data, indices, updates = ins[:3]
    reduction = _str(node.attrs.get("reduction"), "none")
    if reduction not in REDUCTIONS:
        return f"reduction {reduction!r} is not one of {', '.join(REDUCTIONS)}"
    if indices.dtype not in INDEX_DTYPES:
        return f"indices '{node.inputs[1]}' are {indices.dtype}; give int32 or int64"
    if updates.dtype != data.dtype:
        return f"updates '{node.inputs[2]}' are {updates.dtype} for {data.dtype} data; cast them to {data.dtype}"
    if data.dtype == "bool" and reduction != "none":
        return f"reduction {reduction!r} of bool data is not supported; cast it to uint8 first"
    return None


@checks("ScatterND")
def _check_scatter_nd(node, ins, opset):
    why = _check_scatter_common(node, ins)
    if why:
        return why
    data, indices, updates = ins[:3]
    if not indices.shape:
        return f"indices '{node.inputs[1]}' must have at least one axis"
    k = indices.shape[-1]
    want = tuple(indices.shape[:-1]) + tuple(data.shape[k:])
    if k > len(data.shape) or tuple(updates.shape) != want:
        return (f"updates '{node.inputs[2]}' have shape {updates.shape}; for indices {indices.shape} into data "
                f"{data.shape} they must have shape {want}")
    return None


@checks("ScatterElements", "Scatter")
def _check_scatter_elements(node, ins, opset):
    why = _check_scatter_common(node, ins)
    if why:
        return why
    data, indices, updates = ins[:3]
    rank = len(data.shape)
    axis = int(node.attrs.get("axis", 0))
    if not -rank <= axis < rank:
        return f"axis {axis} is outside [-{rank}, {rank - 1}] for rank-{rank} data"
    if tuple(indices.shape) != tuple(updates.shape) or len(indices.shape) != rank:
        return (f"indices {indices.shape} and updates {updates.shape} must have one shape, of the data's rank "
                f"{rank}")
    if any(i > d for k, (i, d) in enumerate(zip(indices.shape, data.shape)) if k != axis % rank):
        return f"indices {indices.shape} exceed data {data.shape} on an axis other than {axis % rank}"
    return None


@lowers("GridSample")
def _grid_sample(node, ins, attrs, opset, out_shapes):
    return [_ops().grid_sample(ins[0], ins[1], _str(attrs.get("mode"), "linear" if opset >= 20 else "bilinear"),
                               _str(attrs.get("padding_mode"), "zeros"), bool(int(attrs.get("align_corners", 0))),
                               name=node.name)]


@checks("GridSample")
def _check_grid_sample(node, ins, opset):
    from te.ops.grid_sample import GRID_SAMPLE_MODES, GRID_SAMPLE_PADDINGS
    x, grid = ins[:2]
    mode = _str(node.attrs.get("mode"), "linear")
    if mode not in GRID_SAMPLE_MODES + ("bilinear", "bicubic"):
        return f"mode {mode!r} is not one of {', '.join(GRID_SAMPLE_MODES)} (or bilinear, bicubic)"
    padding = _str(node.attrs.get("padding_mode"), "zeros")
    if padding not in GRID_SAMPLE_PADDINGS:
        return f"padding_mode {padding!r} is not one of {', '.join(GRID_SAMPLE_PADDINGS)}"
    if x.dtype not in ("float32", "float64") or grid.dtype != x.dtype:
        return f"GridSample is supported on float32 or float64 data and grid of one type, not {x.dtype}, {grid.dtype}"
    r = len(x.shape) - 2
    if r < 1 or len(grid.shape) != r + 2 or grid.shape[0] != x.shape[0] or grid.shape[-1] != r:
        return f"grid '{node.inputs[1]}' has shape {grid.shape}; for data {x.shape} it must be (N, out..., {r})"
    return None
