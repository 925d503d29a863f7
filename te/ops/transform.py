"""Data movement: pad, transpose, reshape/flatten, squeeze/unsqueeze, concat/split, slice,
gather, resize, expand/tile.  Every one is an injective compute (tag "injective"): it inlines
into its consumer and is scheduled by schedule_injective when it is an output.

A select evaluates both of its branches, so every read that a condition guards still uses an
index clamped into its tensor.
"""
from __future__ import annotations

import builtins
import itertools
import math
from typing import Sequence

import te

from .elementwise import broadcast_at, broadcast_shape

TAG = "injective"


def _clamp(i, n: int):
    return te.min_of(te.max_of(i, 0), n - 1)


def _axis(axis: int, ndim: int, what: str = "axis") -> int:
    if not -ndim <= axis < ndim:
        raise ValueError(f"{what} {axis} is out of range for {ndim} dimensions")
    return axis % ndim


# ---------------------------------------------------------------- pad

def pad(x: te.Tensor, pad_before, pad_after=None, value: float = 0.0, mode: str = "constant",
        name: str = "pad") -> te.Tensor:
    """Pad x (mode 'constant', 'edge', 'reflect' or 'wrap', numpy's names; negative pads crop).

    The widths are pad_before and pad_after per axis (TOPI), or, with pad_after omitted,
    [(before, after)] per axis (numpy) or ONNX's flat [b_1..b_n, e_1..e_n].
    """
    nd = x.ndim
    if pad_after is not None:
        pw = [(int(b), int(a)) for b, a in zip(pad_before, pad_after)]
    elif len(pad_before) == 2 * nd and not isinstance(pad_before[0], (tuple, list)):
        pw = [(int(pad_before[d]), int(pad_before[d + nd])) for d in range(nd)]
    else:
        pw = [tuple(int(v) for v in p) for p in pad_before]
    if len(pw) != nd:
        raise ValueError(f"{name}: {len(pw)} pad widths for {nd} dimensions")
    if mode not in ("constant", "edge", "reflect", "wrap"):
        raise ValueError(f"{name}: mode must be 'constant', 'edge', 'reflect' or 'wrap', not {mode!r}")
    for (b, a), n in zip(pw, x.shape):
        if mode == "reflect" and (b >= n or a >= n):
            raise ValueError(f"{name}: reflect padding ({b}, {a}) must be smaller than the axis ({n})")
    shape = tuple(n + b + a for (b, a), n in zip(pw, x.shape))
    if any(n <= 0 for n in shape):
        raise ValueError(f"{name}: padding {pw} leaves an empty tensor")

    def body(*i):
        idx, inside = [], []
        for d, ((b, a), n) in enumerate(zip(pw, x.shape)):
            src = i[d] - b if b else i[d]
            if b <= 0 and a <= 0:
                idx.append(src)          # only cropping: always inside
            elif mode == "reflect":
                idx.append(te.if_then_else(src < 0, -src, te.if_then_else(src >= n, 2 * (n - 1) - src, src)))
            elif mode == "wrap":
                idx.append((src + n * -(-b // n)) % n)       # shifted to stay non-negative
            else:
                idx.append(_clamp(src, n))
                if mode == "constant":
                    inside.append(te.all(src >= 0, src < n))
        v = x[tuple(idx)]
        if inside:
            # the pad value in x's dtype, as numpy and ONNX pad (convert would make a float
            # value float32 and the padded tensor with it)
            v = te.if_then_else(te.all(*inside), v, te.const(value, x.dtype))
        return v
    return te.compute(shape, body, name=name, tag=TAG, attrs={"pad_width": tuple(pw), "mode": mode})


# ---------------------------------------------------------------- layout

def copy(x: te.Tensor, name: str = "copy") -> te.Tensor:
    """An elementwise copy of x (ONNX Identity)."""
    return te.compute(x.shape, lambda *i: x[i], name=name, tag=TAG)


def transpose(x: te.Tensor, axes: Sequence[int] | None = None, name: str = "transpose") -> te.Tensor:
    """Permute the axes (reverse them by default), as numpy.transpose."""
    nd = x.ndim
    perm = list(range(nd))[::-1] if axes is None else [_axis(a, nd) for a in axes]
    if sorted(perm) != list(range(nd)):
        raise ValueError(f"{name}: axes {axes} are not a permutation of {nd} dimensions")
    inv = [perm.index(d) for d in range(nd)]
    return te.compute(tuple(x.shape[p] for p in perm), lambda *i: x[tuple(i[inv[d]] for d in range(nd))],
                      name=name, tag=TAG, attrs={"perm": tuple(perm)})


def _resolve_shape(shape: tuple, newshape, allowzero: bool = False) -> tuple[int, ...]:
    newshape = [newshape] if isinstance(newshape, int) else list(newshape)
    out = [shape[d] if (v == 0 and not allowzero and d < len(shape)) else int(v)
           for d, v in enumerate(newshape)]
    total = math.prod(shape)
    if out.count(-1) > 1:
        raise ValueError(f"reshape: at most one -1 in {newshape}")
    if -1 in out:
        rest = math.prod(v for v in out if v != -1)
        if rest == 0 or total % rest:
            raise ValueError(f"reshape: cannot reshape {shape} into {newshape}")
        out[out.index(-1)] = total // rest
    if math.prod(out) != total:
        raise ValueError(f"reshape: cannot reshape {shape} ({total} elements) into {tuple(out)}")
    return tuple(out)


def _unravel(flat, shape: tuple) -> tuple:
    idx = []
    stride = math.prod(shape)
    for d, n in enumerate(shape):
        stride //= n
        v = flat // stride if stride > 1 else flat
        idx.append(v % n if d > 0 else v)
    return tuple(idx)


def reshape(x: te.Tensor, newshape, name: str = "reshape") -> te.Tensor:
    """x with a new shape of the same size (row-major); -1 infers one extent, 0 copies x's (ONNX)."""
    shape = _resolve_shape(x.shape, newshape)
    # keep the common trailing axes as they are, so the innermost index stays affine
    k = 0
    while k < min(len(shape), x.ndim) and shape[-1 - k] == x.shape[-1 - k]:
        k += 1
    lead_out, lead_in = shape[:len(shape) - k], x.shape[:x.ndim - k]

    def body(*i):
        head, tail = i[:len(lead_out)], i[len(lead_out):]
        flat = 0
        for v, n in zip(head, lead_out):
            flat = flat * n + v
        return x[_unravel(flat, lead_in) + tuple(tail)] if lead_in else x[tuple(tail)]
    return te.compute(shape, body, name=name, tag=TAG)


def flatten(x: te.Tensor, axis: int = 1, name: str = "flatten") -> te.Tensor:
    """2-D view: the axes before `axis` make the rows, the rest the columns (ONNX Flatten)."""
    axis = axis % (x.ndim + 1) if axis < 0 else axis
    return reshape(x, (math.prod(x.shape[:axis]), math.prod(x.shape[axis:])), name=name)


def squeeze(x: te.Tensor, axis=None, name: str = "squeeze") -> te.Tensor:
    """Drop axes of extent 1 (all of them, or the given ones)."""
    nd = x.ndim
    drop = [d for d in range(nd) if x.shape[d] == 1] if axis is None else \
        sorted({_axis(a, nd) for a in ([axis] if isinstance(axis, int) else axis)})
    for d in drop:
        if x.shape[d] != 1:
            raise ValueError(f"{name}: axis {d} has extent {x.shape[d]}, not 1")
    keep = [d for d in range(nd) if d not in drop]

    def body(*i):
        idx = [0] * nd
        for d, v in zip(keep, i):
            idx[d] = v
        return x[tuple(idx)]
    return te.compute(tuple(x.shape[d] for d in keep), body, name=name, tag=TAG)


def unsqueeze(x: te.Tensor, axes, name: str = "unsqueeze") -> te.Tensor:
    """Insert axes of extent 1 at the given positions of the output (ONNX Unsqueeze)."""
    axes = [axes] if isinstance(axes, int) else list(axes)
    nd = x.ndim + len(axes)
    new = sorted({_axis(a, nd) for a in axes})
    src = [d for d in range(nd) if d not in new]
    shape = [1] * nd
    for d, n in zip(src, x.shape):
        shape[d] = n
    return te.compute(tuple(shape), lambda *i: x[tuple(i[d] for d in src)], name=name, tag=TAG)


def expand_dims(x: te.Tensor, axis: int, num_newaxis: int = 1, name: str = "expand_dims") -> te.Tensor:
    """Insert num_newaxis axes of extent 1 at `axis` (TOPI expand_dims)."""
    axis = axis % (x.ndim + 1) if axis < 0 else axis
    return unsqueeze(x, list(range(axis, axis + num_newaxis)), name=name)


# ---------------------------------------------------------------- join and cut

def concat(tensors: Sequence[te.Tensor], axis: int = 0, name: str = "concat") -> te.Tensor:
    """Join tensors along an existing axis."""
    tensors = list(tensors)
    if not tensors:
        raise ValueError(f"{name}: nothing to concatenate")
    nd = tensors[0].ndim
    ax = _axis(axis, nd)
    for t in tensors[1:]:
        if t.ndim != nd or any(a != b for d, (a, b) in enumerate(zip(t.shape, tensors[0].shape)) if d != ax):
            raise ValueError(f"{name}: shapes {[t.shape for t in tensors]} differ off axis {ax}")
    offsets = [0]
    for t in tensors:
        offsets.append(offsets[-1] + t.shape[ax])
    shape = tuple(offsets[-1] if d == ax else n for d, n in enumerate(tensors[0].shape))

    def body(*i):
        def at(k):
            t = tensors[k]
            j = i[ax] - offsets[k] if offsets[k] else i[ax]
            if len(tensors) > 1:
                j = _clamp(j, t.shape[ax])
            return t[i[:ax] + (j,) + i[ax + 1:]]
        v = at(len(tensors) - 1)
        for k in range(len(tensors) - 2, -1, -1):
            v = te.if_then_else(i[ax] < offsets[k + 1], at(k), v)
        return v
    return te.compute(shape, body, name=name, tag=TAG)


def strided_slice(x: te.Tensor, begin, end, strides=None, axes=None,
                  name: str = "slice") -> te.Tensor:
    """x[begin:end:stride] on the given axes (all by default), Python slice rules (negative
    indices count from the end, out-of-range bounds are clamped, negative strides walk back)."""
    nd = x.ndim
    axes = list(range(len(begin))) if axes is None else [_axis(a, nd) for a in axes]
    strides = [1] * len(axes) if strides is None else list(strides)
    if not len(begin) == len(end) == len(axes) == len(strides):
        raise ValueError(f"{name}: begin, end, strides and axes must have the same length")
    start, step = [0] * nd, [1] * nd
    shape = list(x.shape)
    for a, b, e, s in zip(axes, begin, end, strides):
        if s == 0:
            raise ValueError(f"{name}: a stride of 0 on axis {a}")
        n = x.shape[a]
        b = None if b is None else int(max(min(b, 2 ** 62), -2 ** 62))
        e = None if e is None else int(max(min(e, 2 ** 62), -2 ** 62))
        lo, hi, st = builtins.slice(b, e, s).indices(n)   # this module's `slice` is the op
        shape[a] = len(range(lo, hi, st))
        start[a], step[a] = lo, st
    if any(n == 0 for n in shape):
        raise ValueError(f"{name}: the slice of {x.shape} is empty")
    return te.compute(tuple(shape), lambda *i: x[tuple(start[d] + i[d] * step[d] if (start[d] or step[d] != 1)
                                                       else i[d] for d in range(nd))],
                      name=name, tag=TAG)


slice = strided_slice  # noqa: A001


def split(x: te.Tensor, indices_or_sections, axis: int = 0, name: str = "split") -> list[te.Tensor]:
    """Cut x along axis: into N equal parts (an int) or at the given indices (numpy.split)."""
    ax = _axis(axis, x.ndim)
    n = x.shape[ax]
    if isinstance(indices_or_sections, int):
        if n % indices_or_sections:
            raise ValueError(f"{name}: axis of {n} does not split into {indices_or_sections} equal parts")
        step = n // indices_or_sections
        cuts = list(range(step, n, step))
    else:
        cuts = [int(c) for c in indices_or_sections]
    bounds = [0] + cuts + [n]
    return [strided_slice(x, [lo], [hi], [1], [ax], name=f"{name}.{k}")
            for k, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:]))]


