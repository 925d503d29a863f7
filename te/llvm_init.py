"""One-time LLVM initialisation and the OpenMP runtime the generated code calls."""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import glob
import os


class RuntimeMissingError(RuntimeError):
    """A native runtime library that generated code needs is not installed."""


@functools.lru_cache(maxsize=None)
def llvm():
    """llvmlite.binding, initialised for the native target (safe to call any number of times)."""
    import llvmlite.binding as binding
    binding.initialize_native_target()
    binding.initialize_native_asmprinter()
    binding.initialize_native_asmparser()
    return binding


def find_libgomp() -> str:
    """Path (or soname) of the GNU OpenMP runtime; raises RuntimeMissingError naming the package."""
    name = ctypes.util.find_library("gomp")
    candidates = [name] if name else []
    candidates += sorted(glob.glob("/usr/lib/x86_64-linux-gnu/libgomp.so*"))
    candidates += sorted(glob.glob("/usr/lib64/libgomp.so*")) + sorted(glob.glob("/usr/lib/libgomp.so*"))
    for c in candidates:
        try:
            ctypes.CDLL(c, mode=ctypes.RTLD_GLOBAL)
            return c
        except OSError:
            continue
    raise RuntimeMissingError(
        "the GNU OpenMP runtime (libgomp.so.1) was not found; parallel loops need it. "
        "Install it with 'apt-get install libgomp1' (Debian/Ubuntu) or 'dnf install libgomp' (Fedora).")


@functools.lru_cache(maxsize=None)
def load_openmp() -> str:
    """Make libgomp's symbols visible to JIT'd code (once); returns the library loaded."""
    from .runtime import openmp_wait_policy
    path = find_libgomp()
    openmp_wait_policy()                    # libgomp reads it as it loads
    llvm().load_library_permanently(path)
    return path


def debug_stages() -> set[str]:
    """Stages named in TILEWISE_DEBUG (ir, llvm, asm) to dump to stderr."""
    return {s.strip() for s in os.environ.get("TILEWISE_DEBUG", "").split(",") if s.strip()}
