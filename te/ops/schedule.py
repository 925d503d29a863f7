"""ops.schedule(outs): the default schedule of any graph of operators, each op using its own.

Operators are found by their output op's tag in the SCHEDULES registry (te/ops/common.py).
Two kinds of schedules live there:

* anchor schedules (`@anchor(tag)`: conv2d, matmul/dense, ...): fn(s, out, final, target).  The chain of
  elementwise/broadcast ops that follows an anchor (bias, activation, residual add) is fused
  into it: the anchor's output stage and the chain are inlined into the last op of the chain,
  `final`, which the anchor tiles, so the epilogue runs on the registers before the one store;
* stage schedules (@tagged(tag)): fn(s, out, target) for one root stage (injective, pool, softmax...).

Anchors are scheduled first (they claim their chains), then every other tagged root stage,
consumers before producers.  Every schedule gets the target it schedules for (vector lanes,
registers); `schedule` resolves None to this machine's CPU.
"""
from __future__ import annotations

import logging
from typing import Callable

import te
from te.expr import Const, TensorLoad, walk
from te.schedule import AttachType
from te.target import Target, parse

from .common import SCHEDULES

log = logging.getLogger(__name__)

# Ops that may be fused after an anchor: every output element reads the anchor at its own index.
FUSABLE_TAGS = frozenset({"elemwise", "broadcast", "injective"})
PARALLEL_MIN_WORK = 1 << 15     # multiply-adds below which a fork/join costs more than it saves
REDUCE_ORDERS = ("rs_c", "c_rs")    # the values of the convs' reduce_order knob (reduction_order)
# an input byte read from another core's L2 against a weight byte read again (rows_split_pays)
REMOTE_INPUT_COST = 2.0


def parallel_if_worth(stage: te.Stage, axis, work: float) -> None:
    """Mark `axis` parallel unless the whole operator is too small to pay for waking the threads."""
    if work >= PARALLEL_MIN_WORK:
        stage.parallel(axis)


def input_stage(t: te.Tensor, tag: str) -> te.Tensor | None:
    """The input of t computed by an op with this tag (None if there is none)."""
    return next((x for x in t.op.input_tensors if getattr(x.op, "tag", None) == tag), None)


def output_tiles(stage: te.Stage, n, k, oh, ow, bh: int, bw: int, work: float, inner: tuple = (),
                 rows_outer: bool = False, parallel_columns: bool = True) -> tuple:
    """Split a conv's output map (image n, channels or channel blocks k, rows oh, columns ow) into
    bh x bw tiles: the loops over tiles outermost (channels before tile rows, or after them with
    `rows_outer`), then the tile's rows (unrolled) and columns, then `inner`.  The loops over tiles
    are fused into one loop run in parallel (the tile columns stay apart unless `parallel_columns`).
    Returns (the parallel loop, the tile-column loop, the tile's column loop)."""
    oho, ohi = stage.split(oh, factor=bh)
    owo, owi = stage.split(ow, factor=bw)
    outer = [n, oho, k, owo] if rows_outer else [n, k, oho, owo]
    stage.reorder(*outer, ohi, owi, *inner)
    tile = stage.fuse(*(outer if parallel_columns else outer[:3]))
    parallel_if_worth(stage, tile, work)
    stage.unroll(ohi)
    return tile, owo, owi


