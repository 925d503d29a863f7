"""The stem conv: few input channels (an RGB image), vectors along the output row.

A network's first conv (SqueezeNet's 3 -> 64 3x3/2, ResNet's 3 -> 64 7x7/2) reduces over only
C x R x S = 27 or 147 terms per output, from an NCHW input of 3 channels.  The direct kernel
(conv2d.py) puts its vectors along the output channels, so each register tile must be
transposed into NCHW when it is stored, and its tile of pixels has to divide the row (a 111-wide
map leaves 1 x 3 tiles).  Here the vectors run along the output row instead, as the depthwise
kernel's do: a tile of `bk` output channels x `bh` rows x `bv` vectors of pixels accumulates in
registers, each step of the reduction loads bh x bv input vectors and broadcasts bk weights (a
scalar each) for bk x bh x bv FMAs, and the tile is stored as whole vectors along NCHW's rows.
A strided conv reads its input split by column phase (depthwise.pad_nchw_phased), so every
load is a contiguous vector; the accumulator is padded to whole tiles, so a row of 111 outputs
computes 112 and stores its last vector under a mask.  The weight is read as it is (OIHW, a
scalar per broadcast), so nothing is packed.
"""
from __future__ import annotations

import te
from te.target import Target, parse

from .common import Epilogue, apply_epilogue
from .conv_geometry import ConvGeometry, bias_at, check_bias, round_up
from .depthwise import pad_nchw_phased, row_lanes
from .schedule import anchor, input_stage, parallel_if_worth, register_tile

STEM_MAX_CHANNELS = 4       # input channels of the convs this kernel is meant for (images)
STEM_PREFERRED_TERMS = 147  # C x R x S up to which it is the untuned choice: a 7x7 filter over RGB (preferred)
STEM_FUSED_TERMS = 64       # ... and up to which a strided max pool after it fuses into it (short_reduction)


def applies(g: ConvGeometry) -> bool:
    """Does the stem kernel run g: an ungrouped conv over at most STEM_MAX_CHANNELS input channels?"""
    return g.groups == 1 and g.C <= STEM_MAX_CHANNELS


def preferred(g: ConvGeometry) -> bool:
    """Does an untuned build take the stem kernel over the direct conv: reductions up to a 7x7
    filter over 3 channels (147 terms)?

    Both kernels issue about one load per 1.6 FMAs there (the stem kernel's 8 x 2 tile: 2 input
    vectors and 8 weight broadcasts per 16 FMAs; the direct conv's 32 channels x 1 x 8 pixels:
    8 broadcasts and 2 weight vectors), but the direct conv then transposes every tile into
    NCHW's rows and packs its weights, where the stem kernel stores whole row vectors and reads
    its weights as they are.  On a short reduction (3x3 over 3 channels: 27 terms) the store
    costs as much as the FMAs; on ResNet-50's 7x7 stem (147 terms) the difference is smaller but
    holds: measured on Emerald Rapids, one thread's CPU time, 1.07-1.10x alone (warm) and 1.06x
    in ResNet-50's order (bench/conv_in_model.py); two threads, weights cold, undisturbed calls
    (bench/conv_weak.py, rough) 1.13x, once the threads split row bands (schedule_conv2d_stem).
    Longer reductions (11x11 over 3 channels: 363) keep the direct conv: unmeasured."""
    return applies(g) and g.C * g.R * g.S <= STEM_PREFERRED_TERMS


def short_reduction(g: ConvGeometry) -> bool:
    """Is g a stem conv of at most STEM_FUSED_TERMS terms (SqueezeNet's 3x3 over 3 channels), the
    convs the fused stem + max pool kernel (te/ops/conv_pool.py) was measured to pay for?  A 7x7
    stem fused ran slower than its pool's pass saved (bench/conv_pool.py, one thread, when the
    7x7 stem ran the direct conv): unmeasured since."""
    return applies(g) and g.C * g.R * g.S <= STEM_FUSED_TERMS


