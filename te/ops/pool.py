"""2-D pooling on NCHW data: max/avg with padding, strides, dilation, ceil_mode and
count_include_pad (ONNX MaxPool/AveragePool semantics), and global pooling.

A k_h x k_w window is separable, so the compute has two stages:

    rows[n, c, oh, w] = reduce over kh of x[n, c, oh*s_h + kh*d_h - pad_top, w]
    out[n, c, oh, ow] = reduce over kw of rows[n, c, oh, ow*s_w + kw*d_w - pad_left]

which reads each input row k_h/s_h times instead of k_h*k_w/s_h times.  The `rows` stage
walks the input along w with unit stride, so it vectorizes with plain vector loads (padding
in h only selects whole rows); it is computed per output row inside the output's loop, so it
never leaves L1.  The second stage reads `rows` with the stride of the pooling.

Padding cells are never read: an index is clamped into the tensor and the value replaced by
the reduction's identity (max) or left out of the sum and the divisor (avg).

At stride 1 (float32, an output plane of a vector or more) the window runs as a stride-1 depthwise conv does instead
(depthwise.flat_window): each channel plane padded once with the identity, every tap a run of
whole vectors over the flattened plane, no per-lane select or clamp, the divisor of an average
an epilogue; shifted reads of a just-written row buffer would stall on store forwarding.
"""
from __future__ import annotations

import te
from te.target import Target, parse

from .common import tagged
from .conv_geometry import geometry, pair, resolve_padding
from .depthwise import flat_window, schedule_flat
from .injective import inline_injective, parallel_outer, vectorize_inner
from .knobs import FallbackConfig, register_template
from .reduction import reduce_over
from .schedule import anchor, input_stage

MAX_UNROLLED_TAPS = 8


