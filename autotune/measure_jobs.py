"""The jobs of the tuner's worker processes: a builder's (a candidate lowered, generated and
optimised into an object file; its loop-IR features) and the runner's (the object loaded, its
answer checked against the task's reference, its calls timed as the model meets them: weights and
large inputs read from rotating cold copies), and the loop a worker runs them in (`_worker_main`,
started by measure.py's `_Worker` in a fresh interpreter).  What a worker keeps between jobs is
`_RunnerState`.
"""
from __future__ import annotations

import gc
import json
import time
import traceback
from dataclasses import replace
from typing import TYPE_CHECKING

from te.target import Target

from .call_timing import CLEAN_WAIT, ColdWeights, RunQueueClock, cold_plan, padded_array, per_call, weight_copies
from .record import ErrorNo

if TYPE_CHECKING:
    from .measure import MeasureOption


def _build_job(payload: dict) -> dict:
    """In a builder: instantiate, lower, codegen, optimise, emit an object file."""
    import te
    from te.build import optimize
    from te.codegen_llvm import codegen
    from te.stmt import Store, walk_stmt

    t0 = time.perf_counter()
    try:
        task = _worker_task(payload)
        target = task.target
        # as the model builds it: the weight packed as the model passes it, the model's epilogue fused
        s, tensors = task.instantiate(payload["config"], prepacked=True, fused=True)
        func = te.lower(s, tensors, payload["symbol"])
    except Exception as e:      # the template or the schedule rejected this config
        return {"error_no": int(ErrorNo.INSTANTIATION_ERROR), "error_msg": _short(e),
                "build_time": time.perf_counter() - t0}
    impl = task.implementation
    try:
        cg = codegen([func], target, prefetch=_prefetches(task, func))
        mod = optimize(str(cg.module), target)
        obj = target.machine().emit_object(mod)
    except Exception as e:
        return {"error_no": int(ErrorNo.COMPILE_ERROR), "error_msg": _short(e),
                "build_time": time.perf_counter() - t0}
    written = {id(st.buffer) for st in walk_stmt(func.body) if isinstance(st, Store)}
    packed = impl.weight_index if impl is not None and impl.packs_weight else None
    # a packed weight's spec holds its logical shape: the runner packs a random logical weight
    specs = [(list(b.shape), b.dtype, id(b) in written,
              list(impl.weight_shape(impl.workload(task.args))) if k == packed else None)
             for k, b in enumerate(func.args[:len(tensors)])]
    return {"error_no": 0, "object": obj, "symbol": func.name, "specs": specs, "config": payload["config"],
            "weight_arg": impl.weight_index if impl is not None else None,
            "uses_openmp": cg.uses_openmp, "build_time": time.perf_counter() - t0}


def _prefetches(task, func) -> bool:
    """Whether the model the task comes from has its kernel prefetch its weight
    (te.prefetch.kernel_prefetches, on its constants: the weight and its 1-D per-channel
    arguments, a bias): then the candidate is built to prefetch the range the runner names before
    each call, its weight, as the model's entry point names it."""
    from te.prefetch import arg_bytes, kernel_prefetches
    impl = task.implementation
    if impl is None or impl.weight_index is None or not task.model_weight_bytes or impl.weight_index >= len(func.args):
        return False
    sizes = arg_bytes(func)
    constants = sizes[impl.weight_index] + sum(n for b, n in zip(func.args, sizes) if len(b.shape) == 1)
    return kernel_prefetches(task.target, constants, task.flops, task.model_weight_bytes)


def _features_job(payload: dict) -> dict:
    """In a builder: feature vectors of configs of a task (for the cost model's search)."""
    from .features import config_features
    task = _worker_task(payload)
    return {"features": [config_features(task, i) for i in payload["indices"]]}


def _worker_task(payload: dict):
    """The payload's task, created once per worker: declaring a config space takes 10-20 ms,
    a tenth of a candidate's build."""
    from te.target import parse

    from .task import create_task
    if payload.get("module"):
        __import__(payload["module"])
    if payload.get("dag"):                  # an auto-scheduled workload: its compute DAG, pickled
        from .auto_scheduler.workload import receive_dag
        receive_dag(payload["name"], payload["args"], payload["dag"])
    epilogue = payload.get("epilogue") or ()
    key = json.dumps([payload["name"], payload["args"], payload["target"], payload.get("threads"), epilogue,
                      payload.get("model_weight_bytes", 0)])
    task = _RunnerState.tasks.get(key)
    if task is None:
        target = parse(payload["target"])
        if payload.get("threads"):        # the task's own count: split-K and parallel loops depend on it
            target = replace(target, threads=payload["threads"])
        if payload.get("dag"):            # an auto-scheduled workload has no epilogue of its own
            task = create_task(payload["name"], payload["args"], target)
        else:
            task = create_task(payload["name"], payload["args"], target, epilogue)
            if payload.get("model_weight_bytes"):       # a model's task: timed with its weight as the model meets it
                task = replace(task, model_weight_bytes=payload["model_weight_bytes"])
        _RunnerState.tasks[key] = task
    return task


