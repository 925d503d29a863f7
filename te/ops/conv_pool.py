"""A stem conv and the max pool that alone reads it as one kernel (ResNet's and SqueezeNet's stems).

Run apart, the stem conv (conv_stem.py) writes its whole map (64 x 111 x 111 floats, 3.15 MB for
SqueezeNet; 64 x 112 x 112 for ResNet-50) and the 3x3/2 max pool reads it back.  Here a parallel
task takes a band of `band` pooled rows: it pads and phase-splits the input rows the band needs
(conv_stem's pad stage, once per band), then for each block of `bk` channels computes the conv
(with its bias and activation) over the 2 * band + 1 conv rows that the band's windows read into
a buffer that stays in L1, then the pool's two separable stages (pool.py) a pooled row at a time,
and stores only the pooled map.  The row a band shares with the next one is computed twice
(1 / (2 * band) more FMAs).

    conv[n, k, h, w] = epilogue(sum over c, r, s of xs[...] * w[k, c, r, s] + bias[k])
    out[n, k, ph, pw] = max over the window of conv (padding the max's identity)

The conv and pool computes are conv_stem.conv2d_stem's and pool.max_pool2d's, unchanged; only the
schedule is this file's.  A Relu before the max is exact either way (max commutes with it).

The accumulator tile must stay free of guards and of indices that vary per band (an overhang
clamp), or LLVM keeps it in memory instead of registers; so the accumulator gets rows enough for
the last band's last tile.
"""
from __future__ import annotations

import te
from te.target import Target, parse

from .common import Epilogue
from .conv_geometry import ConvGeometry, round_up
from .conv_stem import applies as stem_applies
from .conv_stem import conv2d_stem, default_tile, schedule_acc_tile, schedule_pad_columns
from .injective import vectorize_inner
from .knobs import FallbackConfig
from .pool import MAX_UNROLLED_TAPS, max_pool2d, pool_out_size
from .schedule import anchor, input_stage, parallel_if_worth

CONV_TAG = "conv_stem_pool.conv"


def applies(g: ConvGeometry) -> bool:
    """Does the fused kernel run a max pool after the conv of geometry g (a stem conv of one image)?"""
    return stem_applies(g) and g.N == 1


def pool_reads_inside(g: ConvGeometry, kernel: tuple[int, int], stride: tuple[int, int],
                      pads: tuple[int, int, int, int], dilation: tuple[int, int], ceil_mode: bool) -> bool:
    """Does every window of the pool lie inside the conv's map (no padding, no ceil-mode overhang)?

    Elsewhere the pool clamps its row index into the map (pool.py), the bounds of a band's conv rows
    then span the whole map, and every task would compute all of the conv: correct, but many times
    slower (ResNet-50's padded pool).  The graph pass fuses only pools this holds for."""
    if any(pads):
        return False
    oh = pool_out_size(g.OH, kernel[0], stride[0], dilation[0], 0, 0, ceil_mode)
    ow = pool_out_size(g.OW, kernel[1], stride[1], dilation[1], 0, 0, ceil_mode)
    return ((oh - 1) * stride[0] + (kernel[0] - 1) * dilation[0] < g.OH
            and (ow - 1) * stride[1] + (kernel[1] - 1) * dilation[1] < g.OW)


