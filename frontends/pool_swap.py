"""An average pool before a 1x1 conv that narrows the channels, run after the conv instead.

Inception's pool branch is AveragePool(3x3, stride 1, "same" padding) over all C channels of the
block's input, then a 1x1 conv down to K < C channels (Inception-v2: 576 -> 96 or 128 at 14x14,
1024 -> 128 at 7x7).  Both are linear: the pool averages each channel over the same window with
weights that depend only on the position (the divisor counts the padding or not, as the pool
says), and the 1x1 conv mixes the channels of each pixel with the same weights everywhere.  So

    conv(pool(x)) + b = pool(conv(x)) + b

exactly in real arithmetic (the sums are taken in another order).  The conv's FLOPs stay the same
where the pool keeps the map's size (stride 1, "same" padding), and the pool then averages K
channels instead of C: it reads and writes C/K times fewer bytes.  The bias is added after the
pool (as an Add fused into the pool's kernel with the activation that followed the conv), since
a pool that does not count its padding would average a constant bias into itself but one that
does would not.
"""
from __future__ import annotations

import logging

from .graph import Graph, Node, TensorInfo

log = logging.getLogger(__name__)


def _same_size_average_pool(n: Node, g: Graph) -> bool:
    """A float32 2-D AveragePool whose output has its input's shape (stride 1, "same" padding)."""
    if n.op != "AveragePool" or len(n.attrs.get("kernel_shape", [])) != 2:
        return False
    x, y = g.info(n.inputs[0]), g.info(n.outputs[0])
    return x.dtype == "float32" and len(x.shape) == 4 and tuple(x.shape) == tuple(y.shape)


def _narrowing_pointwise_conv(n: Node, g: Graph, channels: int) -> bool:
    """A 1x1 stride-1 unpadded ungrouped Conv with a constant weight of fewer outputs than `channels`."""
    if n.op != "Conv" or len(n.inputs) < 2 or n.inputs[1] not in g.constants or n.attrs.get("layout"):
        return False
    w = g.constants[n.inputs[1]]
    bias = n.inputs[2] if len(n.inputs) > 2 else ""
    return (w.ndim == 4 and tuple(w.shape[1:]) == (channels, 1, 1) and w.shape[0] < channels
            and int(n.attrs.get("group", 1)) == 1 and list(n.attrs.get("strides", [1, 1])) == [1, 1]
            and not any(n.attrs.get("pads", [0, 0, 0, 0]))
            and n.attrs.get("auto_pad", "NOTSET") in ("NOTSET", b"NOTSET", "VALID", b"VALID")
            and (not bias or bias in g.constants) and not n.attrs.get("channel_shuffle"))


def conv_before_average_pool(g: Graph) -> Graph:
    """AveragePool -> 1x1 Conv (C -> K < C channels, the pool's only reader, the pool keeping the
    map's size) becomes Conv without bias -> AveragePool -> Add(bias): the pool averages K
    channels instead of C (module docstring)."""
    g = g.copy()
    cons = g.consumers()
    outputs = {o.name for o in g.outputs}
    swapped = 0
    for pool in list(g.nodes):
        if not _same_size_average_pool(pool, g) or pool.outputs[0] in outputs:
            continue
        readers = cons.get(pool.outputs[0], [])
        channels = g.info(pool.inputs[0]).shape[1]
        if len(readers) != 1 or readers[0].inputs[0] != pool.outputs[0] or \
                not _narrowing_pointwise_conv(readers[0], g, channels):
            continue
        conv = readers[0]
        y = g.info(conv.outputs[0])
        narrow = f"{conv.outputs[0]}.before_pool"
        g.infos[narrow] = TensorInfo(narrow, y.shape, y.dtype)
        new_conv = Node("Conv", conv.name, [pool.inputs[0], conv.inputs[1]], [narrow], dict(conv.attrs))
        bias = conv.inputs[2] if len(conv.inputs) > 2 else ""
        pooled = f"{conv.outputs[0]}.pooled" if bias else conv.outputs[0]
        if bias:
            g.infos[pooled] = TensorInfo(pooled, y.shape, y.dtype)
        new_pool = Node("AveragePool", pool.name, [narrow], [pooled], dict(pool.attrs))
        added = []
        if bias:
            b = f"{bias}.per_channel"
            g.constants[b] = g.constants[bias].reshape(1, -1, 1, 1)
            added = [Node("Add", f"{conv.name}.bias", [pooled, b], list(conv.outputs))]
        at = g.nodes.index(pool)
        g.nodes = [n for n in g.nodes if n is not pool and n is not conv]
        g.nodes[at:at] = [new_conv, new_pool, *added]
        swapped += 1
    if swapped:
        log.info("conv_before_average_pool: %d average pool(s) moved after the 1x1 conv that narrows them", swapped)
    return g
