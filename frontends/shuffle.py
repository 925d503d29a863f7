"""ShuffleNet's channel shuffle folded into the depthwise conv that reads it.

The shuffle of G groups is Reshape [N, C, H, W] -> [N, G, C/G, H, W], Transpose perm [0, 2, 1, 3, 4],
Reshape back: channel c of the result is channel (c % G) * (C / G) + c // G of its input.  Run as
is, the Transpose is a copy kernel, a pass over the whole tensor.  A depthwise conv reads each
channel on its own, so it can read its channel c at the shuffled position instead: the pass drops
the three nodes and gives the conv the attribute channel_shuffle=G (ConvWorkload.shuffle), which
the depthwise kernel turns into the index of its input channel (te.ops.depthwise.channel_source).
"""
from __future__ import annotations

import logging

import numpy as np

from .graph import Graph, Node

log = logging.getLogger(__name__)

SHUFFLE_PERM = [0, 2, 1, 3, 4]


# (input, weight) types of the depthwise convs whose kernels read through a shuffle: float32, and the
# int8 anchor (uint8 x int8, te.ops.int8_depthwise on the float32 kernel)
READS_SHUFFLED = {("float32", np.float32), ("uint8", np.int8)}


def _depthwise_float(n: Node, g: Graph) -> bool:
    """A float32 (or uint8 x int8) depthwise Conv with a constant weight, not yet reading through a shuffle."""
    if n.op != "Conv" or len(n.inputs) < 2 or n.inputs[1] not in g.constants or n.attrs.get("layout"):
        return False
    x, w = g.info(n.inputs[0]), g.constants[n.inputs[1]]
    return (len(x.shape) == 4 and (x.dtype, w.dtype.type) in READS_SHUFFLED and "channel_shuffle" not in n.attrs
            and int(n.attrs.get("group", 1)) == x.shape[1] > 1 and w.shape[0] % x.shape[1] == 0)


def shuffle_groups(g: Graph, last: Node, prod: dict) -> tuple[str, int, list[Node]] | None:
    """(the shuffled value, G, the three nodes) if `last` ends a channel shuffle, else None."""
    if last.op != "Reshape":
        return None
    t = prod.get(last.inputs[0])
    if t is None or t.op != "Transpose" or list(t.attrs.get("perm", [])) != SHUFFLE_PERM:
        return None
    first = prod.get(t.inputs[0])
    if first is None or first.op != "Reshape":
        return None
    src = first.inputs[0]
    xs, split, out = g.info(src).shape, g.info(first.outputs[0]).shape, g.info(last.outputs[0]).shape
    if len(xs) != 4 or tuple(out) != tuple(xs) or len(split) != 5:
        return None
    N, C, H, W = xs
    G = split[1]
    if tuple(split) != (N, G, C // G, H, W) or G < 2 or C % G:
        return None
    return src, int(G), [first, t, last]


def fold_channel_shuffle(g: Graph) -> Graph:
    """Channel shuffles read only by depthwise convs become those convs' channel_shuffle attribute."""
    g = g.copy()
    prod, cons = g.producers(), g.consumers()
    outputs = {o.name for o in g.outputs}
    dropped: set[int] = set()
    folded = 0
    for n in g.nodes:
        found = shuffle_groups(g, n, prod)
        if found is None:
            continue
        src, G, chain = found
        users = cons.get(n.outputs[0], [])
        # the intermediate values feed only the chain, and nothing of it is a graph output
        inner_ok = all(len(cons.get(c.outputs[0], [])) == 1 for c in chain[:-1])
        if not users or not inner_ok or any(c.outputs[0] in outputs for c in chain) \
                or not all(_depthwise_float(u, g) and u.inputs[0] == n.outputs[0] for u in users):
            continue
        for u in users:
            u.inputs[0] = src
            u.attrs["channel_shuffle"] = G
        dropped.update(id(c) for c in chain)
        folded += 1
    if folded:
        g.nodes = [n for n in g.nodes if id(n) not in dropped]
        log.info("fold_channel_shuffle: %d channel shuffle(s) read by depthwise convs directly", folded)
    return g


__all__ = ["fold_channel_shuffle", "shuffle_groups"]
