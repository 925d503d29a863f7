"""Depthwise conv2d in NCHW (groups == channels, optionally a channel multiplier) and its template.

A channel has one filter, so there is no channel reuse for registers to exploit: the kernel
vectorizes along the output row instead, keeping a few rows of outputs in registers while the
R x S taps stream by.  Stride 2 is computed at stride 1 over the row and every other column
kept (twice the FMAs, but contiguous loads and a pad that is a plain copy); other strides split
the padded input by column phase, [N, C, Hp, sw, Wp/sw], so a strided read becomes contiguous.
"""
from __future__ import annotations

import te
from te.target import Target

from .common import Epilogue, apply_epilogue, largest_divisor
from .conv2d import _schedule_pad, _tile_candidates
from .conv_geometry import (ConvGeometry, Padding, bias_at, check_bias, geometry, pad_chunk, pad_nchw,
                            round_up)
from .knobs import FallbackConfig
from .schedule import anchor, input_stage, output_tiles, parallel_if_worth, register_tile


def pad_nchw_phased(x: te.Tensor, top: int, left: int, bottom: int, sw: int, min_q: int,
                    name: str) -> tuple[te.Tensor, int]:
    """x zero-padded and split by column phase: xs[n, c, h, ph, q] = xpad[n, c, h, q * sw + ph].

    Returns (xs, column of x's column 0 in xpad); xs has at least `min_q` columns per phase.  As in
    pad_nchw, whole chunks of columns are data or padding, so the copy needs no per-lane clamp.
    """
    N, C, H, W = x.shape
    L = pad_chunk(W // sw) if W % sw == 0 else 0
    if L:
        span = L * sw
        lc, nw = -(-left // span), W // span
        col0 = lc * span
    else:
        col0 = left
    Wq = max(min_q, -(-(W + col0) // sw))
    if L:
        Wq = round_up(Wq, L)

    def f(n, c, h, ph, q):
        hh = h - top
        hc = te.min_of(te.max_of(hh, 0), H - 1)
        if L:
            qo = q // L
            inside = te.all(hh >= 0, hh < H, qo >= lc, qo < lc + nw)
            src = x[n, c, hc, te.min_of(te.max_of(qo - lc, 0), nw - 1) * span + q % L * sw + ph]
        else:
            ww = q * sw + ph - col0
            inside = te.all(hh >= 0, hh < H, ww >= 0, ww < W)
            src = x[n, c, hc, te.min_of(te.max_of(ww, 0), W - 1)]
        return te.if_then_else(inside, src, te.const(0, x.dtype))
    xs = te.compute((N, C, H + top + bottom, sw, Wq), f, name=name, tag="depthwise.pad", attrs={"chunk": L})
    return xs, col0


def row_lanes(width: int, limit: int = 64) -> int:
    """Vector width for a row of `width` outputs: the whole row when it fits `limit` lanes, else a divisor."""
    if width <= limit:
        return width
    for d in (64, 48, 32, 16):
        if d <= limit and width % d == 0:
            return d
    return largest_divisor(width, limit)


def depthwise_conv2d_nchw(x: te.Tensor, w: te.Tensor, g: ConvGeometry | None = None,
                          bias: te.Tensor | None = None, epilogue: Epilogue | None = None,
                          strides=(1, 1), padding: Padding = 0, dilation=(1, 1),
                          name: str = "depthwise_conv2d") -> te.Tensor:
    """Depthwise conv (groups == channels, w of shape (C * multiplier, 1, R, S)) in NCHW."""
    if g is None:
        g = geometry(x.shape, w.shape, strides, padding, dilation, groups=x.shape[1])
    if not g.depthwise:
        raise ValueError(f"{name}: not a depthwise convolution (groups={g.groups}, C={g.C}, K={g.K})")
    check_bias(bias, g.K, name)
    mult = g.K // g.C
    sw = g.sw
    N, C, H, W = x.shape
    rr = te.reduce_axis((0, g.R), name="rr")
    rs = te.reduce_axis((0, g.S), name="rs")
    # stride 2 with a chunked pad: compute the row at stride 1 and keep every other column (twice the
    # FMAs, but contiguous reads and a pad that is a plain copy instead of a strided gather)
    sub = sw if sw == 2 and pad_chunk(W) else 1
    if sw == 1 or sub > 1:
        W1 = (g.OW - 1) * sub + 1
        extra_r = max(0, W1 + (g.S - 1) * g.dw - (W + g.pl + g.pr))
        xp, col0 = pad_nchw(x, g.pt, g.pl, g.pb, g.pr + extra_r, name=f"{name}.pad")
        off = col0 - g.pl

        def acc_f(n, k, oh, ow):
            return te.sum(xp[n, k // mult if mult > 1 else k, oh * g.sh + rr * g.dh, ow + rs * g.dw + off]
                          * w[k, 0, rr, rs], axis=[rr, rs])
        acc = te.compute((N, g.K, g.OH, W1), acc_f, name=f"{name}.acc", tag="depthwise.acc")
    else:
        # padded and split by column phase, xs[n, c, h, ph, q] = xpad[n, c, h, q * sw + ph], so that the
        # strided reads of the convolution become contiguous ones
        xp, col0 = pad_nchw_phased(x, g.pt, g.pl, g.pb, sw, g.OW + ((g.S - 1) * g.dw + g.pl) // sw + 1,
                                   name=f"{name}.pad")
        off = col0 - g.pl

        def acc_f(n, k, oh, ow):
            col = rs * g.dw + off
            return te.sum(xp[n, k // mult if mult > 1 else k, oh * g.sh + rr * g.dh, col % sw, ow + col // sw]
                          * w[k, 0, rr, rs], axis=[rr, rs])
        acc = te.compute((N, g.K, g.OH, g.OW), acc_f, name=f"{name}.acc", tag="depthwise.acc")

    def out_f(n, k, oh, ow):
        v = acc[n, k, oh, ow * sub if sub > 1 else ow]
        if bias is not None:
            v = v + bias_at(bias, k)
        return apply_epilogue(epilogue, v, (n, k, oh, ow))
    return te.compute((N, g.K, g.OH, g.OW), out_f, name=name, tag="depthwise_conv2d_nchw",
                      attrs={"geometry": g, "subsample": sub})


def schedule_depthwise_cfg(cfg, s: te.Schedule, out: te.Tensor, final: te.Tensor | None, target: Target) -> None:
    """Schedule a depthwise conv output (and the injective ops fused after it) with cfg's knobs."""
    final = out if final is None else final
    acc = input_stage(out, "depthwise.acc")
    if acc is None:
        raise ValueError(f"{out.name} is not the output of te.ops.depthwise_conv2d_nchw")
    xs = input_stage(acc, "depthwise.pad")
    xp = input_stage(acc, "conv2d.pad")
    g: ConvGeometry = out.op.attrs["geometry"]
    sub = out.op.attrs.get("subsample", 1)
    lanes = row_lanes(g.OW, 64 // sub)
    rows = largest_divisor(g.OH, 4 if lanes <= target.lanes() else 2)     # rows of one register, or of several
    cfg.define_split("tile_oh", g.OH, num_outputs=2, max_factor=8,
                     candidates=_tile_candidates(g.OH, 8, rows), default=[-1, rows])
    cfg.define_knob("unroll_taps", [True, False], default=True)
    bh = cfg["tile_oh"].size[-1]

    if final is not out:
        s[out].compute_inline()
    n, k, oh, ow = s[final].op.axis
    _, owo, owi = output_tiles(s[final], n, k, oh, ow, bh, lanes, g.flops / 2, parallel_columns=False)
    s[final].vectorize(owi)

    s[acc].compute_at(s[final], owo)
    an, ak, aoh, aow = s[acc].op.axis
    rr, rs = s[acc].op.reduce_axis
    awo, awi = s[acc].split(aow, factor=(lanes - 1) * sub + 1)    # the columns one output tile reads
    register_tile(s[acc], [an, ak, awo], [rr, rs], [aoh], awi, unroll=[rr, rs] if cfg["unroll_taps"].val else [])

    if xp is not None:
        _schedule_pad(s, xp, g.flops / 2)
    if xs is not None:
        xn, xc, xh, xph, xq = s[xs].op.axis
        parallel_if_worth(s[xs], s[xs].fuse(xn, xc), g.flops / 2)
        ql = xs.op.attrs.get("chunk") or row_lanes(xs.shape[4])
        if ql > 1:
            _, qi = s[xs].split(xq, factor=ql)
            s[xs].vectorize(qi)


@anchor("depthwise_conv2d_nchw")
def schedule_depthwise_conv2d_nchw(s: te.Schedule, out: te.Tensor, final: te.Tensor | None,
                                   target: Target) -> None:
    """The untuned schedule of a depthwise conv2d output."""
    schedule_depthwise_cfg(FallbackConfig(), s, out, final, target)


__all__ = ["depthwise_conv2d_nchw", "schedule_depthwise_conv2d_nchw", "pad_nchw_phased", "row_lanes"]
