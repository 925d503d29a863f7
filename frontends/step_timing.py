"""Kernels timed where the model runs them, and two builds of one model compared piece by piece.

    steps = step_timing.time_steps(lib, feed, repeat=20, order="model")   # (KernelCall, Latency) per call
    pairs = step_timing.compare_builds(untuned, tuned, feed, rounds=7)    # the pieces the builds share

profile.py times a kernel on its own, on fresh arrays, for the roofline; here each call runs on
the model's own weights and workspace, between the calls the model makes (or with part of its
arguments evicted), so its time includes what the rest of the model does to the caches.  The
model check (tilewise/commands/tune_check.py) and the bench scripts that ask where a model's
time goes (bench/threads.py, model_gap.py, conv_in_model.py) are built on it.  frontends.profile
re-exports these names.
"""
from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np


# ---------------------------------------------------------------- two builds of one model, node by node
@dataclass
class KernelPair:
    """One piece of a model as two builds compute it (a: the reference build, b: the other): the
    kernel calls of each build that compute the same graph nodes (node_match: a layout copy or a
    transform kernel either build adds joins the node it serves), timed where the model runs them."""
    nodes: tuple[str, ...]          # the graph nodes it computes, the anchor of b's first task-bearing call first
    calls: int                      # how many times the model runs such a piece (same kernels on both sides)
    a: tuple = ()                   # the reference build's frontends.compile.KernelCalls of one occurrence
    b: tuple = ()
    times_a: list[float] = field(default_factory=list)     # seconds per occurrence (its calls summed), one per round
    times_b: list[float] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        """Median over rounds of a's time over b's (above 1: b runs faster)."""
        rs = [x / y for x, y in zip(self.times_a, self.times_b) if y > 0]
        return statistics.median(rs) if rs else math.nan


def match_steps(lib_a, lib_b) -> list[tuple[list[int], list[int]]]:
    """The kernel calls of two builds of one graph grouped by the original graph nodes they
    compute: (a's, b's) indices into each build's calls as time_steps returns them (copies left
    out), in a's order (b's calls that match none of a's after).  A call whose nodes a pass named after an original node
    ("<node>.pack") falls in with that node; calls of either build that share a node are one group."""
    from te.export import MEMCPY

    from .node_match import joined, original_node
    names = {n.name for n in lib_a.graph.nodes}
    sides = []
    for side, lib in enumerate((lib_a, lib_b)):
        calls = [st for st in lib.plan.steps if st.kernel != MEMCPY]
        sides.append([sorted({original_node(n, names) or n for n in st.nodes}) or [f"{side}:{k}"]   # no node: its own
                      for k, st in enumerate(calls)])
    find = joined(ns for keys in sides for ns in keys)
    groups: dict[str, tuple[list[int], list[int]]] = {}
    for side, keys in enumerate(sides):
        for k, ns in enumerate(keys):
            groups.setdefault(find(ns[0]), ([], []))[side].append(k)
    return list(groups.values())


