"""A loop's software prefetch of the data a later stretch of the kernel reads from one buffer:
the `prefetch_ahead` pragma, `s[stage].pragma(axis, PRAGMA, (tensor name, ahead, step, locality[,
stride]))`, one or more per loop.

At the top of iteration i of the marked loop the code prefetches `step` bytes (whole lines)
starting `ahead + i * stride` bytes past where that loop's first iteration reads the tensor (its
first read of the tensor in the loop body, every loop inside and the marked loop itself at 0);
`stride` defaults to `step` (whole lines).  So a loop of n iterations whose stretch of the tensor
is contiguous spreads the prefetch of the next `n * step` bytes over its iterations: a few lines
per iteration among the FMAs, where a burst of demand misses would stall them; with a stride, each
iteration's run lies a row (a channel plane) further on.  A prefetch never faults, so lines past
the tensor's end (the last stretch's "next" one) cost a little bandwidth and nothing else.

The conv whose weights do not fit the L2 (te/ops/conv_chunks.py) uses it: each chunk of its weights
is read from memory by its first tile row and then from L1 by the others, a burst a core's
outstanding misses cannot feed; prefetched one chunk ahead over the tile rows, it arrives while
the previous chunk computes.  A 1x1 conv's epilogue uses it with a stride
(te/ops/matmul.py `prefetch_residuals`): the next register tile's rows of a residual it adds.
te/prefetch.py is the model-wide stream of a kernel's weights into the L2s; this one works
inside any kernel, alone or in a model, at the loop the schedule names.
"""
from __future__ import annotations

from llvmlite import ir

from .expr import Load, const, substitute
from .llvm_types import I32, I64, PTR
from .stmt import For, all_exprs, stmt_exprs, walk_stmt

PRAGMA = "prefetch_ahead"
LINE = 64


def specs_of(loop: For) -> list[tuple]:
    """(tensor name, ahead bytes, step bytes, locality[, stride bytes]) of each prefetch_ahead
    pragma of the loop."""
    return [tuple(value) for key, value in loop.pragmas if key == PRAGMA]


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
        runs = []                   # (first read, ahead, lines, locality, stride) per pragma
        for name, ahead, step, locality, *stride in specs_of(loop):
            read = first_read(loop, name)
            if read is not None:
                lines = -(-int(step) // LINE)
                runs.append((read, int(ahead), lines, int(locality), int(stride[0]) if stride else lines * LINE))
        if not runs:
            return None

        def emit(i: ir.Value) -> None:
            b = self.builder
            fn = self._libc("llvm.prefetch.p0", ir.VoidType(), [PTR, I32, I32, I32])
            for read, ahead, lines, locality, stride in runs:
                base = b.ptrtoint(self._address(read.buffer, self.expr_scalar(read.index)), I64)
                at = b.add(base, b.add(ir.Constant(I64, ahead), b.mul(i, ir.Constant(I64, stride))))
                for k in range(lines):
                    ptr = b.inttoptr(b.add(at, ir.Constant(I64, k * LINE)), PTR)
                    b.call(fn, [ptr, ir.Constant(I32, 0), ir.Constant(I32, locality), ir.Constant(I32, 1)])
        return emit
