"""Depthwise conv2d in NCHW (groups == channels, optionally a channel multiplier) and its template.

A channel has one filter, so there is no channel reuse for registers to exploit: the kernel
vectorizes along the output row instead, keeping a few rows of outputs in registers while the
R x S taps stream by.  Stride 2 is computed at stride 1 over the row and every other column
kept (twice the FMAs, but contiguous loads and a pad that is a plain copy), by row tiles over a
pad at the root, or one task per channel that pads its own plane (rows_by_channel says which);
other strides split the padded input by column phase, [N, C, Hp, sw, Wp/sw], so a strided read
becomes contiguous.

At stride 1 the kernel works on the flattened padded plane instead (`flat`): with rows of
Wp = W + left + right columns, output (oh, ow) sits at flat position oh * Wp + ow of an
accumulator whose tap (r, s) reads the padded plane at flat offset r * Wp + s, so every tap is a
run of whole vectors however narrow the rows (a 7-wide row fills 7 of 16 lanes; a 7x7 map
flattened fills 63 of 64).  The Wp - OW positions per row that straddle two rows are computed
and dropped.  Each parallel task pads one channel's plane, which stays in L1 for the taps.
"""
from __future__ import annotations

import te
from te.caches import FILL, FMAS_IN_FLIGHT
from te.target import Target, parse

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


