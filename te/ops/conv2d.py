"""2-D convolution in NCHW: the direct register-blocked conv and its template (geometry and padding
in conv_geometry.py).

`conv2d` dispatches on the shape: groups == channels goes to the depthwise kernel (depthwise.py),
everything else to the direct kernel.  The direct kernel is TVM's NCHWc recipe with the packing
done inside the kernel: the weights are re-laid out as [K/ocb, C/g, R, S, ocb] so the inner loop
loads ocb output channels with one vector load; the input is zero-padded once; a tile of
(oh_block x ow_block) output pixels x ocb channels is accumulated in vector registers
(`acc`, laid out [N, K/ocb, OH, OW, ocb]) and the output stage applies the epilogue (bias,
activation, residual...) to the registers before the single store to NCHW.

Deep layers (more weights than outputs) pack their weights per channel block inside the
parallel loop instead of at the root (knob `pack_at`), so the packed slice stays in L2.
The untuned defaults (channel block, register tile, pack_at, tile order) are derived from the
shape and the target in direct_defaults.py.

Weights known at build time (a model's constants) can be packed once, ahead of time:
`pack_weight_numpy` packs the constant by the kernel's channel block, and a `PackedWeight`
handed to `conv2d` in place of the 4-D weight skips the packing stage.  The implementations
(direct, 1x1 GEMM) with their knobs and weight layouts are registered in implementations.py.
"""
from __future__ import annotations

from dataclasses import dataclass
from math import prod

import te
from te.llvm_types import ELEM_BYTES
from te.target import Target, parse

from .common import Epilogue, apply_epilogue, largest_divisor, pick_lanes
from .conv_geometry import (ConvGeometry, Padding, bias_at, check_bias, flops, geometry,  # noqa: F401
                            pad_nchw, resolve_padding, round_up, subsample_nchw)
from . import conv_chunks, conv_split_c
from .direct_defaults import (default_ocb, default_out_order, default_pack_at, default_store, default_tiles,  # noqa: F401
                              input_rows_read, short_rows, small_map, spatial_out_order, pair_block,
                              subsamples, tile_budget, split_by_rows, two_row_tile, two_vector_tiles, wide_map)
from .direct_defaults import (chunk_channels, default_order, padded_by_thread, pair_block_tile, paired_channels,
                              split_c_pays)
from .knobs import FallbackConfig
from .schedule import (PARALLEL_MIN_WORK, REDUCE_ORDERS, anchor, input_stage, output_tiles, parallel_if_worth,
                       reduction_order, register_tile)


# ---------------------------------------------------------------- weights packed ahead of time

@dataclass(frozen=True)
class PackedWeight:
    """A conv weight already laid out [K/ocb, C/groups, R, S, ocb] (zero-padded channels); for a
    reduction split into `parts` (conv_split_c.py) [parts x K/ocb, C/parts, R, S, ocb]: each
    part's weights contiguous, as its thread reads them.

    `shape` is the logical OIHW shape, so `conv2d` computes the geometry from it as usual.
    """
    tensor: te.Tensor
    shape: tuple[int, int, int, int]
    parts: int = 1

    def __post_init__(self):
        K, Cg, R, S = self.shape
        kb, c, r, s, ocb = self.tensor.shape
        if (c * self.parts, r, s) != (Cg, R, S) or kb * ocb != round_up(K, ocb) * self.parts:
            raise ValueError(f"packed weight {self.tensor.name}: shape {self.tensor.shape} is not a "
                             f"[{self.parts} x K/ocb, C/{self.parts}, R, S, ocb] packing of {self.shape}")

    @property
    def ocb(self) -> int:
        return int(self.tensor.shape[-1])

    @property
    def dtype(self) -> str:
        return self.tensor.dtype


