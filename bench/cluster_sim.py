"""Tuning on a Dask cluster, on paper: trials/s for 1-64 workers from costs measured here.

    python bench/cluster_sim.py --measure       # a brief ResNet-50 tuning run here -> bench/cluster_costs.json
    python bench/cluster_sim.py                 # the prediction from bench/cluster_costs.json
    python bench/cluster_sim.py --cores 8       # for workers of 8 cores each

The measurement tunes a few of ResNet-50's tasks briefly, locally and through a one-worker
LocalCluster, and records what one trial costs: its build (core-seconds, in the builder), its
timing job (the runner's load, check and repeats), the tuner's time between batches (cost-model
refits and the search, on the client), loop-IR features per config, and Dask's cost per task
(the client's submit, the scheduler's handling of trivial tasks).  The refit is also timed
alone for up to 1024 records, since it grows with the records of a task.

The simulation replays a run of ResNet-50's 24 tasks round by round, as TaskScheduler does:
the client refits and proposes a batch, then the batch runs on W machines of C cores (builds on
any free core; a timing takes a whole machine, after its running builds, as the worker's gate
does), every task passing through the scheduler, a single server.  It prints trials/s and how
busy the client, the scheduler and the workers are, for batches of 8 (the default round) and
of 2 per worker.  Figures are rough: the costs come from a shared 2-core VM.
"""
from __future__ import annotations

import argparse
import heapq
import json
import os
import random
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import table  # noqa: E402

COSTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cluster_costs.json")
WORKERS = (1, 2, 4, 8, 16, 32, 64)
RESNET_TASKS = 24            # ResNet-50's distinct tuning tasks
FEATURE_BUDGET = 24          # XGBTuner: configs per round given loop-IR features (on the builders)


# ---------------------------------------------------------------- measuring the costs here
class _Timed:
    """A measurer wrapper that clocks its builds, timing jobs, feature jobs and the gaps between batches."""

    def __init__(self, m):
        self.m = m
        self.builds: list[float] = []          # wall of each build_batch
        self.timings: list[float] = []         # wall of each timing job (run_one)
        self.feature_jobs: list[tuple[int, float]] = []
        self.measures: list[tuple[float, float]] = []   # (start, end) of each measure()
        if hasattr(m, "run_one"):
            self._wrap("build_batch", self.builds)
            self._wrap("run_one", self.timings)

    def _wrap(self, name: str, into: list) -> None:
        fn = getattr(self.m, name)

        def timed(*a, **k):
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                into.append(time.perf_counter() - t)
        setattr(self.m, name, timed)

    def measure(self, task, configs, rounds=1, best_cost=None):
        t = time.perf_counter()
        try:
            return self.m.measure(task, configs, rounds, best_cost)
        finally:
            self.measures.append((t, time.perf_counter()))

    def features(self, task, indices):
        t = time.perf_counter()
        try:
            return self.m.features(task, indices)
        finally:
            self.feature_jobs.append((len(indices), time.perf_counter() - t))

    def client_gaps(self) -> list[float]:
        """Seconds between one measure() and the next, less feature jobs: the tuner's own time."""
        gaps = [b[0] - a[1] for a, b in zip(self.measures, self.measures[1:])]
        per_gap = sum(w for _, w in self.feature_jobs) / max(1, len(gaps))
        return [max(0.0, g - per_gap) for g in gaps]

    def close(self):
        self.m.close()


def _tasks(n: int):
    """The n heaviest ResNet-50 tasks of distinct templates."""
    import frontends
    from frontends.tasks import extract_tasks
    from frontends.zoo import light_model
    out, seen = [], set()
    for t in extract_tasks(frontends.from_onnx(light_model("resnet50"))):
        if t.task.name not in seen:
            seen.add(t.task.name)
            out.append(t.task)
    return out[:n]


def _tune(tasks, measure_option, trials: int, seed: int) -> tuple[_Timed, list, float]:
    import autotune
    timed = _Timed(autotune.Measurer(measure_option))
    records = []
    t0 = time.perf_counter()
    try:
        for k, task in enumerate(tasks):
            tuner = autotune.XGBTuner(task, seed=seed + k)
            tuner.verify_top = 0                 # the final check is not part of the steady state
            tuner.tune(trials, measurer=timed,
                       callbacks=[lambda t, i, rs: records.extend(rs)])
    finally:
        timed.close()
    return timed, records, time.perf_counter() - t0


def _fit_seconds() -> list[tuple[int, float]]:
    """The cost model's refit alone, for n records of one task (the tuner refits two models)."""
    import numpy as np

    from autotune.cost_model import XGBCostModel
    from autotune.features import LENGTH
    rng = np.random.default_rng(0)
    XGBCostModel().fit([(rng.random((8, LENGTH), np.float32), rng.random(8), 1.0)])    # imports xgboost
    out = []
    for n in (16, 64, 256, 1024):
        X, y = rng.random((n, LENGTH), np.float32), rng.random(n)
        t = time.perf_counter()
        XGBCostModel().fit([(X, y, 1.0)])
        out.append((n, time.perf_counter() - t))
    return out