def channel_source(C: int, mult: int, shuffle: int, name: str):
    """k -> the input channel output channel k reads: k // mult, through the channel shuffle of
    `shuffle` groups if there is one."""
    if shuffle > 1 and C % shuffle:
        raise ValueError(f"{name}: a channel shuffle of {shuffle} groups needs channels in multiples of it, "
                         f"got {C}")

    def src(k):
        c = k // mult if mult > 1 else k
        return c % shuffle * (C // shuffle) + c // shuffle if shuffle > 1 else c
    return src


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
                          name: str = "depthwise_conv2d", target: Target | None = None,
                          shuffle: int = 0) -> te.Tensor:
    """Depthwise conv (groups == channels, w of shape (C * multiplier, 1, R, S)) in NCHW, for
    target (None: this machine).  `shuffle` G > 1 reads x through ShuffleNet's channel shuffle
    of G groups: channel c of the conv's input is x's channel (c % G) * (C / G) + c // G."""
    if g is None:
        g = geometry(x.shape, w.shape, strides, padding, dilation, groups=x.shape[1])
    if not g.depthwise:
        raise ValueError(f"{name}: not a depthwise convolution (groups={g.groups}, C={g.C}, K={g.K})")
    check_bias(bias, g.K, name)
    mult = g.K // g.C
    sw = g.sw
    N, C, H, W = x.shape
    src = channel_source(C, mult, shuffle, name)
    if g.sh == g.sw == 1:
        return _depthwise_flat(x, w, g, bias, epilogue, name, parse(target), src)
    rr = te.reduce_axis((0, g.R), name="rr")
    rs = te.reduce_axis((0, g.S), name="rs")
    # stride 2 with a chunked pad: compute the row at stride 1 and keep every other column (twice the
    # FMAs, but contiguous reads and a pad that is a plain copy instead of a strided gather)
    sub = sw if sw == 2 and pad_chunk(W) else 1
    if sub > 1 and rows_by_channel(g, sub, parse(target)):
        return _depthwise_rows(x, w, g, bias, epilogue, name, src, sub)
    if sw == 1 or sub > 1:
        W1 = (g.OW - 1) * sub + 1
        extra_r = max(0, W1 + (g.S - 1) * g.dw - (W + g.pl + g.pr))
        xp, col0 = pad_nchw(x, g.pt, g.pl, g.pb, g.pr + extra_r, name=f"{name}.pad")
        off = col0 - g.pl

        def acc_f(n, k, oh, ow):
            return te.sum(xp[n, src(k), oh * g.sh + rr * g.dh, ow + rs * g.dw + off]
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
            return te.sum(xp[n, src(k), oh * g.sh + rr * g.dh, col % sw, ow + col // sw]
                          * w[k, 0, rr, rs], axis=[rr, rs])
        acc = te.compute((N, g.K, g.OH, g.OW), acc_f, name=f"{name}.acc", tag="depthwise.acc")

    def out_f(n, k, oh, ow):
        v = acc[n, k, oh, ow * sub if sub > 1 else ow]
        if bias is not None:
            v = v + bias_at(bias, k)
        return apply_epilogue(epilogue, v, (n, k, oh, ow))
    return te.compute((N, g.K, g.OH, g.OW), out_f, name=name, tag="depthwise_conv2d_nchw",
                      attrs={"geometry": g, "subsample": sub})


FLAT_CHUNK = 64        # lanes of one run of the flat accumulator (the widest loop te vectorizes)


def rows_by_channel(g: ConvGeometry, sub: int, target: Target) -> bool:
    """Does a subsampled (stride-2) depthwise conv run one task per channel (_depthwise_rows)?

    Where the padded input outgrows the L2 share (te.caches.FILL): padded at the root it goes to
    memory and comes back, where a task's own padded plane stays in L1 or L2 (rough, 1 thread:
    144@56x56 ~265 -> ~170 us, 96@112x112 ~720 -> ~560 us); or where a row is at most one
    vector, which tiles of a row or two would broadcast the taps' weights to again for a few
    FMAs each (576@14x14 ~105 -> ~55-85 us).  Otherwise the root pad stays in L2, and the row
    tiles, consumed as they are computed, keep every other column in registers, where the
    per-channel map is gathered from memory (192@28x28: ~49 us at the root, ~60 per channel).
    """
    W1 = (g.OW - 1) * sub + 1
    padded = 4.0 * g.N * g.C * (g.H + g.pt + g.pb) * round_up(g.W + g.pl + g.pr, pad_chunk(g.W) or 1)
    return padded > FILL * target.caches.l2 or W1 <= target.lanes()


def _depthwise_rows(x: te.Tensor, w: te.Tensor, g: ConvGeometry, bias: te.Tensor | None,
                    epilogue: Epilogue | None, name: str, src, sub: int) -> te.Tensor:
    """A strided depthwise conv, one task per channel (_schedule_by_channel), over a plane padded
    as pad_rows does (left padding read from the row before): each output row in runs of `lanes`
    outputs (the row, or a divisor of it within FLAT_CHUNK // sub), a run computed at stride 1
    along the row over (lanes - 1) * sub + 1 columns and every sub-th column kept."""
    N, C, H, W = x.shape
    lanes = row_lanes(g.OW, FLAT_CHUNK // sub)
    W1 = (lanes - 1) * sub + 1
    top = g.pt + 1
    # the last column read, (OW - 1) * sub + (S - 1) * dw - left, must stay in the row, and the
    # row before must end in `left` zeros
    Wp = max(W + max(g.pl, g.pr), (g.OW - 1) * sub + 1 + (g.S - 1) * g.dw - g.pl)
    Hp = (g.OH - 1) * g.sh + (g.R - 1) * g.dh + 1 + 1
    xp = pad_rows(x, top, Hp, Wp, f"{name}.pad", "depthwise.row_pad")
    rr = te.reduce_axis((0, g.R), name="rr")
    rs = te.reduce_axis((0, g.S), name="rs")

    def acc_f(n, k, oh, t, j):
        f = (oh * g.sh + rr * g.dh + 1) * Wp + t * (lanes * sub) + j + rs * g.dw - g.pl
        return te.sum(xp[n, src(k), f // Wp, f % Wp] * w[k, 0, rr, rs], axis=[rr, rs])
    acc = te.compute((N, g.K, g.OH, g.OW // lanes, W1), acc_f, name=f"{name}.acc", tag="depthwise.acc")

    def out_f(n, k, oh, ow):
        v = acc[n, k, oh, ow // lanes, ow % lanes * sub]
        if bias is not None:
            v = v + bias_at(bias, k)
        return apply_epilogue(epilogue, v, (n, k, oh, ow))
    return te.compute((N, g.K, g.OH, g.OW), out_f, name=name, tag="depthwise_conv2d_nchw",
                      attrs={"geometry": g, "subsample": sub, "lanes": lanes})


def flat_layout(OH: int, width: int, taps: int, lanes: int) -> tuple[int, int]:
    """(Wp, chunk): padded row width (at least `width`) and lanes per run of the flat plane, so
    that runs tile the OH * Wp positions exactly (a run cut short would put a lane mask on every
    FMA); a run is whole vectors, or the whole plane when it fits FLAT_CHUNK lanes.  The pick
    minimises the cycles the runs take: a run's taps are a chain of dependent FMAs on its nv
    vectors, max(4 * taps, taps * nv / 2) cycles with a 4-cycle FMA latency and two FMA ports;
    rows may widen by up to half."""
    best, best_key = (round_up(width, lanes), lanes), None
    for wp in range(width, width + width // 2 + lanes + 1):
        plane = OH * wp
        for chunk in {*range(lanes, FLAT_CHUNK + 1, lanes), *([plane] if plane <= FLAT_CHUNK else [])}:
            if plane % chunk == 0:
                nv = -(-chunk // lanes)
                key = (plane // chunk * max(4 * taps, taps * nv / 2), wp)
                if best_key is None or key < best_key:
                    best, best_key = (wp, chunk), key
    return best


def pad_rows(x: te.Tensor, top: int, Hp: int, Wp: int, name: str, tag: str, fill=0) -> te.Tensor:
    """x in Hp rows of Wp >= W columns, its row h at row h + top and columns [0, W), `fill` around:
    read at flat offsets, a column -j of a row is column Wp - j of the row before, padding when
    Wp >= W + j, so the copy clamps its column only from above (one masked vector load)."""
    N, C, H, W = x.shape
    pad = fill if isinstance(fill, te.Expr) else te.const(fill, x.dtype)

    def pad_f(n, c, h, col):
        hh = h - top
        inside = te.all(hh >= 0, hh < H, col < W)
        src = x[n, c, te.min_of(te.max_of(hh, 0), H - 1), te.min_of(col, W - 1)]
        return te.if_then_else(inside, src, pad)
    return te.compute((N, C, Hp, Wp), pad_f, name=name, tag=tag)


def flat_window(x: te.Tensor, g: ConvGeometry, name: str, target: Target, src=None, weight=None,
                reducer=te.sum, fill=0) -> tuple[te.Tensor, int, int]:
    """The flat accumulator of a stride-1 window over each channel plane of x (the module
    docstring): (acc of shape (N, K, OH * Wp), Wp, chunk), output (oh, ow) at acc[n, k, oh * Wp + ow].

    Output channel k reads input channel src(k) (None: k), tap (rr, rs) weighed by
    weight(k, rr, rs) (None: as it is, as pooling takes it); `reducer` (te.sum, te.max) combines
    the taps, and the padding holds `fill`.  The padded plane holds row h of x at row
    h + top + 1, columns [0, W), padding after them: a left pad of column -j is then column
    Wp - j of the row before, padding when Wp >= W + j, so rows of Wp >= W + max(left, right)
    columns pad both sides, and the copy clamps its column only from above (one masked vector
    load, no gather)."""
    N, C, H, W = x.shape
    Wp, chunk = flat_layout(g.OH, max(g.OW, W + max(g.pl, g.pr)), g.R * g.S, target.lanes(x.dtype))
    Lp = g.OH * Wp
    base = Wp - g.pl                                    # flat offset of tap (0, 0) from output 0
    reach = base + (g.R - 1) * g.dh * Wp + (g.S - 1) * g.dw
    Hp = max(H + g.pt + 1, -(-(Lp + reach) // Wp))      # rows enough that every run reads inside
    top = g.pt + 1
    xp = pad_rows(x, top, Hp, Wp, f"{name}.pad", "depthwise.flat_pad", fill)
    rr = te.reduce_axis((0, g.R), name="rr")
    rs = te.reduce_axis((0, g.S), name="rs")

    def acc_f(n, k, q):
        f = q + rr * (g.dh * Wp) + rs * g.dw + base
        v = xp[n, k if src is None else src(k), f // Wp, f % Wp]
        return reducer(v if weight is None else v * weight(k, rr, rs), axis=[rr, rs])
    acc = te.compute((N, g.K, Lp), acc_f, name=f"{name}.acc", tag="depthwise.flat_acc")
    return acc, Wp, chunk


def _depthwise_flat(x: te.Tensor, w: te.Tensor, g: ConvGeometry, bias: te.Tensor | None,
                    epilogue: Epilogue | None, name: str, target: Target, src) -> te.Tensor:
    """A stride-1 depthwise conv on the flattened padded plane (flat_window)."""
    N = x.shape[0]
    acc, Wp, chunk = flat_window(x, g, name, target, src, lambda k, rr, rs: w[k, 0, rr, rs])

    def out_f(n, k, oh, ow):
        v = acc[n, k, oh * Wp + ow]
        if bias is not None:
            v = v + bias_at(bias, k)
        return apply_epilogue(epilogue, v, (n, k, oh, ow))
    return te.compute((N, g.K, g.OH, g.OW), out_f, name=name, tag="depthwise_conv2d_nchw",
                      attrs={"geometry": g, "flat": chunk, "row": Wp})


def vectorize_flat_rows(stage: te.Stage, ow, OW: int, Wp: int) -> None:
    """Vectorize the output columns of a flat window's consumer: a loop as wide as the padded row
    (its tail masked on the store), so that the accumulator's inferred extent is the whole
    rows x Wp range the runs tile exactly; a row wider than FLAT_CHUNK in runs that divide it."""
    if Wp <= FLAT_CHUNK:
        ow = stage.split(ow, factor=Wp)[1]
    elif OW > FLAT_CHUNK:
        ow = stage.split(ow, factor=row_lanes(OW))[1]
    stage.vectorize(ow)


def schedule_flat(cfg, s: te.Schedule, out: te.Tensor, final: te.Tensor, acc: te.Tensor, target: Target) -> None:
    """Schedule a flat window (flat_window; out's attrs: geometry, flat = chunk, row = Wp): one
    parallel task per (image, channel) pads its plane, accumulates the flat plane run by run (the
    taps unrolled around one run of vectors), then computes the epilogue row by row."""
    g: ConvGeometry = out.op.attrs["geometry"]
    chunk = out.op.attrs["flat"]
    xp = input_stage(acc, "depthwise.flat_pad")
    if final is not out:
        s[out].compute_inline()
    n, k, oh, ow = s[final].op.axis
    nk = s[final].fuse(n, k)
    parallel_if_worth(s[final], nk, g.flops / 2)
    vectorize_flat_rows(s[final], ow, g.OW, out.op.attrs["row"])

    s[acc].compute_at(s[final], nk)
    _, ak, q = s[acc].op.axis
    rr, rs = s[acc].op.reduce_axis
    qo, qi = s[acc].split(q, factor=chunk)
    # runs side by side, so the taps' FMA chains interleave: enough independent vectors to cover
    # the FMA latency on both ports (FMAS_IN_FLIGHT), within the accumulator registers
    runs, nv = acc.shape[2] // chunk, -(-chunk // target.lanes(acc.dtype))
    options = [1, 2, 4, 8]
    cfg.define_knob("runs_together", options,
                    default=max(o for o in options if runs % o == 0 and (o == 1 or o * nv <= FMAS_IN_FLIGHT)))
    together = cfg["runs_together"].val if runs % cfg["runs_together"].val == 0 else 1
    together = min(together, max(1, target.acc_vectors // nv))
    qoo, qoi = s[acc].split(qo, factor=together)
    register_tile(s[acc], [qoo], [rr, rs], [qoi], qi, unroll=[rr, rs])

    s[xp].compute_at(s[acc], ak)        # the task's channel plane (ak has one iteration there)
    _, _, _, col = s[xp].op.axis
    if xp.shape[3] > FLAT_CHUNK:
        col = s[xp].split(col, factor=row_lanes(xp.shape[3]))[1]
    s[xp].vectorize(col)


def schedule_depthwise_cfg(cfg, s: te.Schedule, out: te.Tensor, final: te.Tensor | None, target: Target) -> None:
    """Schedule a depthwise conv output (and the injective ops fused after it) with cfg's knobs."""
    final = out if final is None else final
    flat = input_stage(out, "depthwise.flat_acc")
    if flat is not None:
        schedule_flat(cfg, s, out, final, flat, target)
        return
    acc = input_stage(out, "depthwise.acc")
    if acc is None:
        raise ValueError(f"{out.name} is not the output of te.ops.depthwise_conv2d_nchw")
    xs = input_stage(acc, "depthwise.pad")
    xp = input_stage(acc, "conv2d.pad")
    rows_pad = input_stage(acc, "depthwise.row_pad")
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
    rr, rs = s[acc].op.reduce_axis
    unroll = [rr, rs] if cfg["unroll_taps"].val else []
    if rows_pad is not None:
        _schedule_by_channel(s, final, acc, rows_pad, g, bh, out.op.attrs["lanes"], unroll)
        return
    n, k, oh, ow = s[final].op.axis
    _, owo, owi = output_tiles(s[final], n, k, oh, ow, bh, lanes, g.flops / 2, parallel_columns=False)
    s[final].vectorize(owi)

    s[acc].compute_at(s[final], owo)
    an, ak, aoh, aow = s[acc].op.axis
    awo, awi = s[acc].split(aow, factor=(lanes - 1) * sub + 1)    # the columns one output tile reads
    register_tile(s[acc], [an, ak, awo], [rr, rs], [aoh], awi, unroll=unroll)

    if xp is not None:
        _schedule_pad(s, xp, g.flops / 2)
    if xs is not None:
        xn, xc, xh, xph, xq = s[xs].op.axis
        parallel_if_worth(s[xs], s[xs].fuse(xn, xc), g.flops / 2)
        ql = xs.op.attrs.get("chunk") or row_lanes(xs.shape[4])
        if ql > 1:
            _, qi = s[xs].split(xq, factor=ql)
            s[xs].vectorize(qi)


def _schedule_by_channel(s: te.Schedule, final: te.Tensor, acc: te.Tensor, xp: te.Tensor, g: ConvGeometry,
                         bh: int, lanes: int, unroll: list) -> None:
    """One parallel task per (image, channel) of _depthwise_rows: pad its plane, accumulate the
    channel's map in tiles of bh rows by one run, then keep every sub-th column of each run.

    The padded plane (~14 KiB at 56x56) and the map stay in L1, where a pad at the root writes
    the whole padded input to memory and the taps read it back."""
    n, k, oh, ow = s[final].op.axis
    nk = s[final].fuse(n, k)
    parallel_if_worth(s[final], nk, g.flops / 2)
    s[final].vectorize(s[final].split(ow, factor=lanes)[1])
    s[acc].compute_at(s[final], nk)
    an, ak, aoh, at, aj = s[acc].op.axis
    aoho, aohi = s[acc].split(aoh, factor=bh)
    rr, rs = s[acc].op.reduce_axis
    register_tile(s[acc], [an, ak, aoho, at], [rr, rs], [aohi], aj, unroll=unroll)
    s[xp].compute_at(s[acc], ak)        # the task's channel plane (ak has one iteration there)
    col = s[xp].op.axis[3]
    if xp.shape[3] > FLAT_CHUNK:
        col = s[xp].split(col, factor=row_lanes(xp.shape[3]))[1]
    s[xp].vectorize(col)


@anchor("depthwise_conv2d_nchw")
def schedule_depthwise_conv2d_nchw(s: te.Schedule, out: te.Tensor, final: te.Tensor | None,
                                   target: Target) -> None:
    """The untuned schedule of a depthwise conv2d output."""
    schedule_depthwise_cfg(FallbackConfig(), s, out, final, target)


__all__ = ["depthwise_conv2d_nchw", "schedule_depthwise_conv2d_nchw", "pad_nchw_phased", "row_lanes", "flat_window",
           "schedule_flat", "vectorize_flat_rows"]