def pool_out_size(n: int, k: int, s: int, d: int, pad_lo: int, pad_hi: int, ceil_mode: bool) -> int:
    """Output extent along one axis (ONNX/PyTorch rule: in ceil mode the last window must start
    inside the input or the leading padding)."""
    span = n + pad_lo + pad_hi - (d * (k - 1) + 1)
    if span < 0:
        raise ValueError(f"pool2d: window of {k} (dilation {d}) is larger than the padded input of {n}")
    out = (-(-span // s) if ceil_mode else span // s) + 1
    if ceil_mode and (out - 1) * s >= n + pad_lo:
        out -= 1
    return out


def taps_counted(o, s: int, d: int, k: int, lo: int, hi: int, n: int, include_pad: bool) -> te.Expr:
    """How many of the window's taps an average's divisor counts along one axis at output index o
    (an int64 expression): those inside the input, or inside the padded input with include_pad."""
    first, last = (-lo, n + hi) if include_pad else (0, n)
    total = te.const(0, "int64")
    for j in range(k):
        i = o * s + j * d - lo
        total = total + te.if_then_else(te.all(i >= first, i < last), te.const(1, "int64"), te.const(0, "int64"))
    return total


def pool2d(x: te.Tensor, kernel, stride=1, padding=0, dilation=1, pool_type: str = "max",
           ceil_mode: bool = False, count_include_pad: bool = False,
           name: str | None = None, target: Target | str | None = None) -> te.Tensor:
    """Max or average pooling over the last two axes of NCHW data (ONNX semantics), for target
    (None: this machine).

    padding is an int, (h, w), (top, left, bottom, right) or an ONNX auto_pad string.
    """
    if x.ndim != 4:
        raise ValueError(f"pool2d: expected NCHW data, got shape {x.shape}")
    if pool_type not in ("max", "avg"):
        raise ValueError(f"pool2d: pool_type must be 'max' or 'avg', not {pool_type!r}")
    name = name or f"{pool_type}_pool2d"
    kh, kw = pair(kernel, "kernel", "pool2d")
    sh, sw = pair(stride, "stride", "pool2d")
    dh, dw = pair(dilation, "dilation", "pool2d")
    N, C, H, W = x.shape
    pt, pl, pb, pr = resolve_padding(padding, (H, W), (kh, kw), (sh, sw), (dh, dw), "pool2d")
    OH = pool_out_size(H, kh, sh, dh, pt, pb, ceil_mode)
    OW = pool_out_size(W, kw, sw, dw, pl, pr, ceil_mode)
    is_max = pool_type == "max"
    ident = te.expr.min_value(x.dtype) if is_max else te.const(0, x.dtype)
    attrs = {"kernel": (kh, kw), "stride": (sh, sw), "dilation": (dh, dw), "pads": (pt, pl, pb, pr),
             "ceil_mode": ceil_mode, "pool_type": pool_type}
    target = parse(target)
    # flat where an output plane fills a vector at least: a window over (nearly) the whole plane
    # would run its many taps over a few lanes
    if sh == sw == 1 and x.dtype == "float32" and OH * OW >= target.lanes(x.dtype):
        return _pool_flat(x, (kh, kw), (dh, dw), (pt, pl, pb, pr), ident, count_include_pad, name, attrs, target)
    combine = te.max_of if is_max else (lambda a, b: a + b)

    def clamp(i, n):
        return te.min_of(te.max_of(i, 0), n - 1)

    def inside(i, n):
        return te.all(i >= 0, i < n)

    # rows: the window's reduction along h, for every input column
    r_h = te.reduce_axis(kh, "kh")
    clamp_h = pt > 0 or (OH - 1) * sh + (kh - 1) * dh - pt >= H
    clamp_w = pl > 0 or (OW - 1) * sw + (kw - 1) * dw - pl >= W

    def rows_body(n, c, oh, w):
        h = oh * sh + r_h * dh - pt
        src = te.if_then_else(inside(h, H), x[n, c, clamp(h, H), w], ident) if clamp_h else x[n, c, h, w]
        return (te.max if is_max else te.sum)(src, axis=r_h)
    rows = te.compute((N, C, OH, W), rows_body, name=f"{name}.rows", tag="pool_rows")

    def out_body(n, c, oh, ow):
        v = None
        for j in range(kw):   # the taps unrolled: k_w is small
            w = ow * sw + j * dw - pl
            tap = te.if_then_else(inside(w, W), rows[n, c, oh, clamp(w, W)], ident) if clamp_w \
                else rows[n, c, oh, w]
            v = tap if v is None else combine(v, tap)
        if not is_max:
            cnt = (taps_counted(oh, sh, dh, kh, pt, pb, H, count_include_pad)
                   * taps_counted(ow, sw, dw, kw, pl, pr, W, count_include_pad))
            v = v / te.max_of(cnt, 1).astype(x.dtype)
        return v
    return te.compute((N, C, OH, OW), out_body, name=name, tag="pool", attrs=attrs)


def _pool_flat(x: te.Tensor, kernel: tuple[int, int], dilation: tuple[int, int], pads: tuple, ident,
               count_include_pad: bool, name: str, attrs: dict, target: Target) -> te.Tensor:
    """A stride-1 pool as a flat window (depthwise.flat_window) padded with the identity; an
    average divides by its count of taps in the epilogue."""
    N, C, H, W = x.shape
    (kh, kw), (dh, dw), (pt, pl, pb, pr) = kernel, dilation, pads
    is_max = attrs["pool_type"] == "max"
    g = geometry(x.shape, (C, 1, kh, kw), (1, 1), pads, dilation, groups=C)
    acc, Wp, chunk = flat_window(x, g, name, target, reducer=te.max if is_max else te.sum, fill=ident)

    def out_f(n, c, oh, ow):
        v = acc[n, c, oh * Wp + ow]
        if is_max:
            return v
        cnt = (taps_counted(oh, 1, dh, kh, pt, pb, H, count_include_pad)
               * taps_counted(ow, 1, dw, kw, pl, pr, W, count_include_pad))
        return v / te.max_of(cnt, 1).astype(x.dtype)
    return te.compute((N, C, g.OH, g.OW), out_f, name=name, tag="pool_flat",
                      attrs={**attrs, "geometry": g, "flat": chunk, "row": Wp})


def max_pool2d(x: te.Tensor, kernel, stride=1, padding=0, dilation=1, ceil_mode: bool = False,
               name: str = "max_pool2d", target: Target | str | None = None) -> te.Tensor:
    """Max pooling over NCHW data (ONNX MaxPool)."""
    return pool2d(x, kernel, stride, padding, dilation, "max", ceil_mode, name=name, target=target)


def avg_pool2d(x: te.Tensor, kernel, stride=1, padding=0, dilation=1, ceil_mode: bool = False,
               count_include_pad: bool = False, name: str = "avg_pool2d",
               target: Target | str | None = None) -> te.Tensor:
    """Average pooling over NCHW data (ONNX AveragePool); padding is counted if count_include_pad."""
    return pool2d(x, kernel, stride, padding, dilation, "avg", ceil_mode, count_include_pad, name, target)


def global_avg_pool2d(x: te.Tensor, name: str = "global_avg_pool2d",
                      target: Target | str | None = None) -> te.Tensor:
    """Mean over H and W of NCHW data, keeping them as 1 (ONNX GlobalAveragePool)."""
    n = x.shape[2] * x.shape[3]
    return reduce_over(x.shape, (2, 3), lambda i: x[i], "sum", name, keepdims=True, scale=1.0 / n,
                       target=target)


def global_max_pool2d(x: te.Tensor, name: str = "global_max_pool2d",
                      target: Target | str | None = None) -> te.Tensor:
    """Maximum over H and W of NCHW data, keeping them as 1 (ONNX GlobalMaxPool)."""
    return reduce_over(x.shape, (2, 3), lambda i: x[i], "max", name, keepdims=True, target=target)


# ---------------------------------------------------------------- schedules

def schedule_pool_cfg(cfg, s: te.Schedule, out: te.Tensor, target: Target) -> te.Schedule:
    """Schedule a pool2d output with the knobs of cfg, for target."""
    if out.op.tag == "pool_flat":
        schedule_flat(cfg, s, out, out, input_stage(out, "depthwise.flat_acc"), target)
        return s
    st = s[out]
    rows = next(t for t in out.op.input_tensors if getattr(t.op, "tag", "") == "pool_rows")
    inline_injective(s, rows)
    N, C, OH, OW = out.shape
    W = rows.shape[-1]
    cfg.define_knob("vectorize_out", [True, False], default=True)
    cfg.define_knob("row_block", [1, 2, 4], default=1)
    n, c, oh, ow = out.op.axis
    rb = cfg["row_block"].val
    rb = rb if OH % rb == 0 else 1
    oho, ohi = st.split(oh, factor=rb)
    kh = rows.op.reduce_axis[0].dom[1]
    fused = parallel_outer(st, [n, c, oho], [N, C, OH // rb], N * C * OH * W * kh, target)
    # the rows of a block of output rows are computed inside the innermost loop above it
    attach = oho if oho in st.leaf_iter_vars else fused
    if cfg["vectorize_out"].val:
        # reads of `rows` at stride s_w are per-lane loads from L1: still cheaper than scalar code
        vectorize_inner(st, ow, OW, target, out.dtype)
    rst = s[rows]
    wo, wi = vectorize_inner(rst, rows.op.axis[-1], W, target, rows.dtype)
    (r_h,) = rows.op.reduce_axis
    inner = [a for a in (wo, wi) if a is not None]
    rst.reorder(*rows.op.axis[:-1], r_h, *inner)
    if r_h.dom[1] <= MAX_UNROLLED_TAPS:
        # straight-line taps: the running max/sum of a row stays in registers
        rst.unroll(r_h)
    rst.compute_at(st, attach)
    return s


@tagged("pool")
def schedule_pool(s: te.Schedule, out: te.Tensor, target: Target) -> te.Schedule:
    """The untuned schedule of a pool2d output."""
    return schedule_pool_cfg(FallbackConfig(), s, out, target)


@anchor("pool_flat")
def schedule_pool_flat(s: te.Schedule, out: te.Tensor, final: te.Tensor | None, target: Target) -> None:
    """The untuned schedule of a stride-1 pool (and the elementwise ops fused after it)."""
    schedule_flat(FallbackConfig(), s, out, out if final is None else final,
                  input_stage(out, "depthwise.flat_acc"), target)


@register_template("pool2d")
def pool2d_template(cfg, N: int, C: int, H: int, W: int, kernel=3, stride=2, padding=1,
                    pool_type: str = "max", dtype: str = "float32", *, target: Target | None = None):
    """Tunable pool2d on an (N, C, H, W) input."""
    x = te.placeholder((N, C, H, W), dtype, name="x")
    y = pool2d(x, kernel, stride, padding, pool_type=pool_type, target=target)
    s = te.create_schedule(y.op)
    schedule_pool_cfg(cfg, s, y, parse(target))
    return s, [x, y]


__all__ = ["pool2d", "max_pool2d", "avg_pool2d", "global_avg_pool2d", "global_max_pool2d",
           "pool_out_size", "schedule_pool", "schedule_pool_cfg"]
