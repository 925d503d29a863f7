"""conv2d in the packed NCHW[x]c layout with pre-packed OIHW[x]i[y]o weights, and the layout ops.

The graph compiler packs activations once per chain of convolutions (`pack_nchwc`), packs
the weights at build time (`pack_conv_weight`, or `pack_conv_weight_numpy` on constants) and
unpacks at the end (`unpack_nchwc`).  Then every convolution reads and writes whole vectors:
the input block x[n, c/ib, h, w, 0:ib] is broadcast lane by lane, the weight block
w[k/ob, c/ib, r, s, i, 0:ob] and the output block y[n, k/ob, oh, ow, 0:ob] are one vector each.
Channel counts that the blocks do not divide are zero-padded by the packing ops.

Epilogues of conv2d_NCHWc see packed indices: epilogue(v, (n, ko, oh, ow, ki)), channel ko*ob+ki.
"""
from __future__ import annotations

import math

import numpy as np

import te
from te.target import Target, parse

from .common import Epilogue, apply_epilogue, largest_divisor, tagged
from .conv2d import _tile_candidates
from .direct_defaults import default_out_order, default_tiles
from .conv_geometry import geometry, round_up
from .knobs import FallbackConfig, register_template
from .schedule import (REDUCE_ORDERS, anchor, input_stage, output_tiles, parallel_if_worth, reduction_order,
                       register_tile)

LAYOUT_TAG = "layout_transform"


# ---------------------------------------------------------------- layout transforms

