"""int8 grouped convs (groups > 1, not depthwise): 1x1 ones as a GEMM per group scheduled by group,
the others as the dense int8 conv of their block-diagonal weight.

    conv2d.int8_grouped_gemm_vnni / _pmaddwd   1x1: int8_conv2d's GEMM per group (its compute
                                               and weight layout), schedule_grouped_gemm
    conv2d.int8_grouped_dense   template conv2d_int8_grouped_dense   the dense implementation's packing
                                                                     of the block-diagonal (K, C, R, S)

A grouped 1x1 conv is one GEMM per group (int8_conv2d.is_gemm), with no waste.  Scheduled as the
dense 1x1 GEMM is (channel tiles in parallel over an input packed by a pass of its own first), its
few input channels per group (ShuffleNet's 6 to 136) made the pack and its fork/join a large
share; schedule_grouped_gemm packs each group's block of pixels inside the task that reads it.

The other grouped convs: a conv of G groups is the dense conv whose weight is zero outside the G
diagonal blocks (output channels of group g read only input channels of group g), so every fast
dense int8 kernel (VNNI, AMX, vpmaddwd: int8_implementations.py) runs it unchanged, its weight
expanded and packed at build time.  The zeros cost G times the products of the grouped conv; a dot-product
instruction does 4 (VNNI) to 16 x 64 (AMX) of them per lane where the reference kernel does one
int32 multiply-add, so up to MAX_GROUPS groups this still wins by far.  More groups than that stay
on the reference kernel; depthwise convs run in int8_depthwise.py.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

import te
from te.target import Target

from .common import largest_divisor
from .implementations import _Conv
from .int8_conv2d import _schedule_pack as schedule_pack
from .int8_conv2d import register_tile
from .int8_implementations import VectorConv
from .registry import IMPLEMENTATIONS, Implementation, register, select
from .schedule import input_stage, parallel_if_worth

# above the reference kernels (0), below every dense int8 implementation it runs on
PRIORITY = 11
# the widest grouping worth G times the products on a dot-product kernel
MAX_GROUPS = 8
# the output op's attribute naming the dense implementation that computed it
INNER = "int8_grouped.inner"
MAX_LANES = 64              # the widest vector a loop may be (te.lower refuses more)
# above the per-group 1x1 GEMM of int8_implementations.VectorConv (priority + this)
GEMM_PRIORITY = 1


def dense_workload(wl):
    """The dense conv of a grouped conv's block-diagonal weight: groups 1, weight (K, C, R, S)."""
    K, _, R, S = wl.w_shape
    return replace(wl, groups=1, w_shape=(K, wl.x_shape[1], R, S))


def block_diagonal_numpy(w: np.ndarray, groups: int) -> np.ndarray:
    """A grouped OIHW weight (K, C/G, R, S) as the dense (K, C, R, S) one, zero outside the groups."""
    K, Cg, R, S = w.shape
    Kg = K // groups
    out = np.zeros((K, Cg * groups, R, S), w.dtype)
    for g in range(groups):
        out[g * Kg:(g + 1) * Kg, g * Cg:(g + 1) * Cg] = w[g * Kg:(g + 1) * Kg]
    return out


