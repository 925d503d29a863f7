"""An average pool moved to the side of a 1x1 conv where it costs less: both are linear.

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

The other way round, DenseNet's transition layers run a 1x1 conv (C -> K = C / 2) over a map and
then a 2x2 stride-2 AveragePool: pooling first, the conv computes a quarter of the pixels,
(1 - pixels out / pixels in) of its FLOPs saved (DenseNet-121: 462 of its 5,668 MFLOP),
while the pool averages C channels instead of K, a pass over memory against the conv's 2 K
FLOPs per value it reads.  With a bias the conv keeps it, which is exact where every window's
divisor counts the values it sums (no padding, or padding not counted).

Neither rule weighs a machine's speeds: the first only takes pool traffic away; the second trades
a pool over C / K times more channels (2 C bytes moved per output pixel and tap, about) for
(1 - out / in) of the conv's 2 C K FLOPs per input pixel, a trade that K >= 8
(MIN_OUTPUTS_POOL_FIRST) wins on any CPU whose FLOP rate exceeds its bandwidth in bytes
(Emerald Rapids as measured, Zen 4/5, Ice Lake).
"""
from __future__ import annotations

import logging

from .graph import Graph, Node, TensorInfo

log = logging.getLogger(__name__)

# the fewest conv outputs for which pooling first pays (module docstring: the conv's FLOPs saved
# against the wider pool's bytes)
MIN_OUTPUTS_POOL_FIRST = 8


def _same_size_average_pool(n: Node, g: Graph) -> bool:
    """A float32 2-D AveragePool whose output has its input's shape (stride 1, "same" padding)."""
    if n.op != "AveragePool" or len(n.attrs.get("kernel_shape", [])) != 2:
        return False
    x, y = g.info(n.inputs[0]), g.info(n.outputs[0])
    return x.dtype == "float32" and len(x.shape) == 4 and tuple(x.shape) == tuple(y.shape)


def _pointwise(n: Node, g: Graph) -> bool:
    """A 1x1 stride-1 unpadded ungrouped Conv with a constant weight and bias, on the plain layout."""
    if n.op != "Conv" or len(n.inputs) < 2 or n.inputs[1] not in g.constants or n.attrs.get("layout"):
        return False
    w = g.constants[n.inputs[1]]
    bias = n.inputs[2] if len(n.inputs) > 2 else ""
    return (w.ndim == 4 and tuple(w.shape[2:]) == (1, 1) and int(n.attrs.get("group", 1)) == 1
            and list(n.attrs.get("strides", [1, 1])) == [1, 1] and not any(n.attrs.get("pads", [0, 0, 0, 0]))
            and n.attrs.get("auto_pad", "NOTSET") in ("NOTSET", b"NOTSET", "VALID", b"VALID")
            and (not bias or bias in g.constants) and not n.attrs.get("channel_shuffle"))


def _narrowing_pointwise_conv(n: Node, g: Graph, channels: int) -> bool:
    """A 1x1 conv (_pointwise) of `channels` inputs and fewer outputs."""
    if not _pointwise(n, g):
        return False
    w = g.constants[n.inputs[1]]
    return w.ndim == 4 and w.shape[1] == channels and w.shape[0] < channels


def conv_before_average_pool(g: Graph) -> Graph:
    """AveragePool -> 1x1 Conv (C -> K < C channels, the pool's only reader, the pool keeping the
    map's size) becomes Conv without bias -> AveragePool -> Add(bias): the pool averages K
    channels instead of C (module docstring)."""
    g = g.copy()
    only_reader = g.sole_readers()
    swapped = 0
    for pool in list(g.nodes):
        if not _same_size_average_pool(pool, g):
            continue
        conv = only_reader(pool.outputs[0])
        if conv is None or not _narrowing_pointwise_conv(conv, g, g.info(pool.inputs[0]).shape[1]):
            continue
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
        g.replace([pool, conv], [new_conv, new_pool, *added])
        swapped += 1
    if swapped:
        log.info("conv_before_average_pool: %d average pool(s) moved after the 1x1 conv that narrows them", swapped)
    return g


def _shrinking_average_pool(n: Node, g: Graph) -> bool:
    """A float32 2-D AveragePool with fewer output pixels than input pixels."""
    if n.op != "AveragePool" or len(n.attrs.get("kernel_shape", [])) != 2:
        return False
    x, y = g.info(n.inputs[0]), g.info(n.outputs[0])
    return x.dtype == "float32" and len(x.shape) == 4 and y.shape[2] * y.shape[3] < x.shape[2] * x.shape[3]


def _divisor_counts_what_it_sums(pool: Node) -> bool:
    """Does every window of the pool divide by the number of values it sums (so the average of a
    constant is that constant)?  True without padding (and without partial windows), or where
    padding is not counted."""
    if not int(pool.attrs.get("count_include_pad", 0)):
        return True
    return (not any(pool.attrs.get("pads", [0, 0, 0, 0])) and not int(pool.attrs.get("ceil_mode", 0))
            and pool.attrs.get("auto_pad", "NOTSET") in ("NOTSET", b"NOTSET", "VALID", b"VALID"))


def average_pool_before_conv(g: Graph) -> Graph:
    """1x1 Conv -> AveragePool that shrinks the map (the conv's only reader) becomes AveragePool ->
    Conv: the conv computes the pooled map's pixels only (module docstring); a conv with a bias
    moves only where the pool's divisor counts what it sums."""
    g = g.copy()
    only_reader = g.sole_readers()
    swapped = 0
    for conv in list(g.nodes):
        if conv.op != "Conv" or len(g.info(conv.inputs[0]).shape) != 4:
            continue
        pool = only_reader(conv.outputs[0])
        if pool is None or not _shrinking_average_pool(pool, g):
            continue
        channels = g.info(conv.inputs[0]).shape[1]
        has_bias = len(conv.inputs) > 2 and bool(conv.inputs[2])
        w = g.constants.get(conv.inputs[1])
        if w is None or w.ndim != 4 or tuple(w.shape[1:]) != (channels, 1, 1) or w.shape[0] < MIN_OUTPUTS_POOL_FIRST \
                or not _pointwise(conv, g) or (has_bias and not _divisor_counts_what_it_sums(pool)):
            continue
        x, y = g.info(conv.inputs[0]), g.info(pool.outputs[0])
        pooled = f"{pool.outputs[0]}.before_conv"
        g.infos[pooled] = TensorInfo(pooled, (x.shape[0], x.shape[1], y.shape[2], y.shape[3]), x.dtype)
        new_pool = Node("AveragePool", pool.name, [conv.inputs[0]], [pooled], dict(pool.attrs))
        new_conv = Node("Conv", conv.name, [pooled, *conv.inputs[1:]], list(pool.outputs), dict(conv.attrs))
        g.replace([conv, pool], [new_pool, new_conv])
        swapped += 1
    if swapped:
        log.info("average_pool_before_conv: %d average pool(s) moved before the 1x1 conv they shrink", swapped)
    return g
