"""tilewise tune: tune a model's tasks with one budget, spent where the model spends its time."""
from __future__ import annotations

import math
import os
import signal
import time

from . import add_parser
from ..common import (CLIError, fmt_duration, fmt_flops, fmt_num, fmt_time, gather_logs, isa_tag, load_graph,
                      model_tasks, note, say, table, task_label)
from ..progress import Status, bar

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
default schedule.  Then build the model with the log:  tilewise build MODEL -o model.so --log LOG"""

EXAMPLES = """\
  tilewise tune resnet50.onnx --trials 2000 --log resnet50.jsonl
  tilewise tune resnet50.onnx --time-budget 30 --log resnet50.jsonl   # 30 minutes
  tilewise tune resnet50.onnx --log resnet50.jsonl --resume           # continue after Ctrl-C
  tilewise tune model.onnx --trials 64 --max-tasks 3 --tuner random"""

PER_TASK_DEFAULT = 64

# A task whose best has not improved by 1% in this many rounds (of about 8 trials) is left alone.
# Without it a noisy machine keeps one task "improving" by luck, and that task takes most of the
# trials of a long run while its best creeps up by noise.
TASK_PATIENCE = 16


def _ranges(ks: list[int]) -> str:
    """[1, 2, 3, 5, 7, 8] -> '1-3, 5, 7-8'."""
    out, start = [], None
    for i, k in enumerate(ks):
        if start is None:
            start = k
        if i + 1 == len(ks) or ks[i + 1] != k + 1:
            out.append(str(start) if start == k else f"{start}-{k}")
            start = None
    return ", ".join(out)


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
    p.add_argument("--auto-schedule", action="store_true",
                   help="also tune the kernels without a template (softmax, norms, batched matmuls, "
                        "elementwise chains) with the auto-scheduler")
    p.add_argument("--max-tasks", type=_positive_int, metavar="K", help="tune only the K heaviest tasks")
    p.add_argument("--no-shared-logs", action="store_true", help="do not start from the shared logs")
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
    folder = os.path.dirname(log_path) or "."
    if not os.path.isdir(folder):
        raise CLIError(f"--log {log_path}: the folder {folder} does not exist")
    if not os.access(folder if not os.path.exists(log_path) else log_path, os.W_OK):
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
    tasks = model_tasks(graph, auto_schedule=args.auto_schedule)
    if not tasks:
        raise CLIError(f"{args.model}: no tunable kernels (convolutions or matrix products) in this model")
    n_trials = args.trials
    time_budget = args.time_budget * 60 if args.time_budget else None
    if n_trials is None and time_budget is None:
        n_trials = PER_TASK_DEFAULT * min(len(tasks), args.max_tasks or len(tasks))
    return tune_model(graph, tasks, log_path, title=os.path.basename(args.model), tuner=args.tuner,
                      n_trials=n_trials, time_budget=time_budget, max_tasks=args.max_tasks,
                      shared_logs=not args.no_shared_logs, repeat=args.repeat, min_repeat_ms=args.min_repeat_ms,
                      builders=args.builders, seed=args.seed,
                      resume_cmd=f"tilewise tune {args.model} --log {log_path} --resume")


def tune_model(graph, tasks, log_path: str, *, title: str, tuner: str = "xgb", n_trials: int | None = None,
               time_budget: float | None = None, max_tasks: int | None = None, shared_logs: bool = True,
               repeat: int = 3, min_repeat_ms: float = 10.0, builders: int = 2, seed: int = 0,
               resume_cmd: str | None = None) -> int:
    """Tune the tasks (frontends.tasks.ModelTask list) into log_path; prints progress and the table.

    time_budget is in seconds.  Returns the exit code (130 when interrupted).  Shared by `tune` and `demo`.
    """
    import autotune
    from autotune.scheduler import TaskScheduler
    from te.target import host

    from ..ceilings import ceilings
    isa = host().isa
    all_tasks = tasks
    if max_tasks:
        tasks = tasks[:max_tasks]
    peak = ceilings().peak_gflops
    total_flops = sum(t.total_flops for t in all_tasks)
    say(f"{title}: {len(all_tasks)} tuning task(s), {fmt_flops(total_flops)} per run in them"
        + (f"; tuning the {len(tasks)} heaviest" if len(tasks) < len(all_tasks) else ""))
    budget = (f"{n_trials} trials" if n_trials is not None else "") + \
             (" or " if n_trials is not None and time_budget else "") + \
             (f"{fmt_duration(time_budget)}" if time_budget else "")
    say(f"CPU {host().cpu} ({isa_tag(isa)}), peak {peak:.0f} GFLOP/s; budget {budget}; tuner {tuner}; "
        f"log {log_path}")

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

    option = autotune.measure_option(n_parallel=builders, repeat=repeat, min_repeat_ms=min_repeat_ms)
    measurer = autotune.Measurer(option)
    progress = _Progress(n_trials, time_budget)
    sched = TaskScheduler([(t.task, t.count) for t in tasks], tuner=tuner, measurer=measurer,
                          callbacks=[autotune.log_to_file(log_path), progress], seeds=seeds,
                          seed=seed, task_patience=TASK_PATIENCE)
    progress.sched = sched
    resumed = sched.total_trials
    if resumed:
        say(f"resumed: {resumed} trial(s) already in {log_path} are not measured again")
    if n_trials is not None and resumed >= n_trials:
        say(f"the log already holds {resumed} trial(s) of these tasks, the whole budget of {n_trials}; "
            "raise --trials to tune further")
    interrupted = False
    t0 = time.time()
    try:
        if n_trials is None or resumed < n_trials:
            sched.tune(n_trials=n_trials, time_budget=time_budget)
    except KeyboardInterrupt:
        interrupted = True
        signal.signal(signal.SIGINT, signal.SIG_IGN)     # a second Ctrl-C must not cut the clean-up short
    finally:
        progress.status.clear()
        measurer.close()
    if interrupted:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    _report(sched, peak, time.time() - t0, log_path, interrupted, resume_cmd)
    return 130 if interrupted else 0


class _Progress:
    """Scheduler callback: an overall bar and a bar for the task being tuned."""

    def __init__(self, n_trials: int | None, time_budget: float | None):
        self.n_trials, self.time_budget = n_trials, time_budget
        self.status = Status()
        self.sched = None
        self.errors = 0
        self.t0 = time.time()
        self.start_trials = 0
        self.default_est = None

    def schedule_start(self, sched) -> None:
        self.t0 = time.time()
        self.start_trials = sched.total_trials
        self.status.update(f"tuning {len(sched.states)} task(s)...", force=True)

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
        self.status.update(overall, task, force=True)


def _report(sched, peak: float, seconds: float, log_path: str, interrupted: bool, resume_cmd: str | None) -> None:
    rows = sched.summary()
    out = []
    default_total = tuned_total = 0.0
    complete = True
    for k, r in enumerate(rows):
        gf = r.best_flops / 1e9
        out.append([k + 1, task_label(r.task.name, r.task.args), int(r.weight), r.trials,
                    fmt_num(gf, 1) if r.best_flops else "-",
                    fmt_num(100 * gf / peak, 1, "%") if r.best_flops and peak else "-",
                    fmt_num(100 * r.share, 1, "%"),
                    fmt_num(r.speedup, 2, "x")])
        if r.best_flops > 0 and r.default_flops > 0:
            default_total += r.weight * r.task.flops / r.default_flops
            tuned_total += r.weight * r.task.flops / r.best_flops
        else:
            complete = False
    say("")
    say(table(["#", "task", "occurrences", "trials", "best GFLOP/s", "% of peak", "share of model time",
               "speed-up vs default"], out, "rllrrrrr"))
    say("")
    new = sched.trials_this_run
    say(f"{'interrupted after' if interrupted else 'measured'} {new} new trial(s) in {fmt_duration(seconds)}; "
        f"{sched.total_trials} trial(s) in total; every record is in {log_path}")
    if sched.checked:
        say(f"final check: the default and the best configs of {sched.checked} task(s) timed again side by "
            "side; the figures above judge the configs it re-timed by these timings")
    if tuned_total > 0:
        part = "" if complete else " (tasks with both figures)"
        say(f"estimated time in the tuned kernels{part}: {fmt_time(tuned_total)} per run, "
            f"{fmt_time(default_total)} with default schedules ({default_total / tuned_total:.2f}x)")
    stopped: dict[str, list[int]] = {}         # why -> tasks, one line per reason
    for k, r in enumerate(rows):
        if r.dead and not r.dead.startswith("search space"):
            stopped.setdefault(r.dead, []).append(k + 1)
    for why, ks in stopped.items():
        say(f"{'task' if len(ks) == 1 else 'tasks'} {_ranges(ks)}: {why}"
            + (" (tuning stopped early there)" if why.startswith("no improvement") else ""))
    if interrupted and resume_cmd:
        say(f"continue with:  {resume_cmd}")