def default_tile(g: ConvGeometry, target: Target) -> tuple[int, int, int]:
    """(bk channels, bh rows, bv vectors) of the register tile, from the target's registers.

    A reduction step issues bh*bv loads + bk broadcasts for bk*bh*bv FMAs.  With two load and two
    FMA ports (every AVX-512 and AVX2 core: Emerald Rapids, Ice Lake, Zen 4/5, Haswell) the FMAs
    dominate once bk*bh*bv is about twice bh*bv + bk, and at least 8 independent accumulators hide
    the FMA latency (4 cycles x 2 ports).  The accumulators take two thirds of the registers the
    target leaves for them (Target.acc_vectors: 28 of AVX-512's 32, 12 of AVX2's 16): the unrolled
    taps' input vectors, which LLVM loads ahead, need the rest, and a tile of 24 on AVX-512 spilled
    them (SqueezeNet's stem, one thread: 8 x 3 ~5% slower than 8 x 2).  One vector of pixels wide
    (a 111-wide row then pads one pixel in 112, two vectors would pad 17 in 128); bk the channel
    block, a divisor of K of up to 8; bh the rows that leave fit: 8 x 2 on AVX-512, 4 x 2 on AVX2."""
    budget = target.acc_vectors * 2 // 3
    bk = max((b for b in (8, 4, 2, 1) if g.K % b == 0 and 2 * b <= budget), default=1)
    bh = max(1, min(budget // bk, 4, g.OH))
    return bk, bh, 1


def conv2d_stem(x: te.Tensor, w: te.Tensor, g: ConvGeometry, bias: te.Tensor | None = None,
                epilogue: Epilogue | None = None, bk: int | None = None, bh: int | None = None,
                bv: int | None = None, name: str = "conv2d", target: Target | str | None = None) -> te.Tensor:
    """y = epilogue(conv(x, w) + bias) in NCHW for a conv of few input channels (for target, None:
    this machine), w OIHW; the tile defaults to default_tile's."""
    target = parse(target)
    if not applies(g):
        raise ValueError(f"{name}: the stem conv takes an ungrouped conv of at most {STEM_MAX_CHANNELS} "
                         f"input channels, got C={g.C}, groups={g.groups}; use te.ops.conv2d")
    check_bias(bias, g.K, name)
    dk, dh, dv = default_tile(g, target)
    bk, bh, bv = bk or dk, bh or dh, bv or dv
    lanes = target.lanes()
    bw = bv * lanes
    Kp, OHp, OWp = round_up(g.K, bk), round_up(g.OH, bh), round_up(g.OW, bw)
    sw = g.sw
    rows = (OHp - 1) * g.sh + (g.R - 1) * g.dh + 1           # padded rows the tiles read
    bottom = max(g.pb, rows - g.H - g.pt)

    def phased(min_q: int):
        return pad_nchw_phased(x, g.pt, g.pl, bottom, sw, min_q, name=f"{name}.pad")
    xs, col0 = phased(0)
    off = col0 - g.pl
    need = OWp + ((g.S - 1) * g.dw + off) // sw      # columns per phase the padded tiles read
    if xs.shape[4] < need:
        xs, col0 = phased(need)
        off = col0 - g.pl
    K = g.K
    rc = te.reduce_axis((0, g.C), name="rc")
    rr = te.reduce_axis((0, g.R), name="rr")
    rs = te.reduce_axis((0, g.S), name="rs")

    def acc_f(n, k, oh, ow):
        col = rs * g.dw + off
        # padded channels (Kp > K) repeat channel K-1's weights: computed, never stored
        kk = k if Kp == K else te.min_of(k, K - 1)
        return te.sum(xs[n, rc, oh * g.sh + rr * g.dh, col % sw, ow + col // sw] * w[kk, rc, rr, rs],
                      axis=[rc, rr, rs])
    acc = te.compute((g.N, Kp, OHp, OWp), acc_f, name=f"{name}.acc", tag="conv2d_stem.acc")

    def out_f(n, k, oh, ow):
        v = acc[n, k, oh, ow]
        if bias is not None:
            v = v + bias_at(bias, k)
        return apply_epilogue(epilogue, v, (n, k, oh, ow))
    return te.compute((g.N, g.K, g.OH, g.OW), out_f, name=name, tag="conv2d_stem",
                      attrs={"geometry": g, "bk": bk, "bh": bh, "bw": bw, "lanes": lanes})


@anchor("conv2d_stem")
def schedule_conv2d_stem(s: te.Schedule, out: te.Tensor, final: te.Tensor | None, target: Target) -> None:
    """Tiles of bk channels x bh rows x bw pixels in parallel; each accumulates in registers over the
    whole (unrolled) reduction, then takes its epilogue and stores whole vectors along the rows.

    The tile rows are the outermost parallel axis, as the pad's input rows are: each thread's
    static share (te/codegen_parallel.py) is a band of output rows, whose input rows its own pad
    share wrote into its L2, and whose output rows the next kernel (a pool, split by rows) reads
    from it.  With the channel blocks outermost every thread read the whole input, half of it
    from the other core's L2: ResNet-50's 7x7 stem on two threads (bench/conv_weak.py, Emerald
    Rapids, undisturbed calls, rough) 0.87 -> 0.73 ms, one thread as fast."""
    final = out if final is None else final
    acc = input_stage(out, "conv2d_stem.acc")
    if acc is None:
        raise ValueError(f"{out.name} is not the output of te.ops.conv_stem.conv2d_stem")
    xs = input_stage(acc, "depthwise.pad")
    attrs = out.op.attrs
    g: ConvGeometry = attrs["geometry"]
    bk, bh, bw, lanes = attrs["bk"], attrs["bh"], attrs["bw"], attrs["lanes"]
    if final is not out:
        s[out].compute_inline()
    n, k, oh, ow = s[final].op.axis
    ko, ki = s[final].split(k, factor=bk)
    oho, ohi = s[final].split(oh, factor=bh)
    owo, owi = s[final].split(ow, factor=bw)
    owv, owl = s[final].split(owi, factor=lanes)
    s[final].reorder(n, oho, ko, owo, ki, ohi, owv, owl)
    tile = s[final].fuse(n, oho, ko, owo)
    parallel_if_worth(s[final], tile, g.flops / 2)
    for a in (ki, ohi, owv):
        s[final].unroll(a)
    s[final].vectorize(owl)

    s[acc].compute_at(s[final], tile)
    schedule_acc_tile(s, acc, lanes)

    # the phase-split pad: rows (each of all channels) are its tasks, split in bands as the conv's
    # (3 planes would split 2 : 1 over two threads), its columns vectors
    if xs is None:
        return
    xn, xc, xh, _, _ = s[xs].op.axis
    s[xs].reorder(xh, xc)
    parallel_if_worth(s[xs], s[xs].fuse(xn, xh, xc), g.flops / 2)
    schedule_pad_columns(s, xs, g)


def schedule_acc_tile(s: te.Schedule, acc: te.Tensor, lanes: int) -> None:
    """The accumulator (computed at its tile) as a register tile over the whole reduction."""
    an, ak, aoh, aow = s[acc].op.axis
    awv, awl = s[acc].split(aow, factor=lanes)
    rc, rr, rs = s[acc].op.reduce_axis
    # the taps unrolled: the column phase and offset of each (col % sw, col // sw) become constants
    register_tile(s[acc], [an], [rc, rr, rs], [ak, aoh, awv], awl, unroll=[rr, rs])


def schedule_pad_columns(s: te.Schedule, xs: te.Tensor, g: ConvGeometry) -> None:
    """The phase-split pad's columns: vectors at stride 1, an unrolled copy at a stride."""
    xq = s[xs].op.axis[4]
    ql = xs.op.attrs.get("chunk") or row_lanes(xs.shape[4])
    if ql > 1:
        _, qi = s[xs].split(xq, factor=ql)
        if g.sw == 1:
            s[xs].vectorize(qi)
        else:
            # a strided read vectorized is a gather, each lane's index extracted from a vector: ~3x
            # slower than the scalar copy it unrolls to (SqueezeNet's stem: ~110 us of ~390)
            s[xs].unroll(qi)