def compare_builds(lib_a, lib_b, inputs: dict[str, np.ndarray] | None = None, rounds: int = 7, repeat: int = 10,
                   only: Callable[[tuple, tuple], bool] | None = None) -> list[KernelPair]:
    """Time the pieces of two builds of one graph (GraphLibrary) that `only(calls_a, calls_b)`
    picks (match_steps: the calls computing the same nodes) where each model runs them: every
    round runs time_steps(order="model") on a and on b (a first in every other round), `repeat`
    model passes each, so each call meets its weights as the rest of its model leaves them and
    its input as its producer leaves it, and a change in the machine's load hits both builds alike.  A round's time of a call is
    autotune.call_timing.per_call of its passes (the lower quartile: passes the machine's load
    stretched left out); a piece's is the sum of its calls, layout copies and transforms included.
    Pieces with the same kernels on both sides pool (calls), their times averaged per occurrence."""
    from autotune.call_timing import per_call
    from te.export import MEMCPY

    from .profile import random_inputs
    feed = inputs if inputs is not None else random_inputs(lib_a.plan.inputs)
    calls = [[st for st in lib.plan.steps if st.kernel != MEMCPY] for lib in (lib_a, lib_b)]
    pairs: dict[tuple, KernelPair] = {}
    where: dict[tuple, list[tuple[list[int], list[int]]]] = {}
    for ia, ib in match_steps(lib_a, lib_b):
        ca, cb = tuple(calls[0][k] for k in ia), tuple(calls[1][k] for k in ib)
        if only is not None and not only(ca, cb):
            continue
        key = (tuple(c.kernel for c in ca), tuple(c.kernel for c in cb))
        if key not in pairs:
            anchor = next((c.nodes[0] for c in cb + ca if c.task is not None and c.nodes), None)
            nodes = [n for c in ca + cb for n in c.nodes]
            if anchor is not None:
                nodes = [anchor] + [n for n in nodes if n != anchor]
            pairs[key] = KernelPair(tuple(dict.fromkeys(nodes)), 0, ca, cb)
        pairs[key].calls += 1
        where.setdefault(key, []).append((ia, ib))
    if not pairs:
        return []
    for lib in (lib_a, lib_b):      # untimed: a build's first passes ran 20x slower (its weights' pages, its team)
        time_steps(lib, feed, repeat=2, order="model")
    for r in range(max(1, rounds)):
        per = {}
        for side in ((0, 1) if r % 2 == 0 else (1, 0)):    # which goes first alternates: a drift in load cancels
            lib = (lib_a, lib_b)[side]
            per[side] = [per_call(lat.times) for _, lat in time_steps(lib, feed, repeat=repeat, order="model")]
        for key, p in pairs.items():
            occ = where[key]
            p.times_a.append(sum(per[0][k] for ia, _ in occ for k in ia) / len(occ))
            p.times_b.append(sum(per[1][k] for _, ib in occ for k in ib) / len(occ))
    return list(pairs.values())


# ---------------------------------------------------------------- kernels where the model runs them
STEP_ORDERS = ("model", "after_previous", "alone")     # time_steps' ways of calling each kernel
FLUSHED_ORDERS = ("weights_cold", "input_cold")         # "alone" with part of the arguments evicted


