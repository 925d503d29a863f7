"""A depthwise conv and the 1x1 (pointwise) conv after it as one kernel (MobileNet's dw + project).

Run apart, the depthwise conv writes its whole output (C planes) to memory and the 1x1 conv reads
it back; here a parallel task takes a band of `rows` output rows, computes the depthwise conv of
every channel over that band into a buffer that stays in cache (C x rows x Wp floats), and runs
the 1x1 conv as a GEMM on it at once:

    act[n, c, q] = dw_epilogue(sum over taps of xpad[n, c, q + tap offset] * wd[c, tap] + bd[c])
    acc[n, k, q] = sum over c of wp[k, c] * act[n, c, q]
    out[n, k, oh, ow] = epilogue(acc[n, k, oh * Wp + ow] + bp[k])

Both stages work on the flattened padded plane of depthwise.flat_window (rows of Wp columns, the
Wp - OW columns past a row computed and dropped), so a tap is a run of whole vectors and the GEMM's
columns are a contiguous range of the band.  The GEMM keeps a tile of `bm` output channels x `nv`
vectors of positions in registers over the reduction along the channels.  Stride 1 only (the
stride-2 depthwise convs of MobileNet halve the map and are not where the traffic is).
"""
from __future__ import annotations

import math

import te
from te.target import Target, parse

from .common import Epilogue, apply_epilogue, largest_divisor
from .conv_geometry import ConvGeometry, bias_at, check_bias
from .depthwise import FLAT_CHUNK, pad_rows, vectorize_flat_rows
from .knobs import FallbackConfig
from .schedule import anchor, input_stage, parallel_if_worth, register_tile



# narrower maps lose (rough, one thread, against the depthwise and 1x1 kernels apart: 576 -> 96
# channels at 14x14 ~0.20 -> ~0.41 ms, 384 -> 64 ~0.10 -> ~0.11; 192 -> 32 at 28x28 ~0.156 -> ~0.136,
# 144 -> 24 at 56x56 ~0.53 -> ~0.38): a band of a narrow map is a GEMM of a few vectors' width
MIN_WIDTH = 28


def applies(g: ConvGeometry) -> bool:
    """Does the fused kernel run this depthwise conv (geometry g) with a 1x1 conv after it?"""
    return g.depthwise and g.K == g.C and g.sh == g.sw == 1 and g.N == 1 and g.OW >= MIN_WIDTH


