"""Grouped 1x1 convs (ShuffleNet's, ResNeXt's pointwise layers) as one GEMM per group.

Group g's output channels are the matrix product W_g (K/G, C/G) @ X_g (C/G, OH*OW).  The direct
conv vectorizes along output channels and needs a channel block that divides K/G (34 channels
per group leave a block of 2 lanes); here the vectors run along the pixels instead, as in the
1x1 GEMM (conv2d.conv1x1_matmul), so every lane does useful work whatever K/G is, and a
bm x bn register tile (bm channels of one group x bn pixels) is accumulated over the group's
C/G input channels and stored to NCHW through the fused epilogue.

The weight is packed at build time as [G, Mg/bm, C/G, bm] (Mg: K/G rounded up to bm, zero rows),
so the bm broadcasts of one reduction step are adjacent.  The input is read where it is (stride
1 and bn divides the pixels) or first gathered into [P/bn, C, bn] blocks (strided convs, or
pixels that bn does not divide), as the 1x1 GEMM does.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import te
from te.target import Target

from .common import Epilogue, apply_epilogue
from .conv_geometry import ConvGeometry, bias_at, check_bias, round_up
from .implementations import PREFERRED, _Conv
from .knobs import FallbackConfig
from .matmul import _pack_b, _schedule_pack
from .matmul_defaults import fits_registers
from .registry import register
from .schedule import anchor, input_stage, parallel_if_worth

MAX_TILE_ROWS = 8           # rows of a register tile: more only adds broadcasts per column vector
MAX_LANES = 64              # the widest vector a loop may be (te.lower refuses more)
MAX_TILE_VECTORS = 8        # column vectors of a register tile
PACK_CYCLES = 1.5           # to copy one input vector into the packed layout (a load, a store, L2 traffic)


def applies(g: ConvGeometry) -> bool:
    """A 1x1 unpadded conv of one image with groups, but not depthwise (one channel per group)."""
    return (g.R == 1 and g.S == 1 and g.groups > 1 and not g.depthwise and g.N == 1
            and (g.pt, g.pl, g.pb, g.pr) == (0, 0, 0, 0))


def vector_counts(lanes: int, P: int) -> list[int]:
    """Column vectors a tile may have: powers of two up to MAX_LANES lanes, and up to
    MAX_TILE_VECTORS whole vectors that divide the pixels (the input then read in place: 784
    pixels are 7 vectors of 16).  A tile wider than MAX_LANES is unrolled vector by vector."""
    vectors = -(-P // lanes)
    counts = {v for v in (1, 2, 4) if v * lanes <= MAX_LANES and v <= max(1, vectors)}
    counts |= {v for v in range(1, MAX_TILE_VECTORS + 1) if P % (v * lanes) == 0}
    return sorted(counts)


def tile_cost(Kg: int, P: int, Cg: int, bm: int, nv: int, lanes: int, strided: bool = False) -> float:
    """Estimated cycles per useful multiply-add of a bm x (nv vectors) tile, relative.

    Work is padded to whole tiles (rows to bm, pixels to nv * lanes).  Each reduction step loads
    bm broadcasts and nv vectors for bm * nv FMAs; with two FMA and two load ports the step takes
    max(bm * nv, bm + nv) / 2 cycles.  FMA latency (4 cycles, 2 ports) needs 8 independent
    accumulators to be hidden.  Storing the tile through the epilogue (bm * nv vectors, once per
    Cg steps) counts as well, and so does packing the input where it cannot be read in place
    (a strided conv, or pixels the tile does not divide): a copy of each input vector,
    PACK_CYCLES, for every Kg FMAs that read it.
    """
    waste = round_up(Kg, bm) * round_up(P, nv * lanes) / (Kg * P)
    step = max(bm * nv, bm + nv, 8) / 2
    store = bm * nv / max(Cg, 1)
    pack = PACK_CYCLES / Kg if strided or P % (nv * lanes) else 0.0
    return waste * (step + store) / (bm * nv) + pack


def default_tile(Kg: int, P: int, Cg: int, target: Target, strided: bool = False) -> tuple[int, int]:
    """(bm, bn) of the register tile for target: the pick of tile_cost among the tiles whose
    accumulators fit the target's vector registers and whose rows divide K/G (a tile of rows
    that crossed into the next group would make every tile compute two groups' rows); ties go
    to fewer loads per FMA (4 x 64 measured 13% faster than 8 x 32 with 136 input channels per
    group), then to the larger tile."""
    lanes = target.lanes()
    best, best_key = (1, lanes), None
    for bm in (d for d in range(1, min(MAX_TILE_ROWS, Kg) + 1) if Kg % d == 0):
        for nv in vector_counts(lanes, P):
            if not fits_registers(bm, nv, target):
                continue
            key = (round(tile_cost(Kg, P, Cg, bm, nv, lanes, strided), 4), (bm + nv) / (bm * nv), -bm * nv)
            if best_key is None or key < best_key:
                best, best_key = (bm, nv * lanes), key
    return best


def pack_weight_numpy(w: np.ndarray, groups: int, bm: int) -> np.ndarray:
    """OIHW (K, C/G, 1, 1) -> [G, Mg/bm, C/G, bm], each group's rows zero-padded to Mg."""
    K, Cg = w.shape[:2]
    Kg = K // groups
    Mg = round_up(Kg, bm)
    wp = np.zeros((groups, Mg, Cg), w.dtype)
    wp[:, :Kg] = w.reshape(groups, Kg, Cg)
    return np.ascontiguousarray(wp.reshape(groups, Mg // bm, bm, Cg).transpose(0, 1, 3, 2))


@dataclass(frozen=True)
class GroupedWeight:
    """A grouped 1x1 weight packed by pack_weight_numpy; `shape` is its logical OIHW shape."""
    tensor: te.Tensor
    shape: tuple[int, int, int, int]

    @property
    def bm(self) -> int:
        return int(self.tensor.shape[-1])


def grouped_conv1x1(x: te.Tensor, w: te.Tensor | GroupedWeight, g: ConvGeometry, bias: te.Tensor | None = None,
                    epilogue: Epilogue | None = None, bm: int | None = None, bn: int | None = None,
                    name: str = "conv2d", target: Target | None = None) -> te.Tensor:
    """y = epilogue(conv2d(x, w, groups) + bias) for a grouped 1x1 conv, one GEMM per group (NCHW)."""
    if not applies(g):
        raise ValueError(f"{name}: not a grouped 1x1 unpadded conv of one image (groups={g.groups}, "
                         f"kernel {g.R}x{g.S}, batch {g.N}); use te.ops.conv2d")
    check_bias(bias, g.K, name)
    G, Kg, Cg = g.groups, g.K // g.groups, g.C // g.groups
    P, OW, sh, sw = g.OH * g.OW, g.OW, g.sh, g.sw
    dbm, dbn = default_tile(Kg, P, Cg, target, sh * sw > 1) if target is not None else (4, 16)
    bn = bn or dbn
    if isinstance(w, GroupedWeight):
        if bm is not None and bm != w.bm:
            raise ValueError(f"{name}: tile of {bm} rows asked for, the weight is packed by {w.bm}")
        bm, wp = w.bm, w.tensor
    else:
        bm = bm or dbm
        wp = None
    Mg = round_up(Kg, bm)
    if wp is None:
        def wpack(gg, io, c, ii):
            k = io * bm + ii
            if Mg == Kg:
                return w[gg * Kg + k, c, 0, 0]
            return te.if_then_else(k < Kg, w[gg * Kg + te.min_of(k, Kg - 1), c, 0, 0], te.const(0, w.dtype))
        wp = te.compute((G, Mg // bm, Cg, bm), wpack, name=f"{name}.wpack", tag="grouped1x1.wpack")
    elif tuple(wp.shape) != (G, Mg // bm, Cg, bm):
        raise ValueError(f"{name}: packed weight of shape {wp.shape}, expected {(G, Mg // bm, Cg, bm)}")

    def b_at(c, p):
        return x[0, c, (p // OW) * sh, (p % OW) * sw]
    r = te.reduce_axis((0, Cg), name="c")
    if sh == sw == 1 and P % bn == 0:
        Pp = P

        def x_at(c, p):
            return b_at(c, p)
    else:
        packed = _pack_b(b_at, g.C, P, bn, x.dtype, name)
        Pp = packed.shape[0] * bn

        def x_at(c, p):
            return packed[p // bn, c, p % bn]
    acc = te.compute((G, Mg, Pp), lambda gg, i, p: te.sum(wp[gg, i // bm, r, i % bm] * x_at(gg * Cg + r, p), axis=r),
                     name=f"{name}.acc", tag="grouped1x1.acc")

    def out_f(n, k, oh, ow):
        v = acc[k // Kg, k % Kg, oh * OW + ow]
        if bias is not None:
            v = v + bias_at(bias, k)
        return apply_epilogue(epilogue, v, (n, k, oh, ow))
    return te.compute((1, g.K, g.OH, g.OW), out_f, name=name, tag="grouped_conv1x1",
                      attrs={"geometry": g, "bm": bm, "bn": bn})


def schedule_grouped_cfg(cfg, s: te.Schedule, out: te.Tensor, final: te.Tensor | None, target: Target) -> None:
    """Schedule a grouped_conv1x1 output (and the ops fused after it): per group, tiles of bm
    channels x bn pixels, the pixel tiles outside the channel tiles so a panel of the input stays
    in L1 across them; the tiles of all groups run in parallel."""
    final = out if final is None else final
    acc = input_stage(out, "grouped1x1.acc")
    if acc is None:
        raise ValueError(f"{out.name} is not the output of te.ops.grouped_conv.grouped_conv1x1")
    g: ConvGeometry = out.op.attrs["geometry"]
    bm, bn = out.op.attrs["bm"], out.op.attrs["bn"]
    Kg, Cg = g.K // g.groups, g.C // g.groups
    cfg.define_knob("unroll_k", [1, 2, 4], default=2 if Cg % 2 == 0 else 1)
    if final is not out:
        s[out].compute_inline()
    n, k, oh, ow = s[final].op.axis
    j = s[final].fuse(oh, ow)
    gk, kk = s[final].split(k, factor=Kg)
    io, ii = s[final].split(kk, factor=bm)
    jo, ji = s[final].split(j, factor=bn)
    s[final].reorder(n, gk, jo, io, ii, ji)
    # the channel-tile loop stays apart from the parallel one: bound inference then sees the
    # tile's rows as io * bm + [0, bm) of one group, not as a division of one fused index
    parallel_if_worth(s[final], s[final].fuse(n, gk, jo), g.flops / 2)
    s[final].unroll(ii)
    _vectorize(s[final], ji, bn, target)

    s[acc].compute_at(s[final], io)
    _, ai, aj = s[acc].op.axis
    (rc,) = s[acc].op.reduce_axis
    ku = cfg["unroll_k"].val if Cg % cfg["unroll_k"].val == 0 else 1
    rco, rci = s[acc].split(rc, factor=ku)
    s[acc].reorder(rco, rci, ai, aj)
    s[acc].unroll(rci)
    s[acc].unroll(ai)
    _vectorize(s[acc], aj, bn, target)

    wp = input_stage(acc, "grouped1x1.wpack")
    if wp is not None:                  # None: packed ahead of time
        wg, wo, wc, wi = s[wp].op.axis
        s[wp].vectorize(wi)
    packed = input_stage(acc, "pack")
    if packed is not None:
        _schedule_pack(s, packed, False, g.flops / 2, packed.shape[0] * bn != g.OH * g.OW)


def _vectorize(stage: te.Stage, axis, bn: int, target: Target) -> None:
    """The tile's columns as one vector, or, wider than MAX_LANES, as unrolled target vectors."""
    if bn <= MAX_LANES:
        stage.vectorize(axis)
        return
    vo, vi = stage.split(axis, factor=target.lanes())
    stage.unroll(vo)
    stage.vectorize(vi)


@anchor("grouped_conv1x1")
def schedule_grouped_conv1x1(s: te.Schedule, out: te.Tensor, final: te.Tensor | None, target: Target) -> None:
    """The untuned schedule of a grouped_conv1x1 output."""
    schedule_grouped_cfg(FallbackConfig(), s, out, final, target)


class GroupedGemm1x1Conv(_Conv):
    """A grouped 1x1 conv as one GEMM per group, vectors along the pixels (this module's docstring)."""
    name, template = "conv2d.grouped_gemm1x1", "conv2d_grouped_1x1"
    packs_weight = True

    def match(self, wl, target):
        if wl.layout != "NCHW" or wl.dtype == "uint8" or not applies(wl.geometry):
            return None
        return PREFERRED + 1        # above the direct conv, whose channel block must divide K/G

    def space(self, cfg, wl, target):
        g = wl.geometry
        Kg, Cg, P = g.K // g.groups, g.C // g.groups, g.OH * g.OW
        lanes = target.lanes()
        bm, bn = default_tile(Kg, P, Cg, target, strided=g.sh * g.sw > 1)
        rows = [d for d in range(1, min(MAX_TILE_ROWS, Kg) + 1) if Kg % d == 0]
        cfg.define_knob("tile_rows", rows, default=bm)
        cfg.define_knob("tile_cols", [v * lanes for v in vector_counts(lanes, P)], default=bn)
        cfg.define_constraint("register tile",
                              lambda c: fits_registers(c["tile_rows"].val, c["tile_cols"].val // lanes, target))

    def packed_shape(self, wl, cfg, target):
        g, bm = wl.geometry, cfg["tile_rows"].val
        Kg = g.K // g.groups
        return (g.groups, round_up(Kg, bm) // bm, g.C // g.groups, bm)

    def pack_weight(self, w, wl, cfg, target):
        return pack_weight_numpy(w, wl.groups, cfg["tile_rows"].val)

    def compute(self, inputs, wl, cfg, target, prepacked=False, name=None):
        x, w, bias = (list(inputs) + [None])[:3]
        if prepacked:
            w = GroupedWeight(w, wl.w_shape)
        return grouped_conv1x1(x, w, wl.geometry, bias, bm=cfg["tile_rows"].val, bn=cfg["tile_cols"].val,
                               name=name or "conv2d", target=target)

    def schedule(self, s, out, final, cfg, target):
        schedule_grouped_cfg(cfg, s, out, final, target)


register(GroupedGemm1x1Conv())

__all__ = ["applies", "default_tile", "grouped_conv1x1", "pack_weight_numpy", "schedule_grouped_cfg",
           "GroupedWeight"]