def rows_split_pays(input_bytes: float, weight_bytes: float, tile_rows: int, target: Target) -> bool:
    """Should a kernel split its output between the threads by rows (each thread a band of output
    rows, every channel) rather than by channel blocks?  Yes when, on more than one thread:

    * the input costs more than the weights: split by channels, every thread reads the whole
      input, (T-1)/T of it written by the other threads into their own L2s; split by rows, it
      reads the input rows of its band, which a producer split by rows too (Winograd's output,
      the 1x1 GEMM by pixels, a 1x1 conv this rule sent to rows) left in its L2, but all the
      weights, (T-1)/T more than its share.  A weight byte streams in order from L3 or memory (the
      prefetchers follow it), an input byte comes from a line the other core holds modified, a
      channel plane away from the last: REMOTE_INPUT_COST times a weight byte.  Measured on
      ResNet-50's 1024 -> 256 1x1 conv at 14x14 (input 0.8 MB, weights 1 MB) right after the
      256 -> 1024 conv that writes its input, 2 threads on Emerald Rapids: split by channels 250
      us alone, 400 us after it; by rows 265 and 330 us (weights cold: 445 against 410 us);
    * a thread's share of the input fits in half the target's L2 (1-4 MiB on the x86 cores this
      project meets): beyond that the input comes from L3 or memory whatever the split, and the
      caches model of the kernel decides (te.caches);
    * there are at least as many rows of tiles as threads, so that no thread's band is a part-row.

    The convs without a spatial filter ask it (the direct and NCHWc convs' out_order knob, and the
    direct conv's pack_at: packing per channel block makes every task a channel block; the
    tuner may choose otherwise).  Consecutive kernels split alike are what the per-thread shares
    of te/codegen_parallel.py make worth it: thread t runs the same slice of every kernel, on the
    same core while the OS keeps it there.  On SqueezeNet (2 threads, Emerald Rapids) the 1x1
    convs at 13x13 that this sends to rows ran 1.2-1.3x faster in the model
    (bench/threads.py --cache-state), as fast alone."""
    threads = target.threads
    return (threads > 1 and tile_rows >= threads and REMOTE_INPUT_COST * input_bytes > weight_bytes
            and input_bytes / threads <= target.caches.l2 / 2)


def register_tile(stage: te.Stage, outer: list, reduction: list, tile: list, lanes, unroll: list = ()) -> None:
    """An accumulator stage as a register tile: its `outer` loops, the `reduction` loops (those in
    `unroll` unrolled), then the tile, its `tile` loops fully unrolled around one vector of `lanes`."""
    stage.reorder(*outer, *reduction, *tile, lanes)
    for a in [*unroll, *tile]:
        stage.unroll(a)
    stage.vectorize(lanes)


def reduction_order(order: str, channels: list, taps: list) -> list:
    """A conv's reduction loops as its `reduce_order` knob names them: "c_rs" puts the input
    channels outside the filter taps (r, s), "rs_c" inside them."""
    if order not in REDUCE_ORDERS:
        raise ValueError(f"reduce_order {order!r}: use one of {', '.join(REDUCE_ORDERS)}")
    return [*channels, *taps] if order == "c_rs" else [*taps, *channels]


def register_block(s: te.Schedule, acc: te.Tensor, k_factor: int) -> None:
    """acc's last two axes as a register tile (rows unrolled, columns one vector); its reduction
    split by k_factor, the inner part unrolled outside the tile."""
    ai, aj = s[acc].op.axis[-2:]
    (k,) = s[acc].op.reduce_axis
    ko, ki = s[acc].split(k, factor=k_factor)
    register_tile(s[acc], [], [ko, ki], [ai], aj, unroll=[ki])


def anchor(tag: str):
    """Decorator: register fn(s, out, final, target) as the schedule of an anchor op with this tag."""
    def deco(fn):
        fn.anchor = True
        SCHEDULES[tag] = fn
        return fn
    return deco


def is_anchor(op) -> bool:
    """Does op have an anchor schedule (one that absorbs the elementwise ops after it)?"""
    fn = SCHEDULES.get(getattr(op, "tag", None))
    return fn is not None and getattr(fn, "anchor", False)


def _consumers(s: te.Schedule) -> dict[int, list]:
    """id(op) -> the compute ops of the schedule that read it."""
    out: dict[int, list] = {}
    for st in s.stages:
        if isinstance(st.op, te.ComputeOp):
            for t in st.op.input_tensors:
                out.setdefault(id(t.op), []).append(st.op)
    return out


def _reads_at_identity(consumer: te.ComputeOp, producer) -> bool:
    """Does consumer read producer only at its own output index (out[i] needs producer[i])?"""
    axes = [a.var for a in consumer.axis]
    # a broadcasting op reads an axis of extent 1 at index 0: that is its own index too
    unit = [a.dom is not None and a.dom[1] == 1 for a in consumer.axis]
    found = False
    for b in consumer.body:
        for x in walk(b):
            if isinstance(x, TensorLoad) and x.tensor.op is producer:
                if len(x.indices) != len(axes) or any(
                        i is not a and not (u and isinstance(i, Const) and i.value == 0)
                        for i, a, u in zip(x.indices, axes, unit)):
                    return False
                found = True
    return found


