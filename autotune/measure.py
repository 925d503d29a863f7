"""Measurement: compile candidates in builder processes, time them in a runner process.

Builders lower, generate and optimise a candidate and hand back an object file; the runner
links it into a fresh MCJIT engine, checks its answer against the task's reference and times
it (warm-up, repeats, median and min, optional cache flush).  Builds of a batch run in
parallel first, then the runner times them one by one while the builders sit idle, so the
two never share the cores during a timing.  Every worker is a fresh interpreter started with
subprocess, never a fork (OpenMP does not survive fork, and nothing re-imports __main__), in
isolated mode with the parent's import path passed explicitly (the current folder is not put
first on its path); one that crashes or hangs is killed and restarted, and the candidate gets
an error record instead of ending the tuning run.
"""
from __future__ import annotations

import collections
import json
import logging
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace

from te.target import Target

from .record import ErrorNo, Record

log = logging.getLogger(__name__)


@dataclass
class MeasureOption:
    """How to build and time candidates."""
    n_parallel: int = 2              # builder processes
    build_timeout: float = 30.0      # seconds per candidate build
    run_timeout: float = 15.0        # seconds per candidate run (all repeats)
    repeat: int = 3                  # timed repeats; costs holds one time per call per repeat (per_call)
    # each repeat runs the kernel enough times to last this long.  Longer repeats don't make a
    # timing steadier: on shared VMs the noise comes in spells of about a second, and a conv or
    # matmul config's median of three repeats spreads as much with 10 ms repeats as with 20 ms
    # (bench/timing_noise.py).
    min_repeat_ms: float = 10.0
    warmup: int = 1
    flush_cache: bool = False        # overwrite a buffer larger than the caches before each repeat
    # each call meets its weight as a model's kernel does (read last one model run ago) while its
    # input arrives warm from the kernel before: from another of several copies that together
    # outgrow the L2s, or hold as much as the task's model's weights where those outgrow the
    # cores' L3 share (call_timing.cold_plan); timed with one warm weight, a config that streams
    # the weight badly looks as fast as one that streams it well
    cold_weights: bool = True
    # and each call reads its input activations (read-only arguments of COLD_INPUT_MIN bytes or
    # more, the weight aside) from another of copies that together outgrow the L2s: in a model a
    # kernel's input was written by its producer's threads in the producer's split, and a kernel
    # that reads it in another split meets half of it in the other core's cache.  Timed on a warm
    # input, ResNet-50's direct 1x1 convs 512 -> 128 at 28x28 ran as fast as the GEMM they
    # replaced (270 vs 244 us) but 2x slower in the model (685-749 vs 334-348 us), about as slow
    # as with their input cold (768-837 vs 305-333: frontends.profile.time_steps' orders); and
    # before each call each thread of the team writes its slice of the input copy back in place,
    # as a producer split by output channels leaves it (measure_jobs._before_calls)
    cold_input: bool = True
    check_correctness: bool = True
    # a candidate whose first timed repeat is slower than cutoff_ratio x the best cost the tuner
    # has seen is not timed further: one repeat tells it is slow (0 times every repeat)
    cutoff_ratio: float = 2.0
    # a search batch also times the task's default config, just before its candidates, and each
    # record carries vs_default: the default's time over the candidate's.  This VM's speed
    # drifts by a third within minutes (its fp32 peak measured 348-467 GFLOP/s a minute apart
    # while other jobs ran, 352 and 459 in two quiet windows a session apart), so candidates
    # timed minutes apart compare fairly only through a yardstick timed beside each of them;
    # the tuner ranks them by it (Tuner._batch_speed).  It costs one timing per batch (two while
    # the default runs far slower than its candidates: the tuner times its incumbent too).
    anchor: bool = True
    # a batch whose anchor takes over BUSY_RATIO times the fastest anchor of its task, or most of
    # whose calls waited for a CPU (BUSY_SHARE), is timed on a busy machine: its candidates'
    # timings would say how busy, not how fast (a 2-thread kernel waits at each barrier for a
    # thread descheduled for a time slice, so its calls take many times their own time); the
    # batch waits, re-timing the anchor and each candidate so timed, up to this many seconds in
    # all, then is timed anyway
    load_wait: float = 5.0
    rtol: float = 1e-3
    atol: float = 1e-3
    # a dask Client, a cluster object (LocalCluster) or a scheduler address: build and time on that
    # Dask cluster instead of this machine (autotune.cluster; pip install 'tilewise[distributed]')
    cluster: object = field(default=None, compare=False)


