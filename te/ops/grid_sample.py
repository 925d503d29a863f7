"""GridSample: data sampled at the positions a grid gives (spatial transformers, optical flow warps).

X is (N, C, D1, ..., Dr), grid (N, O1, ..., Ok, r) with normalised coordinates in [-1, 1], the
last one first (x is the width, the last axis of X; PyTorch's order); the output (N, C, O1...Ok).
Each spatial axis is interpolated apart, so an r-D sample is the product of r 1-D tap sets
(nearest: one tap, linear: two, cubic: four, Keys' a = -0.75).  A coordinate outside the image is
clamped (padding "border"; cubic clamps its taps instead, as PyTorch and ONNX Runtime do),
reflected at the image's edges ("reflection"), or its taps outside the image read zero
("zeros").  The arithmetic follows onnx's reference (PyTorch's GridSampler).
"""
from __future__ import annotations

import itertools

import te

from .transform import _clamp, _cubic_weights

__all__ = ["grid_sample", "GRID_SAMPLE_MODES", "GRID_SAMPLE_PADDINGS"]

TAG = "injective"
COORD_TAG = "grid_sample_coord"     # no schedule of its own: a root stage the sampler reads
GRID_SAMPLE_MODES = ("nearest", "linear", "cubic")
GRID_SAMPLE_PADDINGS = ("zeros", "border", "reflection")
CUBIC_A = -0.75


def _reflect(x, lo: float, hi: float):
    """x reflected at lo and hi until it lies between them (onnx's _gs_reflect)."""
    span = hi - lo
    if span <= 0:
        return x * 0.0 + lo

    def fold(dx, near, far):
        k = te.floor(dx / span)
        r = dx - k * span
        even = (k - te.floor(k * 0.5) * 2.0) == 0.0
        return te.if_then_else(even, near + r * (1.0 if near == lo else -1.0),
                               far + r * (1.0 if far == lo else -1.0))
    return te.if_then_else(x < lo, fold(lo - x, lo, hi), te.if_then_else(x > hi, fold(x - hi, hi, lo), x))


def grid_sample(x: te.Tensor, grid: te.Tensor, mode: str = "linear", padding_mode: str = "zeros",
                align_corners: bool = False, name: str = "grid_sample") -> te.Tensor:
    """ONNX GridSample (opset 20's names; bilinear and bicubic are linear and cubic)."""
    mode = {"bilinear": "linear", "bicubic": "cubic"}.get(mode, mode)
    if mode not in GRID_SAMPLE_MODES:
        raise ValueError(f"{name}: mode {mode!r} is not one of {', '.join(GRID_SAMPLE_MODES)}")
    if padding_mode not in GRID_SAMPLE_PADDINGS:
        raise ValueError(f"{name}: padding_mode {padding_mode!r} is not one of {', '.join(GRID_SAMPLE_PADDINGS)}")
    r = x.ndim - 2
    if r < 1 or grid.ndim != r + 2 or grid.shape[0] != x.shape[0] or grid.shape[-1] != r:
        raise ValueError(f"{name}: grid {grid.shape} must be (N, out..., {r}) for data {x.shape} (N, C, {r} axes)")
    if not x.dtype.startswith("float"):
        raise ValueError(f"{name}: data must be float, not {x.dtype}")
    dims = tuple(x.shape[2:])
    dt = x.dtype
    # the image's extent in continuous coordinates (onnx's borders)
    lows = [0.0 if align_corners else -0.5 for _ in dims]
    highs = [d - 1.0 if align_corners else d - 0.5 for d in dims]

    def coordinate(g, a: int):
        d = dims[a]
        v = (g + 1.0) * (0.5 * (d - 1)) if align_corners else ((g + 1.0) * d - 1.0) * 0.5
        if mode == "nearest":
            v = te.round(v)                           # half to even, as PyTorch
        if padding_mode == "border" and mode != "cubic":
            # cubic keeps the coordinate and clamps each tap (PyTorch's and ONNX Runtime's kernels)
            v = te.min_of(te.max_of(v, 0.0), float(d - 1))
        elif padding_mode == "reflection":
            v = _reflect(v, lows[a], highs[a])
        return v

    def taps(v, a: int) -> list:
        """(index, weight or None) of axis a at coordinate v."""
        if mode == "nearest":
            return [(v.astype("int64"), None)]
        base = te.floor(v)
        t = v - base
        i0 = base.astype("int64")
        if mode == "linear":
            return [(i0, 1.0 - t), (i0 + 1, t)]
        return [(i0 + (k - 1), w) for k, w in enumerate(_cubic_weights(t, CUBIC_A))]

    def pixel(i, a: int):
        """(the index to read for tap index i of axis a, whether the tap reads zero instead)."""
        d = dims[a]
        if padding_mode == "zeros":
            return _clamp(i, d), te.any(i < 0, i >= d)
        if padding_mode == "reflection":
            i = _reflect(i.astype(dt), lows[a], highs[a]).astype("int64")
        return _clamp(i, d), None

    # each axis's source coordinate once per output position, not once per channel and tap
    coords = [te.compute(tuple(grid.shape[:-1]), lambda *i, a=a: coordinate(grid[(*i, r - 1 - a)], a),
                         name=f"{name}.coord{a}", tag=COORD_TAG) for a in range(r)]

    def body(*i):
        n, c, o = i[0], i[1], i[2:]
        axes = [taps(coords[a][(n, *o)], a) for a in range(r)]
        total = None
        for combo in itertools.product(*axes):
            idx, outside, weight = [], [], None
            for a, (i, w) in enumerate(combo):
                j, off = pixel(i, a)
                idx.append(j)
                outside += [off] if off is not None else []
                weight = w if weight is None else (weight * w if w is not None else weight)
            v = x[(n, c, *idx)]
            if outside:
                v = te.if_then_else(te.any(*outside), te.const(0, dt), v)
            v = v if weight is None else v * weight
            total = v if total is None else total + v
        return total
    return te.compute((x.shape[0], x.shape[1], *grid.shape[1:-1]), body, name=name, tag=TAG,
                      attrs={"mode": mode, "padding_mode": padding_mode})