def _joins_tile(s: te.Schedule, op, nxt, claimed: set) -> bool:
    """Can the elementwise op nxt run in anchor op's output tile (its shape, not yet placed)?"""
    return (nxt.tag in FUSABLE_TAGS and not nxt.reduce_axis and nxt.num_outputs == 1
            and tuple(nxt.shape) == tuple(op.shape) and id(nxt) not in claimed
            and s[nxt].attach_type is AttachType.ROOT and not s[nxt].relations)


def _rejoining_path(s: te.Schedule, op, cur, users: list, consumers: dict, claimed: set) -> list:
    """The ops from cur's first user on, each the only user of the one before, up to the op where
    every user of cur has joined (Erf-GELU reads the dense output in its Div and in its last Mul),
    each reading cur and the path at its own index; [] if the users do not rejoin so."""
    path, inside = [], {id(cur)}
    nxt = users[0]
    while len(path) < 16 and _joins_tile(s, op, nxt, claimed):
        if not all(_reads_at_identity(nxt, t.op) for t in nxt.input_tensors if id(t.op) in inside):
            return []
        path.append(nxt)
        inside.add(id(nxt))
        if all(id(u) in inside for u in users):
            return path
        after = consumers.get(id(nxt), [])
        if s[nxt].is_output or len(after) != 1:
            return []
        nxt = after[0]
    return []


def fusion_chain(s: te.Schedule, op, consumers: dict, claimed: set) -> list:
    """The elementwise ops that follow anchor op and can run in its output tile, in order."""
    chain = []
    cur = op
    while not s[cur].is_output:
        users = consumers.get(id(cur), [])
        if len(users) > 1:
            path = _rejoining_path(s, op, cur, users, consumers, claimed)
            if not path:
                break
            chain += path
            cur = path[-1]
            continue
        if len(users) != 1:
            break
        nxt = users[0]
        if not _joins_tile(s, op, nxt, claimed) or not _reads_at_identity(nxt, cur):
            break
        chain.append(nxt)
        cur = nxt
    return chain


def schedule(outs, target: Target | str | None = None,
             anchor_schedule: Callable[[te.Schedule, te.Tensor, te.Tensor], None] | None = None) -> te.Schedule:
    """A schedule for the given output tensors where every operator uses its default schedule,
    for `target` (a Target, a target string, or None for this machine).

    `anchor_schedule(s, out, final)` schedules the one anchor of the outputs instead of its
    default (a model build passes its registry choice's, with the implementation's config)."""
    target = parse(target)
    outs = list(outs) if isinstance(outs, (list, tuple)) else [outs]
    s = te.create_schedule([t.op for t in outs])
    consumers = _consumers(s)
    claimed: set[int] = set()
    anchors = 0
    # 1. anchors, producers first, each with the elementwise chain that follows it
    for st in list(s.stages):
        op = st.op
        if not is_anchor(op) or st.attach_type is not AttachType.ROOT or st.relations:
            continue
        chain = fusion_chain(s, op, consumers, claimed)
        for mid in chain[:-1]:
            s[mid].compute_inline()
        final = chain[-1] if chain else op
        claimed.update(id(c) for c in chain)
        claimed.add(id(op))
        log.debug("anchor %s fused with %s", op.name, [c.name for c in chain])
        anchors += 1
        if anchor_schedule is not None:
            if anchors > 1:
                raise te.ScheduleError(f"schedule: anchor_schedule is for one anchor, but {op.name} is a "
                                       f"second one; schedule the anchors one group at a time")
            anchor_schedule(s, op.output(0), final.output(0))
        else:
            SCHEDULES[op.tag](s, op.output(0), final.output(0), target)
    if anchor_schedule is not None and anchors == 0:
        raise te.ScheduleError("schedule: anchor_schedule was given, but the outputs compute no anchor op")
    # 2. every other tagged root stage, consumers first (their schedules may inline producers)
    for st in reversed(list(s.stages)):
        op = st.op
        if (not isinstance(op, te.ComputeOp) or id(op) in claimed or st.attach_type is not AttachType.ROOT
                or st.relations or st.iter_attrs):
            continue
        fn = SCHEDULES.get(op.tag)
        if fn is not None and not getattr(fn, "anchor", False):
            fn(s, op.output(0), target)
    return s
