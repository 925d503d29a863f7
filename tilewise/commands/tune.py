"""tilewise tune: tune a model's tasks with one budget, spent where the model spends its time."""
from __future__ import annotations

import math
import os
import signal
import threading
import time

from . import add_parser
from ..common import (CLIError, check_output_folder, fmt_duration, fmt_flops, fmt_num, fmt_time, gather_logs,
                      isa_tag, load_graph, model_tasks, note, say, task_label)
from ..progress import Status, bar
from .tune_report import estimated_times, report, report_model_check, signed_time

DESCRIPTION = """\
Tune the kernels of an ONNX model for this CPU.  The model's distinct convolutions and
matrix products become tuning tasks; a task scheduler (as in Ansor) spreads the trial budget
over them by their share of the model's estimated time: every task first gets its default
schedule measured, then each round of trials goes to the task whose improvement is expected
to take the most off the model's time.  Every measurement is appended to the log (JSON lines)
as it completes, so Ctrl-C stops cleanly keeping all of them, and --resume continues from
the log without measuring any config again.  With the shared logs (tuning_logs/ and
$TILEWISE_LOGS, for this CPU's ISA), the best known config of each task is measured first.

The run ends with a table: per task its occurrences in the model, trials, best GFLOP/s,
% of this machine's peak, estimated share of the model's time, and the speed-up over the
default schedule.  Then the model check: the model is built untuned and with the log, every
kernel the log changed is timed beside the untuned one as the model runs it, and its verdict
goes into the log (a config that ran slower in the model loses to the kernel it replaced);
the two models are timed in alternating rounds and the gain is reported beside the estimate.
Then build the model with the log:  tilewise build MODEL -o model.so --log LOG
(A log made earlier, or a shipped one: tilewise check-log MODEL --log LOG runs that check.)"""

EXAMPLES = """\
  tilewise tune resnet50.onnx --trials 2000 --log resnet50.jsonl
  tilewise tune resnet50.onnx --time-budget 30 --log resnet50.jsonl   # 30 minutes
  tilewise tune resnet50.onnx --log resnet50.jsonl --resume           # continue after Ctrl-C
  tilewise tune model.onnx --trials 64 --max-tasks 3 --tuner random
  tilewise tune resnet50.onnx --cluster tcp://sched:8786 --time-budget 10 --log rn.jsonl
  tilewise tune resnet50.onnx --cluster tcp://sched:8786 --targets all-in-cluster --log rn.jsonl"""

PER_TASK_DEFAULT = 64

# A task whose best has not improved by 1% in this many rounds (of about 8 trials) is left alone.
# Without it a noisy machine keeps one task "improving" by luck, and that task takes most of the
# trials of a long run while its best creeps up by noise.
TASK_PATIENCE = 16