class _RunnerState:
    """What a worker keeps between jobs: inputs and reference outputs per workload (the runner),
    tasks it builds candidates of or computes features of (a builder)."""
    tasks: dict = {}
    inputs: dict = {}
    reference: dict = {}
    flush = None
    cold = None             # (a weight array, its copies): the last candidate's cold weights
    cold_inputs: dict = {}  # id of an input array -> (the array, its copies): the last workloads' cold inputs
    loaders: dict = {}      # (threads, lines) -> the kernel that writes each thread's slice back (_slice_loader)
    heap_kept = False


def _keep_heap() -> None:
    """Make glibc keep freed memory in the runner's heap instead of returning it to the kernel.

    A kernel's scratch buffers above 64 KiB come from aligned_alloc on every call.  Once a
    long-lived runner's heap is trimmed or the buffer is mmap'd afresh, every call pays a page
    fault per 4 KiB (a GEMM with a 1.6 MB buffer takes almost twice its time), and the timing
    depends on the candidates timed before it instead of on the candidate.
    """
    if _RunnerState.heap_kept:
        return
    _RunnerState.heap_kept = True
    try:
        import ctypes
        libc = ctypes.CDLL(None)
        libc.mallopt(-3, 32 << 20)          # M_MMAP_THRESHOLD: glibc's maximum, 32 MiB
        libc.mallopt(-1, (1 << 31) - 1)     # M_TRIM_THRESHOLD: never trim
    except (OSError, AttributeError):       # not glibc: timings are still valid, only noisier
        pass


def _inputs(key: str, specs: list, task=None, config=None) -> list:
    """The runner's arrays for one candidate of a workload: the same random values for every
    config (a pre-packed weight is the same logical weight, packed the candidate's way by the
    task's implementation)."""
    import numpy as np

    from te.runtime import random_array
    st = _RunnerState.inputs.setdefault(key, {})
    arrays = []
    for k, (shape, dtype, written, packed) in enumerate(specs):
        shape = tuple(packed) if packed else tuple(shape)
        dt = np.dtype(dtype)
        a = st.get((k, shape, dt.str, written))
        if a is None:
            rng = np.random.default_rng([k, *shape])      # by position and shape: config-independent
            a = padded_array(shape, dt)
            if not written:
                a[...] = random_array(rng, shape, dt)
            st[(k, shape, dt.str, written)] = a
        if packed:
            # only the last candidate's packing is kept: a packed weight per config would pile up
            layout = json.dumps(config, sort_keys=True)
            if st.get(("packed", k), (None,))[0] != layout:
                packed_w = task.pack_weight(a, config)
                st[("packed", k)] = (layout, padded_array(packed_w.shape, packed_w.dtype))
                st[("packed", k)][1][...] = packed_w
            a = st[("packed", k)][1]
        arrays.append(a)
    return arrays


CALIBRATE_CALLS = 4         # calls whose fastest sizes a repeat
CALIBRATE_LONG = 0.2        # seconds: a kernel this slow is timed once a repeat without more calls
REPEAT_STRETCH = 4          # a repeat ends after 4 calls once it lasted this many times min_repeat_ms


COLD_INPUT_MIN = 64 << 10   # bytes: a smaller input stays in a core's L2 between a model's kernels


def _cold_calls(opt: MeasureOption, arrays: list, specs: list, weight: int | None, model_weight_bytes: int,
                target: Target) -> ColdWeights:
    """The timed calls' arguments: the weight (argument `weight`) and the input activations read
    from copies as opt says (MeasureOption.cold_weights, cold_input), else as they are (warm after
    the first call)."""
    ptrs = [a.ctypes.data for a in arrays]
    index, copies = None, None
    if opt.cold_weights and weight is not None and weight < len(arrays) and not specs[weight][2]:
        plan = cold_plan(arrays[weight].nbytes, model_weight_bytes, target)
        index, copies = weight, _weight_copies(arrays[weight], target, plan.copies)
    inputs = {}
    if opt.cold_input:
        for k, (a, spec) in enumerate(zip(arrays, specs)):
            if k != weight and not spec[2] and a.nbytes >= COLD_INPUT_MIN:
                inputs[k] = _input_copies(a, target)
    return ColdWeights(ptrs, index, copies, inputs)


