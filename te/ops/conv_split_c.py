"""The direct conv's "split_c" order (conv2d.py's out_order knob): the threads split a 1x1 conv's
input channels, each sums its part of the reduction for every output, then they add the parts.

    for each part t, channel block ko:           # parallel: thread t takes part t
        for each bh x bw register tile of the map:
            acc[t, ko, tile] = sum over the channels of part t     # registers
    barrier
    for each channel block ko:                   # parallel
        out[ko] = epilogue(acc[0, ko] + ... + acc[T-1, ko] + bias)

Split by output channels, every thread reads the whole input, (T-1)/T of it from the lines
the other cores wrote (the kernel before split its output by channels or rows), a channel plane
apart, where no prefetcher reaches; split by rows, every thread reads all the weights.  Split by
input channels, thread t reads the input channels the kernel before left in its own L2 (a
direct conv, split by output channel blocks, wrote channel range t) and its part of the weights
once, and the cost moves to the partial sums: T maps of the output's size written, then read
once, in order (prefetched), when the parts are added.  direct_defaults.split_c_pays says where
that is the cheaper traffic: deep reductions onto a few output channels (ResNet-50's 1024 -> 256
at 14x14 and 2048 -> 512 at 7x7).

Weights packed ahead of time (a model's) are laid out by part (conv2d.PackedWeight.parts), so
thread t's are the t-th contiguous slice of them, the one the model's weight prefetch
(te/prefetch.py) streams into its L2.
"""
from __future__ import annotations

import te

from .common import largest_divisor
from .conv_geometry import ConvGeometry
from .knobs import ConfigError
from .schedule import parallel_if_worth


def parts_of(cfg, g: ConvGeometry, default_order: str, threads: int) -> int:
    """The parts a conv's reduction is split into: the threads where cfg's out_order (its default,
    `default_order`, where the knob is not defined yet: the compute runs before the schedule
    defines it) is "split_c" and the input channels divide among them, else 1."""
    try:
        order = cfg["out_order"].val
    except ConfigError:             # not defined yet
        order = default_order
    return threads if order == "split_c" and applies(g, threads) else 1


def applies(g: ConvGeometry, threads: int) -> bool:
    """Can the reduction split into `threads` parts: an ungrouped 1x1 conv whose input channels
    the threads divide into whole pairs (the register tile takes channels in pairs)."""
    return threads > 1 and g.groups == 1 and g.R * g.S == 1 and g.C % (2 * threads) == 0


def schedule_split_c(s: te.Schedule, sums: te.Tensor, acc: te.Tensor, final: te.Tensor, g: ConvGeometry,
                     ocb: int, bh: int, bw: int, target, acc_tile) -> None:
    """Schedule the partial sums `sums` (parts x image x channel blocks x map x ocb, at the root;
    each register tile of the reduction `acc` computed at it) and the output stage `final` that
    adds them; `acc_tile(outer, tile)` makes acc's register tile."""
    n, k, oh, ow = s[final].op.axis
    ko, ki = s[final].split(k, factor=ocb)
    task = s[final].fuse(n, ko)
    parallel_if_worth(s[final], task, g.flops / 2)
    lanes = target.lanes()
    if 1 < g.OW <= lanes and ocb % lanes == 0:
        # channel vectors of each row transposed into pixel rows (te/codegen_rows.py)
        kio, kii = s[final].split(ki, factor=lanes)
        s[final].reorder(task, kio, oh, kii, ow)
        s[final].unroll(kii)
        s[final].vectorize(ow)
    else:
        w = g.OW if g.OW <= 64 else largest_divisor(g.OW, 64)
        s[final].vectorize(ow if w == g.OW else s[final].split(ow, factor=w)[1])

    t, sn, sko, soh, sow, ski = s[sums].op.axis
    soho, sohi = s[sums].split(soh, factor=bh)
    swo, swi = s[sums].split(sow, factor=bw)
    part = s[sums].fuse(t, sn, sko)
    s[sums].reorder(part, soho, swo, sohi, swi, ski)
    parallel_if_worth(s[sums], part, g.flops / 2)
    s[sums].unroll(sohi)
    s[sums].unroll(swi)
    s[sums].vectorize(ski)
    s[acc].compute_at(s[sums], swo)
    axes = s[acc].op.axis
    acc_tile(list(axes[:3]), list(axes[3:5]))      # (part, image, block) of extent 1 here; the tile
