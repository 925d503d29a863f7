"""Measuring on a Dask cluster: builds on any worker, timings only where the task's CPU is.

    client = Client("tcp://sched:8786")          # or Client(LocalCluster(n_workers=2, threads_per_worker=1))
    tuner.tune(128, measure_option=autotune.measure_option(cluster=client))

`Measurer(option)` with `option.cluster` set is a `ClusterMeasurer`: tuners and the task scheduler
call its `measure` / `features` / `close` as the local Measurer's.  A candidate is two Dask tasks:
a build, which runs on any worker and returns the object file (code generated for the task's
target, whatever the worker's CPU), and a timing, which asks for the worker resource
`isa:<key>` of the task's target.  `tilewise worker` advertises `isa:<its key>=1`, so the
scheduler gives a machine one timing at a time, and on the worker a gate keeps builds off the
cores while a timing runs.  On the worker both run in the local measurer's processes (a fresh
interpreter per builder thread, one runner): a crashing or hanging candidate is killed by the
worker's own timeout and gets the error record it would get locally.

Faults: a candidate whose task is lost with its worker is submitted once more, then gets an
error record; when the client loses the scheduler, the batch is submitted again if the client
reconnects within its timeout, else ClusterError stops the tuning with every record so far in
the log.  dask and distributed are imported only here, and only when a cluster is used.
"""
from __future__ import annotations

import collections
import contextlib
import json
import logging
import socket
import threading
import time
import uuid
from dataclasses import replace

from .measure import MeasureOption, Measurer, _payload, _record
from .measure_jobs import _worker_task
from .record import ErrorNo, Record

log = logging.getLogger(__name__)

INSTALL = "pip install 'tilewise[distributed]'"
POLL = 1.0                  # seconds between checks of the cluster while waiting for results
NO_WORKER_WAIT = 60.0       # how long tasks may wait for a worker of their ISA before they fail
TRIES = 2                   # a task lost with its worker is submitted once more


class ClusterError(RuntimeError):
    """The cluster cannot measure: dask missing, no scheduler, no worker of the task's ISA, scheduler lost."""


def isa_resource(isa: str) -> str:
    """The Dask worker resource a machine of this ISA key advertises (one timing at a time)."""
    return f"isa:{isa}"


def connect_timeout() -> float:
    """Seconds to reach a scheduler, or to reconnect to it: Dask's distributed.comm.timeouts.connect
    (30 s unless configured, e.g. DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT=5s)."""
    import dask
    from dask.utils import parse_timedelta
    return float(parse_timedelta(dask.config.get("distributed.comm.timeouts.connect"), default="s"))


def connect(cluster):
    """(client, owned): a distributed Client for a Client, a cluster object or a scheduler address."""
    try:
        from distributed import Client
    except ImportError:
        raise ClusterError(f"tuning on a cluster needs dask and distributed: {INSTALL}") from None
    if isinstance(cluster, Client):
        return cluster, False
    try:
        if isinstance(cluster, str):
            return Client(cluster, timeout=connect_timeout(), set_as_default=False), True
        return Client(cluster, set_as_default=False), True
    except (OSError, TimeoutError) as e:
        raise ClusterError(f"cannot reach the Dask scheduler at {cluster}: {str(e).splitlines()[0]}; "
                           "start one with `dask scheduler`") from None


def advertise_silent(client) -> None:
    """Make the workers that advertise no isa:<key> resource advertise their CPU (advertise_isa)."""
    workers = client.scheduler_info(n_workers=-1).get("workers", {})
    silent = [a for a, w in workers.items()
              if not any(k.startswith("isa:") and v >= 1 for k, v in (w.get("resources") or {}).items())]
    if silent:
        found = client.run(advertise_isa, workers=silent)
        log.info("workers without an isa:<key> resource now advertise their CPU: %s",
                 ", ".join(sorted(set(found.values()))))


def timing_workers(client) -> dict[str, dict]:
    """address -> scheduler's record of each worker that advertises an isa:<key> resource."""
    workers = client.scheduler_info(n_workers=-1).get("workers", {})
    return {a: w for a, w in workers.items() if any(k.startswith("isa:") for k in (w.get("resources") or {}))}


def cluster_targets(client) -> dict[str, object]:
    """ISA key -> te Target of the machines whose workers advertise it (threads: the fewest of them)."""
    from te.target import parse
    advertise_silent(client)
    timers = timing_workers(client)
    if not timers:
        return {}
    out: dict[str, object] = {}
    for desc in client.run(describe_worker, workers=list(timers)).values():
        t = replace(parse(desc["target"]), threads=desc["threads"])
        if t.isa not in out or t.threads < out[t.isa].threads:
            out[t.isa] = t
    return out


