"""tilewise.te: tensor expressions, schedules and their compilation to native code.

    import te
    A = te.placeholder((M, K), name="A")
    B = te.placeholder((K, N), name="B")
    k = te.reduce_axis((0, K), name="k")
    C = te.compute((M, N), lambda i, j: te.sum(A[i, k] * B[k, j], axis=k), name="C")
    s = te.create_schedule(C.op)
    f = te.build(s, [A, B, C])
"""
from .expr import (DTYPES, Cast, Const, Expr, Load, Reduce, TensorLoad, Var, cast, const)
from .intrin import (abs, all, any, ceil, cos, erf, exp, floor, if_then_else, ldexp, log, max, max_of,
                     min, min_of, power, prod, round, rsqrt, select, sigmoid, sin, sqrt, sum, tanh)
from .lower import lower
from .schedule import ForKind, Schedule, ScheduleError, Stage, Step, create_schedule, replay
from .simplify import simplify
from .target import Target
from .tensor import (ComputeOp, IterVar, PlaceholderOp, Tensor, comm_reducer, compute, placeholder,
                     reduce_axis)
from .runtime import load_module  # loads exported libraries with numpy + ctypes only

try:
    from .build import Kernel, build, optimize
    from .export import export_library
except ImportError as e:
    # Without llvmlite the compiler is unavailable, but te.runtime still loads libraries.
    if (e.name or "").partition(".")[0] != "llvmlite":
        raise
    _NO_LLVMLITE = e

    def __getattr__(name: str):
        if name in ("Kernel", "build", "optimize", "export_library"):
            raise ImportError(f"te.{name} needs llvmlite, which cannot be imported ({_NO_LLVMLITE}); "
                              "install it with 'pip install llvmlite'. Loading exported libraries "
                              "(te.load_module) works without it.")
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def var(name: str = "v", dtype: str = "int64") -> Var:
    """A free scalar variable (for expressions built by hand)."""
    return Var(name, dtype)


__version__ = "0.1.0"
