"""The one JIT loader: an optimised LLVM module or an object file into MCJIT, its functions as ctypes.

    jit = JitModule(mod, target, uses_openmp=cg.uses_openmp)     # or object-file bytes
    fn = jit.function("k0", n_args=3)                             # int32 fn(void*, void*, void*)

te.build's kernels, a model's in-process entry point, the tuner's runner and the peak
measurement all load code here, so the engine setup (its own TargetMachine, libgomp first, the
thread-count global) is written once.
"""
from __future__ import annotations

import ctypes

from . import llvm_init
from .codegen_llvm import NUM_THREADS_GLOBAL
from .runtime import CPULacksFeatures, lacks_message, num_threads, request_amx
from .target import Target, enabled_features, host, required_features


class JitModule:
    """Compiled code in its own MCJIT engine; keep this object alive while its functions are called."""

    def __init__(self, code, target: Target, uses_openmp: bool = False):
        """code: an llvmlite ModuleRef (parsed, optimised) or the bytes of an object file."""
        if uses_openmp:
            llvm_init.load_openmp()      # the engine resolves GOMP_* symbols as it links
        # code for a CPU this one is not is built (to export, to read its assembly) but never
        # called: a function of it raises CPULacksFeatures instead of dying of SIGILL.  This CPU's
        # features are LLVM's reading of it (te.target.host), as the default target's are.
        here = enabled_features(host())
        self.target, self.lacking = target, [f for f in required_features(target) if f not in here]
        if "amx-tile" in target.feature_set and not self.lacking:
            request_amx(f"code for {target.isa}")   # before any tile instruction runs
        llvm = llvm_init.llvm()
        # the engine owns the TargetMachine it is given, so each engine gets a new one
        if isinstance(code, (bytes, bytearray)):
            self.engine = llvm.create_mcjit_compiler(llvm.parse_assembly(""), target.new_machine())
            self.engine.add_object_file(llvm.ObjectFileRef.from_data(bytes(code)))
        else:
            self.engine = llvm.create_mcjit_compiler(code, target.new_machine())
        self.engine.finalize_object()
        self.num_threads: ctypes.c_int32 | None = None
        addr = self.engine.get_global_value_address(NUM_THREADS_GLOBAL)
        if addr:                         # kernels from codegen have it; hand-written IR may not
            self.num_threads = ctypes.c_int32.from_address(addr)
            self.num_threads.value = num_threads()

    def address(self, symbol: str) -> int:
        """The address of a function in this module."""
        return self.engine.get_function_address(symbol)

    def function(self, symbol: str, n_args: int = 0, restype=ctypes.c_int32, argtypes=None):
        """A ctypes function of this module: n_args pointers returning int32, unless argtypes/restype say."""
        args = argtypes if argtypes is not None else [ctypes.c_void_p] * n_args
        if self.lacking:
            return _Refused(lacks_message(symbol, self.target, self.lacking))
        return ctypes.CFUNCTYPE(restype, *args)(self.address(symbol))


class _Refused:
    """Stands for a function this CPU cannot run: calling it raises CPULacksFeatures."""

    def __init__(self, message: str):
        self.message = message

    def __call__(self, *args):
        raise CPULacksFeatures(self.message)