def register(sub, common) -> None:
    p = add_parser(sub, common, "tune", "tune a model's kernels for this CPU", DESCRIPTION, EXAMPLES)
    p.add_argument("model", metavar="MODEL.onnx", help="the ONNX model to tune")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--trials", type=_positive_int, metavar="N",
                        help=f"total trials over all tasks (default: {PER_TASK_DEFAULT} per task); "
                             "with --resume the log's trials count towards it")
    budget.add_argument("--time-budget", type=_positive_float, metavar="MIN", help="tune for this many minutes")
    p.add_argument("--log", metavar="FILE", help="the tuning log to write (default: MODEL.jsonl in this folder)")
    p.add_argument("--resume", action="store_true", help="continue from the log: configs in it are not measured again")
    p.add_argument("--tuner", choices=("xgb", "random", "grid"), default="xgb",
                   help="search strategy per task (default: xgb, the model-guided tuner)")
    p.add_argument("--auto-schedule", nargs="?", const="rest", choices=("rest", "all"), default=None,
                   metavar="all",
                   help="also tune the kernels without a template (softmax, norms, batched matmuls, "
                        "elementwise chains) with the auto-scheduler; '--auto-schedule all': every "
                        "kernel, the convolutions and matrix products too instead of their templates "
                        "(to compare; a build takes whichever record ran faster)")
    p.add_argument("--max-tasks", type=_positive_int, metavar="K", help="tune only the K heaviest tasks")
    p.add_argument("--algorithms", choices=("all", "preferred"), default="all",
                   help="all: tune every implementation of each kernel (direct, GEMM, Winograd...) and "
                        "build with the fastest; preferred: only the one an untuned build runs")
    p.add_argument("--no-shared-logs", action="store_true", help="do not start from the shared logs")
    p.add_argument("--no-model-check", action="store_true",
                   help="skip the model check after tuning (the model built with the log timed against the "
                        "untuned one, kernel by kernel; records of kernels that ran slower in the model lose)")
    p.add_argument("--shape", action="append", metavar="NAME=DIMS", help="fix an input shape, e.g. data=1x3x224x224")
    m = p.add_argument_group("measurement")
    m.add_argument("--repeat", type=_int_in(1, MAX_REPEAT), default=3,
                   help=f"timed repeats per candidate (default 3, at most {MAX_REPEAT})")
    m.add_argument("--min-repeat-ms", type=_positive_float, default=10.0,
                   help="each repeat runs the kernel at least this long (default 10); repeats x this "
                        "must stay within half the runner's timeout per candidate")
    m.add_argument("--builders", type=_int_in(1, os.cpu_count() or 1), default=2,
                   help=f"parallel builder processes (default 2, at most the {os.cpu_count() or 1} CPUs)")
    m.add_argument("--seed", type=int, default=0, help="seed of the search")
    c = p.add_argument_group("tuning on a Dask cluster (pip install 'tilewise[distributed]')")
    c.add_argument("--cluster", metavar="ADDRESS",
                   help="a Dask scheduler, e.g. tcp://sched:8786: candidates are built on any of its workers "
                        "and timed on the workers of the target's CPU (started with `tilewise worker`)")
    c.add_argument("--targets", choices=("this", "all-in-cluster"), default="this",
                   help="with --cluster: tune for this machine's CPU (default), or for every CPU kind (ISA) "
                        "the cluster's workers advertise, all at once, into the one log")
    p.set_defaults(run=run)


MAX_REPEAT = 100