# ---------------------------------------------------------------- worker side

async def advertise_isa(dask_worker) -> str:
    """On a worker that advertises no CPU (a plain `dask worker`, a LocalCluster's): advertise this
    machine's isa:<key>=1, as `tilewise worker` does, so that it times candidates for its CPU."""
    from te.target import host
    res = isa_resource(host().isa)
    await dask_worker.set_resources(**{res: 1})
    return res


def describe_worker() -> dict:
    """On a worker: its machine's target, threads and host name."""
    from te.target import host
    h = host()
    return {"target": str(h), "threads": h.threads, "isa": h.isa, "host": socket.gethostname()}


class _Gate:
    """Builds share the machine; a timing has it alone: it waits for the builds running and holds
    off new ones (a timing beside a build on the same cores would time the build too)."""

    def __init__(self):
        self._cv = threading.Condition()
        self._builds = 0
        self._timing = False
        self._waiting = 0

    @contextlib.contextmanager
    def build(self):
        with self._cv:
            self._cv.wait_for(lambda: not self._timing and not self._waiting)
            self._builds += 1
        try:
            yield
        finally:
            with self._cv:
                self._builds -= 1
                self._cv.notify_all()

    @contextlib.contextmanager
    def timing(self):
        with self._cv:
            self._waiting += 1
            self._cv.wait_for(lambda: not self._timing and self._builds == 0)
            self._waiting -= 1
            self._timing = True
        try:
            yield
        finally:
            with self._cv:
                self._timing = False
                self._cv.notify_all()


class _Station:
    """What a Dask worker process keeps: a local Measurer per builder thread, one for timings."""
    gate = _Gate()
    local = threading.local()
    timer: Measurer | None = None
    lock = threading.Lock()

    @classmethod
    def builder(cls, option: MeasureOption) -> Measurer:
        m = getattr(cls.local, "measurer", None)
        if m is None:
            m = cls.local.measurer = Measurer(replace(option, n_parallel=1))
            _close_at_exit(m)
        m.option = replace(option, n_parallel=1)
        return m

    @classmethod
    def runner(cls, option: MeasureOption) -> Measurer:
        with cls.lock:
            if cls.timer is None:
                cls.timer = Measurer(replace(option, n_parallel=1))
                _close_at_exit(cls.timer)
        cls.timer.option = replace(option, n_parallel=1)
        return cls.timer


def _close_at_exit(m: Measurer) -> None:
    import atexit
    atexit.register(m.close)


_tasks_lock = threading.Lock()


def _task(payload: dict):
    """The payload's task in this worker process, one thread at a time: the first one reads LLVM's
    CPU list by redirecting the process's stderr (te.target), which two threads at once would garble."""
    with _tasks_lock:
        task = _worker_task(payload)
        task.config_space           # declared once, here, rather than by two threads at once
        return task


def build_job(payload: dict, option: MeasureOption) -> dict:
    """Dask task: build one config (payload: measure._payload) into an object file, on any worker."""
    with _Station.gate.build():
        task = _task(payload)
        cfg = None if payload["config"] is None else task.config_space.from_json(payload["config"])
        return _Station.builder(option).build_batch(task, [cfg])[0]


def features_job(payload: dict, indices: list[int], option: MeasureOption) -> list:
    """Dask task: loop-IR feature vectors of configs of a task, on any worker."""
    with _Station.gate.build():
        return _Station.builder(option).features(_task(payload), indices)


def time_job(payload: dict, builds: list[dict], reference: dict | None, option: MeasureOption,
             rounds: int = 1, cutoff: float | None = None) -> dict:
    """Dask task: time built candidates on a worker of their ISA, `rounds` times in turn (the
    final check's side by side); {"results": [...], "host": ...}, or {"reference_error": why}."""
    task = _task(payload)
    out = []
    with _Station.gate.timing():
        m = _Station.runner(option)
        for _ in range(max(1, rounds)):
            for b in builds:
                if b.get("error_no"):
                    out.append({k: v for k, v in b.items() if k != "object"})
                    continue
                try:
                    m.ensure_reference(task, reference)   # again after a runner restart
                except RuntimeError as e:
                    return {"reference_error": str(e), "host": socket.gethostname()}
                res = m.run_one(task, b, "candidate", cutoff)
                out.append(dict(res, build_time=b.get("build_time", 0.0)))
    return {"results": out, "host": socket.gethostname()}


# ---------------------------------------------------------------- client side

