"""The implementations of the anchor ops, registered in te.ops.registry (read its docstring first).

    conv2d.direct     template conv2d_nchw            conv2d.py    weights [K/ocb, C/g, R, S, ocb]
    conv2d.gemm1x1    template conv2d_1x1_gemm        conv2d.py    weights as they are (OIHW)
    conv2d.winograd   template conv2d_nchw_winograd   winograd.py  weights [6, 6, K/bn, C, bn], transformed
    conv2d.winograd_f2  template conv2d_nchw_winograd_f2  winograd.py  weights [4, 4, K/bn, C, bn], transformed
    conv2d.depthwise  template depthwise_conv2d_nchw  depthwise.py weights as they are
    conv2d.grouped_gemm1x1  template conv2d_grouped_1x1  grouped_conv.py (registered there)  weights [G, Mg/bm, C/G, bm]
    conv2d.stem       template conv2d_stem            conv_stem.py weights as they are (OIHW)
    conv2d.nchwc      (no template)                   conv2d_nchwc.py  weights OIHW[b]i[b]o
    matmul.packed     template matmul                 matmul.py    B as it is (packed inside the kernel)
    matmul.rows       template matmul_rows            matmul.py    B as it is
    matmul.splitk     template matmul_splitk          matmul.py    B as it is
    dense.packed      template dense                  matmul.py    W [N/bn, K, bn]
    dense.dot         template dense_dot              matmul.py    W as it is (N, K)

Where several implementations apply to a workload, the one a rule prefers (matmul_defaults.default_strategy,
conv2d.as_matmul, te.ops.conv_algorithm) has priority 10 (Winograd 20) and the others a lower one: an
untuned build takes the preferred one, tuning times them all and a tuned build takes the fastest
(te.ops.registry.candidates, frontends.compile.choose).
"""
from __future__ import annotations

import te
from te.target import Target

from . import winograd as wg
from .conv2d import (PackedWeight, _tile_candidates, as_matmul, conv1x1_matmul, conv2d_nchw, default_ocb,
                     default_tiles, gemm_applies, gemm_defaults, gemm_tile_k, pack_weight_numpy,
                     schedule_conv2d_nchw_cfg, tile_budget)
from . import conv_split_c, conv_stem
from .direct_defaults import default_order, two_vector_tiles
from .conv2d_nchwc import conv2d_NCHWc, pack_conv_weight_numpy, schedule_conv2d_NCHWc_cfg
from .conv_algorithm import Algorithm, choose
from .conv_geometry import round_up
from .depthwise import depthwise_conv2d_nchw, schedule_depthwise_cfg
from .matmul import define_bn, define_knobs, dense_packed, matmul, pack_dense_weight_numpy, schedule_matmul_cfg
from .matmul_defaults import DOT_MAX_M, ROWS_MAX_M, SPLITK_MAX_M, default_strategy
from .registry import ConvWorkload, Implementation, MatmulWorkload, freeze, register

PREFERRED, ALTERNATIVE = 10, 5      # priorities: what a rule picks untuned, what tuning also times


def _conv(x_shape, w_shape, strides=(1, 1), padding=0, dilation=(1, 1), groups: int = 1,
          dtype: str = "float32") -> ConvWorkload:
    return ConvWorkload(freeze(x_shape), freeze(w_shape), freeze(strides), freeze(padding),
                        freeze(dilation), int(groups), dtype)


class _Conv(Implementation):
    """What the NCHW convs share: the template arguments and the plain placeholders."""
    op = "conv2d"
    arguments = staticmethod(_conv)

    def args(self, wl: ConvWorkload) -> tuple:
        return (wl.x_shape, wl.w_shape, wl.strides, wl.padding, wl.dilation, wl.groups, wl.dtype)

    def workload(self, args: tuple) -> ConvWorkload:
        return _conv(*args)

    def weight_shape(self, wl: ConvWorkload) -> tuple:
        return wl.w_shape

    def packed_shape(self, wl: ConvWorkload, cfg, target: Target) -> tuple | None:
        """The shape pack_weight gives (None: the kernel reads the OIHW weight)."""
        return None

    def placeholders(self, wl, cfg, target, prepacked):
        shape = self.packed_shape(wl, cfg, target) if prepacked else None
        x = te.placeholder(wl.x_shape, wl.dtype, name="x")
        w = te.placeholder(shape or wl.w_shape, wl.dtype, name="w.packed" if shape else "w")
        return [x, w]