def measure_option(**kwargs) -> MeasureOption:
    """A MeasureOption; see its fields."""
    return MeasureOption(**kwargs)


# ---------------------------------------------------------------- worker side

BUSY_RATIO = 1.5            # an anchor this much slower than its fastest: the machine is busy
BUSY_SHARE = 0.75           # or a timing whose calls' threads waited for a CPU in more than this share of them
BUSY_PAUSE = 0.25           # seconds between timings while it is


def measure_key(task) -> str:
    """What a measured candidate's timing depends on besides its config: the workload and the
    epilogue it is timed with (the runner keeps inputs and reference outputs per key)."""
    epilogue = getattr(task, "epilogue", ())
    return task.workload_key if not epilogue else json.dumps([task.workload_key, epilogue])


def _payload(task, config) -> dict:
    """What a builder or the runner needs to recreate the task and a config of it (an
    auto-scheduled task's compute DAG too)."""
    from .task import _symbol
    return {"name": task.name, "args": task.args, "target": str(task.target), "threads": task.target.threads,
            "epilogue": getattr(task, "epilogue", ()), "config": None if config is None else config.to_json(),
            "model_weight_bytes": getattr(task, "model_weight_bytes", 0),
            "symbol": _symbol(task.name), "module": task.module, "dag": task.dag}


def isolated_python(statement: str) -> tuple[list[str], dict]:
    """(argv, env) of a fresh interpreter that runs `statement` with the parent's import path.

    Isolated mode (-I): `python -c` would put the current folder first on sys.path, so a json.py
    where the user runs `tilewise tune` would be imported by every worker; -I also ignores
    PYTHONPATH and the user's site folder.  The parent's import path is passed explicitly instead
    and appended after the child's own standard library, so the package and a user's template
    modules import as in the parent but cannot shadow stdlib."""
    env = dict(os.environ)
    env["TILEWISE_WORKER_PATH"] = os.pathsep.join(p for p in sys.path if p and os.path.isdir(p))
    code = ("import os, sys; sys.path.extend(p for p in os.environ['TILEWISE_WORKER_PATH'].split("
            f"os.pathsep) if p not in sys.path); {statement}")
    return [sys.executable, "-I", "-c", code], env