def split_sizes(x: te.Tensor, sizes: Sequence[int], axis: int = 0, name: str = "split") -> list[te.Tensor]:
    """Cut x along axis into parts of the given sizes (ONNX Split with a `split` input)."""
    ax = _axis(axis, x.ndim)
    if sum(sizes) != x.shape[ax]:
        raise ValueError(f"{name}: sizes {list(sizes)} do not add up to {x.shape[ax]}")
    return split(x, list(itertools.accumulate(sizes))[:-1], ax, name)


def gather(x: te.Tensor, indices: te.Tensor, axis: int = 0, name: str = "gather") -> te.Tensor:
    """out[..., j..., ...] = x[..., indices[j...], ...] along axis (numpy.take / ONNX Gather);
    negative indices count from the end, out-of-range ones are clamped."""
    ax = _axis(axis, x.ndim)
    n = x.shape[ax]
    shape = x.shape[:ax] + indices.shape + x.shape[ax + 1:]
    k = indices.ndim

    def body(*i):
        j = indices[i[ax:ax + k]].astype("int64") if k else indices[()].astype("int64")
        j = te.if_then_else(j < 0, j + n, j)
        return x[i[:ax] + (_clamp(j, n),) + i[ax + k:]]
    return te.compute(shape, body, name=name, tag=TAG)


