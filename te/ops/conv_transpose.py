"""Transposed convolution (ONNX ConvTranspose) as a direct kernel, in NC[spatial] layout.

Each output pixel gathers from the input pixels that reach it: along an axis, output o receives
input i through tap k when i * stride - pad_begin + k * dilation == o, so

    y[n, g*Cog + m, o...] = sum over c < Cig, k...: x[n, g*Cig + c, (o + pad - k*dil) / stride ...]
                                                    * w[g*Cig + c, m, k...]

where the division is exact and lands inside the input; other taps add nothing.  No column
matrix and no scatter: the schedule runs the output rows in parallel, keeps the reduction over
(c, k...) outside a vector of output columns (per-lane input reads under a lane mask where the
stride skips) and accumulates in place.  Any number of spatial axes (1-D, 2-D, 3-D).
"""
from __future__ import annotations

import math

import te
from te.target import Target, parse

from .common import tagged
from .injective import vector_lanes
from .schedule import parallel_if_worth

__all__ = ["conv_transpose", "conv_transpose_output_shape"]

TAG = "conv_transpose"


def conv_transpose_output_shape(in_shape, w_shape, strides, pads_begin, pads_end, dilations,
                                output_padding, groups: int) -> tuple[int, ...]:
    """The output shape ONNX gives for explicit pads: s*(i-1) + output_padding + (k-1)*d + 1 - pads."""
    spatial = tuple(s * (i - 1) + op + (k - 1) * d + 1 - pb - pe for i, k, s, d, pb, pe, op in zip(
        in_shape[2:], w_shape[2:], strides, dilations, pads_begin, pads_end, output_padding))
    return (in_shape[0], w_shape[1] * groups) + spatial


def conv_transpose(x: te.Tensor, w: te.Tensor, out_spatial, strides, pads_begin, dilations,
                   groups: int = 1, bias: te.Tensor | None = None, name: str = "conv_transpose") -> te.Tensor:
    """y of spatial shape out_spatial from x (N, C, ...) and w (C, K/groups, kernel...), ONNX's
    ConvTranspose with the padding at the start of each axis given (the end follows from the shape)."""
    nd = x.ndim - 2
    n, c = x.shape[:2]
    if w.ndim != x.ndim or w.shape[0] != c or c % groups:
        raise ValueError(f"{name}: weight {w.shape} does not fit input {x.shape} with {groups} groups "
                         "(it must be (C, K / groups, kernel...), C divisible by groups)")
    cig, cog = c // groups, w.shape[1]
    kernel, spatial = w.shape[2:], x.shape[2:]
    # a multiple of the stride added to every numerator keeps it non-negative: exact floor division
    off = [max(0, -(-((k - 1) * d - p) // s)) for k, d, p, s in zip(kernel, dilations, pads_begin, strides)]
    rc = te.reduce_axis((0, cig), "rc")
    rk = [te.reduce_axis((0, k), f"rk{a}") for a, k in enumerate(kernel)]

    def body(*idx):
        b, oc, o = idx[0], idx[1], idx[2:]
        valid, src = [], []
        for a in range(nd):
            num = o[a] + pads_begin[a] - rk[a].var * dilations[a] + off[a] * strides[a]
            i = num // strides[a] - off[a]
            cond = [i >= 0, i < spatial[a]] + ([num % strides[a] == 0] if strides[a] > 1 else [])
            valid += cond
            src.append(te.min_of(te.max_of(i, 0), spatial[a] - 1))
        ic = (oc // cog) * cig + rc.var
        term = x[(b, ic) + tuple(src)] * w[(ic, oc % cog) + tuple(r.var for r in rk)]
        return te.sum(te.if_then_else(te.all(*valid), term, te.const(0, x.dtype)), axis=[rc] + rk)
    out_shape = (n, cog * groups) + tuple(out_spatial)
    y = te.compute(out_shape, body, name=name if bias is None else f"{name}.acc", tag=TAG,
                   attrs={"flops": 2.0 * math.prod(out_shape) * cig * math.prod(kernel)})
    if bias is None:
        return y
    return te.compute(out_shape, lambda *i: y[i] + bias[i[1]], name=name, tag="broadcast")


@tagged(TAG)
def schedule_conv_transpose(s: te.Schedule, out: te.Tensor, target: Target | str | None = None) -> te.Schedule:
    """Output rows in parallel; the reduction outside a vector of output columns, accumulated in place."""
    target = parse(target)
    st = s[out]
    axes, red = list(st.op.axis), list(st.op.reduce_axis)
    inner = axes[-1]
    lanes = vector_lanes(out.shape[-1], target, out.dtype)
    outer = axes[:-1]
    if lanes > 1 and lanes < out.shape[-1]:
        outer_col, inner = st.split(inner, factor=lanes)
        outer = outer + [outer_col]
    st.reorder(*outer, *red, inner)
    rows = st.fuse(*axes[:2]) if len(axes) > 2 else axes[0]
    parallel_if_worth(st, rows, float(out.op.attrs.get("flops", 0)))
    if lanes > 1:
        st.vectorize(inner)
    return s
