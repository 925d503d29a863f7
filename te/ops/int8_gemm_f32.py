"""int8 1x1 convs on large maps without VNNI as exact float32 FMAs on the fp32 1x1 GEMM.

    conv2d.int8_gemm1x1_f32   template conv2d_int8_gemm1x1_f32   weights (K, C, 1, 1) int8, as they are

Without VNNI (an AVX2 target) the int8 dot product is vpmaddwd on int16 pairs: 16 products per
instruction against float32 FMA's 8, but its operands must be widened to int16 first (the input
in a pack pass of its own, int16 panels twice the uint8 input) and each vpmaddwd needs a vpaddd
beside it.  On large maps with few channels (SqueezeNet's and ResNet-50's 1x1 convs at 55x55 /
56x56 and 27x27 / 28x28) that pack and the narrow register tile vpmaddwd leaves cost more than
the products save: the vpmaddwd 1x1 GEMM ran 1.7-2.7x the fp32 GEMM's time there, on one thread.
So these convs run te.ops.conv2d's fp32 1x1 GEMM, unchanged: its input is the uint8 activation
read as float32 (the conversion inlined where the GEMM reads or packs its input), its weight the
int8 weight converted once per call (K x C values, against K x C x OH*OW FMAs), its output
converted to int32, the int8 anchors' contract (te/ops/qnn.py); the importer's epilogue fuses
after it as after every int8 anchor.

It is exact: every product is an integer of magnitude at most 255 * 128, so with at most
int8_depthwise.MAX_TAPS (514) input channels every partial sum stays within 2**24, where float32
holds every integer.  Targets with VNNI or AMX never take it (their int8 kernels are faster).
"""
from __future__ import annotations

import te
from te import tensorize
from te.target import Target

from .conv2d import as_matmul, conv1x1_matmul, gemm_applies
from .implementations import Gemm1x1Conv
from .int8_depthwise import MAX_TAPS, schedule_f32_views, tagged_stages
from .matmul import schedule_matmul_cfg
from .registry import register

# above vpmaddwd's 1x1 GEMM (12) and its Winograd (13), below the VNNI (20) and AMX (30) kernels,
# which never meet it (match refuses their targets)
PRIORITY = 14


def exact_channels(C: int) -> bool:
    """Does float32 accumulate C products u8 x s8 exactly?"""
    return C <= MAX_TAPS


def has_int8_dot(target: Target) -> bool:
    """Does the target have VNNI (vpdpbusd) or AMX, which beat float32 on int8?"""
    return any(tensorize.supports(n, target) for n in ("vpdpbusd", "vpdpbusd.256", "vpdpbusd.256vl", "amx"))


def conv1x1_int8_f32(x: te.Tensor, w: te.Tensor, g, bn: int | None = None, bm: int | None = None,
                     pack_input: bool | None = None, name: str = "conv2d_int8_gemm1x1_f32",
                     target: Target | None = None) -> te.Tensor:
    """y[0, k, p, q] int32 = sum over c of x * w, x uint8 NCHW, w the (K, C, 1, 1) int8 weight, by
    te.ops.conv2d.conv1x1_matmul's float32 GEMM (exact: the module docstring)."""
    if x.dtype != "uint8" or w.dtype != "int8":
        raise ValueError(f"{name}: the int8 1x1 GEMM takes a uint8 input and an int8 weight, got {x.dtype} and "
                         f"{w.dtype}; shift int8 activations by 128 first (qnn.shift_to_uint8)")
    if not exact_channels(g.C):
        raise ValueError(f"{name}: {g.C} input channels are more than the {MAX_TAPS} whose u8 x s8 sums float32 "
                         "holds exactly; use conv2d.int8_gemm1x1_pmaddwd")
    xf = te.compute(x.shape, lambda *i: x[i].astype("float32"), name=f"{name}.x_f32", tag="int8.to_f32")
    # the weight converted once per call into a buffer of its own: the GEMM reads each of its
    # values for every pixel
    wf = te.compute(w.shape, lambda *i: w[i].astype("float32"), name=f"{name}.w_f32", tag="int8.w_f32")
    return conv1x1_matmul(xf, wf, g, epilogue=lambda v, idx: v.astype("int32"), bn=bn, bm=bm,
                          pack_input=pack_input, name=name, target=target)


def schedule_conv1x1_int8_f32(cfg, s: te.Schedule, out: te.Tensor, final: te.Tensor | None, target: Target) -> None:
    """The fp32 1x1 GEMM's schedule, the input's float32 view inlined into its readers and the
    weight's conversion a vectorised loop of its own."""
    schedule_f32_views(s, out)
    for t in tagged_stages(out, "int8.w_f32"):
        st = s[t]
        _, lane = st.split(st.fuse(*st.op.axis), factor=target.lanes("float32"))
        st.vectorize(lane)
    schedule_matmul_cfg(cfg, s, out, final, target)


class Int8Gemm1x1F32(Gemm1x1Conv):
    """A 1x1 unpadded conv of one image, uint8 x int8, on a map where the fp32 build runs the GEMM,
    on a target without VNNI or AMX: float32 FMAs on te.ops.conv2d's 1x1 GEMM (its knobs too)."""
    name, template = "conv2d.int8_gemm1x1_f32", "conv2d_int8_gemm1x1_f32"

    def match(self, wl, target):
        g = wl.geometry if wl.layout == "NCHW" and wl.dtype == "uint8" else None
        if (g is None or not gemm_applies(g) or not as_matmul(g) or not exact_channels(g.C)
                or has_int8_dot(target)):
            return None
        return PRIORITY

    def placeholders(self, wl, cfg, target, prepacked):
        return [te.placeholder(wl.x_shape, "uint8", name="x"), te.placeholder(wl.w_shape, "int8", name="w")]

    def compute(self, inputs, wl, cfg, target, prepacked=False, name=None):
        g = wl.geometry
        # as Gemm1x1Conv: a config that cannot read the input in place packs it
        pack = cfg["pack_input"].val if g.sh == g.sw == 1 and (g.OH * g.OW) % cfg["bn"].val == 0 else True
        return conv1x1_int8_f32(inputs[0], inputs[1], g, bn=cfg["bn"].val, bm=cfg["tile_y"].size[-1],
                                pack_input=pack, name=name or "conv2d_int8_gemm1x1_f32", target=target)

    def schedule(self, s, out, final, cfg, target):
        schedule_conv1x1_int8_f32(cfg, s, out, final, target)


register(Int8Gemm1x1F32())

__all__ = ["conv1x1_int8_f32", "schedule_conv1x1_int8_f32", "exact_channels", "has_int8_dot"]