def pack_nchwc(x: te.Tensor, c_block: int, name: str = "pack_nchwc") -> te.Tensor:
    """NCHW -> NCHW[c_block]c: y[n, c // cb, h, w, c % cb], channels zero-padded to a multiple of cb."""
    N, C, H, W = x.shape
    cb = int(c_block)
    Cp = round_up(C, cb)

    def f(n, co, h, w, ci):
        c = co * cb + ci
        if Cp == C:
            return x[n, c, h, w]
        return te.if_then_else(c < C, x[n, te.min_of(c, C - 1), h, w], te.const(0, x.dtype))
    return te.compute((N, Cp // cb, H, W, cb), f, name=name, tag=LAYOUT_TAG, attrs={"layout": "NCHWc"})


def unpack_nchwc(y: te.Tensor, channels: int | None = None, name: str = "unpack_nchwc") -> te.Tensor:
    """NCHW[x]c -> NCHW, keeping the first `channels` channels (all by default)."""
    N, Co, H, W, cb = y.shape
    C = channels or Co * cb
    return te.compute((N, C, H, W), lambda n, c, h, w: y[n, c // cb, h, w, c % cb], name=name,
                      tag=LAYOUT_TAG, attrs={"layout": "NCHW"})


def pack_conv_weight(w: te.Tensor, ic_block: int, oc_block: int, name: str = "pack_weight") -> te.Tensor:
    """OIHW -> OIHW[ib]i[ob]o: p[k // ob, c // ib, r, s, c % ib, k % ob], zero-padded channels."""
    K, C, R, S = w.shape
    ib, ob = int(ic_block), int(oc_block)
    Kp, Cp = round_up(K, ob), round_up(C, ib)

    def f(ko, co, r, s, ci, ki):
        k, c = ko * ob + ki, co * ib + ci
        if Kp == K and Cp == C:
            return w[k, c, r, s]
        ok = te.all(k < K, c < C)
        return te.if_then_else(ok, w[te.min_of(k, K - 1), te.min_of(c, C - 1), r, s], te.const(0, w.dtype))
    return te.compute((Kp // ob, Cp // ib, R, S, ib, ob), f, name=name, tag=LAYOUT_TAG,
                      attrs={"layout": "OIHWio"})


def pack_conv_weight_numpy(w: np.ndarray, ic_block: int, oc_block: int) -> np.ndarray:
    """pack_conv_weight on a numpy constant (what the graph compiler does at build time)."""
    K, C, R, S = w.shape
    ib, ob = ic_block, oc_block
    Kp, Cp = round_up(K, ob), round_up(C, ib)
    wp = np.zeros((Kp, Cp, R, S), w.dtype)
    wp[:K, :C] = w
    return np.ascontiguousarray(wp.reshape(Kp // ob, ob, Cp // ib, ib, R, S).transpose(0, 2, 4, 5, 3, 1))


def pack_nchwc_numpy(x: np.ndarray, c_block: int) -> np.ndarray:
    """pack_nchwc on a numpy array."""
    N, C, H, W = x.shape
    Cp = round_up(C, c_block)
    xp = np.zeros((N, Cp, H, W), x.dtype)
    xp[:, :C] = x
    return np.ascontiguousarray(xp.reshape(N, Cp // c_block, c_block, H, W).transpose(0, 1, 3, 4, 2))


def unpack_nchwc_numpy(y: np.ndarray, channels: int | None = None) -> np.ndarray:
    """unpack_nchwc on a numpy array."""
    N, Co, H, W, cb = y.shape
    out = y.transpose(0, 1, 4, 2, 3).reshape(N, Co * cb, H, W)
    return np.ascontiguousarray(out[:, :channels or Co * cb])


@tagged(LAYOUT_TAG)
def schedule_layout_transform(s: te.Schedule, out: te.Tensor, target: Target) -> None:
    """Parallel outer axes, the innermost axis as vector lanes (the channel block, or W when unpacking)."""
    st = s[out]
    axes = list(st.op.axis)
    n = out.shape[-1]
    lanes = n if n <= 64 else largest_divisor(n, 64)
    inner = axes[-1]
    if lanes != n:
        outer, inner = st.split(axes[-1], factor=lanes)
        axes = axes[:-1] + [outer]
    else:
        axes = axes[:-1]
    if lanes > 1:
        st.vectorize(inner)
    work = 2 * math.prod(out.shape)
    if len(axes) >= 2:
        parallel_if_worth(st, st.fuse(axes[0], axes[1]), work)
    elif axes:
        parallel_if_worth(st, axes[0], work)


# ---------------------------------------------------------------- the packed convolution

def conv2d_NCHWc(x: te.Tensor, w: te.Tensor, strides=(1, 1), padding=0, dilation=(1, 1),
                 bias: te.Tensor | None = None, epilogue: Epilogue | None = None,
                 bw: int | None = None, bh: int | None = None, name: str = "conv2d_NCHWc",
                 target: Target | str | None = None) -> te.Tensor:
    """y[n, k/ob, oh, ow, ob] = epilogue(conv(x, w) + bias) with x NCHW[ib]c and w OIHW[ib]i[ob]o,
    for target (None: this machine)."""
    if x.ndim != 5 or w.ndim != 6:
        raise ValueError(f"{name}: x must be NCHWc (5-D) and w OIHWio (6-D), got {x.shape} and {w.shape}")
    N, Co, H, W, ib = x.shape
    Ko, Ci, R, S, ib2, ob = w.shape
    if Ci != Co or ib2 != ib:
        raise ValueError(f"{name}: input blocks {x.shape} do not match weight blocks {w.shape} "
                         f"(need w.shape[1] == x.shape[1] and w.shape[4] == x.shape[4])")
    C, K = Co * ib, Ko * ob
    g = geometry((N, C, H, W), (K, C, R, S), strides, padding, dilation, 1)
    if bias is not None and not (bias.shape == (Ko, ob) or (bias.ndim == 1 and K - ob < bias.shape[0] <= K)):
        raise ValueError(f"{name}: bias must have shape ({K},) (or the unpadded channel count) or "
                         f"({Ko}, {ob}), got {bias.shape}")
    dbh, dbw = default_tiles(g, ob, parse(target))
    bh, bw = bh or dbh, bw or dbw
    OHp, OWp = round_up(g.OH, bh), round_up(g.OW, bw)
    extra_b = max(0, (OHp - 1) * g.sh + (R - 1) * g.dh + 1 - (H + g.pt + g.pb))
    extra_r = max(0, (OWp - 1) * g.sw + (S - 1) * g.dw + 1 - (W + g.pl + g.pr))
    xp = _pad_nchwc(x, g.pt, g.pl, g.pb + extra_b, g.pr + extra_r, f"{name}.pad")
    rc = te.reduce_axis((0, Co), name="rco")
    ri = te.reduce_axis((0, ib), name="rci")
    rr = te.reduce_axis((0, R), name="rr")
    rs = te.reduce_axis((0, S), name="rs")
    acc = te.compute(
        (N, Ko, OHp, OWp, ob),
        lambda n, ko, oh, ow, ki: te.sum(xp[n, rc, oh * g.sh + rr * g.dh, ow * g.sw + rs * g.dw, ri]
                                         * w[ko, rc, rr, rs, ri, ki], axis=[rc, rr, rs, ri]),
        name=f"{name}.acc", tag="conv2d_NCHWc.acc")

    def out_f(n, ko, oh, ow, ki):
        v = acc[n, ko, oh, ow, ki]
        if bias is not None:
            if bias.ndim == 2:
                v = v + bias[ko, ki]
            elif bias.shape[0] == K:
                v = v + bias[ko * ob + ki]
            else:       # the padded channels read the last bias: their outputs are dropped on unpacking
                v = v + bias[te.min_of(ko * ob + ki, bias.shape[0] - 1)]
        return apply_epilogue(epilogue, v, (n, ko, oh, ow, ki))
    return te.compute((N, Ko, g.OH, g.OW, ob), out_f, name=name, tag="conv2d_NCHWc",
                      attrs={"geometry": g, "ib": ib, "ob": ob, "bh": bh, "bw": bw})


def _pad_nchwc(x: te.Tensor, top: int, left: int, bottom: int, right: int, name: str) -> te.Tensor:
    if not (top or left or bottom or right):
        return x
    N, Co, H, W, cb = x.shape

    def f(n, co, h, w, ci):
        hh, ww = h - top, w - left
        inside = te.all(hh >= 0, hh < H, ww >= 0, ww < W)
        src = x[n, co, te.min_of(te.max_of(hh, 0), H - 1), te.min_of(te.max_of(ww, 0), W - 1), ci]
        return te.if_then_else(inside, src, te.const(0, x.dtype))
    return te.compute((N, Co, H + top + bottom, W + left + right, cb), f, name=name, tag="conv2d_NCHWc.pad")


def schedule_conv2d_NCHWc_cfg(cfg, s: te.Schedule, out: te.Tensor, final: te.Tensor | None = None,
                              target: Target | str | None = None) -> None:
    """Schedule a conv2d_NCHWc output (and the injective ops fused after it) with cfg's knobs, for
    target (None: this machine; its caches choose the default loop order, direct_defaults.default_out_order)."""
    final = out if final is None else final
    acc = input_stage(out, "conv2d_NCHWc.acc")
    if acc is None:
        raise ValueError(f"{out.name} is not the output of te.ops.conv2d_NCHWc")
    xp = input_stage(acc, "conv2d_NCHWc.pad")
    attrs = out.op.attrs
    bh, bw = attrs["bh"], attrs["bw"]
    cfg.define_knob("unroll_kw", [False, True], default=False)
    cfg.define_knob("reduce_order", list(REDUCE_ORDERS), default="c_rs")
    order = default_out_order(attrs["geometry"], attrs["ob"], bh, bw, parse(target))
    # chunks_outer (an NCHW conv's, conv_chunks.py) reads the weights once, as oc_outer does
    cfg.define_knob("out_order", ["oc_outer", "rows_outer"], default="oc_outer" if order == "chunks_outer" else order)

    if final is not out:
        s[out].compute_inline()
    n, ko, oh, ow, ki = s[final].op.axis
    work = attrs["geometry"].flops / 2
    tile, _, owi = output_tiles(s[final], n, ko, oh, ow, bh, bw, work, inner=(ki,),
                                rows_outer=cfg["out_order"].val == "rows_outer")
    s[final].unroll(owi)
    s[final].vectorize(ki)

    s[acc].compute_at(s[final], tile)
    an, ako, aoh, aow, aki = s[acc].op.axis
    rc, rr, rs, ri = s[acc].op.reduce_axis
    # the lanes of an input block (ri) innermost: they are broadcast one by one against a weight vector
    register_tile(s[acc], [an, ako], [*reduction_order(cfg["reduce_order"].val, [rc], [rr, rs]), ri],
                  [aoh, aow], aki, unroll=[rs] if cfg["unroll_kw"].val else [])

    if xp is not None:
        pn, pc, ph, pw, pi = s[xp].op.axis
        parallel_if_worth(s[xp], s[xp].fuse(pn, pc), work)
        s[xp].vectorize(pi)


@anchor("conv2d_NCHWc")
def schedule_conv2d_NCHWc(s: te.Schedule, out: te.Tensor, final: te.Tensor | None, target: Target) -> None:
    """The untuned schedule of a conv2d_NCHWc output."""
    schedule_conv2d_NCHWc_cfg(FallbackConfig(), s, out, final, target)


def default_blocks(C: int, K: int, target: Target) -> tuple[int, int]:
    """(ic_block, oc_block): one vector register of the target (16 with AVX-512) where the channels allow it."""
    v = target.lanes()
    ib = v if C % v == 0 else largest_divisor(C, v) if C < v or largest_divisor(C, v) >= 4 else v
    ob = v if K % v == 0 or K >= v * 3 // 4 else max(4, 1 << (K - 1).bit_length())
    return ib, ob


@register_template("conv2d_NCHWc")
def conv2d_NCHWc_template(cfg, x_shape, w_shape, strides=(1, 1), padding=0, dilation=(1, 1),
                          dtype: str = "float32", *, target: Target | None = None):
    """Tunable conv2d_NCHWc for logical shapes x (N, C, H, W), w (K, C, R, S): blocks are knobs."""
    target = parse(target)
    N, C, H, W = x_shape
    K, _, R, S = w_shape
    g = geometry(tuple(x_shape), tuple(w_shape), strides, padding, dilation, 1)
    dib, dob = default_blocks(C, K, target)
    cfg.define_knob("tile_ic", sorted({b for b in (4, 8, 16, 32) if C % b == 0} | {dib}), default=dib)
    cfg.define_knob("tile_oc", sorted({b for b in (8, 16, 32) if K % b == 0} | {dob}), default=dob)
    ib, ob = cfg["tile_ic"].val, cfg["tile_oc"].val
    dbh, dbw = default_tiles(g, ob, target)
    cfg.define_split("tile_ow", g.OW, num_outputs=2, candidates=_tile_candidates(g.OW, target.acc_vectors, dbw),
                     default=[-1, dbw])
    cfg.define_split("tile_oh", g.OH, num_outputs=2, candidates=_tile_candidates(g.OH, 4, dbh),
                     default=[-1, dbh])
    x = te.placeholder((N, round_up(C, ib) // ib, H, W, ib), dtype, name="x")
    w = te.placeholder((round_up(K, ob) // ob, round_up(C, ib) // ib, R, S, ib, ob), dtype, name="w")
    y = conv2d_NCHWc(x, w, strides, padding, dilation, bw=cfg["tile_ow"].size[-1], bh=cfg["tile_oh"].size[-1],
                     target=target)
    s = te.create_schedule(y.op)
    schedule_conv2d_NCHWc_cfg(cfg, s, y, target=target)
    return s, [x, w, y]


__all__ = ["pack_nchwc", "unpack_nchwc", "pack_conv_weight", "pack_conv_weight_numpy", "pack_nchwc_numpy",
           "unpack_nchwc_numpy", "conv2d_NCHWc", "schedule_conv2d_NCHWc", "schedule_layout_transform",
           "default_blocks", "LAYOUT_TAG"]
