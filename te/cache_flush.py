"""Cache state for measurements: a byte range written back and dropped from every cache level.

    flush = CacheFlush()
    flush(address, nbytes)        # the lines of [address, address + nbytes) now come from memory

`clflushopt` on every 64-byte line, then `sfence`, in a function written straight in LLVM IR
(as te/machine.py's peak kernel): numpy has no way to evict a buffer, and evicting by reading a
buffer larger than the last level (hundreds of MiB on a server part) would take longer than
the kernels it prepares.  frontends.profile.time_steps uses it to time a kernel with its
weights, or its input, cold.
"""
from __future__ import annotations

import ctypes
import functools

from llvmlite import ir

from . import llvm_init
from .jit import JitModule
from .target import host

LINE = 64


@functools.lru_cache(maxsize=None)
def _flush_function():
    """The JIT'd `void flush(ptr p, i64 n)` and its engine (kept alive with it)."""
    i64, i8 = ir.IntType(64), ir.IntType(8)
    ptr = ir.PointerType()
    mod = ir.Module("cache_flush")
    mod.triple = llvm_init.llvm().get_process_triple()
    fn = ir.Function(mod, ir.FunctionType(ir.VoidType(), [ptr, i64]), "flush")
    clflush = ir.Function(mod, ir.FunctionType(ir.VoidType(), [ptr]), "llvm.x86.clflushopt")
    sfence = ir.Function(mod, ir.FunctionType(ir.VoidType(), []), "llvm.x86.sse.sfence")
    entry, loop, done = (fn.append_basic_block(n) for n in ("entry", "loop", "done"))
    b = ir.IRBuilder(entry)
    b.cbranch(b.icmp_signed(">", fn.args[1], ir.Constant(i64, 0)), loop, done)
    b.position_at_end(loop)
    off = b.phi(i64)
    off.add_incoming(ir.Constant(i64, 0), entry)
    b.call(clflush, [b.gep(fn.args[0], [off], source_etype=i8)])
    nxt = b.add(off, ir.Constant(i64, LINE))
    off.add_incoming(nxt, loop)
    b.cbranch(b.icmp_signed("<", nxt, fn.args[1]), loop, done)
    b.position_at_end(done)
    b.call(sfence, [])
    b.ret_void()
    jit = JitModule(llvm_init.llvm().parse_assembly(str(mod)), host())
    return jit, jit.function("flush", restype=None, argtypes=[ctypes.c_void_p, ctypes.c_int64])


class CacheFlush:
    """flush(address, nbytes): the range's lines evicted from every cache (x86 with clflushopt)."""

    def __init__(self):
        self._jit, self._fn = _flush_function()

    def __call__(self, address: int, nbytes: int) -> None:
        """Evict [address, address + nbytes), rounded out to whole lines."""
        start = address - address % LINE
        self._fn(start, int(nbytes) + address - start)