def _dask_seconds(n: int = 200) -> dict:
    """Dask's own cost per task: the client's submit, and the throughput of trivial build -> timing
    pairs on a LocalCluster (bounded by the scheduler and the comms)."""
    import distributed

    from autotune.cluster import isa_resource
    from te.target import host
    res = {isa_resource(host().isa): 1}
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address=":0",
                                  resources=res) as cl, distributed.Client(cl) as c:
        c.submit(_noop, 0).result()
        t = time.perf_counter()
        futs = []
        for i in range(n):
            b = c.submit(_noop, i, pure=False)
            futs.append(c.submit(_noop, b, pure=False, resources=res))
        submit = (time.perf_counter() - t) / (2 * n)
        distributed.wait(futs)
        wall = time.perf_counter() - t
    return {"submit_s_per_task": submit, "sched_s_per_task": wall / (2 * n)}


def _noop(x):
    return x


def measure(n_tasks: int, trials: int, seed: int) -> dict:
    """The costs of a trial here (see the module docstring)."""
    import autotune
    import distributed

    from autotune.cluster import isa_resource
    from te.target import host
    tasks = _tasks(n_tasks)
    print(f"tuning {', '.join(t.name for t in tasks)} of ResNet-50, {trials} trials each, locally...", flush=True)
    local, records, local_wall = _tune(tasks, autotune.measure_option(), trials, seed)
    ok = [r for r in records if r.build_time > 0]
    feats = [w * 2 / n for n, w in local.feature_jobs if n]        # two builders computed them
    out = {
        "machine": f"{host().cpu}, {os.cpu_count()} CPUs (shared, loaded)", "tasks": [t.name for t in tasks],
        "build_s": [r.build_time for r in ok],
        "timing_s": local.timings,
        "client_s": local.client_gaps(),
        "features_s_per_config": statistics.median(feats) if feats else 0.0,
        "client_n": trials // 2,                 # records of a task, on average, at those gaps
        "fit_s": _fit_seconds(),
        "dask": _dask_seconds(),
        "measured": {"local": len(records) / local_wall},
    }
    print(f"... and through a LocalCluster of one worker ({os.cpu_count()} threads)", flush=True)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=os.cpu_count(), host="127.0.0.1",
                                  dashboard_address=":0", resources={isa_resource(host().isa): 1}) as cl, \
            distributed.Client(cl) as client:
        _, recs, wall = _tune(tasks, autotune.measure_option(cluster=client), trials, seed)
        out["measured"]["cluster_1_worker"] = len(recs) / wall
    return out