class ClusterMeasurer:
    """The Measurer protocol (measure, features, close) on a Dask cluster; see the module docstring."""

    KEEP_BUILDS = Measurer.KEEP_BUILDS

    def __init__(self, option: MeasureOption):
        self.client, self._owned = connect(option.cluster)
        self.option = replace(option, cluster=None)         # what the workers get
        self._built: collections.OrderedDict = collections.OrderedDict()   # build key -> Future
        self._inflight: set = set()
        self.lost = 0                # tasks lost with a worker and submitted again
        self.failure = ""            # why measuring stopped for good (the scheduler lost), '' while it works
        self.on_failure = None       # called before that ClusterError is raised (e.g. to stop a TaskScheduler)
        log.info("Dask cluster: %s", self.dashboard_link or self.client.scheduler.address)

    # ------------------------------------------------------------- the protocol
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        """Cancel what is still queued and release the builds; close the client if this made it."""
        try:
            if self._inflight and self.client.status == "running":
                self.client.cancel(list(self._inflight))
        except Exception as e:          # a cluster gone already has nothing left to cancel
            log.debug("cancel on close: %s", e)
        self._inflight.clear()
        self._built.clear()
        if self._owned:
            self.client.close()

    def measure(self, task, configs: list, rounds: int = 1, best_cost: float | None = None) -> list[Record]:
        """Build configs on any worker and time them on workers of the task's ISA; one Record each
        (with rounds > 1: all of them on one worker, round after round, as Measurer.measure)."""
        self._check_timers(task)
        cutoff = best_cost * self.option.cutoff_ratio if best_cost and self.option.cutoff_ratio else None
        if rounds > 1:        # the final check: side by side on one machine, in one task
            jobs = [lambda: self._time(task, configs, rounds, None)]
            groups = [list(range(len(configs))) * rounds]
        else:                 # one timing task per candidate, on whichever machine is free
            jobs = [lambda c=c: self._time(task, [c], 1, cutoff) for c in configs]
            groups = [[k] for k in range(len(configs))]
        records = []
        for idx, ans in zip(groups, self._gather(task, jobs)):
            if "reference_error" in ans:
                raise RuntimeError(ans["reference_error"])
            results = ans.get("results") or [ans["lost"]] * len(idx)
            for k, res in zip(idx, results):
                records.append(_record(task, configs[k], res, dict(res, host=ans.get("host", ""))))
        return records

    def features(self, task, indices: list[int]) -> list:
        """Feature vectors of configs of a task, computed on the workers in chunks."""
        import numpy as np

        from .features import LENGTH
        if not indices:
            return []
        n = max(1, min(len(indices), 2 * max(1, len(self._workers()))))
        chunks = [c for c in (indices[k::n] for k in range(n)) if c]
        payload = _payload(task, None)
        jobs = [lambda c=c: self._submit(features_job, payload, c, self.option, kind="features")
                for c in chunks]
        answers = self._gather(task, jobs)
        out: dict[int, object] = {}
        for chunk, feats in zip(chunks, answers):
            ok = isinstance(feats, list)
            for k, i in enumerate(chunk):
                out[i] = feats[k] if ok else np.zeros(LENGTH, np.float32)
        return [out[i] for i in indices]

    # ------------------------------------------------------------- state for the progress bar
    @property
    def dashboard_link(self) -> str:
        """The Dask dashboard's address ('' without one)."""
        try:
            return self.client.dashboard_link or ""
        except Exception:           # no dashboard (bokeh missing, or turned off)
            return ""

    def workers_state(self) -> str:
        """'3 workers: 1 timing, 1 building, 1 idle' (or why it is not known)."""
        try:
            busy = self.client.processing()
        except Exception as e:
            return f"cluster: {type(e).__name__}"
        kinds = collections.Counter()
        for keys in busy.values():
            names = {str(k).split("-")[1] for k in keys if str(k).startswith("tw-")}
            kinds["timing" if "time" in names else "building" if names else "idle"] += 1
        parts = [f"{kinds[k]} {k}" for k in ("timing", "building", "idle") if kinds[k]]
        return f"{len(busy)} worker(s): {', '.join(parts) or 'none'}"

    # ------------------------------------------------------------- submitting
    def _workers(self) -> dict:
        return self.client.scheduler_info(n_workers=-1).get("workers", {})

    def _timers(self, isa: str) -> int:
        res = isa_resource(isa)
        return sum(1 for w in self._workers().values() if (w.get("resources") or {}).get(res, 0) >= 1)

    def _check_timers(self, task) -> None:
        advertise_silent(self.client)
        if not self._timers(task.target.isa):
            raise ClusterError(f"no worker of the cluster advertises {isa_resource(task.target.isa)}: start "
                               f"`tilewise worker {self.client.scheduler.address}` on a machine of that CPU")

    def _submit(self, fn, *args, kind: str, resources: dict | None = None):
        fut = self.client.submit(fn, *args, key=f"tw-{kind}-{uuid.uuid4().hex}", pure=False,
                                 resources=resources, priority=10 if kind == "time" else 0)
        self._inflight.add(fut)
        fut.add_done_callback(self._inflight.discard)
        return fut

    def _build(self, task, config):
        """The build future of a config, shared by every timing of it while kept (KEEP_BUILDS)."""
        key = json.dumps([task.workload_key, str(task.target), task.target.threads,
                          None if config is None else config.to_json()], sort_keys=True)
        fut = self._built.get(key)
        if fut is None or fut.status in ("error", "cancelled", "lost"):
            fut = self._submit(build_job, _payload(task, config), self.option, kind="build")
        self._built[key] = fut
        self._built.move_to_end(key)
        while len(self._built) > self.KEEP_BUILDS:
            self._built.popitem(last=False)
        return fut

    def _time(self, task, configs: list, rounds: int, cutoff: float | None):
        reference = self._build(task, None) if self.option.check_correctness else None
        builds = [self._build(task, c) for c in configs]
        return self._submit(time_job, _payload(task, None), builds, reference, self.option, rounds, cutoff,
                            kind="time", resources={isa_resource(task.target.isa): 1})

    def _gather(self, task, jobs: list) -> list:
        """The results of jobs (functions that submit one task each), in order.  A task lost with its
        worker is submitted again once, then stands as an error; a lost scheduler is waited for."""
        from distributed import wait
        futures = {k: make() for k, make in enumerate(jobs)}
        tries = dict.fromkeys(futures, 1)
        out: dict[int, dict | list] = {}
        waiting_since = time.monotonic()
        while futures:
            try:
                wait(list(futures.values()), timeout=POLL, return_when="FIRST_COMPLETED")
            except Exception:       # a timeout, or futures cancelled (their state is read below)
                pass
            done = {f for f in futures.values() if f.done()}
            if not done:
                if time.monotonic() - waiting_since > NO_WORKER_WAIT and not self._timers(task.target.isa):
                    why = f"no worker advertising {isa_resource(task.target.isa)} is left in the cluster"
                    for k in futures:
                        out[k] = _lost(why)
                    self.client.cancel(list(futures.values()))
                    break
                continue
            waiting_since = time.monotonic()
            for k, fut in list(futures.items()):
                if fut not in done:
                    continue
                if fut.status == "finished":
                    out[k] = fut.result()
                    del futures[k]
                elif self.client.status != "running":
                    self._await_scheduler()
                    futures = {j: jobs[j]() for j in futures}     # the scheduler forgot every task
                    break
                elif not _lost_with_worker(fut):
                    # the tasks catch every error of a candidate: an exception is the cluster's
                    raise ClusterError(f"the cluster could not run a tilewise task ({_why(fut)}); the scheduler "
                                       f"and every worker need tilewise installed ({INSTALL}) as the client")
                elif tries[k] < TRIES:
                    tries[k] += 1
                    self.lost += 1
                    log.warning("%s: a task was lost (%s); submitted again", task, _why(fut))
                    futures[k] = jobs[k]()
                else:
                    out[k] = _lost(f"lost twice with its worker ({_why(fut)})")
                    del futures[k]
        return [out[k] for k in range(len(jobs))]

    def _await_scheduler(self) -> None:
        """Wait while the client reconnects; ClusterError if it gives up (the log keeps what was measured)."""
        self._built.clear()
        deadline = time.monotonic() + connect_timeout() + 5
        while self.client.status not in ("running", "closed") and time.monotonic() < deadline:
            time.sleep(0.2)
        if self.client.status != "running":
            self.failure = ("lost the connection to the Dask scheduler; every record measured so far is in "
                            "the log")
            if self.on_failure:
                self.on_failure()
            raise ClusterError(self.failure + ": continue with --resume")
        log.warning("reconnected to the Dask scheduler; the batch in flight is submitted again")


def _lost_with_worker(fut) -> bool:
    """Whether a failed future failed because its worker died (KilledWorker, or cancelled with it)."""
    from distributed.scheduler import KilledWorker
    try:
        e = fut.exception(timeout=1)
    except Exception:             # cancelled: raises instead of returning the reason
        return True
    return isinstance(e, KilledWorker)


def _why(fut) -> str:
    try:
        e = fut.exception(timeout=1)
    except Exception as x:         # cancelled futures raise instead of returning their reason
        e = x
    return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}".rstrip(": ")[:200]


def _lost(why: str) -> dict:
    """The answer standing for a task that never answered (its candidates get error records)."""
    return {"lost": {"error_no": int(ErrorNo.RUNTIME_ERROR), "error_msg": why}}