def block_diagonal(w: te.Tensor, groups: int, name: str) -> te.Tensor:
    """block_diagonal_numpy as a stage of the kernel (a weight that is not a constant)."""
    K, Cg, R, S = w.shape
    Kg = K // groups

    def f(k, c, r, s):
        v = w[k, c % Cg, r, s]
        return te.if_then_else(c // Cg == k // Kg, v, te.const(0, w.dtype))
    return te.compute((K, Cg * groups, R, S), f, name=f"{name}.block_diagonal", tag="pack")


class Int8GroupedAsDense(_Conv):
    """uint8 x int8 convs of 2..MAX_GROUPS groups on the dense int8 implementation of their
    block-diagonal weight (the module docstring)."""
    name, template = "conv2d.int8_grouped_dense", "conv2d_int8_grouped_dense"
    packs_weight = True

    def inner(self, wl, target: Target) -> Implementation | None:
        """The dense implementation that runs wl's block-diagonal conv (None: only the reference)."""
        impl = select(dense_workload(wl), target)
        return impl if impl.packs_weight and impl.match(dense_workload(wl), target) else None

    def match(self, wl, target):
        g = wl.geometry if wl.layout == "NCHW" and wl.dtype == "uint8" else None
        if g is None or not 1 < g.groups <= MAX_GROUPS or g.depthwise or self.inner(wl, target) is None:
            return None
        return PRIORITY

    def space(self, cfg, wl, target):
        self.inner(wl, target).space(cfg, dense_workload(wl), target)

    def packed_shape(self, wl, cfg, target):
        return self.inner(wl, target).packed_shape(dense_workload(wl), cfg, target)

    def placeholders(self, wl, cfg, target, prepacked):
        if prepacked:
            return self.inner(wl, target).placeholders(dense_workload(wl), cfg, target, True)
        return [te.placeholder(wl.x_shape, "uint8", name="x"), te.placeholder(wl.w_shape, "int8", name="w")]

    def pack_weight(self, w, wl, cfg, target):
        dense = block_diagonal_numpy(np.asarray(w), wl.groups)
        return self.inner(wl, target).pack_weight(dense, dense_workload(wl), cfg, target)

    def compute(self, inputs, wl, cfg, target, prepacked=False, name=None):
        name = name or "conv2d_int8_grouped"
        x, w = inputs[:2]
        if not prepacked:
            w = block_diagonal(w, wl.groups, name)
        inner = self.inner(wl, target)
        y = inner.compute([x, w], dense_workload(wl), cfg, target, prepacked=prepacked, name=name)
        y.op.attrs[INNER] = inner.name          # the schedule, which sees no workload, runs the same one
        return y

    def schedule(self, s, out, final, cfg, target):
        # the block-diagonal stage (an unpacked weight) is read by the inner kernel's weight pack
        for t in out.op.input_tensors:
            for u in getattr(t.op, "input_tensors", []):
                if u.op.name.endswith(".block_diagonal"):
                    s[u].compute_inline()
        IMPLEMENTATIONS[out.op.attrs[INNER]].schedule(s, out, final, cfg, target)


def schedule_grouped_gemm(cfg, s: te.Schedule, out: te.Tensor, final: te.Tensor | None, target: Target,
                          intrin: str, lanes: int) -> None:
    """A grouped 1x1 GEMM (int8_conv2d.conv2d_int8) by tasks of one conv group x tile_ow pixels:
    each task packs its group's input channels for its pixels (tile_ow x C/groups bytes, in L1)
    and runs every tile_k channel tile of the group over them, so the pack is no pass of its own
    over the input and the kernel one parallel region."""
    final = final or out
    acc = input_stage(out, "acc")
    attrs = out.op.attrs
    g, G = attrs["geometry"], attrs["group"]
    bk, bw = cfg["tile_k"].val, cfg["tile_ow"].val
    if final is not out:
        s[out].compute_inline()
    n, k, oh, ow = s[final].op.axis
    p = s[final].fuse(oh, ow)
    kg, kl = s[final].split(k, factor=g.K // g.groups)
    ko, ki = s[final].split(kl, factor=bk)
    po, pi = s[final].split(p, factor=bw)
    s[final].reorder(n, kg, po, ko, ki, pi)
    task = s[final].fuse(n, kg, po)
    _, lane = s[final].split(pi, factor=lanes)
    s[final].vectorize(lane)
    parallel_if_worth(s[final], task, attrs["flops"] / 2)
    s[acc].compute_at(s[final], ko)
    register_tile(s, acc, G, lanes, intrin)
    for t in acc.op.input_tensors:
        if getattr(t.op, "tag", None) != "pack":
            continue
        if t.ndim == 4:             # the input, [n, C/G, P, G]: the task's pixels of its group
            s[t].compute_at(s[final], task)
            _, vec = s[t].split(s[t].fuse(*s[t].op.axis[2:]), factor=largest_divisor(bw * G, MAX_LANES))
            s[t].vectorize(vec)
        else:                       # a weight packed in the kernel (a template built alone)
            schedule_pack(s, t, attrs["flops"], target)


class Int8GroupedGemm(VectorConv):
    """uint8 grouped 1x1 convs (not depthwise) as one GEMM per group (int8_conv2d's compute and
    weight layout), scheduled by schedule_grouped_gemm."""

    def __init__(self, family: str):
        super().__init__(family, gemm=True)
        self.name, self.template = f"conv2d.int8_grouped_gemm_{family}", f"conv2d_int8_grouped_gemm_{family}"

    def match(self, wl, target):
        p = super().match(wl, target)
        return None if p is None or wl.geometry.groups == 1 else p + GEMM_PRIORITY

    def schedule(self, s, out, final, cfg, target):
        schedule_grouped_gemm(cfg, s, out, final, target, self.intrin(target), self.lanes_group(target)[0])


register(Int8GroupedAsDense())
for _family in ("vnni", "pmaddwd"):
    register(Int8GroupedGemm(_family))

__all__ = ["dense_workload", "block_diagonal_numpy", "block_diagonal", "MAX_GROUPS"]
