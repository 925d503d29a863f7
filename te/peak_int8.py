"""The measured int8 peak: tight loops of vpdpbusd (AVX-512 VNNI) and of AMX tdpbusd, beside
te.machine's fp32 FMA peak and measured the same way (each thread runs the kernel from a Python
thread; ctypes drops the GIL).

* VNNI: CHAINS independent accumulators, each updated INNER times per iteration, so the
  instruction's latency is covered; 64 multiply-adds (128 int8 ops) per instruction.
* AMX: four accumulator tiles each multiplied by two of four operand tiles that are loaded once
  (tile loads would measure the caches, not the unit); 16 x 16 x 64 multiply-adds per tdpbusd.
"""
from __future__ import annotations

import ctypes
import functools

from llvmlite import ir

from . import llvm_init
from .amx import tile_config
from .jit import JitModule
from .machine import chain_function, loop_function, threaded_rate
from .target import host

CHAINS, INNER = 16, 64
AMX_INNER = 32
I8, I32, I64 = ir.IntType(8), ir.IntType(32), ir.IntType(64)
VOID, PTR = ir.VoidType(), ir.PointerType()


def _vnni(mod: ir.Module) -> int:
    v16, v64 = ir.VectorType(I32, 16), ir.VectorType(I8, 64)
    dp = ir.Function(mod, ir.FunctionType(v16, [v16, v64, v64]), "llvm.x86.avx512.vpdpbusd.512")
    x, y = ir.Constant(v64, [1] * 64), ir.Constant(v64, [3] * 64)
    chain_function(mod, "vnni", lambda b, a: b.call(dp, [a, x, y]), [ir.Constant(v16, [c] * 16) for c in range(CHAINS)],
                   INNER)
    return CHAINS * INNER * 64 * 2


def _amx(mod: ir.Module) -> int:
    data = tile_config()
    cfg = ir.GlobalVariable(mod, ir.ArrayType(I8, 64), "cfg")
    cfg.initializer = ir.Constant(ir.ArrayType(I8, 64), bytearray(data))
    cfg.align = 64
    buf = ir.GlobalVariable(mod, ir.ArrayType(I8, 1024), "operand")
    buf.initializer = ir.Constant(ir.ArrayType(I8, 1024), None)
    buf.align = 64
    fn = {n: ir.Function(mod, ir.FunctionType(VOID, t), f"llvm.x86.{n}") for n, t in (
        ("ldtilecfg", [PTR]), ("tileloadd64", [I8, PTR, I64]), ("tdpbusd", [I8, I8, I8]),
        ("tilezero", [I8]), ("tilerelease", []))}
    t = lambda k: ir.Constant(I8, k)    # noqa: E731

    def setup(b):
        b.call(fn["ldtilecfg"], [cfg])
        for k in range(4):
            b.call(fn["tilezero"], [t(k)])
        for k in range(4, 8):
            b.call(fn["tileloadd64"], [t(k), buf, ir.Constant(I64, 64)])
        return []

    def body(b, state):
        for _ in range(AMX_INNER):
            for c, (a, w) in enumerate(((4, 6), (4, 7), (5, 6), (5, 7))):
                b.call(fn["tdpbusd"], [t(c), t(a), t(w)])
        return []

    def finish(b, state):
        b.call(fn["tilerelease"], [])
        return ir.Constant(I32, 0)
    loop_function(mod, "amx", I32, setup, body, finish)
    return AMX_INNER * 4 * 16 * 16 * 64 * 2


@functools.lru_cache(maxsize=None)
def _kernel(kind: str):
    tgt = host()
    mod = ir.Module(f"peak_{kind}")
    mod.triple = llvm_init.llvm().get_process_triple()
    ops = (_vnni if kind == "vnni" else _amx)(mod)
    jit = JitModule(llvm_init.llvm().parse_assembly(str(mod)), tgt)
    return jit, jit.function(kind, restype=ctypes.c_int32, argtypes=[ctypes.c_int64]), ops


def available(kind: str) -> bool:
    """Does this CPU run the kind ('vnni' or 'amx') of int8 peak kernel?"""
    need = {"vnni": {"avx512vnni"}, "amx": {"amx-tile", "amx-int8"}}[kind]
    return need <= host().feature_set


def peak_gops(kind: str, threads: int = 1, seconds: float = 0.2, repeats: int = 5) -> float:
    """Measured int8 peak in GOP/s (a multiply-add is 2 ops) of 'vnni' or 'amx' on `threads` threads."""
    if not available(kind):
        raise ValueError(f"this CPU has no {kind} (needs "
                         f"{'avx512vnni' if kind == 'vnni' else 'amx-tile and amx-int8'})")
    _, cfn, ops = _kernel(kind)
    return threaded_rate(cfn, ops, threads, seconds, repeats)