class _Worker:
    """A worker process (a fresh interpreter, never a fork); restarted when it dies or hangs."""

    def __init__(self, name: str):
        self.name = name
        self.proc: subprocess.Popen | None = None
        self.inbox = None       # parent -> worker
        self.outbox = None      # worker -> parent

    def start(self) -> None:
        from multiprocessing.connection import Connection
        r1, w1 = os.pipe()
        r2, w2 = os.pipe()
        argv, env = isolated_python(f"from autotune.measure_jobs import _worker_main; _worker_main({r1}, {w2})")
        self.proc = subprocess.Popen(argv, pass_fds=(r1, w2), env=env, stdin=subprocess.DEVNULL)
        os.close(r1)
        os.close(w2)
        self.inbox = Connection(w1, readable=False)
        self.outbox = Connection(r2, writable=False)

    def submit(self, kind: str, payload: dict) -> None:
        if self.proc is None or self.proc.poll() is not None:
            self.start()
        self.inbox.send((kind, payload))

    def result(self, timeout: float, timeout_error: ErrorNo, crash_error: ErrorNo,
               limit: float | None = None) -> dict:
        """The worker's answer, waiting up to `timeout` s; `limit` is the whole allowance, for the message."""
        try:
            if self.outbox.poll(timeout):
                return self.outbox.recv()
            self.kill()
            return {"error_no": int(timeout_error),
                    "error_msg": f"no answer within {timeout if limit is None else limit:.0f} s"}
        except (EOFError, OSError):
            code = self.proc.wait(timeout=5) if self.proc else None
            self.kill()
            return {"error_no": int(crash_error),
                    "error_msg": f"the {self.name} process died (exit code {code}); likely a crash in generated code"}

    def kill(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait(timeout=5)
        for c in (self.inbox, self.outbox):
            if c is not None:
                c.close()
        self.proc = self.inbox = self.outbox = None

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.inbox.send(("exit", None))
                self.proc.wait(timeout=2)
            except (OSError, EOFError, subprocess.TimeoutExpired):
                pass
        self.kill()


class Measurer:
    """Builds candidates in parallel, then times them one at a time in the runner.

    With option.cluster set, Measurer(option) is an autotune.cluster.ClusterMeasurer instead: the
    same measure / features / close on the workers of a Dask cluster.
    """

    def __new__(cls, option: MeasureOption | None = None):
        if cls is Measurer and option is not None and option.cluster is not None:
            from .cluster import ClusterMeasurer
            return ClusterMeasurer(option)
        return super().__new__(cls)

    def __init__(self, option: MeasureOption | None = None):
        self.option = option or MeasureOption()
        self.builders = [_Worker(f"builder{i}") for i in range(max(1, self.option.n_parallel))]
        self.runner = _Worker("runner")
        self._has_reference: set[str] = set()
        self._fastest_anchor: dict[str, float] = {}     # measure_key -> seconds (see _anchor)
        # the objects of recent successful builds, so a final check does not build its configs again
        self._built: collections.OrderedDict = collections.OrderedDict()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        """Stop the worker processes."""
        for w in self.builders + [self.runner]:
            w.close()

    _payload = staticmethod(_payload)
    KEEP_BUILDS = 64

    def build_batch(self, task, configs: list) -> list[dict]:
        """Build configs on the builder processes (each takes the next job as soon as it is free);
        a config built recently is not built again."""
        keys = [json.dumps([measure_key(task), str(task.target), None if c is None else c.to_json()],
                           sort_keys=True) for c in configs]
        todo = [k for k in dict.fromkeys(keys) if k not in self._built]
        done = self._spread([("build", self._payload(task, configs[keys.index(k)])) for k in todo],
                            self.option.build_timeout, ErrorNo.BUILD_TIMEOUT, ErrorNo.COMPILE_ERROR)
        fresh = dict(zip(todo, done))
        out = [fresh[k] if k in fresh else self._built[k] for k in keys]
        for k in dict.fromkeys(keys):          # most recently used last; the least recent go first
            if k in fresh and fresh[k].get("error_no"):
                continue
            self._built[k] = fresh.get(k) or self._built[k]
            self._built.move_to_end(k)
        while len(self._built) > self.KEEP_BUILDS:
            self._built.popitem(last=False)
        return out

    def features(self, task, indices: list[int]) -> list:
        """Feature vectors of configs of a task, computed on the builder processes in parallel."""
        import numpy as np

        from .features import LENGTH
        if not indices:
            return []
        n = len(self.builders)
        chunks = [indices[k::n] for k in range(n)]
        base = self._payload(task, None)
        jobs = [("features", dict(base, indices=c)) for c in chunks if c]
        results = self._spread(jobs, self.option.build_timeout * 4, ErrorNo.BUILD_TIMEOUT, ErrorNo.COMPILE_ERROR)
        out: dict[int, object] = {}
        for (_, job), res in zip(jobs, results):
            feats = res.get("features")
            for k, i in enumerate(job["indices"]):
                out[i] = feats[k] if feats is not None else np.zeros(LENGTH, np.float32)
        return [out[i] for i in indices]

    def _spread(self, jobs: list, timeout: float, timeout_error: ErrorNo, crash_error: ErrorNo) -> list[dict]:
        """Run jobs on the builders, a free builder taking the next job; results in job order."""
        from multiprocessing.connection import wait
        results: list[dict | None] = [None] * len(jobs)
        pending = list(enumerate(jobs))
        busy: dict = {}                 # worker -> (job index, deadline)
        while pending or busy:
            for w in self.builders:
                if w not in busy and pending:
                    i, (kind, payload) = pending.pop(0)
                    w.submit(kind, payload)
                    busy[w] = (i, time.monotonic() + timeout)
            now = time.monotonic()
            left = min(d for _, d in busy.values()) - now
            ready = wait([w.outbox for w in busy], timeout=max(0.0, left))
            for w in list(busy):
                i, deadline = busy[w]
                if w.outbox in ready or time.monotonic() >= deadline:
                    results[i] = w.result(max(0.0, deadline - time.monotonic()), timeout_error, crash_error,
                                          limit=timeout)
                    del busy[w]
        return results

    def run_one(self, task, build: dict, role: str, cutoff: float | None = None) -> dict:
        """Time one built candidate in the runner (only once if slower than cutoff seconds)."""
        payload = {"cutoff": cutoff, "object": build["object"], "symbol": build["symbol"], "specs": build["specs"],
                   "task": self._payload(task, None), "config": build.get("config"),
                   "uses_openmp": build["uses_openmp"], "workload": measure_key(task),
                   "weight_arg": build.get("weight_arg"),
                   "target": str(task.target), "option": self.option, "role": role}
        self.runner.submit("run", payload)
        res = self.runner.result(self.option.run_timeout, ErrorNo.RUN_TIMEOUT, ErrorNo.RUNTIME_ERROR)
        if self.runner.proc is None:     # the runner died or hung: its reference outputs are gone
            self._has_reference = {k for k in self._has_reference if k != measure_key(task)}
        return res

    def ensure_reference(self, task, build: dict | None = None) -> None:
        """Run the task's default config once so candidates can be checked against its output
        (`build`: the default config's build, when it was built elsewhere)."""
        if measure_key(task) in self._has_reference or not self.option.check_correctness:
            return
        b = build or self.build_batch(task, [None])[0]
        if b.get("error_no"):
            raise RuntimeError(f"the default schedule of {task} does not build: {b.get('error_msg')}")
        r = self.run_one(task, b, "reference")
        if r.get("error_no"):
            raise RuntimeError(f"the default schedule of {task} does not run: {r.get('error_msg')}")
        self._has_reference.add(measure_key(task))

    def measure(self, task, configs: list, rounds: int = 1, best_cost: float | None = None) -> list[Record]:
        """Build and time a batch of configs of one task; one Record each, errors included.

        best_cost (seconds), the fastest the tuner has seen: a candidate slower than
        option.cutoff_ratio times it on its first timed repeat gets no more repeats.

        With rounds > 1 every config is built once and timed `rounds` times, the configs taking
        turns (round by round), so a change in the machine's speed hits them alike; the records
        come round after round (len(configs) * rounds of them).
        """
        self.ensure_reference(task)
        builds = self.build_batch(task, configs)
        records = []
        # a busy machine is waited out (the anchor, then each timing taken while it was) up to a
        # deadline per batch (the final check's: per round); the check's rounds hold the default
        # themselves, so there the anchor only waits
        deadline = time.monotonic() + self.option.load_wait * max(1, rounds)
        anchor = self._anchor(task, deadline) if self.option.anchor else None
        if rounds > 1:
            anchor = None
        for _ in range(max(1, rounds)):
            for cfg, b in zip(configs, builds):
                if b.get("error_no"):
                    res = b
                else:
                    self.ensure_reference(task)   # the runner may have been restarted
                    cutoff = best_cost * self.option.cutoff_ratio if best_cost and self.option.cutoff_ratio else None
                    res = self.run_one(task, b, "candidate", cutoff)
                    while _busy(res) and time.monotonic() + BUSY_PAUSE <= deadline:
                        time.sleep(BUSY_PAUSE)
                        res = self.run_one(task, b, "candidate", cutoff)
                records.append(_record(task, cfg, b, res))
        if anchor:
            records = [replace(r, vs_default=anchor / r.cost) if r.ok else r for r in records]
        return records

    def _anchor(self, task, deadline: float) -> float | None:
        """Seconds per call of the task's default config timed now (its build kept from the
        reference run), the yardstick of a search batch; None if it cannot be timed.  While it
        runs over BUSY_RATIO times its fastest time, or its calls were disturbed (_busy), the
        machine is busy: wait, up to the deadline (time.monotonic())."""
        b = self.build_batch(task, [None])[0]
        if b.get("error_no"):
            return None
        key = measure_key(task)
        while True:
            res = self.run_one(task, b, "candidate")
            costs = res.get("costs") if not res.get("error_no") else None
            if not costs:
                return None
            now = statistics.median(costs)
            fastest = self._fastest_anchor.get(key, now)
            self._fastest_anchor[key] = min(fastest, now)
            if (now <= BUSY_RATIO * fastest and not _busy(res)) or time.monotonic() + BUSY_PAUSE > deadline:
                return now
            log.info("%s: the default runs %.1fx its fastest time, %.0f%% of its calls disturbed: "
                     "the machine is busy, waiting", task, now / fastest, 100 * res.get("disturbed", 0.0))
            time.sleep(BUSY_PAUSE)


def _busy(res: dict) -> bool:
    """Whether a runner's timing was taken on a busy machine: most of its calls' threads waited for a CPU."""
    return not res.get("error_no") and res.get("disturbed", 0.0) > BUSY_SHARE


def _record(task, cfg, build: dict, res: dict) -> Record:
    import te
    t: Target = task.target
    return Record(workload=task.workload_key, config=cfg.to_json() if cfg is not None else {},
                  costs=list(res.get("costs", [])), error_no=int(res.get("error_no", 0)),
                  error_msg=res.get("error_msg", ""), isa=t.isa, cpu=t.cpu, target=f"llvm -mcpu={t.cpu}",
                  build_time=float(build.get("build_time", 0.0)), run_time=float(res.get("run_time", 0.0)),
                  tilewise_version=te.__version__, host=res.get("host", ""))
