"""Lowerings of the shape and data-movement operators (see lowering.py)."""
from __future__ import annotations

import numpy as np

from .lowering import _ints, _ops, _str, _tensor, checks, lowers


@lowers("Reshape")
def _reshape(node, ins, attrs, opset, out_shapes):
    return [_ops().reshape(ins[0], tuple(out_shapes[0]), name=node.name)]


@lowers("Flatten")
def _flatten(node, ins, attrs, opset, out_shapes):
    x = ins[0]
    rank = len(x.shape)
    axis = attrs.get("axis", 1)
    axis = axis + rank if axis < 0 else axis
    shape = (int(np.prod(x.shape[:axis])), int(np.prod(x.shape[axis:])))
    return [_ops().reshape(x, shape, name=node.name)]


@lowers("Squeeze", "Unsqueeze")
def _squeeze(node, ins, attrs, opset, out_shapes):
    return [_ops().reshape(ins[0], tuple(out_shapes[0]), name=node.name)]


@lowers("Transpose")
def _transpose(node, ins, attrs, opset, out_shapes):
    perm = attrs.get("perm")
    return [_ops().transpose(ins[0], None if perm is None else tuple(perm), name=node.name)]


@lowers("Concat")
def _concat(node, ins, attrs, opset, out_shapes):
    rank = len(out_shapes[0])
    dtype = next(x.dtype for x in ins if hasattr(x, "dtype"))
    parts = [_tensor(x, (1,) * rank, dtype, f"{node.name}.c{k}") for k, x in enumerate(ins)]
    return [_ops().concat(parts, axis=attrs["axis"], name=node.name)]