def _int_in(low: int, high: int | None = None):
    """An argparse type: a whole number from low to high, with a one-line error otherwise."""
    import argparse

    def parse(s: str) -> int:
        try:
            v = int(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{s!r} is not a whole number") from None
        if v < low or (high is not None and v > high):
            raise argparse.ArgumentTypeError(f"{s} must be at least {low}" if high is None
                                             else f"{s} must be from {low} to {high}")
        return v
    return parse


_positive_int = _int_in(1)


def _positive_float(s: str) -> float:
    import argparse
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{s!r} is not a number") from None
    if not (v > 0 and math.isfinite(v)):
        raise argparse.ArgumentTypeError(f"{s} must be a positive finite number")
    return v


def check_timing(repeat: int, min_repeat_ms: float) -> None:
    """CLIError when a candidate's timing alone (repeat x min_repeat_ms) would not fit in half the
    runner's timeout: every candidate would then end as a run timeout instead of a measurement."""
    import autotune
    limit = autotune.MeasureOption().run_timeout / 2
    if repeat * min_repeat_ms / 1e3 > limit:
        raise CLIError(f"--repeat {repeat} x --min-repeat-ms {min_repeat_ms:g} = {repeat * min_repeat_ms / 1e3:g} s "
                       f"of timing per candidate, more than the {limit:g} s allowed (half the runner's "
                       "timeout); lower one of them")


def check_log(log_path: str, resume: bool) -> None:
    """CLIError unless log_path can take this run's records: a regular file that is missing, empty or
    a tuning log (never a model or a device), and without records unless resuming."""
    from autotune.record import LogError, check_is_log
    if os.path.isdir(log_path):
        raise CLIError(f"--log {log_path}: is a folder, not a file")
    check_output_folder("--log", log_path)
    if os.path.exists(log_path) and not os.access(log_path, os.W_OK):
        raise CLIError(f"--log {log_path}: cannot be written (no permission)")
    try:
        check_is_log(log_path)
    except (LogError, FileNotFoundError) as e:
        raise CLIError(f"--log {log_path}: {getattr(e, 'reason', e)}") from None
    if not resume and os.path.exists(log_path) and os.path.getsize(log_path) > 0:
        raise CLIError(f"{log_path} already holds tuning records: continue from it with --resume, "
                       "or choose another --log")


def default_log(model: str) -> str:
    """MODEL.jsonl in the current folder."""
    stem = os.path.splitext(os.path.basename(model))[0]
    return f"{stem}.jsonl"


def run(args) -> int:
    graph = load_graph(args.model, args.shape)
    log_path = args.log or default_log(args.model)
    check_log(log_path, args.resume)
    check_timing(args.repeat, args.min_repeat_ms)
    if args.resume and not os.path.exists(log_path):
        note(f"tilewise: note: {log_path} does not exist yet; nothing to resume, starting afresh")
    tasks = model_tasks(graph, algorithms=args.algorithms,
                        auto_schedule={None: False, "rest": True, "all": "all"}[args.auto_schedule])
    if not tasks:
        raise CLIError(f"{args.model}: no tunable kernels (convolutions or matrix products) in this model")
    if args.targets != "this" and not args.cluster:
        raise CLIError(f"--targets {args.targets} needs --cluster ADDRESS (the Dask scheduler whose workers "
                       "tell the targets)")
    n_trials = args.trials
    time_budget = args.time_budget * 60 if args.time_budget else None
    if n_trials is None and time_budget is None:
        n_trials = PER_TASK_DEFAULT * min(len(tasks), args.max_tasks or len(tasks))
    return tune_model(graph, tasks, log_path, title=os.path.basename(args.model), tuner=args.tuner,
                      n_trials=n_trials, time_budget=time_budget, max_tasks=args.max_tasks,
                      shared_logs=not args.no_shared_logs, repeat=args.repeat, min_repeat_ms=args.min_repeat_ms,
                      builders=args.builders, seed=args.seed, cluster=args.cluster,
                      all_targets=args.targets == "all-in-cluster", algorithms=args.algorithms,
                      model_check=not args.no_model_check,
                      resume_cmd=f"tilewise tune {args.model} --log {log_path} --resume"
                                 + (f" --cluster {args.cluster}" if args.cluster else "")
                                 + (f" --targets {args.targets}" if args.targets != "this" else ""))


def tune_model(graph, tasks, log_path: str, *, title: str, tuner: str = "xgb", n_trials: int | None = None,
               time_budget: float | None = None, max_tasks: int | None = None, shared_logs: bool = True,
               repeat: int = 3, min_repeat_ms: float = 10.0, builders: int = 2, seed: int = 0,
               cluster: str | None = None, all_targets: bool = False, resume_cmd: str | None = None,
               algorithms: str = "all", model_check: bool = False) -> int:
    """Tune the tasks (frontends.tasks.ModelTask list) into log_path; prints progress and the table.

    time_budget is in seconds.  With `cluster` (a Dask scheduler's address) the model's tasks are
    measured on its workers, for this CPU or (all_targets) for every ISA its workers advertise, the
    targets tuned at once.  Returns the exit code (130 when interrupted).  Shared by `tune` and `demo`.
    With `model_check` (a local run), the tuned model is then checked against the untuned one
    (tune_check.py).
    """
    import autotune
    from te.target import host

    from ..ceilings import ceilings
    option = autotune.measure_option(n_parallel=builders, repeat=repeat, min_repeat_ms=min_repeat_ms)
    board = _Board()
    common = dict(title=title, tuner=tuner, n_trials=n_trials, time_budget=time_budget, max_tasks=max_tasks,
                  shared_logs=shared_logs, seed=seed, board=board, log_path=log_path)
    if cluster is None:
        run = _Run(host(), tasks, autotune.Measurer(option), peak=ceilings().peak_gflops, **common)
        code = _finish([run], [run.tune()], log_path, resume_cmd)
        if model_check and code == 0 and run.sched.trials_this_run:     # something new to judge
            _model_check(graph, log_path, run.sched)
        return code
    from autotune import cluster as cl
    try:
        client, _ = cl.connect(cluster)
    except cl.ClusterError as e:
        raise CLIError(f"--cluster {cluster}: {e}") from None
    try:
        targets = _cluster_targets(client, cluster, all_targets)
        say(f"Dask cluster {cluster}: {len(client.scheduler_info(n_workers=-1).get('workers', {}))} worker(s); "
            f"dashboard {client.dashboard_link or '(none)'}")
        here = host().isa
        runs = []
        timers = cl.timing_workers(client).values()
        for t in targets:
            ts = model_tasks(graph, t, algorithms)        # with the target's own thread count
            n = sum(1 for w in timers if cl.isa_resource(t.isa) in (w.get("resources") or {}))
            # rounds of 2 trials per timing machine: a round of 8 leaves more than 4 machines idle
            # (bench/cluster_sim.py); the tuner refits less often per trial for it
            runs.append(_Run(t, ts, autotune.Measurer(autotune.measure_option(**{**vars(option), "cluster": client})),
                             peak=ceilings().peak_gflops if t.isa == here else 0.0, round_trials=max(8, 2 * n),
                             label=isa_tag(t.isa) if len(targets) > 1 else "", **common))
        return _finish(runs, _tune_all(runs), log_path, resume_cmd)
    finally:
        client.close()


def _cluster_targets(client, cluster: str, all_targets: bool) -> list:
    """The targets to tune for: this CPU's (as its workers report it), or every ISA's in the cluster."""
    from autotune.cluster import cluster_targets, isa_resource
    from te.target import host
    found = cluster_targets(client)
    if not found:
        raise CLIError(f"--cluster {cluster}: no worker advertises a CPU (isa:<key> resource); start "
                       f"`tilewise worker {cluster}` on each machine to tune for")
    if all_targets:
        return [found[k] for k in sorted(found)]
    here = host().isa
    if here not in found:
        raise CLIError(f"--cluster {cluster}: no worker advertises {isa_resource(here)} (this CPU: "
                       f"{isa_tag(here)}); the workers' CPUs are {', '.join(sorted(map(isa_tag, found)))}: "
                       "tune for them with --targets all-in-cluster, or start `tilewise worker` on a machine like this one")
    return [found[here]]


def _tune_all(runs: list) -> list[bool]:
    """Tune the runs at once (a thread each); Ctrl-C stops them all after their batch in flight."""
    if len(runs) == 1:
        return [runs[0].tune()]
    results: dict[int, bool] = {}
    errors: list[Exception] = []

    def tune(k: int, run) -> None:
        try:
            results[k] = run.tune()
        except Exception as e:          # raised again in the main thread, which turns it into one line
            errors.append(e)
            for r in runs:
                r.sched.stopped = True

    threads = [threading.Thread(target=tune, args=(k, r), daemon=True) for k, r in enumerate(runs)]
    for th in threads:
        th.start()
    try:
        for th in threads:
            while th.is_alive():
                th.join(0.5)
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)     # a second Ctrl-C must not cut the clean-up short
        for r in runs:
            r.interrupted = True
            r.sched.stopped = True
        for th in threads:
            th.join()
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if errors:
        raise errors[0]
    return [results.get(k, True) for k in range(len(runs))]