def pack_weight_numpy(w, ocb: int, parts: int = 1):
    """OIHW -> [K/ocb, C, R, S, ocb] on a numpy constant, zero-padding K to a multiple of ocb; with
    `parts`, [parts x K/ocb, C/parts, R, S, ocb] (PackedWeight)."""
    import numpy as np
    K, Cg, R, S = w.shape
    Kp = round_up(K, ocb)
    wp = np.zeros((Kp, Cg, R, S), w.dtype)
    wp[:K] = w
    packed = wp.reshape(Kp // ocb, ocb, Cg, R, S).transpose(0, 2, 3, 4, 1)
    if parts > 1:
        packed = packed.reshape(Kp // ocb, parts, Cg // parts, R, S, ocb).transpose(1, 0, 2, 3, 4, 5)
        packed = packed.reshape(parts * Kp // ocb, Cg // parts, R, S, ocb)
    return np.ascontiguousarray(packed)


# ---------------------------------------------------------------- the public op

def conv2d(x: te.Tensor, w: te.Tensor | PackedWeight, strides=(1, 1), padding: Padding = 0,
           dilation=(1, 1), groups: int = 1, bias: te.Tensor | None = None,
           epilogue: Epilogue | None = None, name: str = "conv2d",
           target: Target | str | None = None) -> te.Tensor:
    """y = epilogue(conv2d(x, w) + bias) in NCHW with the default kernel of its shape; padding is
    (top, left, bottom, right), an int/pair or a mode.

    `w` is OIHW, a PackedWeight (packed ahead of time by pack_weight_numpy: the direct conv) or a
    winograd.WinogradWeight (transformed ahead of time: the conv runs by Winograd).  `target` is
    the CPU it is built for (None: this machine).  A model build does not come here for its
    convs: it asks te.ops.registry for the implementation and its config.
    """
    from . import winograd
    target = parse(target)
    g = geometry(x.shape, w.shape, strides, padding, dilation, groups)
    if isinstance(w, winograd.WinogradWeight):
        return winograd.conv2d_winograd(x, w, g, bias, epilogue, m=w.m, bn=w.bn,
                                        bm=winograd.default_bm(w.bn, target, g.C, g.K, winograd.tiles(g, w.m)),
                                        name=name)
    if isinstance(w, PackedWeight) and (g.depthwise or as_matmul(g, target)):
        raise ValueError(f"{name}: this conv reads its weight as it is (OIHW); pass it unpacked")
    if g.depthwise:
        from .depthwise import depthwise_conv2d_nchw     # depthwise.py builds on this module
        return depthwise_conv2d_nchw(x, w, g, bias, epilogue, name=name)
    if as_matmul(g, target):
        return conv1x1_matmul(x, w, g, bias, epilogue, name=name, target=target)
    return conv2d_nchw(x, w, g, bias, epilogue, name=name, target=target)


# ---------------------------------------------------------------- 1x1 convs as matrix products

GEMM_MIN_PIXELS = 14 * 14 + 1     # smaller 1x1 maps run as the direct conv (see as_matmul)
STRIDED_GEMM_MIN_PIXELS = 14 * 14   # a strided 1x1 conv's, whose GEMM subsamples in its pack


def gemm_applies(g: ConvGeometry) -> bool:
    """A 1x1, unpadded, ungrouped conv of one image is the matrix product W (K, C) @ X (C, OH*OW)."""
    return (g.R == 1 and g.S == 1 and g.groups == 1 and g.N == 1
            and (g.pt, g.pl, g.pb, g.pr) == (0, 0, 0, 0))


def as_matmul(g: ConvGeometry, target: Target | str | None = None) -> bool:
    """Does an untuned build run this conv as the GEMM (gemm_applies, on a map of more than 14x14,
    or of 14x14 with a stride unless the direct conv splits it between target's threads)?

    The GEMM's vectors run along the pixels, and 196 or 49 of them leave padded vectors and short
    rows: the direct kernel (vectors along the output channels, weights packed at build time in a
    model) is the faster one on maps of 14x14 and 7x7 (ResNet-50's last two stages).  A strided
    conv's direct kernel, though, reads one input pixel in four, a channel plane apart, at every
    channel block, where the GEMM's pack subsamples the input into dense panels once: on a 14x14
    output that pays against the direct kernel split by output channels (ResNet-50's 512 -> 1024
    projection at stride 2: 1.10x on two threads, Emerald Rapids, alternating), on 7x7 it does not
    (1024 -> 2048: 0.96x).  Split by input channels instead (direct_defaults.strided_split_c_pays,
    where the weights outweigh the rows read: on two or more threads), the direct kernel beats the
    GEMM there too (1.11x), so a target whose threads split it runs the direct conv; without a
    target, the rule by size alone.  Tuning times both (te.ops.registry.candidates) and keeps the
    faster.

    Where the direct conv's register tile is one vector of channels (direct_defaults.
    two_vector_tiles: 16 registers, AVX2), every 1x1 conv that gemm_applies to runs as the GEMM:
    the direct tile of 8 channels x 7 pixels loads a broadcast per FMA (8 loads for 7 FMAs), the
    GEMM's 2 pixel vectors x 4 channels 6 for 8.  On Zen 3 (two threads, in the model, alternating)
    ResNet-50's 1x1 convs at 14x14 and 7x7 ran 0.64-0.79x the direct conv's time as the GEMM, the
    strided 512 -> 1024 0.50x (bench/RESULTS.md, session 29).
    """
    P = g.OH * g.OW
    if not gemm_applies(g):
        return False
    if P >= GEMM_MIN_PIXELS or (target is not None and not two_vector_tiles(parse(target))):
        return True
    strided = (g.sh, g.sw) != (1, 1) and P >= STRIDED_GEMM_MIN_PIXELS
    return strided and (target is None or not split_c_pays(g, parse(target)))


def gemm_bn(P: int, target: Target) -> int:
    """The 1x1 GEMM's pixel block: two vectors wherever the map is wider than one.

    Each weight broadcast then feeds two FMAs.  With two FMA ports and two vector loads a cycle
    (every AVX-512 and AVX2 core this project has met), a one-vector block spends a load per FMA
    on broadcasts and stalls on the load ports; two vectors halve that.  The pixels are padded to
    the block (the pack stage zero-fills), which costs less than the stalls even on 14x14 maps
    (196 -> 224 pixels): measured 1.3-1.45x faster than one vector on ResNet-50's 14x14 and 7x7
    1x1 convs (bench/RESULTS.md, session 12)."""
    lanes = target.lanes()
    return 2 * lanes if P > lanes else pick_lanes(P, target)


def gemm_defaults(g: ConvGeometry, target: Target) -> tuple[int, int | None, bool]:
    """(bn, bm, pack_input) of the untuned 1x1 GEMM (bm None: matmul_defaults.default_bm's).

    Where the target's register tile (matmul_defaults.register_tile_shape: 6 rows x 4 vectors with
    AVX-512) divides a stride-1 conv's pixels, it reads the input in place: each channel plane
    gives the tile a run of whole lines (4 with AVX-512), and the model's buffers are 64-byte
    aligned, so the pack's extra pass over the input (a write and a re-read of up to 3 MiB)
    buys nothing.  Measured on two threads against the packed 8 x 2 tile, ResNet-50's 1x1 convs
    at 56x56: 256 -> 64 0.38 against 0.48 ms, 256 -> 128 0.73 against 0.81-0.86, 64 -> 64 0.15
    against 0.18 (Emerald Rapids, alternating on shared aligned arrays; packing had measured
    faster on numpy's arrays, which start 16 bytes past a line).  Elsewhere (strided convs,
    pixels the tile does not divide) the input is packed into panels of gemm_bn pixels."""
    from .matmul_defaults import register_tile_shape
    rows, nv = register_tile_shape(target)
    bn = nv * target.lanes()
    if g.sh == g.sw == 1 and (g.OH * g.OW) % bn == 0:
        return bn, rows, False
    return gemm_bn(g.OH * g.OW, target), None, True


def gemm_tile_k(pack_input: bool) -> int | None:
    """The 1x1 GEMM's reduction unroll (matmul's tile_k): 2 where the input is read in place, else
    matmul.define_knobs' 4.

    Read in place, each reduction step loads its row of bn pixels from another channel plane
    (H*W*4 bytes on: 12.5 KiB at 56x56), lines that no stride prefetcher fetches ahead, so every
    step misses L1; an unroll of 4 puts four planes' misses in each loop iteration, 2 half as
    many, and it ran faster: ResNet-50's 1x1 convs at 56x56 on one thread (CPU time, Emerald
    Rapids, alternating) 256 -> 64 1.05x, 256 -> 128 1.03x, 64 -> 256 (+ bias; + Sum + Relu)
    1.03x, and the tuner's best records on two threads for the same three convs all chose 2.
    A packed panel (contiguous, prefetched) is as fast with 1 to 8; it keeps 4.  The knob stays
    open to the tuner, which times it on CPUs (Zen 4, Ice Lake) where the fill buffers differ."""
    return None if pack_input else 2


def conv1x1_matmul(x: te.Tensor, w: te.Tensor, g: ConvGeometry, bias: te.Tensor | None = None,
                   epilogue: Epilogue | None = None, bn: int | None = None, bm: int | None = None,
                   pack_input: bool | None = None, name: str = "conv2d",
                   target: Target | str | None = None) -> te.Tensor:
    """The packed GEMM of te.ops.matmul on the conv's operands, written straight to NCHW.

    The pixels are the GEMM's columns and a bm x bn tile of output channels x pixels lives in
    registers; the epilogue runs on it before the store, which is contiguous along the pixels in
    NCHW.  With `pack_input` a pack stage first gathers the input into [P/bn, C, bn]
    panels; without, the tile reads its bn pixels of each channel where they are (contiguous in
    NCHW, but C rows a whole channel plane apart), which saves the pack's pass over the input but
    streams every row tile's reads from C scattered rows.  Which pays depends on the tile:
    `bn`, `bm` and `pack_input` default to gemm_defaults' (`bm` there None: the most rows whose
    accumulators fit the registers, up to 8), which says why.
    """
    from .matmul import _pack_b, _packed_acc
    from .matmul_defaults import default_bm, tile_rows
    target = parse(target)
    check_bias(bias, g.K, name)
    M, K, P = g.K, g.C, g.OH * g.OW
    d_bn, d_bm, d_pack = gemm_defaults(g, target)
    if bn is None:
        bn, bm, pack_input = d_bn, bm or d_bm, d_pack if pack_input is None else pack_input
    bm = bm or default_bm(M, tile_rows(bn, target))
    OW, sh, sw = g.OW, g.sh, g.sw
    in_place = g.sh == g.sw == 1 and P % bn == 0
    if pack_input is None:
        pack_input = not in_place
    if not pack_input and not in_place:
        raise ValueError(f"{name}: the input can be read in place only by a stride-1 conv whose "
                         f"{P} pixels bn={bn} divides; pack it")

    def b_at(c, p):
        return x[0, c, (p // OW) * sh, (p % OW) * sw]
    if pack_input:
        packed = _pack_b(b_at, K, P, bn, x.dtype, name)
        acc = _packed_acc(lambda i, c: w[i, c, 0, 0], packed, M, K, bn, bm, name)
    else:
        Mp = -(-M // bm) * bm
        r = te.reduce_axis((0, K), name="k")
        acc = te.compute((Mp, P), lambda i, p: te.sum(w[i if Mp == M else te.min_of(i, M - 1), r, 0, 0]
                                                      * b_at(r, p), axis=r), name=f"{name}.acc", tag="acc")

    def out_f(n, k, oh, ow):
        v = acc[k, oh * OW + ow]
        if bias is not None:
            v = v + bias_at(bias, k)
        return apply_epilogue(epilogue, v, (n, k, oh, ow))
    return te.compute((1, g.K, g.OH, g.OW), out_f, name=name, tag="matmul",
                      attrs={"M": M, "N": P, "K": K, "bn": bn, "bm": bm, "strategy": "packed",
                             "transpose_b": False, "nchw": True, "geometry": g, "tile_k": gemm_tile_k(pack_input)})


# ---------------------------------------------------------------- direct conv (output-channel vectors)

def conv2d_nchw(x: te.Tensor, w: te.Tensor | PackedWeight, g: ConvGeometry, bias: te.Tensor | None = None,
                epilogue: Epilogue | None = None, ocb: int | None = None, bw: int | None = None,
                bh: int | None = None, parts: int = 1, name: str = "conv2d",
                target: Target | str | None = None) -> te.Tensor:
    """The direct NCHW conv: packed weights, padded input, an accumulator tile in registers (for
    target, None: this machine); with `parts` > 1 the input channels split into that many partial
    sums, added by the output stage (conv_split_c.py)."""
    target = parse(target)
    check_bias(bias, g.K, name)
    if isinstance(w, PackedWeight):
        ocb = ocb or w.ocb
        if ocb != w.ocb or parts != w.parts:
            raise ValueError(f"{name}: channel block {ocb} in {parts} parts asked for, the weight is "
                             f"packed by {w.ocb} in {w.parts}")
    ocb = ocb or default_ocb(g, target)
    dbh, dbw = default_tiles(g, ocb, target)
    bh, bw = bh or dbh, bw or dbw
    Kg, Cg = g.K // g.groups, g.C // g.groups
    if g.groups > 1 and Kg % ocb:
        raise ValueError(f"{name}: the channel block {ocb} must divide the output channels per group {Kg}")
    Kp = round_up(g.K, ocb)
    OHp, OWp = round_up(g.OH, bh), round_up(g.OW, bw)
    sh, sw = g.sh, g.sw
    if subsamples(g, target):
        xp, off, sh, sw = subsample_nchw(x, g.sh, g.sw, OHp, OWp, name=f"{name}.pad"), 0, 1, 1
    else:
        # pad enough rows/columns that the padded accumulator tile reads zeros, never past the end
        extra_b = max(0, (OHp - 1) * g.sh + (g.R - 1) * g.dh + 1 - (g.H + g.pt + g.pb))
        extra_r = max(0, (OWp - 1) * g.sw + (g.S - 1) * g.dw + 1 - (g.W + g.pl + g.pr))
        exact = padded_by_thread(g, g.W + g.pl + g.pr + extra_r, target)
        xp, col0 = pad_nchw(x, g.pt, g.pl, g.pb + extra_b, g.pr + extra_r, name=f"{name}.pad", exact=exact)
        off = col0 - g.pl
    K, R, S = g.K, g.R, g.S

    def wpack(ko, c, r, s, ki):
        k = ko * ocb + ki
        if Kp == K:
            return w[k, c, r, s]
        return te.if_then_else(k < K, w[te.min_of(k, K - 1), c, r, s], te.const(0, w.dtype))
    if isinstance(w, PackedWeight):
        wp = w.tensor
    else:
        wp = te.compute((Kp // ocb, Cg, R, S, ocb), wpack, name=f"{name}.wpack", tag="conv2d.wpack")
    rc = te.reduce_axis((0, Cg), name="rc")
    rr = te.reduce_axis((0, R), name="rr")
    rs = te.reduce_axis((0, S), name="rs")

    def acc_f(n, ko, oh, ow, ki):
        c = rc if g.groups == 1 else (ko * ocb) // Kg * Cg + rc.var
        return te.sum(xp[n, c, oh * sh + rr * g.dh, ow * sw + rs * g.dw + off] * wp[ko, rc, rr, rs, ki],
                      axis=[rc, rr, rs])
    if parts > 1:
        acc = _partial_sums(xp, wp, isinstance(w, PackedWeight), g, parts, (g.N, Kp // ocb, OHp, OWp, ocb),
                            sh, sw, off, name)
    else:
        acc = te.compute((g.N, Kp // ocb, OHp, OWp, ocb), acc_f, name=f"{name}.acc", tag="conv2d.acc")

    def out_f(n, k, oh, ow):
        if parts > 1:
            v = acc[0, n, k // ocb, oh, ow, k % ocb]
            for t in range(1, parts):
                v = v + acc[t, n, k // ocb, oh, ow, k % ocb]
        else:
            v = acc[n, k // ocb, oh, ow, k % ocb]
        if bias is not None:
            v = v + bias_at(bias, k)
        return apply_epilogue(epilogue, v, (n, k, oh, ow))
    return te.compute((g.N, g.K, g.OH, g.OW), out_f, name=name, tag="conv2d_nchw",
                      attrs={"geometry": g, "ocb": ocb, "bh": bh, "bw": bw, "parts": parts})


def _partial_sums(xp: te.Tensor, wp: te.Tensor, by_part: bool, g: ConvGeometry, parts: int, shape: tuple,
                  sh: int, sw: int, off: int, name: str) -> te.Tensor:
    """A 1x1 conv's accumulator split by input channels: part t sums channels [t*C/parts,
    (t+1)*C/parts) into its own map (conv_split_c.py), from weights laid out by part (`by_part`:
    a PackedWeight's) or [K/ocb, C, R, S, ocb] (packed inside the kernel)."""
    share, blocks = g.C // parts, shape[1]
    rc = te.reduce_axis((0, share), name="rc")
    rr = te.reduce_axis((0, 1), name="rr")
    rs = te.reduce_axis((0, 1), name="rs")

    def part_f(t, n, ko, oh, ow, ki):
        c = t * share + rc
        wv = wp[t * blocks + ko, rc, rr, rs, ki] if by_part else wp[ko, c, rr, rs, ki]
        return te.sum(xp[n, c, oh * sh + rr, ow * sw + rs + off] * wv, axis=[rc, rr, rs])
    acc = te.compute((parts, *shape), part_f, name=f"{name}.acc", tag="conv2d.acc")
    # the register tile accumulates in its own stage (computed at the tile, in registers), then
    # stores into the map of its part: a map shared across threads is memory LLVM keeps as it is
    return te.compute((parts, *shape), lambda *i: acc[i], name=f"{name}.parts", tag="conv2d.parts")


def schedule_conv2d_nchw_cfg(cfg, s: te.Schedule, out: te.Tensor, final: te.Tensor | None,
                             target: Target) -> None:
    """Schedule a direct conv2d_nchw output (and the injective ops fused after it) with cfg's knobs."""
    final = out if final is None else final
    sums = input_stage(out, "conv2d.parts")         # a split reduction's partial sums (conv_split_c.py)
    acc = input_stage(sums if sums is not None else out, "conv2d.acc")
    if acc is None:
        raise ValueError(f"{out.name} is not the output of te.ops.conv2d_nchw")
    wp = input_stage(acc, "conv2d.wpack")
    xp = input_stage(acc, "conv2d.pad")
    attrs = out.op.attrs
    g: ConvGeometry = attrs["geometry"]
    ocb, bh, bw = attrs["ocb"], attrs["bh"], attrs["bw"]
    Cg = g.C // g.groups
    pair_block = pair_block_tile(g, ocb, target)
    cfg.define_knob("unroll_kw", [False, True], default=pair_block)
    # the 1x8 tile of a wide map: the channel loop outside the taps (stride 1) keeps the input
    # rows in L1 across them
    one_row = wide_map(g) and ocb == 32 and two_vector_tiles(target)
    ic = (1 if g.sh == 1 else largest_divisor(Cg, 4)) if one_row else largest_divisor(Cg, 8 if pair_block else 16)
    if bh == 2 and two_row_tile(g, ocb, target):
        ic = largest_divisor(Cg, 8)     # measured a little faster than 4 and 16 with the 2 x 7 tile
    order = default_order(g, ocb, bh, bw, target)
    if order == "chunks_outer":
        ic = chunk_channels(g)          # the chunk that stays in L1 with the block's map
    cfg.define_split("tile_ic", Cg, num_outputs=2, max_factor=64, default=[-1, ic])
    # channels outside the taps for spatial convs: never slower than the taps outside on ResNet-50's
    # and VGG-19's 3x3 layers, and the order most tuned 3x3 configs choose (bench/RESULTS.md)
    cfg.define_knob("reduce_order", list(REDUCE_ORDERS), default="c_rs" if g.R * g.S > 1 else "rs_c")
    cfg.define_knob("out_order", ["oc_outer", "rows_outer", "chunks_outer", "split_c"], default=order)
    cfg.define_knob("store", ["vec_ow", "vec_oc"], default=default_store(g, bw))
    cfg.define_knob("pack_at", ["root", "oc_block"], default=default_pack_at(g, ocb, bh, bw, target))

    if final is not out:
        s[out].compute_inline()
    if attrs.get("parts", 1) > 1:
        conv_split_c.schedule_split_c(s, sums, acc, final, g, ocb, bh, bw, target,
                                      lambda outer, tile: _acc_tile(cfg, s, acc, outer, tile, paired_channels(g)))
        if wp is not None:
            _schedule_wpack(s, wp, g.flops / 2)
        if xp is not None:
            _schedule_pad(s, xp, g.flops / 2)
        return
    if cfg["out_order"].val == "chunks_outer" and conv_chunks.applies(g, bh, bw):
        conv_chunks.schedule_chunks_outer(cfg, s, acc, final, g, ocb, bh, bw,
                                          lambda task: _tasks(s, final, task, xp, g, 1, target))
        if wp is not None:
            _schedule_wpack(s, wp, g.flops / 2)
        return
    if pack_at(cfg, wp, g) == "oc_block" and g.OH % bh == 0 and g.OW % bw == 0:
        _schedule_oc_block(cfg, s, acc, wp, final, g, ocb, bh, bw, target,
                           lambda task: _tasks(s, final, task, xp, g, 1, target))
        return
    n, k, oh, ow = s[final].op.axis
    ko, ki = s[final].split(k, factor=ocb)
    rows_outer = cfg["out_order"].val == "rows_outer"
    tile, _, owi = output_tiles(s[final], n, ko, oh, ow, bh, bw, 0, inner=(ki,), rows_outer=rows_outer)
    tile = _tasks(s, final, tile, xp, g, target.threads if rows_outer else 1, target)
    if cfg["store"].val == "vec_oc":
        s[final].unroll(owi)
        s[final].vectorize(ki)
    else:
        s[final].reorder(ki, owi)
        s[final].unroll(ki)
        s[final].vectorize(owi)

    s[acc].compute_at(s[final], tile)
    an, ako, aoh, aow, _ = s[acc].op.axis
    _acc_tile(cfg, s, acc, [an, ako], [aoh, aow], paired_channels(g))

    if wp is not None:              # None: the weights were packed ahead of time
        _schedule_wpack(s, wp, g.flops / 2)


def _tasks(s: te.Schedule, final: te.Tensor, task, xp: te.Tensor | None, g: ConvGeometry, share: int,
           target: Target):
    """Run the conv's loop of tasks `task` in parallel (where the conv is worth the threads) and
    schedule its pad stage `xp`: where the pad is exact (direct_defaults.padded_by_thread) and a
    thread's copy (the padded input over `share`: the threads split the rows) fits half its L2,
    one share of the tasks per thread, each padding its own copy first; else one copy at the
    root, the threads padding rows of it.  Returns the loop of tasks inside a thread's share
    (`task` itself without the split)."""
    work = g.flops / 2
    own = (xp is not None and xp.op.attrs.get("exact") and work >= PARALLEL_MIN_WORK
           and ELEM_BYTES[xp.dtype] * prod(xp.shape) / share <= target.caches.l2 / 2)
    if not own:
        parallel_if_worth(s[final], task, work)
        if xp is not None:
            _schedule_pad(s, xp, work)
        return task
    by_thread, task = s[final].split(task, nparts=target.threads)
    s[final].parallel(by_thread)
    s[xp].compute_at(s[final], by_thread)
    _schedule_pad(s, xp, 0)
    return task


def pack_at(cfg, wp: te.Tensor | None, g: ConvGeometry) -> str:
    """cfg's pack_at, except that an untuned spatial conv whose weights were packed ahead of time
    (`wp` None: a model's constants) runs "root".

    With nothing to pack per block, "oc_block" only makes the tasks whole channel blocks (8 or 16
    on ResNet-50's 14x14 and 7x7 layers), each reading the whole padded input.  Measured on two
    threads (Emerald Rapids, alternating, idle moments): the stride-2 3x3 256@28x28 ran 1.07-1.09x
    faster with the tiles of "root" (112), the 512@14x14 as fast; the 1x1 convs keep "oc_block",
    which ran 1.03x faster on 1024 -> 256 at 14x14 (as fast on 2048 -> 512 at 7x7)."""
    if cfg.is_fallback and wp is None and g.R * g.S > 1:
        return "root"
    return cfg["pack_at"].val


def _schedule_oc_block(cfg, s: te.Schedule, acc, wp, final, g: ConvGeometry, ocb: int, bh: int, bw: int,
                       target: Target, tasks) -> None:
    """One parallel task per (image, channel block): pack its weights, accumulate its whole output
    map tile by tile in registers, then apply the epilogue and store it to NCHW.  `tasks` runs
    the loop of tasks in parallel and places the pad stage (_tasks)."""
    n, k, oh, ow = s[final].op.axis
    ko, ki = s[final].split(k, factor=ocb)
    tile = tasks(s[final].fuse(n, ko))
    lanes = g.OW if g.OW <= 64 else largest_divisor(g.OW, 64)
    if 1 < g.OW <= target.lanes() and ocb % target.lanes() == 0:
        # a register of channels unrolled inside each row: the code generator reads the
        # accumulator rows as vectors of channels and transposes them (te/codegen_rows.py)
        # rather than gathering every pixel vector lane by lane
        kio, kii = s[final].split(ki, factor=target.lanes())
        s[final].reorder(tile, kio, oh, kii, ow)
        s[final].unroll(kii)
        s[final].vectorize(ow)
    elif lanes > 1:
        s[final].vectorize(ow if lanes == g.OW else s[final].split(ow, factor=lanes)[1])
    s[acc].compute_at(s[final], tile)
    an, ako, aoh, aow, _ = s[acc].op.axis
    aoho, aohi = s[acc].split(aoh, factor=bh)
    awo, awi = s[acc].split(aow, factor=bw)
    _acc_tile(cfg, s, acc, [an, ako, aoho, awo], [aohi, awi], paired_channels(g))
    if wp is None:
        return
    s[wp].compute_at(s[acc], ako)
    s[wp].unroll(s[wp].op.axis[-1])     # 16 row streams read element by element: fewer uops than a gather


def _acc_tile(cfg, s: te.Schedule, acc: te.Tensor, outer: list, tile: list, pairs: bool = False) -> None:
    """The accumulator's register tile: `outer` loops, the reduction in cfg's order (input channels
    split by tile_ic; with `pairs`, two channels per iteration of the inner loop:
    direct_defaults.paired_channels), then the `tile` loops around the channel vector."""
    rc, rr, rs = s[acc].op.reduce_axis
    rco, rci = cfg["tile_ic"].apply(s, acc, rc)
    channels, unroll = [rci], [rs] if cfg["unroll_kw"].val else []
    ic = cfg["tile_ic"].size[-1]
    if pairs and ic % 2 == 0:
        if ic > 2:
            channels = list(s[acc].split(rci, factor=2))
        unroll.append(channels[-1])
    register_tile(s[acc], outer, [rco, *reduction_order(cfg["reduce_order"].val, channels, [rr, rs])], tile,
                  s[acc].op.axis[-1], unroll=unroll)


def _schedule_wpack(s: te.Schedule, wp: te.Tensor, work: float) -> None:
    ko, c, r, sx, ki = s[wp].op.axis
    s[wp].unroll(ki)
    parallel_if_worth(s[wp], ko, work)


def _schedule_pad(s: te.Schedule, xp: te.Tensor, work: float) -> None:
    n, c, h, w = s[xp].op.axis
    # rows, not channel planes, are the tasks: a stem's 3 planes would split 2 : 1 over two threads
    parallel_if_worth(s[xp], s[xp].fuse(n, c, h), work)
    W = xp.shape[3]
    lanes = xp.op.attrs.get("chunk") or (W if W <= 64 else largest_divisor(W, 64))
    if lanes > 1:
        wo, wi = s[xp].split(w, factor=lanes)
        s[xp].vectorize(wi)


@anchor("conv2d_nchw")
def schedule_conv2d_nchw(s: te.Schedule, out: te.Tensor, final: te.Tensor | None, target: Target) -> None:
    """The untuned schedule of a direct conv2d_nchw output."""
    schedule_conv2d_nchw_cfg(FallbackConfig(), s, out, final, target)


def _tile_candidates(n: int, limit: int, default: int) -> list[list[int]]:
    """Tile sizes for an axis of extent n: its divisors up to limit, a few padded sizes, the default."""
    padded = {b for b in (2, 4, 7, 8, 14, 16, 28) if b <= min(n, limit)}
    sizes = sorted({d for d in range(1, min(n, limit) + 1) if n % d == 0} | padded | {default})
    return [[-1, b] for b in sizes]


__all__ = ["conv2d", "conv2d_nchw", "conv1x1_matmul", "as_matmul", "geometry", "resolve_padding", "pad_nchw", "schedule_conv2d_nchw",
           "ConvGeometry", "flops"]