@lowers("Split")
def _split(node, ins, attrs, opset, out_shapes):
    # the importer rewrites Split into one Slice per part; this serves graphs built by hand
    x = ins[0]
    axis = attrs.get("axis", 0) % len(x.shape)
    sizes = attrs.get("split")
    if sizes is None:
        n = len(node.outputs)
        sizes = [x.shape[axis] // n] * n
    return list(_ops().split_sizes(x, [int(s) for s in np.asarray(sizes).reshape(-1)], axis=axis,
                                   name=node.name))


@lowers("Slice")
def _slice(node, ins, attrs, opset, out_shapes):
    x = ins[0]
    starts, ends = _ints(attrs["starts"]), _ints(attrs["ends"])
    axes = _ints(attrs["axes"]) if "axes" in attrs else list(range(len(starts)))
    steps = _ints(attrs["steps"]) if "steps" in attrs else [1] * len(starts)
    return [_ops().strided_slice(x, starts, ends, steps, axes, name=node.name)]


@lowers("Gather")
def _gather(node, ins, attrs, opset, out_shapes):
    x, idx = ins
    if not hasattr(x, "shape"):           # one element: every index reads it
        x = _tensor(x, (1,), None, f"{node.name}.x")
    idx = _tensor(idx, (1,) * (len(out_shapes[0]) - len(x.shape) + 1), "int64", f"{node.name}.i")
    return [_ops().gather(x, idx, axis=attrs.get("axis", 0), name=node.name)]


@lowers("GatherElements")
def _gather_elements(node, ins, attrs, opset, out_shapes):
    import te
    x, idx = ins
    x = _tensor(x, (1,) * len(out_shapes[0]), None, f"{node.name}.x")
    idx = _tensor(idx, (1,) * len(x.shape), "int64", f"{node.name}.i")
    ax = attrs.get("axis", 0) % len(x.shape)
    n = x.shape[ax]

    def body(*i):
        j = idx[i].astype("int64")
        j = te.min_of(te.max_of(te.if_then_else(j < 0, j + n, j), 0), n - 1)
        return x[i[:ax] + (j,) + i[ax + 1:]]
    return [te.compute(tuple(idx.shape), body, name=node.name, tag="injective")]


@lowers("Pad")
def _pad(node, ins, attrs, opset, out_shapes):
    x = ins[0]
    mode = _str(attrs.get("mode"), "constant")
    value = attrs.get("constant_value", attrs.get("value", 0.0))
    value = np.asarray(value).reshape(-1)[0].item() if value is not None and np.asarray(value).size else 0.0
    before, after = _pads(attrs, len(x.shape))
    return [_ops().pad(x, before, after, value=value, mode=mode, name=node.name)]


@checks("Pad")
def _check_pad(node, ins, opset):
    mode = _str(node.attrs.get("mode"), "constant")
    if mode not in ("constant", "edge", "reflect", "wrap"):
        return f"Pad mode {mode!r} is not supported (constant, edge, reflect, wrap)"
    if mode == "reflect":
        shape = ins[0].shape
        before, after = _pads(node.attrs, len(shape))
        if any(max(b, a) >= n for b, a, n in zip(before, after, shape)):
            return f"reflect padding {before} / {after} must be smaller than the axes {shape}"
    return None


def _pads(attrs, rank: int) -> tuple[list[int], list[int]]:
    """(before, after) per axis from ONNX's pads (and the optional axes they apply to)."""
    pads = _ints(attrs["pads"])
    if "axes" in attrs:
        axes = [a % rank for a in _ints(attrs["axes"])]
        full = [0] * (2 * rank)
        for k, a in enumerate(axes):
            full[a], full[a + rank] = pads[k], pads[k + len(axes)]
        pads = full
    return pads[:rank], pads[rank:]


@lowers("Expand")
def _expand(node, ins, attrs, opset, out_shapes):
    return [_ops().broadcast_to(ins[0], tuple(out_shapes[0]), name=node.name)]


@lowers("Tile")
def _tile(node, ins, attrs, opset, out_shapes):
    return [_ops().tile(ins[0], _ints(attrs["repeats"]), name=node.name)]


@lowers("Range")
def _range(node, ins, attrs, opset, out_shapes):
    import te
    start, delta = (np.asarray(attrs[k]).reshape(-1)[0].item() for k in ("start", "delta"))
    dtype = str(np.asarray(attrs["start"]).dtype)
    return [te.compute(tuple(out_shapes[0]), lambda i: (te.expr.convert(start, dtype)
                                                              + i.astype(dtype) * delta),
                       name=node.name, tag="injective")]


@lowers("Trilu")
def _trilu(node, ins, attrs, opset, out_shapes):
    import te
    x = ins[0]
    k = int(np.asarray(attrs.get("k", 0)).reshape(-1)[0])
    upper = bool(attrs.get("upper", 1))
    r = len(x.shape)

    def body(*i):
        # keep j - i >= k (upper) or j - i <= k (lower)
        d = i[r - 1] - i[r - 2]
        keep = d >= k if upper else d <= k
        return te.if_then_else(keep, x[i], te.const(0, x.dtype))
    return [te.compute(tuple(x.shape), body, name=node.name, tag="injective")]


@checks("Trilu")
def _check_trilu(node, ins, opset):
    return None if len(ins[0].shape) >= 2 else f"its input has rank {len(ins[0].shape)}; Trilu needs a matrix (rank >= 2)"


@checks("CumSum", "CumProd")
def _check_scan(node, ins, opset):
    rank = len(ins[0].shape)
    axis = int(np.asarray(node.attrs.get("axis", 0)).reshape(-1)[0])
    return None if -rank <= axis < rank else f"axis {axis} is outside [-{rank}, {rank - 1}] for a rank-{rank} input"


@lowers("CumSum")
def _cumsum(node, ins, attrs, opset, out_shapes):
    return _scan(node, ins, attrs, "sum")


def _scan(node, ins, attrs, kind: str):
    """Inclusive/exclusive, forward/reverse running sum or product along an axis."""
    import te
    x = ins[0]
    red = te.sum if kind == "sum" else te.prod
    ax = int(np.asarray(attrs["axis"]).reshape(-1)[0]) % len(x.shape)
    n = x.shape[ax]
    exclusive, reverse = bool(attrs.get("exclusive", 0)), bool(attrs.get("reverse", 0))
    r = te.reduce_axis(n, "r")

    def body(*i):
        # a sum over the whole axis with the terms outside the prefix masked out
        o = i[ax]
        take = (r.var >= o if not exclusive else r.var > o) if reverse else \
            (r.var <= o if not exclusive else r.var < o)
        skip = te.const(0 if kind == "sum" else 1, x.dtype)
        return red(te.if_then_else(take, x[i[:ax] + (r,) + i[ax + 1:]], skip), axis=r)
    return [te.compute(tuple(x.shape), body, name=node.name, tag="reduce_scan")]


@lowers("CumProd")
def _cumprod(node, ins, attrs, opset, out_shapes):
    return _scan(node, ins, attrs, "prod")


@lowers("OneHot")
def _onehot(node, ins, attrs, opset, out_shapes):
    import te
    depth = int(np.asarray(attrs["depth"]).reshape(-1)[0])
    out_shape = tuple(out_shapes[0])
    idx = _tensor(ins[0], (1,) * (len(out_shape) - 1), "int64", f"{node.name}.i")
    values = ins[1]
    ax = attrs.get("axis", -1) % len(out_shape)

    def value(k):
        return values[k] if hasattr(values, "shape") else values

    def body(*i):
        j = idx[i[:ax] + i[ax + 1:]]
        j = te.if_then_else(j < 0, j + depth, j).astype("int64")
        return te.if_then_else(j == i[ax], value(1), value(0))
    return [te.compute(out_shape, body, name=node.name, tag="injective")]


@checks("DepthToSpace", "SpaceToDepth")
def _check_depth_space(node, ins, opset):
    b, shape = int(node.attrs.get("blocksize", 0)), ins[0].shape
    if len(shape) != 4 or b < 1:
        return f"needs NCHW input and blocksize >= 1 (input {shape}, blocksize {b})"
    if node.op == "DepthToSpace" and shape[1] % (b * b):
        return f"{shape[1]} channels do not divide into blocks of {b}x{b}"
    if node.op == "SpaceToDepth" and (shape[2] % b or shape[3] % b):
        return f"the {shape[2]}x{shape[3]} map does not divide into blocks of {b}x{b}"
    return None


@lowers("DepthToSpace", "SpaceToDepth")
def _depth_space(node, ins, attrs, opset, out_shapes):
    ops = _ops()
    x = ins[0]
    b = int(attrs["blocksize"])
    N, C, H, W = x.shape
    if node.op == "SpaceToDepth":
        t = ops.reshape(x, (N, C, H // b, b, W // b, b), name=f"{node.name}.split")
        crd = _str(attrs.get("mode"), "DCR") == "CRD"
        t = ops.transpose(t, (0, 1, 3, 5, 2, 4) if crd else (0, 3, 5, 1, 2, 4), name=f"{node.name}.perm")
        return [ops.reshape(t, (N, C * b * b, H // b, W // b), name=node.name)]
    if _str(attrs.get("mode"), "DCR") == "DCR":
        t = ops.reshape(x, (N, b, b, C // (b * b), H, W), name=f"{node.name}.split")
        t = ops.transpose(t, (0, 3, 4, 1, 5, 2), name=f"{node.name}.perm")
    else:
        t = ops.reshape(x, (N, C // (b * b), b, b, H, W), name=f"{node.name}.split")
        t = ops.transpose(t, (0, 1, 4, 2, 5, 3), name=f"{node.name}.perm")
    return [ops.reshape(t, (N, C // (b * b), H * b, W * b), name=node.name)]


@lowers("Resize", "Upsample")
def _resize(node, ins, attrs, opset, out_shapes):
    x = ins[0]
    out_shape = tuple(out_shapes[0])
    scales, roi = _resize_scales(node, tuple(x.shape), out_shape)
    mode = _str(attrs.get("mode"), "nearest")
    default_ctm = "half_pixel" if node.op == "Resize" and opset >= 11 else "asymmetric"
    ctm = _str(attrs.get("coordinate_transformation_mode"), default_ctm)
    # Upsample and Resize-10 repeat pixels (floor); Resize-11 rounds by its nearest_mode
    nearest = _str(attrs.get("nearest_mode"), "round_prefer_floor" if default_ctm == "half_pixel" else "floor")
    return [_ops().resize(x, out_shape, method=mode, coordinate_transformation_mode=ctm,
                          nearest_mode=nearest, name=node.name, scales=scales[2:],
                          cubic_coeff_a=float(attrs.get("cubic_coeff_a", -0.75)),
                          exclude_outside=bool(attrs.get("exclude_outside", 0)),
                          roi=(roi[2], roi[3], roi[6], roi[7]),
                          extrapolation_value=float(attrs.get("extrapolation_value", 0.0)))]


def _resize_scales(node, in_shape: tuple, out_shape: tuple) -> tuple[list[float], list[float]]:
    """Per-axis scales (as ONNX maps coordinates with them) and the full roi of a Resize/Upsample."""
    attrs = node.attrs
    r = len(in_shape)
    axes = [a % r for a in _ints(attrs["axes"])] if "axes" in attrs else list(range(r))
    scales = [1.0] * r
    given = attrs.get("scales")
    if given is not None and np.asarray(given).size:
        for a, s in zip(axes, np.asarray(given, np.float64).reshape(-1)):
            scales[a] = float(s)
    else:
        for a in axes:
            scales[a] = out_shape[a] / in_shape[a]
        policy = _str(attrs.get("keep_aspect_ratio_policy"), "stretch")
        if policy != "stretch":
            sizes = [int(v) for v in np.asarray(attrs["sizes"]).reshape(-1)]
            ratios = [s / in_shape[a] for a, s in zip(axes, sizes)]
            common = min(ratios) if policy == "not_larger" else max(ratios)
            for a in axes:
                scales[a] = common
    roi = [0.0] * r + [1.0] * r
    given = attrs.get("roi")
    if given is not None and np.asarray(given).size:
        vals = [float(v) for v in np.asarray(given).reshape(-1)]
        for k, a in enumerate(axes):
            roi[a], roi[r + a] = vals[k], vals[len(axes) + k]
    return scales, roi


@checks("Resize", "Upsample")
def _check_resize(node, ins, opset):
    from te.ops.transform import COORD_MODES, NEAREST_MODES, RESIZE_METHODS
    attrs = node.attrs
    if len(ins[0].shape) != 4:
        return f"resizing {len(ins[0].shape)}-D data: only NCHW (4-D) data is supported"
    mode = _str(attrs.get("mode"), "nearest")
    ctm = _str(attrs.get("coordinate_transformation_mode"), "half_pixel")
    nearest = _str(attrs.get("nearest_mode"), "round_prefer_floor")
    if mode not in RESIZE_METHODS:
        return f"mode {mode!r} is not supported"
    if ctm not in COORD_MODES:
        return f"coordinate_transformation_mode {ctm!r} is not supported"
    if nearest not in NEAREST_MODES:
        return f"nearest_mode {nearest!r} is not supported"
    if attrs.get("antialias", 0) and mode != "nearest":
        return "antialiased resizing is not supported"
    r = len(ins[0].shape)
    axes = [a % r for a in _ints(attrs["axes"])] if "axes" in attrs else list(range(r))
    for key in ("scales", "sizes"):
        v = attrs.get(key)
        if v is not None and np.asarray(v).size:
            vals = np.asarray(v, np.float64).reshape(-1)
            if key == "scales" and (vals <= 0).any():
                return f"scales {vals.tolist()} must all be positive"
            for a, s in zip(axes, vals):
                if a < 2 and s != (1.0 if key == "scales" else ins[0].shape[a]):
                    return "resizing the batch or channel axis is not supported"
    return None