def _input_copies(x, target: Target) -> list:
    """Copies of an input activation x (x first) that together outgrow the L2s (cold_plan of a
    task alone), kept for the next candidate of the workload (its inputs are the same arrays)."""
    kept = _RunnerState.cold_inputs.get(id(x))
    if kept is None or kept[0] is not x:
        if len(_RunnerState.cold_inputs) >= 8:        # another workload's: let them go
            _RunnerState.cold_inputs.clear()
        kept = _RunnerState.cold_inputs[id(x)] = (x, weight_copies(x, target))
    return kept[1]


def _weight_copies(w, target: Target, copies: int | None = None) -> list:
    """weight_copies, kept for the next candidate while its weight is the same array (a config
    that packs it alike) and as many copies are asked for; else the last ones refilled where
    their shape fits (a model's worth of copies is 100 MB to fault in afresh)."""
    kept = _RunnerState.cold
    if kept is None or kept[0] is not w or (copies is not None and len(kept[1]) != copies):
        _RunnerState.cold = kept = (w, weight_copies(w, target, copies, reuse=kept[1] if kept else None))
    return kept[1]


def _run_job(payload: dict) -> dict:
    """In the runner: load the object, check the answer, time it."""
    import numpy as np

    from te.jit import JitModule
    from te.target import parse
    opt: MeasureOption = payload["option"]
    specs = payload["specs"]
    target = parse(payload["target"])
    if payload["task"].get("threads"):     # the task's own count: the caches its cold weight must outgrow
        target = replace(target, threads=payload["task"]["threads"])
    jit = JitModule(payload["object"], target, payload["uses_openmp"])
    fn = jit.function(payload["symbol"], len(specs))
    key = payload["workload"]
    _keep_heap()
    packs = any(p for *_, p in specs)
    arrays = _inputs(key, specs, _worker_task(payload["task"]) if packs else None, payload.get("config"))
    ptrs = [a.ctypes.data for a in arrays]
    weight = payload.get("weight_arg")
    cold = _cold_calls(opt, arrays, specs, weight, payload["task"].get("model_weight_bytes", 0), target)
    before = _before_calls(jit, weight, arrays, cold, target)
    outs = [a for a, (_, _, w, _) in zip(arrays, specs) if w]
    for o in outs:
        o.fill(0)
    before(ptrs)
    t0 = time.perf_counter()
    rc = fn(*ptrs)
    first = time.perf_counter() - t0
    if rc != 0:
        return {"error_no": int(ErrorNo.RUNTIME_ERROR), "error_msg": f"kernel returned {rc}"}
    if payload["role"] == "reference":
        _RunnerState.reference[key] = [o.copy() for o in outs]
    elif opt.check_correctness and key in _RunnerState.reference:
        for o, r in zip(outs, _RunnerState.reference[key]):
            if not np.allclose(o, r, rtol=opt.rtol, atol=opt.atol * max(1.0, float(np.abs(r).max(initial=0)))):
                err = float(np.abs(o.astype(np.float64) - r).max())
                return {"error_no": int(ErrorNo.WRONG_ANSWER),
                        "error_msg": f"result differs from the reference (max abs error {err:.3g})"}
    for _ in range(max(0, opt.warmup - 1)):
        before(ptrs)
        fn(*ptrs)
    # calibrate on the fastest of a few warm calls: the first one pays cold caches and page
    # faults, and a call the machine's load stretched (a thread of the parallel team descheduled
    # for a time slice: milliseconds) would size the repeats at one call each, which per_call
    # cannot see past.  A kernel of over CALIBRATE_LONG seconds is long enough to run once a repeat.
    warm = [first]
    while len(warm) < CALIBRATE_CALLS and min(warm) < CALIBRATE_LONG:
        args = cold.args(len(warm))
        before(args)
        t = time.perf_counter()
        fn(*args)
        warm.append(time.perf_counter() - t)
    number = max(1, int(opt.min_repeat_ms / 1e3 / max(min(warm), 1e-7)))
    costs = []
    calls = disturbed = 0
    clock = RunQueueClock()
    for _ in range(opt.repeat):
        if opt.flush_cache:
            if _RunnerState.flush is None:
                _RunnerState.flush = np.zeros(64 << 20 >> 3)
            _RunnerState.flush += 1.0
        clock.refresh()
        times, waits = [], []
        start = time.perf_counter()
        for _ in range(number):
            args = cold.args(calls)
            before(args)
            dt, wait = clock.call(fn, args)
            times.append(dt)
            if wait is not None:
                waits.append(wait)
            calls += 1
            # calls the load stretches must not stretch the repeat past the runner's timeout
            if len(times) >= 4 and time.perf_counter() - start > REPEAT_STRETCH * opt.min_repeat_ms / 1e3:
                break
        known = waits if len(waits) == len(times) else None
        costs.append(per_call(times, known))
        disturbed += sum(w > CLEAN_WAIT * t for t, w in zip(times, known or []))
        if payload.get("cutoff") and costs[0] > payload["cutoff"]:
            break
    clock.close()
    return {"error_no": 0, "costs": costs, "run_time": time.perf_counter() - t0, "disturbed": disturbed / calls}