def take(x: te.Tensor, indices: te.Tensor, axis: int = 0, name: str = "take") -> te.Tensor:
    """numpy.take along an axis (the same as gather)."""
    return gather(x, indices, axis, name)


# ---------------------------------------------------------------- broadcast and repeat

def expand(x: te.Tensor, shape, name: str = "expand") -> te.Tensor:
    """x broadcast with shape (numpy rules in both directions, as ONNX Expand)."""
    out = broadcast_shape(x.shape, tuple(shape))
    return te.compute(out, lambda *i: broadcast_at(x, out, i), name=name, tag=TAG)


def broadcast_to(x: te.Tensor, shape, name: str = "broadcast_to") -> te.Tensor:
    """x broadcast to exactly `shape` (numpy.broadcast_to)."""
    if broadcast_shape(x.shape, tuple(shape)) != tuple(shape):
        raise ValueError(f"{name}: {x.shape} does not broadcast to {tuple(shape)}")
    return expand(x, shape, name)


def tile(x: te.Tensor, reps, name: str = "tile") -> te.Tensor:
    """x repeated reps[d] times along each axis (numpy.tile)."""
    reps = [reps] if isinstance(reps, int) else list(reps)
    nd = max(x.ndim, len(reps))
    reps = [1] * (nd - len(reps)) + reps
    xs = (1,) * (nd - x.ndim) + tuple(x.shape)
    shape = tuple(n * r for n, r in zip(xs, reps))
    lead = nd - x.ndim
    return te.compute(shape, lambda *i: x[tuple(i[lead + d] % xs[lead + d] if reps[lead + d] > 1 else i[lead + d]
                                                for d in range(x.ndim))], name=name, tag=TAG)