def _finish(runs: list, interrupted: list[bool], log_path: str, resume_cmd: str | None) -> int:
    """Each run's report; the exit code (130 if any was interrupted)."""
    lost = ""
    for r, stopped in zip(runs, interrupted):
        if len(runs) > 1:
            say("")
            say(f"== {r.target.cpu} ({isa_tag(r.target.isa)}) ==")
        report(r.sched, r.peak, r.seconds, log_path, stopped or r.interrupted, resume_cmd if len(runs) == 1 else None)
        lost = lost or getattr(r.measurer, "failure", "")
    if lost:
        raise CLIError(f"{lost}; continue with:  {resume_cmd}")
    if any(interrupted) and len(runs) > 1 and resume_cmd:
        say(f"continue with:  {resume_cmd}")
    return 130 if any(interrupted) else 0


class _Run:
    """The tuning of one target: its tasks, measurer, scheduler and progress lines."""

    def __init__(self, target, tasks, measurer, *, title: str, tuner: str, n_trials, time_budget, max_tasks,
                 shared_logs: bool, seed: int, board, log_path: str, peak: float, label: str = "",
                 round_trials: int | None = None):
        import autotune
        from autotune.call_timing import llc_share
        from autotune.scheduler import TaskScheduler
        self.target, self.measurer, self.peak = target, measurer, peak
        self.n_trials, self.time_budget = n_trials, time_budget
        self.interrupted, self.seconds = False, 0.0
        isa = target.isa
        all_tasks = tasks
        if max_tasks:
            tasks = tasks[:max_tasks]
        # a kernel's alternatives (direct, GEMM, Winograd...) compute the same thing: count it once
        total_flops = sum({t.workload: t.total_flops for t in reversed(all_tasks)}.values())
        say(f"{title}: {len(all_tasks)} tuning task(s), {fmt_flops(total_flops)} per run in them"
            + (f"; tuning the {len(tasks)} heaviest" if len(tasks) < len(all_tasks) else ""))
        budget = (f"{n_trials} trials" if n_trials is not None else "") + \
                 (" or " if n_trials is not None and time_budget else "") + \
                 (f"{fmt_duration(time_budget)}" if time_budget else "")
        where = "on the cluster" if hasattr(measurer, "workers_state") else ""
        say(f"CPU {target.cpu} ({isa_tag(isa)}), " + (f"peak {peak:.0f} GFLOP/s; " if peak else "")
            + f"budget {budget}; tuner {tuner}; log {log_path}" + (f"; measured {where}" if where else ""))
        weights = max((getattr(t.task, "model_weight_bytes", 0) for t in tasks), default=0)
        cold = getattr(getattr(measurer, "option", None), "cold_weights", True)
        if cold and weights > llc_share(target):
            say(f"the model's weights ({weights / 2**20:.0f} MiB) outgrow the cores' L3 share "
                f"({llc_share(target) / 2**20:.0f} MiB): each candidate reads its weight behind as many bytes of "
                "copies, as the model meets it")
        seeds = {}
        if shared_logs:
            sel = gather_logs([], True, isa)
            for t in tasks:
                r = sel.best_for(t.task.workload_key)
                if r is not None:
                    seeds[t.task.workload_key] = [r.config]
            if seeds:
                say(f"shared logs ({', '.join(os.path.basename(p) for p in sel.paths)}): the best known "
                    f"configs of {len(seeds)} task(s) are measured first")
        self.progress = _Progress(n_trials, time_budget, board, label, measurer)
        self.sched = TaskScheduler([(t.task, t.count, t.workload) for t in tasks], tuner=tuner, measurer=measurer,
                                   callbacks=[_SharedLog(log_path), self.progress], seeds=seeds,
                                   seed=seed, task_patience=TASK_PATIENCE, round_trials=round_trials)
        self.progress.sched = self.sched
        if hasattr(measurer, "on_failure"):     # a lost cluster scheduler ends the run (the log holds the rest)
            measurer.on_failure = lambda: setattr(self.sched, "stopped", True)
        resumed = self.sched.total_trials
        if resumed:
            say(f"resumed: {resumed} trial(s) already in {log_path} are not measured again")
        if n_trials is not None and resumed >= n_trials:
            say(f"the log already holds {resumed} trial(s) of these tasks, the whole budget of {n_trials}; "
                "raise --trials to tune further")

    def tune(self) -> bool:
        """Run the scheduler; True if interrupted (Ctrl-C)."""
        interrupted = False
        t0 = time.time()
        try:
            if self.n_trials is None or self.sched.total_trials < self.n_trials:
                self.sched.tune(n_trials=self.n_trials, time_budget=self.time_budget)
        except KeyboardInterrupt:
            interrupted = True
            signal.signal(signal.SIGINT, signal.SIG_IGN)     # a second Ctrl-C must not cut the clean-up short
        finally:
            self.progress.board.clear()
            self.measurer.close()
        if interrupted:
            signal.signal(signal.SIGINT, signal.default_int_handler)
        self.seconds = time.time() - t0
        return interrupted