def time_steps(lib, inputs: dict[str, np.ndarray], repeat: int = 20,
               outputs: list[np.ndarray] | None = None, order: str = "model",
               clock: Callable[[], float] = time.perf_counter) -> list[tuple[object, Latency]]:
    """Each kernel call of a model (a GraphLibrary without a dynamic batch) timed where the model
    runs it: on its own weights and workspace, each call timed alone, `repeat` times; returns
    (KernelCall, Latency) per kernel call, copies left out.  `outputs` (arrays of the outputs'
    shapes and dtypes) receive the model's outputs.  `order` says what runs between two timed
    calls of a kernel:

    * "model": the whole model, in its order: the call meets the cache state the model leaves
      (its input in the L2s of the threads that wrote it, its weights wherever the model's other
      weights pushed them); the sum of the calls against the model's latency is the time between
      kernels;
    * "after_previous": only the kernel before it (and the copies after that one): its input
      placed as the model places it, by its producer's split, its weights warm unless they
      outgrow the caches alone;
    * "alone": nothing, the call repeated in a row: input and weights where its own last call
      left them (each thread's share in that thread's L2);
    * "weights_cold" / "input_cold": as "alone", but its constant arguments (weights, bias) /
      the activations it reads evicted from every cache level (te.cache_flush) before each call:
      what reading them from memory costs it.

    model - after_previous is what the rest of the model costs a call (mostly its weights evicted),
    after_previous - alone what its producer's work split costs it.  `clock` times each call
    (time.thread_time on one thread: the CPU time the call got, left alone by other processes).  A build whose kernels
    prefetch the next one's weights (te/prefetch.py) gets each call's range set as its entry
    point sets it."""
    import ctypes

    from te.export import MEMCPY
    from te.runtime import ALIGN, aligned_zeros

    from .profile import Latency
    if order not in STEP_ORDERS + FLUSHED_ORDERS:
        raise ValueError(f"time_steps: order {order!r}; use one of {', '.join(STEP_ORDERS + FLUSHED_ORDERS)}")
    if lib.plan.batch:
        raise ValueError("time_steps: the model has a dynamic batch; build it with a fixed shape")
    if lib._jit is None:
        lib._compile_jit()
    arrays = [np.ascontiguousarray(inputs[s["name"]], dtype=s["dtype"]) for s in lib.plan.inputs]
    outs = outputs if outputs is not None else [np.empty(s["shape"], s["dtype"]) for s in lib.plan.outputs]
    arrays += [np.ascontiguousarray(o) for o in outs]
    if any(a is not o for a, o in zip(arrays[len(lib.plan.inputs):], outs)):
        raise ValueError("time_steps: the output arrays must be C-contiguous")
    ws = aligned_zeros((lib.plan.workspace_bytes,), np.uint8, slack=ALIGN)     # as ModelCall's
    base = {"param": lib.params.ctypes.data, "ws": ws.ctypes.data}
    calls, evict = [], {}
    for k, st in enumerate(lib.plan.steps):
        ptrs = [arrays[v].ctypes.data if space == "io" else v if space == "bytes" else base[space] + v
                for space, v in st.args]
        if st.kernel == MEMCPY:
            calls.append((st, None, ptrs))
        else:
            calls.append((st, lib._jit[0].function(st.kernel, len(ptrs)), [ctypes.c_void_p(p) for p in ptrs]))
            if order in FLUSHED_ORDERS:
                evict[k] = _evicted(lib, st, ptrs, weights=order == "weights_cold")
    flush = None
    if evict:
        from te.cache_flush import CacheFlush
        flush = CacheFlush()

    from te.prefetch import PREFETCH_GLOBAL
    at = lib._jit[0].engine.get_global_value_address(PREFETCH_GLOBAL)
    hint = (ctypes.c_int64 * 3).from_address(at) if at else None       # what the entry sets per call

    def call(k: int) -> float:
        """Run step k; the seconds it took (a copy: 0)."""
        st, fn, args = calls[k]
        if fn is None:
            ctypes.memmove(args[1], args[0], args[2])
            return 0.0
        if hint is not None:
            pf = st.prefetch        # a 4th item "ws" (bench/model_gap.py's input variants): a workspace offset
            hint[:] = (base[pf[3] if len(pf) > 3 else "param"] + pf[0], pf[1], pf[2]) if pf else (0, 0, 0)
        t = clock()
        fn(*args)
        return clock() - t

    kernels = [k for k, (_, fn, _) in enumerate(calls) if fn is not None]
    times: dict[int, list[float]] = {k: [] for k in kernels}
    model_pass = range(len(calls))
    for k in model_pass:                    # a pass to warm up, untimed
        call(k)
    if order == "model":
        for _ in range(max(1, repeat)):
            for k in model_pass:
                t = call(k)
                if k in times:
                    times[k].append(t)
    else:
        for i, k in enumerate(kernels):
            before = range(kernels[i - 1], k) if order == "after_previous" and i else range(0)
            call(k)                         # untimed: this call meets the model's cache state
            for _ in range(max(1, repeat)):
                for j in before:
                    call(j)
                for address, nbytes in evict.get(k, ()):
                    flush(address, nbytes)
                times[k].append(call(k))
        for k in model_pass:                # a kernel's output may overwrite its producer's input
            call(k)
    return [(calls[k][0], Latency(times[k])) for k in kernels]


def _evicted(lib, st, ptrs: list[int], weights: bool) -> list[tuple[int, int]]:
    """(address, bytes) of a kernel call's constant arguments (weights) or of the activations it
    reads but does not write (input), from its lowered function's argument shapes."""
    from te.build import arg_specs
    from te.prefetch import arg_bytes
    func = next(f for f in lib.plan.funcs if f.name == st.kernel)
    return [(p, n) for (space, _), p, spec, n in zip(st.args, ptrs, arg_specs(func), arg_bytes(func))
            if not spec.written and (space == "param") == weights]