# ---------------------------------------------------------------- resize

COORD_MODES = ("half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners", "asymmetric",
               "tf_crop_and_resize")
NEAREST_MODES = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")
RESIZE_METHODS = ("nearest", "linear", "bilinear", "cubic")


def _source_coord(o, n_in: int, n_out: int, mode: str, scale: float, roi: tuple[float, float]):
    """The input coordinate (float64) that output index o maps to (ONNX coordinate_transformation_mode);
    `scale` is the one the model gives (the output size over the input size by default)."""
    of = te.expr.convert(o).astype("float64")
    width = scale * n_in           # ONNX's output width before rounding
    if mode == "half_pixel":
        return (of + 0.5) / scale - 0.5
    if mode == "half_pixel_symmetric":
        offset = n_in / 2 * (1 - n_out / width)
        return (of + 0.5) / scale + (offset - 0.5)
    if mode == "pytorch_half_pixel":
        return (of + 0.5) / scale - 0.5 if width != 1 else of * 0.0 - 0.5
    if mode == "align_corners":
        return of * ((n_in - 1) / (width - 1)) if width != 1 else of * 0.0
    if mode == "asymmetric":
        return of / scale
    if mode == "tf_crop_and_resize":
        lo, hi = roi
        if width == 1:
            return of * 0.0 + ((hi - lo) * (n_in - 1) / 2 + lo * (n_in - 1))
        return of * ((hi - lo) * (n_in - 1) / (width - 1)) + lo * (n_in - 1)
    raise ValueError(f"resize: coordinate_transformation_mode must be one of {COORD_MODES}, not {mode!r}")


def _nearest(c, mode: str):
    if mode == "round_prefer_floor":
        return te.ceil(c - 0.5)
    if mode == "round_prefer_ceil":
        return te.floor(c + 0.5)
    if mode == "floor":
        return te.floor(c)
    if mode == "ceil":
        return te.ceil(c)
    raise ValueError(f"resize: nearest_mode must be one of {NEAREST_MODES}, not {mode!r}")


