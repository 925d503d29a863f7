"""The compile pipeline: lower -> simplify -> codegen -> optimise -> JIT, and the callable Kernel."""
from __future__ import annotations

import logging
import sys
import time
from typing import Callable, NamedTuple

import numpy as np

from . import llvm_init
from .codegen_llvm import codegen
from .jit import JitModule
from .lower import lower
from .runtime import ArgSpec, NativeFunction, check_num_threads, np_dtype
from .schedule import Schedule
from .stmt import LoweredFunc, Store, walk_stmt
from .target import Target, parse

log = logging.getLogger(__name__)


def _dump(stage: str, text: str) -> None:
    if stage in llvm_init.debug_stages():
        sys.stderr.write(f"==== TILEWISE_DEBUG {stage} ====\n{text}\n")


# The IR pipeline's level.  Our kernels arrive vectorized and unrolled, so O3's extra passes buy
# nothing (whole models run at the same speed built with O2 and with O3), while O2 halves the
# optimisation time of a tuning candidate.
OPT_LEVEL = 2
# LLVM's SLP vectorizer stays off: kernels arrive with explicit vector code, and on their unrolled
# bodies SLP takes most of the optimisation time for the same kernel speed. The loop vectorizer
# stays on for loops left scalar.
SLP_VECTORIZE = False


def optimize(llvm_ir: str, target: Target):
    """Parse and verify LLVM IR, then run the OPT_LEVEL pipeline of the new pass manager for target."""
    llvm = llvm_init.llvm()
    mod = llvm.parse_assembly(llvm_ir)
    mod.verify()
    tm = target.machine()
    pto = llvm.create_pipeline_tuning_options(speed_level=OPT_LEVEL)
    pto.slp_vectorization = SLP_VECTORIZE
    pb = llvm.create_pass_builder(tm, pto)
    pb.getModulePassManager().run(mod, pb)
    return mod


def build(sch: Schedule | LoweredFunc, args: list | None = None, target=None,
          name: str = "default_function") -> "Kernel":
    """Compile a schedule (or a lowered function) for target (this CPU by default) into a Kernel."""
    t0 = time.perf_counter()
    tgt = parse(target)
    func = sch if isinstance(sch, LoweredFunc) else lower(sch, args or [], name)    # lower + simplify
    _dump("ir", str(func))
    cg = codegen([func], tgt)                                                        # loop IR -> LLVM IR
    llvm_ir = str(cg.module)
    _dump("llvm", llvm_ir)
    mod = optimize(llvm_ir, tgt)                                                     # O2 pipeline, host features
    _dump("llvm", f"; optimised\n{mod}")
    if "asm" in llvm_init.debug_stages():
        _dump("asm", tgt.machine().emit_assembly(mod))
    kernel = Kernel(func, mod, tgt, cg.uses_openmp)                                  # MCJIT
    kernel.build_seconds = time.perf_counter() - t0
    return kernel


def arg_specs(func: LoweredFunc) -> list[ArgSpec]:
    """Name, shape, dtype and written-or-not of each argument of a lowered function."""
    written = {id(s.buffer) for s in walk_stmt(func.body) if isinstance(s, Store)}
    return [ArgSpec(b.name, tuple(b.shape), np_dtype(b.dtype),
                    id(b) in written) for b in func.args]


class ProfileResult(NamedTuple):
    """TVM's timing result: the mean seconds per call over every repeat, and each repeat's mean."""
    mean: float
    results: tuple[float, ...]


def time_evaluator(fn: NativeFunction, number: int = 10, repeat: int = 1,
                   min_repeat_ms: float = 0.0) -> Callable[..., ProfileResult]:
    """A timer of fn as TVM's time_evaluator: timer(*args) checks the arrays once, then times
    `repeat` rounds of `number` calls (more, when a round would be shorter than min_repeat_ms)."""
    if int(number) < 1 or int(repeat) < 1:
        raise ValueError(f"time_evaluator: number={number} and repeat={repeat} must be at least 1")

    def timer(*arrays: np.ndarray) -> ProfileResult:
        ptrs = fn.check(arrays)
        fn.call_unchecked(ptrs)                                   # warm-up: page faults, thread start
        n = int(number)
        means = []
        for _ in range(int(repeat)):
            while True:
                t = time.perf_counter()
                for _ in range(n):
                    fn.call_unchecked(ptrs)
                dt = time.perf_counter() - t
                if dt * 1e3 >= min_repeat_ms:
                    break
                n = max(n + 1, int(n * min_repeat_ms / max(dt * 1e3, 1e-6)))   # too short: longer rounds
            means.append(dt / n)
        return ProfileResult(sum(means) / len(means), tuple(means))
    return timer


class Kernel(NativeFunction):
    """A compiled function: call it with numpy arrays, in the order of the build arguments.

    Argument checks and calls come from runtime.NativeFunction, shared with loaded libraries.
    """

    def __init__(self, func: LoweredFunc, mod, target: Target, uses_openmp: bool):
        self.func = func
        self.target = target
        self.name = func.name
        self.llvm_module = mod
        self._jit = JitModule(mod, target, uses_openmp)
        self._cfunc = self._jit.function(func.name, len(func.args))
        self._num_threads = self._jit.num_threads
        self._specs = arg_specs(func)
        self.build_seconds = 0.0

    def set_num_threads(self, n: int) -> None:
        """Threads that parallel loops of this kernel use."""
        self._num_threads.value = check_num_threads(n)

    def time_evaluator(self, func_name: str | None = None, dev=None, number: int = 10, repeat: int = 1,
                       min_repeat_ms: float = 0.0) -> Callable[..., ProfileResult]:
        """TVM's f.time_evaluator(f.entry_name, dev, number=, repeat=): timer(*args).mean in seconds.
        func_name and dev are TVM's, accepted for its call form: a Kernel is one function on the CPU."""
        if func_name not in (None, self.name):
            raise ValueError(f"time_evaluator: this kernel is {self.name!r}, not {func_name!r}")
        return time_evaluator(self, number, repeat, min_repeat_ms)

    @property
    def entry_name(self) -> str:
        """The kernel's name, as TVM's Module.entry_name."""
        return self.name

    def export_library(self, path: str, header: str | None = None) -> dict:
        """Write this kernel as a shared library (and a C header); returns its metadata."""
        from .export import export_library
        return export_library([self], path, target=self.target, header=header)

    def get_source(self, kind: str = "ir") -> str:
        """The lowered loop IR ('ir'), the optimised LLVM IR ('llvm') or the assembly ('asm')."""
        if kind == "ir":
            return str(self.func)
        if kind == "llvm":
            return str(self.llvm_module)
        if kind == "asm":
            return self.target.machine().emit_assembly(self.llvm_module)
        raise ValueError(f"get_source: kind must be 'ir', 'llvm' or 'asm', not {kind!r}")

    def __repr__(self) -> str:
        return f"Kernel {self.name}({self._args_str()}) for {self.target.isa}"