class _SharedLog:
    """log_to_file for runs that write one log from several threads: one batch at a time."""
    lock = threading.Lock()

    def __init__(self, path: str):
        import autotune
        self.log = autotune.log_to_file(path)
        self.history_path = self.log.history_path         # the scheduler resumes from it

    def __call__(self, tuner, indices, records) -> None:
        with self.lock:
            self.log(tuner, indices, records)


class _Board:
    """The status lines of every run, drawn together (runs update it from their threads)."""

    def __init__(self):
        self.status = Status()
        self.lines: dict[str, tuple] = {}
        self.lock = threading.Lock()

    def update(self, key: str, *lines: str) -> None:
        with self.lock:
            self.lines[key] = lines
            # on a terminal every run's lines are redrawn; in a log file, only the lines that changed
            shown = [ln for ls in self.lines.values() for ln in ls] if self.status.tty else lines
            self.status.update(*shown, force=True)

    def clear(self) -> None:
        with self.lock:
            self.status.clear()


class _Progress:
    """Scheduler callback: an overall bar and a bar for the task being tuned (and the cluster's workers)."""

    def __init__(self, n_trials: int | None, time_budget: float | None, board: _Board, label: str = "",
                 measurer=None):
        self.n_trials, self.time_budget = n_trials, time_budget
        self.board, self.label, self.measurer = board, label, measurer
        self.sched = None
        self.errors = 0
        self.t0 = time.time()
        self.start_trials = 0
        self.default_est = None

    def schedule_start(self, sched) -> None:
        self.t0 = time.time()
        self.start_trials = sched.total_trials
        self.board.update(self.label, f"{self._prefix}tuning {len(sched.states)} task(s)...")

    def schedule_finish(self, sched) -> None:
        pass

    def __call__(self, tuner, indices, records) -> None:
        s = self.sched
        self.errors += sum(1 for r in records if not r.ok)
        el = time.time() - self.t0
        done = s.total_trials
        if self.n_trials is not None:
            frac_total = (self.n_trials, done)
            left_frac = (self.n_trials - done) / max(1, done - self.start_trials)
        else:
            frac_total = (self.time_budget, el)
            left_frac = (self.time_budget - el) / max(el, 1e-9)
        if self.time_budget and self.n_trials is not None:
            left_frac = min(left_frac, (self.time_budget - el) / max(el, 1e-9))
        eta = max(0.0, el * left_frac)
        total, cur = frac_total
        k = next(i for i, st in enumerate(s.states) if st.tuner is tuner)
        st = s.states[k]
        est = s.estimated_time()
        overall = (f"overall {bar(cur, total)} {done}/{self.n_trials} trials" if self.n_trials is not None
                   else f"overall {bar(cur, total)} {done} trials")
        overall += (f" | est. model time {fmt_time(est)} | errors {self.errors} | {fmt_duration(el)} elapsed,"
                    f" ETA {fmt_duration(eta)}")
        share = st.weight * st.best_cost / est if est > 0 and math.isfinite(st.best_cost) else math.nan
        what = "final check of" if s.checking else "task"
        task = (f"{what} {k + 1}/{len(s.states)} {task_label(st.task.name, st.task.args)} "
                f"{bar(st.trials, max(1, self.n_trials or done), 10)} {st.trials} trials, "
                f"best {st.best_flops / 1e9:.1f} GFLOP/s, "
                f"{fmt_num(100 * share, 0, '%')} of model time")
        lines = [self._prefix + overall, self._prefix + task]
        workers = getattr(self.measurer, "workers_state", None)
        if workers:
            lines.append(f"{self._prefix}cluster: {workers()}")
        self.board.update(self.label, *lines)

    @property
    def _prefix(self) -> str:
        return f"[{self.label}] " if self.label else ""


def _model_check(graph, log_path: str, sched) -> None:
    """Run the model check (tune_check.py) and report it beside the tuner's estimate."""
    from .tune_check import check_model_isolated
    if graph.batch is not None:
        note("tilewise: note: model check skipped: the model has a dynamic batch")
        return
    default_total, tuned_total, _ = estimated_times(sched.summary())
    say("")
    say("model check: building the model untuned and with the log, timing the kernels the log changed...")
    try:
        mc = check_model_isolated(graph, log_path)
    except Exception as e:          # the log holds every record: the check is a verdict, not the result
        note(f"tilewise: note: model check failed ({type(e).__name__}: {e}); the log is complete")
        return
    report_model_check(mc, (default_total, tuned_total))
    say(f"model check: the tuned kernels timed in the model saved {signed_time(mc.kernel_saving)} per run; "
        f"{mc.records} in-model record(s) appended to {log_path}")