def _cubic_weights(t, a: float) -> list:
    """Keys' cubic convolution weights of the taps at distances 1 + t, t, 1 - t, 2 - t (0 <= t < 1)."""
    def near(d):                 # |d| <= 1
        return ((a + 2) * d - (a + 3)) * d * d + 1
    def far(d):                  # 1 < |d| < 2
        return ((a * d - 5 * a) * d + 8 * a) * d - 4 * a
    return [far(t + 1.0), near(t), near(1.0 - t), far(2.0 - t)]


def resize(x: te.Tensor, size, method: str = "nearest",
           coordinate_transformation_mode: str = "half_pixel",
           nearest_mode: str = "round_prefer_floor", name: str = "resize", *, scales=None,
           cubic_coeff_a: float = -0.75, exclude_outside: bool = False, roi=None,
           extrapolation_value: float = 0.0) -> te.Tensor:
    """Resize the last two axes of NCHW data to size = (H, W) or (N, C, H, W) (ONNX Resize:
    'nearest', 'linear' = bilinear or 'cubic' = bicubic, with its coordinate_transformation_mode
    and nearest_mode).  scales = (s_h, s_w) are the model's scales when it gives them (they, not
    the rounded sizes, map coordinates); roi = (h0, w0, h1, w1) is tf_crop_and_resize's box."""
    if x.ndim != 4:
        raise ValueError(f"{name}: expected NCHW data, got shape {x.shape}")
    N, C, H, W = x.shape
    size = tuple(int(v) for v in size)
    if len(size) == 4 and size[:2] != (N, C) or len(size) not in (2, 4):
        raise ValueError(f"{name}: size must be (H, W) or (N, C, H, W) with N, C unchanged, got {size}")
    if method not in RESIZE_METHODS:
        raise ValueError(f"{name}: method must be one of {RESIZE_METHODS}, not {method!r}")
    OH, OW = size[-2:]
    ctm = coordinate_transformation_mode
    sh, sw = (OH / H, OW / W) if scales is None else (float(scales[0]), float(scales[1]))
    roi = (0.0, 0.0, 1.0, 1.0) if roi is None else tuple(float(v) for v in roi)
    dt = x.dtype if te.expr.is_float(x.dtype) else "float32"

    def coord(o, n_in, n_out, scale, box):
        return _source_coord(o, n_in, n_out, ctm, scale, box)

    def outside(c, n_in):
        return te.any(c < 0.0, c > float(n_in - 1))

    def taps(c, n_in):
        """(index, weight) pairs of one axis at source coordinate c."""
        if method == "nearest":
            return [(_clamp(_nearest(c, nearest_mode).astype("int64"), n_in), None)]
        if method in ("linear", "bilinear"):
            cf = te.min_of(te.max_of(c, 0.0), float(n_in - 1))
            i0 = te.floor(cf).astype("int64")
            f = (cf - te.floor(cf)).astype(dt)
            return [(i0, 1.0 - f), (te.min_of(i0 + 1, n_in - 1), f)]
        base = te.floor(c)
        weights = _cubic_weights(c - base, cubic_coeff_a)
        idx = [base.astype("int64") + (k - 1) for k in range(4)]
        if exclude_outside:
            weights = [te.if_then_else(te.all(i >= 0, i < n_in), w, 0.0) for i, w in zip(idx, weights)]
            total = weights[0] + weights[1] + weights[2] + weights[3]
            weights = [w / total for w in weights]
        return [(_clamp(i, n_in), w.astype(dt)) for i, w in zip(idx, weights)]

    def body(n, c, oh, ow):
        ch = coord(oh, H, OH, sh, (roi[0], roi[2]))
        cw = coord(ow, W, OW, sw, (roi[1], roi[3]))
        v = None
        for ih, wh in taps(ch, H):
            for iw, ww in taps(cw, W):
                t = x[n, c, ih, iw]
                t = t if wh is None else t.astype(dt) * (wh * ww)
                v = t if v is None else v + t
        if method != "nearest" and v.dtype != x.dtype:
            v = te.round(v).astype(x.dtype)
        if ctm == "tf_crop_and_resize":
            v = te.if_then_else(te.any(outside(ch, H), outside(cw, W)),
                                te.const(extrapolation_value, x.dtype), v)
        return v
    return te.compute((N, C, OH, OW), body, name=name, tag=TAG,
                      attrs={"method": method, "coordinate_transformation_mode": ctm})


__all__ = ["pad", "copy", "transpose", "reshape", "flatten", "squeeze", "unsqueeze", "expand_dims",
           "concat", "strided_slice", "slice", "split", "split_sizes", "gather", "take", "expand",
           "broadcast_to", "tile", "resize"]
