"""The int8 grouped conv (groups > 1, not depthwise) as the dense int8 conv of its block-diagonal weight.

    conv2d.int8_grouped_dense   template conv2d_int8_grouped_dense   the dense implementation's packing
                                                                     of the block-diagonal (K, C, R, S)

A grouped 1x1 conv runs as one GEMM per group on the 1x1 kernels (int8_conv2d.is_gemm), with no
waste; this module takes the others.  A conv of G groups is the dense conv whose weight is zero
outside the G diagonal blocks (output channels of group g read only input channels of group g),
so every fast dense int8 kernel (VNNI, AMX, vpmaddwd: int8_implementations.py) runs it unchanged, its weight expanded and
packed at build time.  The zeros cost G times the products of the grouped conv; a dot-product
instruction does 4 (VNNI) to 16 x 64 (AMX) of them per lane where the reference kernel does one
int32 multiply-add, so up to MAX_GROUPS groups this still wins by far.  More groups than that stay
on the reference kernel; depthwise convs run in int8_depthwise.py.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

import te
from te.target import Target

from .implementations import _Conv
from .registry import IMPLEMENTATIONS, Implementation, register, select

# above the reference kernels (0), below every dense int8 implementation it runs on
PRIORITY = 11
# the widest grouping worth G times the products on a dot-product kernel
MAX_GROUPS = 8
# the output op's attribute naming the dense implementation that computed it
INNER = "int8_grouped.inner"


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


register(Int8GroupedAsDense())

__all__ = ["dense_workload", "block_diagonal_numpy", "block_diagonal", "MAX_GROUPS"]
