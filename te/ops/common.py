"""Helpers shared by the operators: epilogues, vector-width choices, tags."""
from __future__ import annotations

from typing import Callable

import te
from te.target import Target

# An epilogue maps (value, output indices) to the value stored: bias, activation, residual...
Epilogue = Callable[[te.Expr, tuple], te.Expr]

# tag -> default schedule: fn(s, out, target), or fn(s, out, final, target) for the anchors (matmul, conv2d, ...)
SCHEDULES: dict[str, Callable] = {}


def tagged(tag: str):
    """Decorator: register fn(s, out, target) as the default schedule of the operators whose output
    op has this tag."""
    def deco(fn):
        SCHEDULES[tag] = fn
        return fn
    return deco


def apply_epilogue(epilogue: Epilogue | None, value: te.Expr, indices: tuple) -> te.Expr:
    """value, or epilogue(value, indices)."""
    return value if epilogue is None else te.expr.convert(epilogue(value, indices))


def largest_divisor(n: int, limit: int) -> int:
    """The largest divisor of n that is at most limit."""
    for d in range(min(n, limit), 0, -1):
        if n % d == 0:
            return d
    return 1


def pick_lanes(n: int, target: Target, dtype: str = "float32") -> int:
    """A vector block width for an axis of extent n: two registers when n allows, else one."""
    lanes = target.lanes(dtype)
    for w in (2 * lanes, lanes):
        if n % w == 0:
            return w
    return lanes if n >= lanes else max(1, 1 << (max(n, 1) - 1).bit_length())
