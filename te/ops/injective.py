"""The default schedule of injective operators (elementwise, broadcast, data movement).

`schedule_injective(s, out, target)` inlines the chain of injective producers into `out`, runs the
outermost axes (fused, just enough of them to feed the threads) in parallel and vectorizes the
innermost axis.  A vectorized loop becomes plain LLVM vector code when its extent divides
evenly (a guard on the lane costs masked loads and stores and a test of the mask), so the innermost axis is
vectorized whole when it is short (LLVM splits a <56 x float> into registers itself), else
split by the register width when that divides it, else by its largest divisor that fits.
Fusing only outer axes matters: the index of a fused loop is rebuilt with a division and a
modulo per iteration, which costs more than a short vector body.

A transpose that moves the input's innermost axis away from the output's innermost one reads
with a stride whichever loop is inner; it runs in tiles of lanes x lanes elements (the output
axis that walks the input's rows unrolled around the vectorized innermost one), so the lanes
rows one vector gathers from serve the next lanes vectors from L1 (rough, one thread,
(128, 12, 64) -> (12, 64, 128): ~140 -> ~70 us).
"""
from __future__ import annotations

import math

import te
from te.llvm_types import ELEM_BYTES
from te.schedule import AttachType
from te.target import Target

from .common import largest_divisor, tagged

# Operators whose every output element reads a fixed set of input elements: safe to inline.
INJECTIVE_TAGS = frozenset({"elemwise", "broadcast", "injective"})
MAX_WHOLE_LANES = 64          # vectorize a short innermost axis whole up to this many lanes
PARALLEL_MIN_ELEMS = 1 << 14  # below this, a fork/join costs more than it saves
PARALLEL_MIN_ITERS = 8        # parallel iterations per thread, so static chunks balance


def is_injective(t: te.Tensor) -> bool:
    """Is t produced by an injective compute (elementwise, broadcast, transform)?"""
    op = t.op
    return isinstance(op, te.ComputeOp) and op.tag in INJECTIVE_TAGS and not op.reduce_axis


def inline_injective(s: te.Schedule, t: te.Tensor, tags=INJECTIVE_TAGS) -> None:
    """compute_inline every injective producer of t, transitively (stopping at other operators)."""
    todo = list(t.op.input_tensors)
    seen: set[int] = set()
    while todo:
        x = todo.pop()
        if id(x.op) in seen:
            continue
        seen.add(id(x.op))
        op = x.op
        if not isinstance(op, te.ComputeOp) or op.tag not in tags or op.reduce_axis:
            continue
        st = s[x]
        if st.is_output:
            continue
        if st.attach_type is AttachType.ROOT and not st.relations and not st.iter_attrs:
            st.compute_inline()
        if st.attach_type is AttachType.INLINE:
            todo.extend(op.input_tensors)


def vector_lanes(extent: int, target: Target, dtype: str = "float32") -> int:
    """How many lanes to vectorize an axis of this extent by (1 = do not vectorize).

    The whole axis when it is short: LLVM splits a <56 x float> into registers itself, and a
    fully unrolled row lets it keep small buffers in registers.  Else a multiple of the
    register width, else the axis' largest divisor that fits.
    """
    lanes = target.lanes(dtype)
    if extent <= MAX_WHOLE_LANES:
        return extent
    if extent % lanes == 0:
        return lanes
    d = largest_divisor(extent, MAX_WHOLE_LANES)
    return d if d >= lanes // 2 else largest_divisor(extent, lanes)


def vectorize_inner(stage: te.Stage, axis, extent: int, target: Target, dtype: str = "float32"):
    """Vectorize `axis` (or its inner part); returns (outer axis or None, vectorized axis or None)."""
    v = vector_lanes(extent, target, dtype)
    if v <= 1:
        return axis, None
    if v == extent:
        stage.vectorize(axis)
        return None, axis
    outer, inner = stage.split(axis, factor=v)
    stage.vectorize(inner)
    return outer, inner


def parallel_outer(stage: te.Stage, axes: list, extents: list[int], total_elems: int, target: Target):
    """Fuse the shortest prefix of `axes` (outermost first) with enough iterations for the target's
    threads and run it in parallel; the rest stay serial loops, whose indices stay cheap affine forms."""
    loops = [(a, n) for a, n in zip(axes, extents) if a is not None]
    if not loops or total_elems < PARALLEL_MIN_ELEMS:
        return None
    want = PARALLEL_MIN_ITERS * target.threads
    prefix, iters = [], 1
    for a, n in loops:
        prefix.append(a)
        iters *= n
        if iters >= want:
            break
    fused = stage.fuse(*prefix) if len(prefix) > 1 else prefix[0]
    stage.parallel(fused)
    return fused


def transpose_tiles(st: te.Stage, out: te.Tensor, target: Target) -> bool:
    """Schedule a transpose (ops.transpose, its attrs' perm) whose innermost axes differ in tiles of
    lanes x lanes (the module docstring); False where it does not apply (the default then)."""
    perm = out.op.attrs.get("perm")
    lanes = target.lanes(out.dtype)
    if perm is None or perm[-1] == len(perm) - 1 or ELEM_BYTES.get(out.dtype) != 4:
        return False
    rows = perm.index(len(perm) - 1)            # the output axis that walks the input's rows
    if out.shape[rows] % lanes or out.shape[-1] % lanes:
        return False
    axes = list(out.op.axis)
    ro, ri = st.split(axes[rows], factor=lanes)
    co, ci = st.split(axes[-1], factor=lanes)
    others = [a for d, a in enumerate(axes[:-1]) if d != rows]
    st.reorder(*others, ro, co, ri, ci)
    st.unroll(ri)
    st.vectorize(ci)
    parallel_outer(st, [*others, ro, co], [out.shape[d] for d in range(len(axes) - 1) if d != rows]
                   + [out.shape[rows] // lanes, out.shape[-1] // lanes], math.prod(out.shape), target)
    return True


@tagged("injective")
def schedule_injective(s: te.Schedule, out: te.Tensor, target: Target) -> te.Schedule:
    """Inline injective producers, parallelize the outer axes, vectorize the innermost (a
    transpose in tiles where its innermost axes differ)."""
    inline_injective(s, out)
    st = s[out]
    axes = list(out.op.axis)
    if not axes or transpose_tiles(st, out, target):
        return s
    n = out.shape[-1]
    v = vector_lanes(n, target, out.dtype)
    outer, _ = vectorize_inner(st, axes[-1], n, target, out.dtype)
    parallel_outer(st, axes[:-1] + [outer], list(out.shape[:-1]) + [n // max(v, 1)],
                   math.prod(out.shape), target)
    return s


# elementwise and broadcast operators share the injective schedule
tagged("elemwise")(schedule_injective)
tagged("broadcast")(schedule_injective)

__all__ = ["schedule_injective", "inline_injective"]