def row_layout(g: ConvGeometry, lanes: int) -> tuple[int, int]:
    """(Wp, chunk): rows padded to whole vectors, so that the GEMM's columns are whole vectors too,
    and the depthwise runs of chunk (a divisor of Wp within FLAT_CHUNK) lanes."""
    Wp = -(-max(g.OW, g.W + max(g.pl, g.pr)) // lanes) * lanes
    return Wp, max(c for c in range(lanes, min(Wp, FLAT_CHUNK) + 1, lanes) if Wp % c == 0)


def band_rows(g: ConvGeometry, Wp: int, target: Target) -> int:
    """Output rows per task (a divisor of OH) whose depthwise output takes at most a quarter of the
    L2 cache: preferring a number of bands the threads share evenly, then bands of whole groups of
    4 vectors (the GEMM tile's width), then more rows (rough, one thread, 192 channels at 56x56:
    bands of 4 to 14 rows within 5% of each other, of 1 or 2 rows 20-40% slower, every band
    padding its rows and the filter's halo again)."""
    most = max(1, target.caches.l2 // 4 // (4 * g.C * Wp))
    lanes = target.lanes()

    def key(d: int) -> tuple:
        return (g.OH // d % target.threads == 0, math.gcd(d * Wp // lanes, 4), d)
    return max((d for d in range(1, min(most, g.OH) + 1) if g.OH % d == 0), key=key)


def dwpw_conv2d(x: te.Tensor, wd: te.Tensor, bd: te.Tensor | None, dw_epilogue: Epilogue | None, wp: te.Tensor,
                bp: te.Tensor | None, epilogue: Epilogue | None, g: ConvGeometry, name: str = "dwpw",
                target: Target | None = None) -> te.Tensor:
    """out = epilogue(conv1x1(dw_epilogue(depthwise(x, wd) + bd), wp) + bp) in NCHW, one kernel (module
    docstring); wd (C, 1, R, S), wp (K, C, 1, 1), g the depthwise conv's geometry."""
    target = parse(target)
    K = wp.shape[0]
    if not applies(g) or tuple(wp.shape[1:]) != (g.C, 1, 1):
        raise ValueError(f"{name}: a fused depthwise + 1x1 conv needs a stride-1 depthwise conv of one image "
                         f"and a 1x1 weight (K, {g.C}, 1, 1), got {g} and {wp.shape}")
    check_bias(bd, g.C, f"{name} (depthwise bias)")
    check_bias(bp, K, f"{name} (1x1 bias)")
    N, C, H, W = x.shape
    Wp, chunk = row_layout(g, target.lanes(x.dtype))
    Lp = g.OH * Wp
    base = Wp - g.pl
    reach = base + (g.R - 1) * g.dh * Wp + (g.S - 1) * g.dw
    Hp = max(H + g.pt + 1, -(-(Lp + reach) // Wp))
    xp = pad_rows(x, g.pt + 1, Hp, Wp, f"{name}.pad", "depthwise.flat_pad")
    rr = te.reduce_axis((0, g.R), name="rr")
    rs = te.reduce_axis((0, g.S), name="rs")

    def dw_f(n, c, q):
        f = q + rr * (g.dh * Wp) + rs * g.dw + base
        return te.sum(xp[n, c, f // Wp, f % Wp] * wd[c, 0, rr, rs], axis=[rr, rs])
    dw = te.compute((N, C, Lp), dw_f, name=f"{name}.dw", tag="depthwise.flat_acc")

    def act_f(n, c, q):
        v = dw[n, c, q]
        if bd is not None:
            v = v + bias_at(bd, c)
        return apply_epilogue(dw_epilogue, v, (n, c, q // Wp, q % Wp))
    act = te.compute((N, C, Lp), act_f, name=f"{name}.act", tag="dwpw.act")
    rc = te.reduce_axis((0, C), name="c")
    acc = te.compute((N, K, Lp), lambda n, k, q: te.sum(wp[k, rc, 0, 0] * act[n, rc, q], axis=rc),
                     name=f"{name}.acc", tag="dwpw.acc")

    def out_f(n, k, oh, ow):
        v = acc[n, k, oh * Wp + ow]
        if bp is not None:
            v = v + bias_at(bp, k)
        return apply_epilogue(epilogue, v, (n, k, oh, ow))
    return te.compute((N, K, g.OH, g.OW), out_f, name=name, tag="dwpw",
                      attrs={"geometry": g, "row": Wp, "flat": chunk})


def schedule_dwpw_cfg(cfg, s: te.Schedule, out: te.Tensor, final: te.Tensor, target: Target) -> None:
    """Bands of rows in parallel; per band the padded rows, depthwise runs and activation of every
    channel, then the GEMM's register tiles, then the epilogue row by row."""
    g: ConvGeometry = out.op.attrs["geometry"]
    Wp, chunk = out.op.attrs["row"], out.op.attrs["flat"]
    acc = input_stage(out, "dwpw.acc")
    act = input_stage(acc, "dwpw.act")
    dw = input_stage(act, "depthwise.flat_acc")
    xp = input_stage(dw, "depthwise.flat_pad")
    K = out.shape[1]
    lanes = target.lanes(out.dtype)
    rows = band_rows(g, Wp, target)
    cfg.define_knob("band_rows", sorted({1, 2, 4, 7, 8, 14, rows}), default=rows)
    rows = cfg["band_rows"].val if g.OH % cfg["band_rows"].val == 0 else 1
    # the GEMM tile: bm channels x nv vectors within the accumulator registers
    cfg.define_knob("nv", [1, 2, 4], default=4)
    nv = max(d for d in range(1, cfg["nv"].val + 1) if (Wp * rows) % (d * lanes) == 0)
    bm = largest_divisor(K, max(1, target.acc_vectors // nv))
    cfg.define_knob("tile_k", sorted({2, 4, 6, 8, bm}), default=bm)
    bm = cfg["tile_k"].val if K % cfg["tile_k"].val == 0 else 1

    if final is not out:
        s[out].compute_inline()
    n, k, oh, ow = s[final].op.axis
    oho, ohi = s[final].split(oh, factor=rows)
    s[final].reorder(n, oho, k, ohi, ow)
    band = s[final].fuse(n, oho)
    parallel_if_worth(s[final], band, g.flops / 2 + 2.0 * K * g.C * g.OH * g.OW)
    vectorize_flat_rows(s[final], ow, g.OW, Wp)

    s[acc].compute_at(s[final], band)
    _, ak, aq = s[acc].op.axis
    (rc,) = s[acc].op.reduce_axis
    ako, aki = s[acc].split(ak, factor=bm)
    aqo, aqi = s[acc].split(aq, factor=lanes)
    aqoo, aqoi = s[acc].split(aqo, factor=nv)
    register_tile(s[acc], [ako, aqoo], [rc], [aki, aqoi], aqi)

    s[act].compute_at(s[final], band)
    _, c, q = s[act].op.axis
    s[act].vectorize(s[act].split(q, factor=lanes)[1])
    s[dw].compute_at(s[act], c)
    _, _, dq = s[dw].op.axis
    rr, rs = s[dw].op.reduce_axis
    dqo, dqi = s[dw].split(dq, factor=chunk)
    register_tile(s[dw], [dqo], [rr, rs], [], dqi, unroll=[rr, rs])
    s[xp].compute_at(s[act], c)
    col = s[xp].op.axis[3]
    if Wp > FLAT_CHUNK:
        col = s[xp].split(col, factor=lanes)[1]
    s[xp].vectorize(col)


@anchor("dwpw")
def schedule_dwpw(s: te.Schedule, out: te.Tensor, final: te.Tensor | None, target: Target) -> None:
    """The untuned schedule of a fused depthwise + 1x1 conv."""
    schedule_dwpw_cfg(FallbackConfig(), s, out, out if final is None else final, target)


__all__ = ["dwpw_conv2d", "schedule_dwpw", "schedule_dwpw_cfg"]
