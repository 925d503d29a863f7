"""Transposed convolution (ONNX ConvTranspose) as a direct kernel, in NC[spatial] layout.

Along an axis, output o receives input i through tap k when i * stride - pad + k * dil == o.
Split the outputs by phase r = o % stride: every output of one phase is reached by the same
taps k = k0 + j * step (step = stride / gcd(stride, dil)), from the input i = q + off - j * dil / gcd
where q = o // stride.  So each phase is an ordinary stride-1 correlation of the (zero-padded)
input with its own sub-kernel, whose taps and offsets are numbers known at build time:

    y_r[n, g*Cog + m, q...] = sum over c < Cig, j...: xpad[n, g*Cig + c, q + off_r - j*dil/gcd ...]
                                                       * w[g*Cig + c, m, k0_r + j*step ...]

No multiply by a stuffed zero, no guard or division in the reduction: the phases' kernels
vectorise along the output columns with unit-stride input reads, and one injective op
interleaves the phases (adding the bias).  Any number of spatial axes (1-D, 2-D, 3-D).
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import te
from te.target import Target, parse

from .common import tagged
from .injective import vector_lanes
from .schedule import parallel_if_worth, register_tile
from .transform import pad, reshape

__all__ = ["conv_transpose", "conv_transpose_output_shape"]

TAG = "conv_transpose"


def conv_transpose_output_shape(in_shape, w_shape, strides, pads_begin, pads_end, dilations,
                                output_padding, groups: int) -> tuple[int, ...]:
    """The output shape ONNX gives for explicit pads: s*(i-1) + output_padding + (k-1)*d + 1 - pads."""
    spatial = tuple(s * (i - 1) + op + (k - 1) * d + 1 - pb - pe for i, k, s, d, pb, pe, op in zip(
        in_shape[2:], w_shape[2:], strides, dilations, pads_begin, pads_end, output_padding))
    return (in_shape[0], w_shape[1] * groups) + spatial


@dataclass(frozen=True)
class Phase:
    """The outputs o = q * stride + r of one axis: how many, and the taps that reach them."""
    count: int          # outputs of this phase
    k0: int             # first tap
    taps: int           # taps k0, k0 + step, ...
    off: int            # input index of q's first tap, before padding: q + off - j * shift


def axis_phases(n_in: int, n_out: int, k: int, s: int, d: int, p: int) -> tuple[list[Phase], int, int, int, int]:
    """(phases, step, shift, pad_low, pad_high) of one spatial axis."""
    g = math.gcd(s, d)
    step, shift = s // g, d // g
    phases = []
    for r in range(s):
        k0 = next((kk for kk in range(min(step, k)) if (r + p - kk * d) % s == 0), None)
        count = len(range(r, n_out, s))
        if k0 is None:
            phases.append(Phase(count, 0, 0, 0))
        else:
            phases.append(Phase(count, k0, len(range(k0, k, step)), (r + p - k0 * d) // s))
    used = [ph for ph in phases if ph.taps and ph.count]
    lo = max([0] + [-(ph.off - (ph.taps - 1) * shift) for ph in used])
    hi = max([0] + [ph.count - 1 + ph.off - (n_in - 1) for ph in used])
    return phases, step, shift, lo, hi


def conv_transpose(x: te.Tensor, w: te.Tensor, out_spatial, strides, pads_begin, dilations,
                   groups: int = 1, bias: te.Tensor | None = None, name: str = "conv_transpose",
                   target: Target | str | None = None) -> te.Tensor:
    """y of spatial shape out_spatial from x (N, C, ...) and w (C, K/groups, kernel...), ONNX's
    ConvTranspose with the padding at the start of each axis given (the end follows from the shape).

    With a target, a 2-D phase (1-D: of height 1) runs as te.ops.conv2d (its kernels for that target) on a window of
    the padded input with the phase's sub-kernel flipped into OIHW; else as this module's kernel."""
    nd = x.ndim - 2
    if nd == 1 and target is not None:      # 1-D (audio decoders) as 2-D of height 1, for conv2d
        y = conv_transpose(reshape(x, tuple(x.shape[:2]) + (1, x.shape[2]), name=f"{name}.x2d"),
                           reshape(w, tuple(w.shape[:2]) + (1, w.shape[2]), name=f"{name}.w2d"),
                           (1, out_spatial[0]), (1, strides[0]), (0, pads_begin[0]), (1, dilations[0]),
                           groups, bias, f"{name}.2d", target)
        return reshape(y, tuple(y.shape[:2]) + (out_spatial[0],), name=name)
    n, c = x.shape[:2]
    if w.ndim != x.ndim or w.shape[0] != c or c % groups:
        raise ValueError(f"{name}: weight {w.shape} does not fit input {x.shape} with {groups} groups "
                         "(it must be (C, K / groups, kernel...), C divisible by groups)")
    cig, cog = c // groups, w.shape[1]
    axes = [axis_phases(x.shape[2 + a], out_spatial[a], w.shape[2 + a], strides[a], dilations[a], pads_begin[a])
            for a in range(nd)]
    lo, hi = [ax[3] for ax in axes], [ax[4] for ax in axes]
    xp = pad(x, [0, 0] + lo, [0, 0] + hi, name=f"{name}.pad") if any(lo + hi) else x
    out_shape = (n, cog * groups) + tuple(out_spatial)
    zero = te.const(0, x.dtype)
    parts = {}
    for r in itertools.product(*(range(s) for s in strides)):
        ph = [axes[a][0][r[a]] for a in range(nd)]
        shape = (n, cog * groups) + tuple(p.count for p in ph)
        if not all(shape):
            continue
        if not all(p.taps for p in ph):          # no tap reaches this phase: bias only
            parts[r] = None
            continue
        if target is not None and nd == 2:
            parts[r] = _phase_conv2d(xp, w, ph, axes, lo, groups, f"{name}.phase{''.join(map(str, r))}", target)
            continue
        rc = te.reduce_axis((0, cig), "rc")
        rj = [te.reduce_axis((0, p.taps), f"rj{a}") for a, p in enumerate(ph)]

        def body(*i, ph=ph, rc=rc, rj=rj):
            ic = (i[1] // cog) * cig + rc.var
            src = tuple(i[2 + a] + (p.off + lo[a]) - rj[a].var * axes[a][2] for a, p in enumerate(ph))
            tap = tuple(p.k0 + rj[a].var * axes[a][1] for a, p in enumerate(ph))
            return te.sum(xp[(i[0], ic) + src] * w[(ic, i[1] % cog) + tap], axis=[rc] + rj)
        flops = 2.0 * math.prod(shape) * cig * math.prod(p.taps for p in ph)
        parts[r] = te.compute(shape, body, name=f"{name}.phase{''.join(map(str, r))}", tag=TAG,
                              attrs={"flops": flops})

    def gather(*i):
        o = i[2:]
        value = bias[i[1]] if bias is not None else zero
        for r, part in parts.items():
            if part is None:
                continue
            q = tuple(te.min_of(o[a] // strides[a], part.shape[2 + a] - 1) if strides[a] > 1 else o[a]
                      for a in range(nd))
            term = part[i[:2] + q] if bias is None else part[i[:2] + q] + bias[i[1]]
            here = [(o[a] % strides[a]) == r[a] for a in range(nd) if strides[a] > 1]
            value = te.if_then_else(te.all(*here), term, value) if here else term
        return value
    return te.compute(out_shape, gather, name=name, tag="injective")


def _phase_conv2d(xp: te.Tensor, w: te.Tensor, ph: list[Phase], axes: list, lo: list[int], groups: int,
                  name: str, target: Target | str) -> te.Tensor:
    """One 2-D phase as conv2d: output q reads xp[q + base + t * shift] through tap t of the
    sub-kernel, the phase's taps in reverse (OIHW: channel oc of group g reads input channels of g)."""
    from .conv2d import conv2d
    cig, cog = w.shape[0] // groups, w.shape[1]
    shift = [axes[a][2] for a in range(2)]
    base = [p.off + lo[a] - (p.taps - 1) * shift[a] for a, p in enumerate(ph)]
    size = [p.count + (p.taps - 1) * shift[a] for a, p in enumerate(ph)]
    window = te.compute(tuple(xp.shape[:2]) + tuple(size),
                        lambda n, c, i, j: xp[n, c, i + base[0], j + base[1]], name=f"{name}.in", tag="injective")
    wsub = te.compute((cog * groups, cig) + tuple(p.taps for p in ph),
                      lambda oc, c, th, tw: w[(oc // cog) * cig + c, oc % cog,
                                              ph[0].k0 + (ph[0].taps - 1 - th) * axes[0][1],
                                              ph[1].k0 + (ph[1].taps - 1 - tw) * axes[1][1]],
                      name=f"{name}.w", tag="injective")
    return conv2d(window, wsub, padding=0, dilation=tuple(shift), groups=groups, name=name, target=target)


@tagged(TAG)
def schedule_conv_transpose(s: te.Schedule, out: te.Tensor, target: Target | str | None = None) -> te.Schedule:
    """One phase: (image, channel block) tasks in parallel; per tile of columns, a register tile of
    `bk` channels x one column vector accumulates over (input channel, taps), then is stored."""
    target = parse(target)
    acc = s.cache_write(out, "local")
    st = s[out]
    n, k, *spatial = st.op.axis
    cols = spatial[-1]
    lanes = vector_lanes(out.shape[-1], target, out.dtype)
    bk = next(b for b in (4, 2, 1) if out.shape[1] % b == 0)
    ko, ki = st.split(k, factor=bk)
    co, ci = st.split(cols, factor=lanes) if 1 < lanes < out.shape[-1] else (None, cols)
    tile = [co] if co is not None else []
    st.reorder(n, ko, *spatial[:-1], *tile, ki, ci)
    task = st.fuse(n, ko)
    parallel_if_worth(st, task, float(out.op.attrs.get("flops", 0)))
    st.unroll(ki)
    if lanes > 1:
        st.vectorize(ci)
    s[acc].compute_at(st, tile[0] if tile else (spatial[-2] if len(spatial) > 1 else task))
    an, ak, *asp = s[acc].op.axis
    register_tile(s[acc], [an, *asp[:-1]], list(s[acc].op.reduce_axis), [ak], asp[-1])
    return s
