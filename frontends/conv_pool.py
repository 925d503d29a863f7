"""A stem Conv (+ Relu or Clip) and the MaxPool that alone reads it as one node (te.ops.conv_pool).

SqueezeNet's and ResNet-50's first layers are a conv of 3 input channels, its activation and a 3x3
stride-2 max pool.  Apart, the conv writes its whole map (3.2 MB) and the pool reads it back; the
fused node's kernel computes the conv a band of rows at a time in cache and stores only the pooled
map (a quarter of the bytes).  SqueezeNet's stem + pool, in the model on two threads: ~290 -> ~220
us (bench/conv_pool.py; on one thread ~5% slower, the band's shared row computed twice).  A padded
pool (ResNet-50's) stays apart: te.ops.conv_pool.pool_reads_inside.

The node is tilewise.ConvMaxPool with inputs (x, weight, bias or ""), the pool's outputs, and
attributes: the conv's strides, pads and dilations (conv_strides, conv_pads, conv_dilations), the
activation's bounds (act_min, act_max; both None without one), and the pool's own attributes as the
MaxPool had them (kernel_shape, strides, pads, dilations, ceil_mode, auto_pad).
"""
from __future__ import annotations

import logging

from .graph import Graph, Node

log = logging.getLogger(__name__)

CONV_MAX_POOL = "tilewise.ConvMaxPool"
POOL_KEYS = ("kernel_shape", "strides", "pads", "dilations", "ceil_mode", "auto_pad")


def _stem_conv(n: Node, g: Graph):
    """The geometry of a Conv te.ops.conv_pool runs (one image, few channels and taps, constant
    weight, explicit pads), or None."""
    from te.ops import conv_pool, conv_stem
    from te.ops.conv_geometry import geometry

    from .passes import _constant_conv, _conv_attrs
    if not _constant_conv(n, g):
        return None
    strides, dil, pads = _conv_attrs(n)
    try:
        geo = geometry(g.info(n.inputs[0]).shape, g.info(n.inputs[1]).shape, strides, pads, dil,
                       int(n.attrs.get("group", 1)))
    except ValueError:
        return None
    # only short reductions (conv_stem.short_reduction): a 7x7 stem fused lost more than the pool's
    # pass saved (bench/conv_pool.py, one thread)
    return geo if conv_pool.applies(geo) and conv_stem.short_reduction(geo) else None


def _strided_max_pool(n: Node, geo) -> bool:
    """A 2-D MaxPool without an Indices output, of stride at least 2 in both axes (a stride-1 pool
    runs as a flat window of its own, pool.py), whose windows lie inside the conv's map
    (te.ops.conv_pool.pool_reads_inside)."""
    from te.ops import conv_pool
    k = n.attrs.get("kernel_shape", [])
    if n.op != "MaxPool" or len(k) != 2 or any(n.outputs[1:]) or \
            n.attrs.get("auto_pad", "NOTSET") not in ("NOTSET", b"NOTSET", "VALID", b"VALID"):
        return False
    strides = tuple(int(s) for s in n.attrs.get("strides", [1, 1]))
    dil = tuple(int(d) for d in n.attrs.get("dilations", [1, 1]))
    pads = tuple(int(p) for p in n.attrs.get("pads", [0, 0, 0, 0]))
    return min(strides) >= 2 and conv_pool.pool_reads_inside(geo, (int(k[0]), int(k[1])), strides, pads, dil,
                                                              bool(n.attrs.get("ceil_mode", 0)))


def fuse_conv_max_pool(g: Graph) -> Graph:
    """A stem Conv, the Relu or Clip (if any) that alone reads it, and the strided MaxPool that alone
    reads that, as one tilewise.ConvMaxPool node (module docstring); other graphs unchanged."""
    from .passes import _clip_bounds, _conv_attrs
    g = g.copy()
    only_reader = g.sole_readers()
    found: list[tuple[Node, Node | None, Node]] = []
    for conv in g.nodes:
        geo = _stem_conv(conv, g)
        if geo is None:
            continue
        nxt = only_reader(conv.outputs[0])
        act = nxt if nxt is not None and _clip_bounds(nxt, g) is not None else None
        pool = only_reader(act.outputs[0]) if act is not None else nxt
        if pool is not None and _strided_max_pool(pool, geo):
            found.append((conv, act, pool))
    for conv, act, pool in found:
        strides, dil, pads = _conv_attrs(conv)
        lo, hi = _clip_bounds(act, g) if act is not None else (None, None)
        bias = conv.inputs[2] if len(conv.inputs) > 2 else ""
        attrs = {"conv_strides": list(strides), "conv_pads": list(pads), "conv_dilations": list(dil),
                 "act_min": lo, "act_max": hi, **{k: pool.attrs[k] for k in POOL_KEYS if k in pool.attrs}}
        node = Node(CONV_MAX_POOL, pool.name, [conv.inputs[0], conv.inputs[1], bias], list(pool.outputs), attrs)
        g.replace([conv, act, pool] if act is not None else [conv, pool], [node], at=pool)
    if found:
        log.info("fuse_conv_max_pool: %d stem conv + max pool pair(s) as one kernel each", len(found))
    return g
