"""Measured machine ceilings: fp32 FMA peak and memory bandwidth, the yardsticks for every figure.

The peak kernel is written straight in LLVM IR: independent chains of `llvm.fma` on the
widest vector type, enough of them to cover the FMA latency; each thread runs it from a
Python thread (ctypes drops the GIL), so no OpenMP is involved in the measurement.
"""
from __future__ import annotations

import ctypes
import functools
import statistics
import threading
import time

import numpy as np
from llvmlite import ir

from . import llvm_init
from .jit import JitModule
from .target import host

CHAINS = 16         # accumulator chains where the registers hold them (AVX-512: 16 of 32)
INNER = 256
# The peak kernel's revision, kept beside a cached peak (tilewise/ceilings.py): a peak measured
# by an earlier kernel is measured again.  2: chains limited to the registers (below).
PEAK_KERNEL = 2


def chains(tgt) -> int:
    """Independent FMA chains of the peak kernel on tgt: CHAINS where the vector registers hold
    them beside the two operands, else as many as Target.acc_vectors allows (12 of AVX2's 16).
    Twelve still cover an FMA's latency times its units (Zen 3: 4 cycles x 2 pipes, Haswell 5 x 2);
    sixteen chains on AVX2 spilled and the loop ran at 40% of the peak (Zen 3: 78 against
    193-200 GFLOP/s on 2 threads with 8-14 chains)."""
    return min(CHAINS, tgt.acc_vectors)


@functools.lru_cache(maxsize=None)
def _peak_kernel():
    tgt = host()
    lanes = tgt.lanes("float32")
    f32 = ir.FloatType()
    vty = ir.VectorType(f32, lanes)
    mod = ir.Module("peak")
    mod.triple = llvm_init.llvm().get_process_triple()
    fma = ir.Function(mod, ir.FunctionType(vty, [vty, vty, vty]), f"llvm.fma.v{lanes}f32")
    x = ir.Constant(vty, [0.999999] * lanes)
    y = ir.Constant(vty, [1e-7] * lanes)
    n = chains(tgt)
    chain_function(mod, "peak", lambda b, v: b.call(fma, [v, x, y]),
                   [ir.Constant(vty, [float(c) * 1e-3] * lanes) for c in range(n)], INNER)
    jit = JitModule(llvm_init.llvm().parse_assembly(str(mod)), tgt)
    cfn = jit.function("peak", restype=ctypes.c_float, argtypes=[ctypes.c_int64])
    return jit, cfn, lanes * n


def chain_function(mod: ir.Module, name: str, step, init: list[ir.Value], inner: int) -> ir.Function:
    """elem name(i64 n) in mod: the vectors `init` as independent chains (enough of them to cover
    the instruction's latency, so the loop runs at its throughput), each advanced `inner` times an
    iteration by step(builder, value); then their sum's first lane (the chains are live to the end)."""
    elem = init[0].type.element
    add = ir.IRBuilder.fadd if isinstance(elem, ir.FloatType) else ir.IRBuilder.add

    def body(b, vals):
        for _ in range(inner):
            vals = [step(b, v) for v in vals]
        return vals

    def finish(b, vals):
        total = vals[0]
        for v in vals[1:]:
            total = add(b, total, v)
        return b.extract_element(total, ir.Constant(ir.IntType(32), 0))
    return loop_function(mod, name, elem, lambda b: init, body, finish)


def loop_function(mod: ir.Module, name: str, ret: ir.Type, setup, body, finish) -> ir.Function:
    """ret name(i64 n) in mod: state = setup(builder) (a list of values), then n times
    state = body(builder, state) (the values carried as phis), then return finish(builder, state)."""
    i64 = ir.IntType(64)
    fn = ir.Function(mod, ir.FunctionType(ret, [i64]), name)
    entry, loop, done = (fn.append_basic_block(n) for n in ("entry", "loop", "done"))
    b = ir.IRBuilder(entry)
    init = setup(b)
    b.branch(loop)
    b.position_at_end(loop)
    i = b.phi(i64)
    i.add_incoming(ir.Constant(i64, 0), entry)
    phis = []
    for v in init:
        p = b.phi(v.type)
        p.add_incoming(v, entry)
        phis.append(p)
    out = body(b, phis)
    for p, v in zip(phis, out):
        p.add_incoming(v, loop)
    nxt = b.add(i, ir.Constant(i64, 1))
    i.add_incoming(nxt, loop)
    b.cbranch(b.icmp_signed("<", nxt, fn.args[0]), loop, done)
    b.position_at_end(done)
    b.ret(finish(b, out))
    return fn


def peak_gflops(threads: int = 1, seconds: float = 0.3, repeats: int = 5) -> float:
    """Measured fp32 FMA peak in GFLOP/s on `threads` threads (median of repeats)."""
    _, cfn, lanes = _peak_kernel()           # the lanes of all its chains
    return threaded_rate(cfn, INNER * lanes * 2, threads, seconds, repeats)


def peak_now(threads: int = 1) -> float:
    """A short sample of the fp32 FMA peak (GFLOP/s, 3 repeats of ~50 ms) for a figure timed just
    before it: on a VM whose speed drifts by a third within an hour (bench/RESULTS.md), a kernel's
    share of the peak means something only against a peak measured beside it, not the cached one.
    It waits out the spin of an OpenMP team the last kernel left (te.native_call.SPIN_COUNT:
    about 2 ms), whose threads would otherwise share the cores with the measurement."""
    time.sleep(0.005)
    return peak_gflops(threads, seconds=0.05, repeats=3)


def threaded_rate(cfn, ops_per_iter: int, threads: int, seconds: float, repeats: int) -> float:
    """G-operations per second of cfn(iterations) run on `threads` Python threads at once (the
    median of repeats), each call long enough to take about `seconds`."""
    cfn(10)
    t = time.perf_counter()
    cfn(1000)
    per_iter = (time.perf_counter() - t) / 1000
    iters = max(100, int(seconds / max(per_iter, 1e-9) / 1))
    results = []
    for _ in range(repeats):
        ts = [threading.Thread(target=cfn, args=(iters,)) for _ in range(threads)]
        t = time.perf_counter()
        for th in ts:
            th.start()
        for th in ts:
            th.join()
        dt = time.perf_counter() - t
        results.append(threads * iters * ops_per_iter / dt / 1e9)
    return statistics.median(results)


def bandwidth_gbs(mbytes: int = 256, repeats: int = 7) -> float:
    """Measured single-thread memory bandwidth in GB/s (numpy copy: bytes read + written)."""
    n = mbytes * (1 << 20) // 4
    src = np.ones(n, np.float32)
    dst = np.empty_like(src)
    np.copyto(dst, src)
    results = []
    for _ in range(repeats):
        t = time.perf_counter()
        np.copyto(dst, src)
        dt = time.perf_counter() - t
        results.append(2 * src.nbytes / dt / 1e9)
    return statistics.median(results)