class DirectConv(_Conv):
    """Output-channel vectors, a register tile of pixels, weights packed by the channel block."""
    name, template = "conv2d.direct", "conv2d_nchw"
    packs_weight = True

    def match(self, wl, target):
        if wl.layout != "NCHW" or wl.geometry.depthwise or wl.dtype == "uint8":     # int8: qnn.py
            return None
        return ALTERNATIVE if as_matmul(wl.geometry, target) else PREFERRED

    def space(self, cfg, wl, target):
        g = wl.geometry
        Kg = g.K // g.groups
        d_ocb = default_ocb(g, target)
        ocbs = [b for b in (8, 16, 32, 64) if g.groups == 1 or Kg % b == 0] or [d_ocb]
        cfg.define_knob("tile_oc", sorted(set(ocbs + [d_ocb])), default=d_ocb)
        dbh, dbw = default_tiles(g, cfg["tile_oc"].val, target)
        cfg.define_split("tile_ow", g.OW, num_outputs=2, candidates=_tile_candidates(g.OW, target.acc_vectors, dbw),
                         default=[-1, dbw])
        cfg.define_split("tile_oh", g.OH, num_outputs=2, candidates=_tile_candidates(g.OH, 4, dbh),
                         default=[-1, dbh])
        # the accumulators must fit the vector registers (default_tiles' budget): a larger register
        # tile spills on every FMA, and its fully unrolled body takes seconds to compile
        cfg.define_constraint("register tile", lambda c: c["tile_oh"].size[-1] * c["tile_ow"].size[-1]
                              <= tile_budget(c["tile_oc"].val, target))

    def packed_shape(self, wl, cfg, target):
        g, ocb, parts = wl.geometry, cfg["tile_oc"].val, self._parts(wl, cfg, target)
        return (parts * round_up(g.K, ocb) // ocb, g.C // g.groups // parts, g.R, g.S, ocb)

    def pack_weight(self, w, wl, cfg, target):
        return pack_weight_numpy(w, cfg["tile_oc"].val, self._parts(wl, cfg, target))

    @staticmethod
    def _parts(wl, cfg, target) -> int:
        """The parts cfg splits the reduction into (conv_split_c.py; 1: not split)."""
        g, ocb, bw, bh = wl.geometry, cfg["tile_oc"].val, cfg["tile_ow"].size[-1], cfg["tile_oh"].size[-1]
        return conv_split_c.parts_of(cfg, g, default_order(g, ocb, bh, bw, target), target.threads)

    def compute(self, inputs, wl, cfg, target, prepacked=False, name=None):
        x, w, bias = (list(inputs) + [None])[:3]
        parts = self._parts(wl, cfg, target)
        if prepacked:
            w = PackedWeight(w, wl.w_shape, parts)
        g, ocb, bw, bh = wl.geometry, cfg["tile_oc"].val, cfg["tile_ow"].size[-1], cfg["tile_oh"].size[-1]
        return conv2d_nchw(x, w, g, bias, ocb=ocb, bw=bw, bh=bh, parts=parts, name=name or "conv2d",
                           target=target)

    def schedule(self, s, out, final, cfg, target):
        schedule_conv2d_nchw_cfg(cfg, s, out, final, target)


class Gemm1x1Conv(_Conv):
    """A 1x1 unpadded conv of one image on a large map as matmul.py's packed GEMM, written to NCHW."""
    name, template = "conv2d.gemm1x1", "conv2d_1x1_gemm"

    def match(self, wl, target):
        if wl.layout != "NCHW" or not gemm_applies(wl.geometry) or wl.dtype == "uint8":
            return None
        return PREFERRED if as_matmul(wl.geometry, target) else ALTERNATIVE

    def space(self, cfg, wl, target):
        g = wl.geometry
        P = g.OH * g.OW
        bn, bm, pack = gemm_defaults(g, target)
        define_bn(cfg, P, target, bn)
        define_knobs(cfg, g.K, P, g.C, "packed", target, bn, panels=True, bm=bm, padded_rows=True, packs_b=pack,
                     tile_k=gemm_tile_k(pack))
        if g.sh == g.sw == 1:           # a strided conv's input must be gathered (packed)
            cfg.define_knob("pack_input", [False, True], default=pack)     # gemm_defaults says why
            cfg.define_constraint("input read in place", lambda c: c["pack_input"].val or P % c["bn"].val == 0)
            # panels packed per column block need a pack (read in place, the order is cols_outer)
            cfg.define_constraint("panels are packed", lambda c: c["pack_input"].val or c["tile_order"].val != "panels")

    def compute(self, inputs, wl, cfg, target, prepacked=False, name=None):
        x, w, bias = (list(inputs) + [None])[:3]
        g = wl.geometry
        # a config the constraint refuses (a log's, say) packs where the input cannot be read in place
        pack = cfg["pack_input"].val if g.sh == g.sw == 1 and (g.OH * g.OW) % cfg["bn"].val == 0 else True
        return conv1x1_matmul(x, w, g, bias, bn=cfg["bn"].val, bm=cfg["tile_y"].size[-1], pack_input=pack,
                              name=name or "conv2d", target=target)

    def schedule(self, s, out, final, cfg, target):
        schedule_matmul_cfg(cfg, s, out, final, target)


WINOGRAD_MIN_MAP = 13     # narrowest map Winograd is chosen for untuned where the direct conv has two-vector tiles


def _winograd_priority(wl: ConvWorkload, target: Target, alg: Algorithm, otherwise: int) -> int:
    """20 (above the direct conv's PREFERRED) where `alg` is conv_algorithm.choose's pick, else
    `otherwise`.  Only >= 16 channels in and >= 32 out choose at all (with few channels the
    transforms outweigh the multiply-adds saved), and where the direct conv's tiles hold two
    channel vectors (direct_defaults.two_vector_tiles: AVX-512's 32 registers) only maps of at
    least WINOGRAD_MIN_MAP: there the direct conv runs near the peak on 7x7 maps, where the
    padded tiles waste most of Winograd's work (ResNet-50's 3x3 512@7x7 on Emerald Rapids: F(2x2)
    0.59-0.63x the direct conv, conv_algorithm.py).  With 16 registers (AVX2) the direct conv's
    one-vector tiles reach 50-65% of the peak on small maps and Winograd wins on every map
    measured: on Zen 3, two threads, weights cold (bench/conv_weak.py's timing), the pick
    against the direct conv's default: 512 -> 512 at 7x7 F(2x2) 1.27x, 256 -> 256 at 8x8 1.67x
    (F(4x4) 2.37x), 128 -> 128 at 9x9 1.21x, 256 -> 256 at 10x10 1.93x, AlexNet's and ZFNet's
    256 -> 384 and 256 -> 512 at 12x12 (F(4x4)) 3.35x and 3.16x."""
    g = wl.geometry
    small_ok = not two_vector_tiles(target) or min(g.OH, g.OW) >= WINOGRAD_MIN_MAP
    if g.C >= 16 and g.K >= 32 and small_ok and choose(g, target) is alg:
        return 20
    return otherwise


class WinogradConv(_Conv):
    """3x3 stride-1 convs by F(4x4, 3x3), the weight transformed at build time; preferred where
    te.ops.conv_algorithm estimates it the fastest (multiply-adds and weights read from memory)."""
    name, template = "conv2d.winograd", "conv2d_nchw_winograd"
    packs_weight = True
    M = 4           # output tile

    def match(self, wl, target):
        if wl.layout != "NCHW" or not wg.applies(wl.geometry) or wl.dtype == "uint8":
            return None
        return _winograd_priority(wl, target, Algorithm.WINOGRAD_F4, 0)

    def space(self, cfg, wl, target):
        g = wl.geometry
        bn, lanes, acc = wg.default_bn(g, target), target.lanes(), target.acc_vectors
        bm = wg.default_bm(bn, target, g.C, g.K, wg.tiles(g, self.M))
        cfg.define_knob("tile_bn", sorted({16, 32, bn}), default=bn)
        cfg.define_knob("tile_bm", sorted({*wg.TILE_ROWS, bm}), default=bm)
        tk = wg.default_tile_k(g.C, wg.runs_fused(g, self.M, bn, target))
        cfg.define_knob("tile_k", sorted({d for d in (1, 2, 4, 8, 16) if g.C % d == 0} | {tk}), default=tk)
        cfg.define_constraint("register tile", lambda c: c["tile_bm"].val * -(-c["tile_bn"].val // lanes) <= acc)

    def packed_shape(self, wl, cfg, target):
        g, bn, a = wl.geometry, cfg["tile_bn"].val, self.M + 2
        return (a, a, -(-g.K // bn), g.C, bn)

    def pack_weight(self, w, wl, cfg, target):
        return wg.transform_weight_numpy(w, self.M, cfg["tile_bn"].val)

    def compute(self, inputs, wl, cfg, target, prepacked=False, name=None):
        x, w, bias = (list(inputs) + [None])[:3]
        if prepacked:
            w = wg.WinogradWeight(w, wl.w_shape, self.M)
        return wg.conv2d_winograd(x, w, wl.geometry, bias, m=self.M, bn=cfg["tile_bn"].val,
                                  bm=cfg["tile_bm"].val, name=name or "conv2d")

    def schedule(self, s, out, final, cfg, target):
        wg.schedule_winograd(s, out, final, target, tile_k=cfg["tile_k"].val)


class WinogradF2Conv(WinogradConv):
    """3x3 stride-1 convs by F(2x2, 3x3): 4x4 tiles (2.25x fewer multiplies than direct, against
    F(4x4)'s 4x), but smaller transforms, less padding on small maps and weights 2.25x smaller once
    transformed; preferred where te.ops.conv_algorithm estimates it the fastest (ResNet-50's
    256 -> 256 at 14x14, its weights read from memory), else an alternative that tuning times."""
    name, template = "conv2d.winograd_f2", "conv2d_nchw_winograd_f2"
    M = 2

    def match(self, wl, target):
        if wl.layout != "NCHW" or not wg.applies(wl.geometry) or wl.dtype == "uint8":
            return None
        return _winograd_priority(wl, target, Algorithm.WINOGRAD_F2, ALTERNATIVE)


def _depthwise(x_shape, w_shape, strides=(1, 1), padding=0, dilation=(1, 1), dtype: str = "float32",
               shuffle: int = 0):
    return ConvWorkload(freeze(x_shape), freeze(w_shape), freeze(strides), freeze(padding), freeze(dilation),
                        int(x_shape[1]), dtype, shuffle=int(shuffle))


class StemConv(_Conv):
    """Few input channels (an image): vectors along the output row, a tile of channels x rows."""
    name, template = "conv2d.stem", "conv2d_stem"

    def match(self, wl, target):
        g = wl.geometry
        if wl.layout != "NCHW" or wl.dtype != "float32" or not conv_stem.applies(g):
            return None
        # above the direct conv (10) where conv_stem.preferred says why
        return PREFERRED + 5 if conv_stem.preferred(g) else ALTERNATIVE

    def space(self, cfg, wl, target):
        g = wl.geometry
        bk, bh, bv = conv_stem.default_tile(g, target)
        cfg.define_knob("tile_k", sorted({b for b in (2, 4, 8, 16) if g.K % b == 0} | {bk}), default=bk)
        cfg.define_knob("tile_h", sorted({1, 2, 3, 4, bh}), default=bh)
        cfg.define_knob("tile_v", [1, 2], default=bv)
        cfg.define_constraint("register tile", lambda c: c["tile_k"].val * c["tile_h"].val * c["tile_v"].val
                              <= target.acc_vectors)

    def compute(self, inputs, wl, cfg, target, prepacked=False, name=None):
        x, w, bias = (list(inputs) + [None])[:3]
        return conv_stem.conv2d_stem(x, w, wl.geometry, bias, bk=cfg["tile_k"].val, bh=cfg["tile_h"].val,
                                     bv=cfg["tile_v"].val, name=name or "conv2d", target=target)

    def schedule(self, s, out, final, cfg, target):
        conv_stem.schedule_conv2d_stem(s, out, final, target)


class DepthwiseConv(_Conv):
    """groups == channels: vectors along the output row, the taps streaming by."""
    name, template = "conv2d.depthwise", "depthwise_conv2d_nchw"
    arguments = staticmethod(_depthwise)
    reads_shuffled = True

    def match(self, wl, target):
        return 10 if wl.layout == "NCHW" and wl.geometry.depthwise and wl.dtype != "uint8" else None

    def args(self, wl):
        plain = (wl.x_shape, wl.w_shape, wl.strides, wl.padding, wl.dilation, wl.dtype)
        return plain + (wl.shuffle,) if wl.shuffle > 1 else plain

    def workload(self, args):
        return _depthwise(*args)

    def compute(self, inputs, wl, cfg, target, prepacked=False, name=None):
        x, w, bias = (list(inputs) + [None])[:3]
        return depthwise_conv2d_nchw(x, w, wl.geometry, bias, name=name or "depthwise_conv2d", target=target,
                                     shuffle=wl.shuffle)

    def schedule(self, s, out, final, cfg, target):
        schedule_depthwise_cfg(cfg, s, out, final, target)


class NCHWcConv(Implementation):
    """A conv of a chain in NCHW[b]c (passes.propagate_nchwc): input packed, weights OIHW[b]i[b]o."""
    name, op = "conv2d.nchwc", "conv2d"
    packs_weight = True

    def match(self, wl, target):
        return 10 if wl.layout == "NCHWc" and wl.dtype != "uint8" else None

    def pack_weight(self, w, wl, cfg, target):
        return pack_conv_weight_numpy(w, wl.block, wl.block)

    def compute(self, inputs, wl, cfg, target, prepacked=False, name=None):
        x, w, bias = (list(inputs) + [None])[:3]
        if not prepacked:
            raise ValueError(f"{name}: a conv in NCHW{wl.block}c takes its weight packed by pack_weight")
        return conv2d_NCHWc(x, w, wl.strides, wl.padding, wl.dilation, bias, name=name or "conv2d_NCHWc",
                            target=target)

    def schedule(self, s, out, final, cfg, target):
        schedule_conv2d_NCHWc_cfg(cfg, s, out, final, target)


def _matmul_args(M: int, N: int, K: int, dtype: str = "float32") -> tuple:
    return M, N, K, dtype


class MatmulShapes(Implementation):
    """What every matmul/dense implementation (fp32 and int8) shares: the template arguments
    (M, N, K, dtype), the workload they stand for and the logical weight shape."""
    arguments = staticmethod(_matmul_args)
    op = "matmul"
    transpose_b = False

    def args(self, wl):
        return (wl.M, wl.N, wl.K, wl.dtype)

    def workload(self, args):
        M, N, K, dtype = self.arguments(*args)
        return MatmulWorkload(int(M), int(N), int(K), dtype, self.transpose_b)

    def weight_shape(self, wl):
        return (wl.N, wl.K) if self.transpose_b else (wl.K, wl.N)


class _Matmul(MatmulShapes):
    """One strategy of matmul.py (its docstring says which suits which shape) as an implementation:
    C = A @ B with B row-major (K, N), or with transpose_b a dense layer, W (N, K), and a bias."""
    strategy = ""

    def applies(self, wl) -> bool:
        """Can this strategy run wl at a reasonable cost (to build and to run)?"""
        return True

    def match(self, wl, target):
        if wl.transpose_b != self.transpose_b or wl.dtype == "uint8" or not self.applies(wl):
            return None
        preferred = default_strategy(wl.M, wl.N, wl.K, transpose_b=self.transpose_b)
        return PREFERRED if preferred == self.strategy else ALTERNATIVE

    def space(self, cfg, wl, target):
        if self.strategy == "packed":
            define_bn(cfg, wl.N, target)
        define_knobs(cfg, wl.M, wl.N, wl.K, self.strategy, target)

    def placeholders(self, wl, cfg, target, prepacked):
        if self.transpose_b:
            w = (te.placeholder(self.packed_shape(wl, cfg), wl.dtype, name="w.packed")
                 if prepacked and self.packs_weight else te.placeholder((wl.N, wl.K), wl.dtype, name="w"))
            return [te.placeholder((wl.M, wl.K), wl.dtype, name="x"), w,
                    te.placeholder((wl.N,), wl.dtype, name="b")]
        b = (te.placeholder(self.packed_shape(wl, cfg), wl.dtype, name="B.packed") if prepacked and self.packs_weight
             else te.placeholder((wl.K, wl.N), wl.dtype, name="B"))
        return [te.placeholder((wl.M, wl.K), wl.dtype, name="A"), b]

    def packed_shape(self, wl, cfg) -> tuple:
        bn = cfg["bn"].val
        return (-(-wl.N // bn), wl.K, bn)

    def compute(self, inputs, wl, cfg, target, prepacked=False, name=None):
        a, b, bias = (list(inputs) + [None])[:3]
        packed = self.strategy == "packed"
        return matmul(a, b, bias, transpose_b=self.transpose_b, bn=cfg["bn"].val if packed else None,
                      strategy=self.strategy, bm=cfg["tile_y"].size[-1] if packed else None,
                      name=name or self.template, target=target)

    def schedule(self, s, out, final, cfg, target):
        schedule_matmul_cfg(cfg, s, out, final, target)


class MatmulPacked(_Matmul):
    """AutoTVM's GEMM: B packed into [N/bn, K, bn] blocks, a bm x bn register tile; a constant B
    (a MatMul's weight) is packed at build time, as DensePacked's, not by every call."""
    name, template, strategy = "matmul.packed", "matmul", "packed"
    packs_weight = True

    def pack_weight(self, w, wl, cfg, target):
        return pack_dense_weight_numpy(w.T, cfg["bn"].val)

    def compute(self, inputs, wl, cfg, target, prepacked=False, name=None):
        if not prepacked:
            return super().compute(inputs, wl, cfg, target, prepacked, name)
        a, w, bias = (list(inputs) + [None])[:3]
        return dense_packed(a, w, wl.N, bias, bm=cfg["tile_y"].size[-1], name=name or self.template, target=target)


class MatmulRows(_Matmul):
    """Small M: vectors along N, a bm x lanes accumulator tile over the whole K, no packing."""
    name, template, strategy = "matmul.rows", "matmul_rows", "rows"

    def applies(self, wl):
        return wl.M <= 4 * ROWS_MAX_M


class MatmulSplitK(_Matmul):
    """M of 1 or 2 (memory bound): each thread streams its slice of B's rows into a partial row."""
    name, template, strategy = "matmul.splitk", "matmul_splitk", "splitk"

    def applies(self, wl):
        # every row's partial result stays in registers: M = 128 would unroll into megabytes of IR
        return wl.M <= 2 * SPLITK_MAX_M


class DensePacked(_Matmul):
    """A dense layer by the packed GEMM, its weight packed into [N/bn, K, bn] at build time."""
    name, template, strategy = "dense.packed", "dense", "packed"
    transpose_b = True
    packs_weight = True

    def pack_weight(self, w, wl, cfg, target):
        return pack_dense_weight_numpy(w, cfg["bn"].val)

    def compute(self, inputs, wl, cfg, target, prepacked=False, name=None):
        if not prepacked:
            return super().compute(inputs, wl, cfg, target, prepacked, name)
        x, w, bias = (list(inputs) + [None])[:3]
        return dense_packed(x, w, wl.N, bias, bm=cfg["tile_y"].size[-1], name=name or self.template,
                            target=target)


class DenseDot(_Matmul):
    """A dense layer of few rows: both operands read along K, no packing (W read as it is)."""
    name, template, strategy = "dense.dot", "dense_dot", "dot"
    transpose_b = True

    def applies(self, wl):
        return wl.M < 2 * DOT_MAX_M


for _impl in (DirectConv(), Gemm1x1Conv(), WinogradConv(), WinogradF2Conv(), StemConv(), DepthwiseConv(), NCHWcConv(),
              MatmulPacked(), MatmulRows(), MatmulSplitK(), DensePacked(), DenseDot()):
    register(_impl)

from . import qnn  # noqa: E402,F401  (the int8 reference implementations)
from . import int8_implementations  # noqa: E402,F401  (the fast int8 implementations register themselves)
from . import grouped_conv  # noqa: E402,F401  (grouped 1x1 convs as one GEMM per group)
from . import batch_implementations  # noqa: E402,F401  (the batched matmul of two activations)
