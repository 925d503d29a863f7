"""A loop's software prefetch of the data a later stretch of the kernel reads from one buffer:
the `prefetch_ahead` pragma, `s[stage].pragma(axis, PRAGMA, (tensor name, ahead, step, locality))`.

At the top of iteration i of the marked loop the code prefetches `step` bytes (whole lines)
starting `ahead + i * step` bytes past where that loop's first iteration reads the tensor (its
first read of the tensor in the loop body, every loop inside and the marked loop itself at 0).
So a loop of n iterations whose stretch of the tensor is contiguous spreads the prefetch of the
next `n * step` bytes over its iterations: a few lines per iteration among the FMAs, where a burst
of demand misses would stall them.  A prefetch never faults, so lines past the tensor's end (the
last stretch's "next" one) cost a little bandwidth and nothing else.

The conv whose weights do not fit the L2 (te/ops/conv_chunks.py) uses it: each chunk of its weights
is read from memory by its first tile row and then from L1 by the others, a burst a core's
outstanding misses cannot feed; prefetched one chunk ahead over the tile rows, it arrives while
the previous chunk computes.  te/prefetch.py is the model-wide stream of a kernel's weights into
the L2s; this one works inside any kernel, alone or in a model, at the loop the schedule names.
"""
from __future__ import annotations

from llvmlite import ir

from .expr import Load, const, substitute
from .llvm_types import I32, I64, PTR
from .stmt import For, all_exprs, stmt_exprs, walk_stmt

PRAGMA = "prefetch_ahead"
LINE = 64


def spec_of(loop: For) -> tuple | None:
    """(tensor name, ahead bytes, step bytes, locality) of a loop marked prefetch_ahead, or None."""
    for key, value in loop.pragmas:
        if key == PRAGMA:
            return tuple(value)
    return None


def first_read(loop: For, name: str) -> Load | None:
    """The loop body's first read of the buffer `name`, its index at the start of the loop (every
    loop variable inside the loop, and the loop's own, at 0), or None if the body reads none."""
    inner = {s.var: const(0, s.var.dtype) for s in walk_stmt(loop) if isinstance(s, For)}
    for s in walk_stmt(loop.body):
        for e in stmt_exprs(s):
            for x in all_exprs(e):
                if isinstance(x, Load) and x.buffer.name == name:
                    return Load(x.buffer, substitute(x.index, inner), x.dtype)
    return None


class PrefetchAhead:
    """Codegen mixin: the prefetches of a loop marked prefetch_ahead (see the module docstring)."""

    def _ahead_emitter(self, loop: For):
        """A function of the loop's iteration value that emits its prefetches, or None."""
        spec = spec_of(loop)
        if spec is None:
            return None
        name, ahead, step, locality = spec
        read = first_read(loop, name)
        if read is None:
            return None
        lines = -(-int(step) // LINE)

        def emit(i: ir.Value) -> None:
            b = self.builder
            fn = self._libc("llvm.prefetch.p0", ir.VoidType(), [PTR, I32, I32, I32])
            base = b.ptrtoint(self._address(read.buffer, self.expr_scalar(read.index)), I64)
            at = b.add(base, b.add(ir.Constant(I64, int(ahead)), b.mul(i, ir.Constant(I64, lines * LINE))))
            for k in range(lines):
                ptr = b.inttoptr(b.add(at, ir.Constant(I64, k * LINE)), PTR)
                b.call(fn, [ptr, ir.Constant(I32, 0), ir.Constant(I32, int(locality)), ir.Constant(I32, 1)])
        return emit