def _before_calls(jit, weight: int | None, arrays: list, cold, target: Target):
    """What runs before each timed call of a candidate, untimed, given the call's pointers, so
    that the call meets its arguments as in the model:

    * where the candidate was built to prefetch its weight (_prefetches), the weight copy the
      call reads is named as the range to prefetch, as a model's entry point names it before each
      call (te.prefetch: lead 1);
    * each input read from cold copies (_cold_calls) is placed as its producer's threads leave it:
      thread t of the team writes the t-th of equal slices of it (a channel range of an NCHW
      activation, written by a producer split by output channels) back in place, so its lines
      sit modified in that thread's L2 and the rest in the other cores'.  Read from memory
      instead, ResNet-50's 1x1 convs 1024 -> 512 at 14x14 and 512 -> 1024 stride 2 timed a config
      that reads every input channel on each thread (out_order oc_outer) 0.995-1.08x as fast as
      the default, which sums each thread's own channels (split_c); read into the threads' L2s
      clean, 0.97-1.04x; so placed, 0.87-0.89x, and in the model it ran 0.85-0.88x as fast."""
    import ctypes

    from te.prefetch import PREFETCH_GLOBAL
    at = jit.engine.get_global_value_address(PREFETCH_GLOBAL) if weight is not None else 0
    hint = (ctypes.c_int64 * 3).from_address(at) if at else None
    wbytes = arrays[weight].nbytes if hint is not None else 0
    places = [(i, _slice_loader(arrays[i].nbytes, target)) for i in cold.inputs]
    places = [(i, load) for i, load in places if load is not None]

    def before(args: list) -> None:
        if hint is not None:
            hint[:] = (args[weight], wbytes, 1)
        for i, load in places:
            load(args[i])
    return before


def _slice_loader(nbytes: int, target: Target):
    """A function of an address that has thread t of the team write the t-th of target.threads
    equal slices of `nbytes` there back in place, unchanged (its lines then modified in its
    cache); None on one thread (nothing is on another core's side) or for less than a line per
    thread.  The kernel is built once per slice size."""
    threads = max(1, target.threads)
    lines = nbytes // (64 * threads)
    if threads < 2 or not lines:
        return None
    key = (threads, lines)
    kern = _RunnerState.loaders.get(key)
    if kern is None:
        import te
        x = te.placeholder((threads, lines, 16), "float32", name="x")
        out = te.compute((threads, lines, 16), lambda t, i, j: x[t, i, j], name="written")
        s = te.create_schedule(out.op)
        s[out].parallel(out.op.axis[0])
        s[out].vectorize(out.op.axis[2])
        kern = _RunnerState.loaders[key] = te.build(s, [x, out], target=target)
    return lambda address: kern.call_unchecked([address, address])


def _short(e: BaseException) -> str:
    msg = f"{type(e).__name__}: {e}"
    return msg if len(msg) < 500 else msg[:500] + "..."


def _worker_main(rfd: int, wfd: int) -> None:
    """Entry point of a worker process: answer jobs until told to exit."""
    import signal
    from multiprocessing.connection import Connection
    signal.signal(signal.SIGINT, signal.SIG_IGN)       # the parent owns the workers' lifetime (Ctrl-C)
    inbox, outbox = Connection(rfd, writable=False), Connection(wfd, readable=False)
    jobs = {"build": _build_job, "run": _run_job, "features": _features_job}
    # A build allocates hundreds of thousands of small IR objects: with the default thresholds
    # the garbage collector runs many times per build and takes a tenth of its time.
    # Rarer collections, and the modules imported by the first job frozen out of them.
    gc.set_threshold(50_000, 20, 20)
    first = True
    while True:
        try:
            kind, payload = inbox.recv()
        except (EOFError, KeyboardInterrupt):
            return
        if kind == "exit":
            return
        try:
            result = jobs[kind](payload)
        except Exception as e:
            result = {"error_no": int(ErrorNo.RUNTIME_ERROR if kind == "run" else ErrorNo.COMPILE_ERROR),
                      "error_msg": _short(e), "traceback": traceback.format_exc(limit=5)}
        outbox.send(result)
        if first:
            first = False
            gc.freeze()


# ---------------------------------------------------------------- parent side