def band_rows(g: ConvGeometry, bk: int, pool_rows: int, stride: int, window: int, target: Target) -> int:
    """Pooled rows per task: at most as many as keep a channel block's conv rows (bk channels x
    stride * (band - 1) + window rows x the conv's row, 4 bytes each) in the L1d, where the pool's
    window reads each row again; among those, first a count of bands (the tasks) the threads share
    evenly, then the most rows (each band recomputes the row it shares with the next, and its
    register tiles of conv rows may overhang by one: about 2 / (stride * band) more FMAs).
    SqueezeNet's stem, 8 channels x 111 columns, 48 KiB L1d: 6 pooled rows from 13 conv rows."""
    row_bytes = 4 * bk * g.OW
    most = max(1, (target.caches.l1d // row_bytes - window) // max(stride, 1) + 1)
    most = min(most, pool_rows)

    def key(b: int) -> tuple:
        return (-(-pool_rows // b) % target.threads == 0, b)
    return max(range(1, most + 1), key=key)


def conv_stem_max_pool(x: te.Tensor, w: te.Tensor, g: ConvGeometry, bias: te.Tensor | None,
                       epilogue: Epilogue | None, kernel, stride, pads, dilation=1, ceil_mode: bool = False,
                       name: str = "conv_pool", target: Target | str | None = None) -> te.Tensor:
    """max_pool2d(epilogue(conv(x, w) + bias)) as one kernel (module docstring): x NCHW of at most
    conv_stem.STEM_MAX_CHANNELS channels, w OIHW, g the conv's geometry; the pool's kernel,
    stride, pads (top, left, bottom, right), dilation and ceil_mode as te.ops.max_pool2d takes them."""
    target = parse(target)
    if not applies(g):
        raise ValueError(f"{name}: the fused stem conv + max pool takes one image and an ungrouped conv of at "
                         f"most 4 input channels, got N={g.N}, C={g.C}, groups={g.groups}; "
                         f"run te.ops.conv2d and te.ops.max_pool2d apart")
    bk, bh, _ = default_tile(g, target)

    def stages(acc_rows: int):
        conv = conv2d_stem(x, w, g, bias, epilogue, bk=bk, bh=acc_rows, name=f"{name}.conv", target=target)
        # this kernel's schedule places the conv stage: retagged so that ops.schedule does not take
        # it for an anchor of its own (the op is new, no one else holds it)
        conv.op.tag = CONV_TAG
        return conv, max_pool2d(conv, kernel, stride, pads, dilation, ceil_mode, name=f"{name}.pool", target=target)
    conv, pooled = stages(bh)
    if pooled.op.tag != "pool":
        raise ValueError(f"{name}: the fused stem conv + max pool needs a strided pool (stride 1 pools run "
                         f"flat, pool.py), got stride {stride}; run them apart")
    pa = pooled.op.attrs
    (kh, _), (sh, _), (dh, _) = pa["kernel"], pa["stride"], pa["dilation"]
    PH = pooled.shape[2]
    band = band_rows(g, bk, PH, sh, kh, target)
    # the last band's last register tile of conv rows may reach past the map: the accumulator gets
    # rows enough (conv_stem pads it to whole tiles of its bh), so no guard lands in the unrolled
    # tile, which would keep LLVM from holding it in registers
    conv_rows = sh * (band - 1) + (kh - 1) * dh + 1
    reach = (-(-PH // band) - 1) * sh * band + round_up(conv_rows, bh)
    if reach > round_up(g.OH, bh):
        conv, pooled = stages(reach)
    return te.compute(pooled.shape, lambda *i: pooled[i], name=name, tag="conv_stem_pool",
                      attrs={"geometry": g, "bk": bk, "bh": bh, "band": band, "pool": pa})


def schedule_conv_stem_pool_cfg(cfg, s: te.Schedule, out: te.Tensor, final: te.Tensor, target: Target) -> None:
    """Bands of pooled rows in parallel; per band its padded input rows, then per block of bk
    channels the conv's rows in conv_stem's register tiles, the pool's row maxima and the pooled
    rows (module docstring)."""
    g: ConvGeometry = out.op.attrs["geometry"]
    bk = out.op.attrs["bk"]
    pooled = out.op.input_tensors[0]
    rows = input_stage(pooled, "pool_rows")
    conv = input_stage(rows, CONV_TAG)
    acc = input_stage(conv, "conv2d_stem.acc")
    xs = input_stage(acc, "depthwise.pad")
    lanes = target.lanes(out.dtype)
    bw = conv.op.attrs["bw"]
    N, K, PH, PW = out.shape
    # other bands or tiles than the compute's (attrs) stay right, with guards in the tile where
    # the accumulator's rows run out
    band = out.op.attrs["band"]
    cfg.define_knob("band_rows", sorted({1, 2, 4, 6, 8, band}), default=band)
    band = min(cfg["band_rows"].val, PH)
    # conv_stem's register tile of rows; where it does not divide the band's conv rows (odd at
    # stride 2) the last tile overhangs into rows the pool does not read
    bh = out.op.attrs["bh"]
    cfg.define_knob("tile_rows", sorted({1, 2, 3, bh}), default=bh)
    bh = cfg["tile_rows"].val

    s[pooled].compute_inline()
    if final is not out:
        s[out].compute_inline()
    n, k, ph, pw = s[final].op.axis
    ko, ki = s[final].split(k, factor=bk)
    pho, phi = s[final].split(ph, factor=band)
    # pad_in_band: a task is a band of all channels, its padded input rows made once per band and
    # its channel blocks in turn (the pad's pass over the whole input gone); else a task is one
    # channel block's band and the pad a parallel pass of its own first
    cfg.define_knob("pad_in_band", [True, False], default=True)
    in_band = cfg["pad_in_band"].val and xs is not None
    if in_band:
        s[final].reorder(n, pho, ko, ki, phi, pw)
        task = s[final].fuse(n, pho)
        conv_at = ko
    else:
        s[final].reorder(n, ko, pho, ki, phi, pw)
        task = conv_at = s[final].fuse(n, ko, pho)
    parallel_if_worth(s[final], task, g.flops / 2)
    vectorize_inner(s[final], pw, PW, target, out.dtype)

    # one pooled row of one channel at a time, as pool.py does: its row maxima (111 floats) stay
    # in registers for the strided taps of the pooled row
    s[rows].compute_at(s[final], phi)
    (r_h,) = rows.op.reduce_axis
    wo, wi = vectorize_inner(s[rows], rows.op.axis[-1], rows.shape[-1], target, rows.dtype)
    s[rows].reorder(*rows.op.axis[:-1], r_h, *[a for a in (wo, wi) if a is not None])
    if r_h.dom[1] <= MAX_UNROLLED_TAPS:
        s[rows].unroll(r_h)

    s[conv].compute_at(s[final], conv_at)
    cn, ck, ch, cw = s[conv].op.axis
    cho, chi = s[conv].split(ch, factor=bh)
    cwo, cwi = s[conv].split(cw, factor=bw)
    cwv, cwl = s[conv].split(cwi, factor=lanes)
    s[conv].reorder(cn, cho, cwo, ck, chi, cwv, cwl)
    for a in (ck, chi, cwv):
        s[conv].unroll(a)
    s[conv].vectorize(cwl)

    s[acc].compute_at(s[conv], cwo)
    schedule_acc_tile(s, acc, lanes)

    if xs is not None:
        xn, xc, xh, _, _ = s[xs].op.axis
        if in_band:
            s[xs].compute_at(s[final], task)
        else:
            # at root as conv_stem schedules it: all rows of all channels in parallel
            parallel_if_worth(s[xs], s[xs].fuse(xn, xc, xh), g.flops / 2)
        schedule_pad_columns(s, xs, g)


@anchor("conv_stem_pool")
def schedule_conv_stem_pool(s: te.Schedule, out: te.Tensor, final: te.Tensor | None, target: Target) -> None:
    """The untuned schedule of a fused stem conv + max pool (and the elementwise ops after it)."""
    schedule_conv_stem_pool_cfg(FallbackConfig(), s, out, out if final is None else final, target)


__all__ = ["conv_stem_max_pool", "schedule_conv_stem_pool", "schedule_conv_stem_pool_cfg"]
