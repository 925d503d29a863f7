"""Kernels that write their output over an input they are done with (ONNX Runtime's in-place Sum).

A ResNet block's last conv adds the block's input (the residual) and never reads it again; if its
output goes to a fresh buffer, every output line is first read from memory for ownership, on top
of the residual's own lines. Written over the residual, the lines the epilogue reads are the lines
it writes. Measured in ResNet-50's order on Emerald Rapids, two threads, the two builds in
alternating rounds (bench/in_place.py): the 64 -> 256 + Sum at 56x56 1.067x, 128 -> 512 + Sum
1.060x, 256 -> 1024 + Sum 1.036x, 512 -> 2048 + Sum 1.039x; the whole model 1.008-1.009x
(bench/RESULTS.md, session 26).

The rule is the kernel's, read from its tensor expression before scheduling: an input may be
overwritten when every read of it is an element-wise read of the element the output writes there
(`overwritable`). Any schedule then reads an element before it writes the same place: the value
written at i depends on the input at i only, and nothing else in the kernel reads the input. The
model's plan (`aliases`) then gives the output the input's bytes when the input has no reader after
this kernel.
"""
from __future__ import annotations

import te
from te.expr import Reduce, TensorLoad, walk
from te.schedule import topo_order


def _loads(op) -> list[TensorLoad]:
    return [x for b in getattr(op, "body", ()) for x in walk(b) if isinstance(x, TensorLoad)]


def _elementwise(op, shape) -> bool:
    """A single-output compute over `shape` with no reduction."""
    return (isinstance(op, te.ComputeOp) and op.num_outputs == 1 and tuple(op.shape) == tuple(shape)
            and not any(isinstance(b, Reduce) for b in op.body))


def _same_element(load: TensorLoad, op) -> bool:
    """Does `load` (in op's body) read the element op computes, index for index?"""
    return len(load.indices) == len(op.axis) and all(i is a.var for i, a in zip(load.indices, op.axis))


def overwritable(out: te.Tensor, placeholders: list) -> list[int]:
    """Positions of the placeholders the kernel computing `out` may write `out` over: same shape
    and dtype as out, read only by element-wise operations at out's own element, whose results in
    turn reach out only that way (a chain of element-wise ops ending in out: an epilogue)."""
    ops = topo_order([out.op])
    readers: dict[int, list[tuple[object, TensorLoad]]] = {}
    for op in ops:
        for ld in _loads(op):
            readers.setdefault(id(ld.tensor.op), []).append((op, ld))
    # the element-wise chain ending in out: ops each of whose readers is in the chain at its element
    chain = {id(out.op)} if _elementwise(out.op, out.shape) else set()
    grew = bool(chain)
    while grew:
        grew = False
        for op in ops:
            if id(op) in chain or not _elementwise(op, out.shape):
                continue
            rd = readers.get(id(op), [])
            if rd and all(id(r) in chain and _same_element(ld, r) for r, ld in rd):
                chain.add(id(op))
                grew = True
    found = []
    for k, p in enumerate(placeholders):
        rd = readers.get(id(p.op), [])
        if (tuple(p.shape) == tuple(out.shape) and p.dtype == out.dtype and rd
                and all(id(r) in chain and _same_element(ld, r) for r, ld in rd)):
            found.append(k)
    return found


def overwritable_values(values: list[str], placeholders: list, out: te.Tensor) -> list[str]:
    """The argument values (one per placeholder) the kernel may write `out` over: each of
    whose placeholders is `overwritable` (a value passed twice must be safe both times)."""
    ok = set(overwritable(out, placeholders))
    return list(dict.fromkeys(v for k, v in enumerate(values)
                              if all(j in ok for j, w in enumerate(values) if w == v)))


def aliases(values: list[list[str]], candidates: dict[str, list[str]], private: set[str]) -> dict[str, str]:
    """{output value: the value whose bytes it takes} for the plan: a kernel's output (`candidates`:
    output -> inputs it may overwrite, in preference order) takes an input's bytes when that input
    has no reader after this call and neither is `private` (the caller's arrays, constants, a
    concat's parts: bytes the workspace does not own alone). Chains resolve to the first buffer."""
    first: dict[str, int] = {}
    last: dict[str, int] = {}
    for si, vals in enumerate(values):
        for v in vals:
            first.setdefault(v, si)
            last[v] = si
    out: dict[str, str] = {}
    for v, inputs in candidates.items():
        if v in private or v not in first:
            continue
        for r in inputs:
            if r != v and r not in private and r in last and last[r] == first[v]:
                out[v] = out.get(r, r)
                break
    return out
