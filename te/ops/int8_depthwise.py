"""The int8 depthwise conv (u8 x s8 -> s32) as exact float32 multiply-adds on the fp32 depthwise kernel.

    conv2d.int8_depthwise_f32   template conv2d_int8_depthwise   weights (K, 1, R, S) int8, as they are

A depthwise conv reduces over the R x S taps of one channel only, so the dot-product instructions
have nothing to reduce over: vpdpbusd sums 4 products of one output lane (4 input channels of a
dense conv), and here a lane's 4 neighbouring products are 4 taps at 4 different columns, which
would need the input interleaved by tap first.  What is left is one multiply-add per tap and
output lane, and of the ways to do it on int8 values float32 FMA is the cheapest: one FMA per 16
lanes on either of two ports, where an int32 multiply-add is vpmulld (2 uops, one port) plus
vpaddd, and int16 products (vpmullw, 32 lanes) must still be widened to int32 before they are
summed.  It is exact: every product is an integer of magnitude at most 255 * 128 = 32640, so
every partial sum of at most MAX_TAPS taps stays within 2**24, where float32 holds every integer.

So the kernel is te.ops.depthwise's, unchanged: its input is the uint8 activation read as float32
(the conversion inlined into the pad copy, one per input element, in L1), its weight the int8
weight converted as each tap reads it, and its output converted to int32, the int8 anchors'
contract (te/ops/qnn.py); the importer's epilogue (zero-point term, scales, QuantizeLinear) fuses
after it as after every int8 anchor.
"""
from __future__ import annotations

import te
from te.target import Target

from .depthwise import depthwise_conv2d_nchw, schedule_depthwise_cfg
from .implementations import DepthwiseConv
from .registry import register

# above the reference kernels (0), below the int8 implementations that reduce over channels
PRIORITY = 15
# the largest |u8 * s8| product, and the taps whose sums float32 still holds exactly
MAX_PRODUCT = 255 * 128
MAX_TAPS = 2 ** 24 // MAX_PRODUCT


def exact_taps(R: int, S: int) -> bool:
    """Does float32 accumulate an R x S depthwise window of u8 x s8 products exactly?"""
    return R * S <= MAX_TAPS


def depthwise_conv2d_int8(x: te.Tensor, w: te.Tensor, g, name: str = "conv2d_int8_depthwise",
                          target: Target | None = None, shuffle: int = 0) -> te.Tensor:
    """y[n, k, p, q] int32 = sum over (r, s) of x * w, x uint8 NCHW padded with 0, w the (K, 1, R, S)
    int8 (or float32) weight, computed by float32 FMAs (exact: the module docstring); `shuffle` G > 1
    reads x through a channel shuffle of G groups, as te.ops.depthwise does."""
    if x.dtype != "uint8":
        raise ValueError(f"{name}: the int8 depthwise conv takes a uint8 input, not {x.dtype}; shift int8 "
                         "activations by 128 first (qnn.shift_to_uint8)")
    if not exact_taps(g.R, g.S):
        raise ValueError(f"{name}: a {g.R}x{g.S} window has more than {MAX_TAPS} taps, which float32 does not "
                         "sum exactly; use conv2d.int8_reference")
    xf = te.compute(x.shape, lambda *i: x[i].astype("float32"), name=f"{name}.x_f32", tag="int8.to_f32")
    wf = w if w.dtype == "float32" else te.compute(w.shape, lambda *i: w[i].astype("float32"),
                                                   name=f"{name}.w_f32", tag="int8.to_f32")
    return depthwise_conv2d_nchw(xf, wf, g, epilogue=lambda v, idx: v.astype("int32"), name=name, target=target,
                                 shuffle=shuffle)


def schedule_depthwise_int8(cfg, s: te.Schedule, out: te.Tensor, final: te.Tensor | None, target: Target) -> None:
    """The fp32 depthwise schedule, with the float32 views of the input and weight inlined into
    their readers (the pad copy converts the uint8 input as it copies)."""
    stack, seen = [out], set()
    while stack:
        t = stack.pop()
        for u in getattr(t.op, "input_tensors", []):
            if id(u.op) in seen:
                continue
            seen.add(id(u.op))
            if getattr(u.op, "tag", None) == "int8.to_f32":
                s[u].compute_inline()
            else:
                stack.append(u)
    schedule_depthwise_cfg(cfg, s, out, final, target)


class Int8DepthwiseConv(DepthwiseConv):
    """groups == channels == output channels, uint8 x int8: float32 FMAs on te.ops.depthwise's kernel
    (its workload arguments too, so it reads through a channel shuffle as that kernel does).

    The int8 weight is read as it is: the kernel converts each tap's weight once per run of output
    vectors it broadcasts to, which costs nothing beside the run's FMAs."""
    name, template = "conv2d.int8_depthwise_f32", "conv2d_int8_depthwise"

    def match(self, wl, target):
        g = wl.geometry if wl.layout == "NCHW" and wl.dtype == "uint8" else None
        if g is None or not g.depthwise or not exact_taps(g.R, g.S):
            return None
        return PRIORITY

    def placeholders(self, wl, cfg, target, prepacked):
        return [te.placeholder(wl.x_shape, "uint8", name="x"), te.placeholder(wl.w_shape, "int8", name="w")]

    def compute(self, inputs, wl, cfg, target, prepacked=False, name=None):
        return depthwise_conv2d_int8(inputs[0], inputs[1], wl.geometry, name=name or "conv2d_int8_depthwise",
                                     target=target, shuffle=wl.shuffle)

    def schedule(self, s, out, final, cfg, target):
        schedule_depthwise_int8(cfg, s, out, final, target)


register(Int8DepthwiseConv())

__all__ = ["depthwise_conv2d_int8", "schedule_depthwise_int8", "exact_taps", "MAX_TAPS"]