# ---------------------------------------------------------------- the simulation
class _Sim:
    """One run on W machines of C cores; see the module docstring."""

    def __init__(self, costs: dict, workers: int, cores: int, batch: int, seed: int = 0):
        self.c, self.W, self.C, self.B = costs, workers, cores, batch
        self.rng = random.Random(seed)
        self.sched_busy = self.client_busy = self.work_busy = 0.0
        fits = costs["fit_s"]
        # the refit grows about linearly with a task's records: a line through the first and last point
        (n0, f0), (n1, f1) = fits[0], fits[-1]
        self.fit_slope, self.fit_base = (f1 - f0) / (n1 - n0), f0 - (f1 - f0) / (n1 - n0) * n0
        gaps = costs["client_s"]
        # the tuner's time between batches less its two refits at the measured size: the search
        self.search = max(0.0, statistics.median(gaps) - 2 * self.fit(costs.get("client_n", 16))) if gaps else 0.0

    def fit(self, n: int) -> float:
        return max(0.0, self.fit_base + self.fit_slope * n)

    def run(self, trials: int = 2000) -> float:
        """Seconds for `trials` trials spread over the tasks in rounds of B."""
        now, done, rounds = 0.0, 0, 0
        while done < trials:
            per_task = (rounds // RESNET_TASKS) * self.B       # records of the task tuned this round
            d = self.c["dask"]
            client = 2 * self.fit(per_task) + self.search + 2 * self.B * d["submit_s_per_task"]
            # loop-IR features of the search's best configs, in chunks on the workers
            chunks = min(FEATURE_BUDGET, 2 * self.W)
            client += FEATURE_BUDGET / chunks * self.c["features_s_per_config"]
            self.client_busy += client
            now += client + self._batch()
            done += self.B
            rounds += 1
        self.total = now
        return now

    def _batch(self) -> float:
        """The makespan of one batch: builds on free cores, timings on whole machines."""
        tsched = self.c["dask"]["sched_s_per_task"]
        builds = [self.rng.choice(self.c["build_s"]) for _ in range(self.B)]
        timing = self.c["timing_s"]
        running = [0] * self.W              # builds running per machine
        timing_on = [False] * self.W        # a timing assigned (it waits for the machine's builds)
        events: list = []                   # (time, kind, machine)
        queue, ready, t, sched_free, left = list(builds), 0, 0.0, 0.0, self.B

        def dispatch(at: float) -> float:
            nonlocal sched_free
            start = max(at, sched_free) + tsched
            sched_free = start
            self.sched_busy += tsched
            return start

        while left:
            for m in range(self.W):         # timings first (their tasks have priority)
                if ready and not timing_on[m]:
                    ready -= 1
                    timing_on[m] = True
                    if running[m] == 0:
                        d = self.rng.choice(timing)
                        self.work_busy += d * self.C
                        heapq.heappush(events, (dispatch(t) + d, "timed", m))
            for m in range(self.W):
                while queue and not timing_on[m] and running[m] < self.C:
                    d = queue.pop()
                    running[m] += 1
                    self.work_busy += d
                    heapq.heappush(events, (dispatch(t) + d, "built", m))
            t, kind, m = heapq.heappop(events)
            if kind == "built":
                running[m] -= 1
                ready += 1
                if timing_on[m] and running[m] == 0:      # the gate opens for the waiting timing
                    d = self.rng.choice(timing)
                    self.work_busy += d * self.C
                    heapq.heappush(events, (t + d, "timed", m))
            else:
                timing_on[m] = False
                left -= 1
        return t

    def busy(self) -> tuple[float, float, float]:
        """Fractions of the run the client, the scheduler and the workers' cores were busy."""
        return (self.client_busy / self.total, self.sched_busy / self.total,
                self.work_busy / (self.total * self.W * self.C))


def bottleneck(client: float, sched: float, work: float) -> str:
    """What limits the rate: the busiest resource, or the batch when nothing is busy."""
    name, most = max((("client (refit and search)", client), ("scheduler", sched), ("workers", work)),
                     key=lambda kv: kv[1])
    return name if most >= 0.5 else "the batch (workers wait for the round)"


def predict(costs: dict, cores: int, runs: tuple[int, ...]) -> list[list]:
    """Rows per batch rule and worker count: trials/s and the bottleneck for each run length."""
    rows, base = [], None
    for rule in ("8", "2 per worker"):
        for w in WORKERS:
            b = 8 if rule == "8" else max(8, 2 * w)
            row = [w, b]
            for trials in runs:
                sim = _Sim(costs, w, cores, b)
                rate = trials / sim.run(trials)
                base = base or rate
                cl, sc, wk = sim.busy()
                row += [f"{rate:.2f} ({rate / base:.1f}x)", f"{100 * cl:.0f} / {100 * sc:.1f} / {100 * wk:.0f}",
                        bottleneck(cl, sc, wk)]
            rows.append(row)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--measure", action="store_true", help="measure the costs here first (a few minutes)")
    ap.add_argument("--costs", default=COSTS, help="the costs file (default bench/cluster_costs.json)")
    ap.add_argument("--tasks", type=int, default=3, help="with --measure: ResNet-50 tasks to tune")
    ap.add_argument("--trials", type=int, default=16, help="with --measure: trials per task")
    ap.add_argument("--cores", type=int, default=2, help="cores per worker machine (default 2, as here)")
    ap.add_argument("--runs", type=int, nargs="+", default=[2000, 20000],
                    help="trials of the simulated runs (default 2000 and 20000)")
    args = ap.parse_args()
    if args.measure:
        costs = measure(args.tasks, args.trials, seed=0)
        with open(args.costs, "w") as f:
            json.dump(costs, f, indent=1)
        print(f"wrote {args.costs}")
    elif not os.path.exists(args.costs):
        sys.exit(f"{args.costs} does not exist: measure the costs first with --measure")
    with open(args.costs) as f:
        costs = json.load(f)
    med = statistics.median
    print(f"costs measured on {costs['machine']} ({', '.join(costs['tasks'])} of ResNet-50):")
    print(f"  build {med(costs['build_s']):.2f} s (median core-seconds), timing job {med(costs['timing_s']):.2f} s, "
          f"tuner between batches {med(costs['client_s']):.2f} s, features {costs['features_s_per_config'] * 1e3:.0f} ms"
          f"/config; refit {costs['fit_s'][0][1] * 1e3:.0f} ms at {costs['fit_s'][0][0]} records, "
          f"{costs['fit_s'][-1][1] * 1e3:.0f} ms at {costs['fit_s'][-1][0]}")
    print(f"  Dask: submit {costs['dask']['submit_s_per_task'] * 1e3:.2f} ms/task, "
          f"{costs['dask']['sched_s_per_task'] * 1e3:.2f} ms/task through the scheduler")
    meas = costs.get("measured", {})
    print("  measured here: " + ", ".join(f"{k.replace('_', ' ')} {v:.2f} trials/s" for k, v in meas.items()))
    print(f"\npredicted for ResNet-50 runs of {' and '.join(map(str, args.runs))} trials on workers of {args.cores} "
          "cores (busy: client / scheduler / workers, %):")
    heads = ["workers", "batch"]
    for n in args.runs:
        heads += [f"{n}: trials/s", "busy %", "bottleneck"]
    print(table(heads, predict(costs, args.cores, tuple(args.runs)), "rr" + "rrl" * len(args.runs)))


if __name__ == "__main__":
    main()
