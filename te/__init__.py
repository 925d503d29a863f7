"""tilewise.te: tensor expressions, schedules and their compilation to native code.

    import te
    A = te.placeholder((M, K), name="A")
    B = te.placeholder((K, N), name="B")
    k = te.reduce_axis((0, K), name="k")
    C = te.compute((M, N), lambda i, j: te.sum(A[i, k] * B[k, j], axis=k), name="C")
    s = te.create_schedule(C.op)
    f = te.build(s, [A, B, C])
"""
from .build import Kernel, build, optimize
from .expr import (DTYPES, Cast, Const, Expr, Load, Reduce, TensorLoad, Var, cast, const)
from .intrin import (abs, all, any, ceil, cos, erf, exp, floor, if_then_else, log, max, max_of,
                     min, min_of, power, prod, round, rsqrt, select, sigmoid, sin, sqrt, sum, tanh)
from .lower import lower
from .schedule import ForKind, Schedule, ScheduleError, Stage, Step, create_schedule, replay
from .simplify import simplify
from .target import Target
from .tensor import (ComputeOp, IterVar, PlaceholderOp, Tensor, comm_reducer, compute, placeholder,
                     reduce_axis)


def var(name: str = "v", dtype: str = "int64") -> Var:
    """A free scalar variable (for expressions built by hand)."""
    return Var(name, dtype)


__version__ = "0.1.0"
