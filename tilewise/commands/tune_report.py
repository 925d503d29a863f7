"""tilewise tune's report: the table and lines printed after tuning, and the model check's verdict.

Kept apart from the tuning run (tune.py) so that `check-log` prints the same verdict lines without
the tuner, and so the tests check the figures of the report on a scheduler's summary rows alone."""
from __future__ import annotations

import math

from ..common import fmt_duration, fmt_num, fmt_time, say, table, task_label


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


def estimated_times(rows) -> tuple[float, float, bool]:
    """(time in the tuned kernels per run with default schedules, with the best, whether every
    kernel has both figures) from the scheduler's summary rows."""
    default_total = tuned_total = 0.0
    complete = True
    kernels: dict[object, list] = {}         # a kernel's alternatives (one row each) under one key
    for k, r in enumerate(rows):
        kernels.setdefault(("task", k) if r.group is None else r.group, []).append(r)
    for alts in kernels.values():
        # an untuned build runs the first (preferred) alternative's default; a tuned one the fastest
        # of what it would run of each alternative: its best config where that beat the
        # alternative's default by more than the records' tie margin, else the default (a smaller
        # gain is a tie the build does not take: autotune.ranking.check_score)
        first = alts[0]
        tuned = [r.weight * r.task.flops / _taken_flops(r) for r in alts if r.best_flops > 0]
        if first.default_flops > 0 and tuned:
            default_total += first.weight * first.task.flops / first.default_flops
            tuned_total += min(tuned)
        else:
            complete = False
    return default_total, tuned_total, complete


def _taken_flops(r) -> float:
    """The FLOP/s of the config a build with the log runs for one alternative (a summary row)."""
    from autotune.ranking import DEFAULT_MARGIN
    ties = r.default_flops > 0 and r.best_flops <= r.default_flops * (1 + DEFAULT_MARGIN)
    return r.default_flops if ties else r.best_flops


AFTER_CHECK = "their records now say so, and a build with the log takes the faster kernel"


def report_model_check(mc, estimate: tuple[float, float] | None = None, then: str = AFTER_CHECK) -> None:
    """The model check's verdict (tune_check.ModelCheck) in lines of the report; with the tuner's
    `estimate` (seconds per run in the tuned kernels with default schedules, with the best) beside it;
    `then`: what follows for the kernels that ran slower."""
    from .tune_check import projected_gain
    passes = f" (judged in {mc.passes} build(s) with the log)" if mc.passes > 1 else ""
    if mc.slower:
        say(f"model check: {len(mc.slower)} of {mc.kernels} tuned kernel(s) ran slower in the model than untuned "
            f"({', '.join(mc.slower[:6])}{', ...' if len(mc.slower) > 6 else ''}){passes}; {then}")
    else:
        say(f"model check: none of the {mc.kernels} tuned kernel(s) ran slower in the model than untuned{passes}")
    line = (f"model: {fmt_time(mc.untuned)} per run untuned, {fmt_time(mc.tuned)} tuned ({mc.gain:.2f}x, saving "
            f"{signed_time(mc.untuned - mc.tuned)}")
    if estimate is None:
        say(line + ")")
        return
    default_total, tuned_total = estimate
    est = default_total / tuned_total if tuned_total > 0 else math.nan
    saving = default_total - tuned_total
    proj = projected_gain(mc.untuned, saving)
    if math.isfinite(proj):
        projected = f": {proj:.2f}x projected on the model"
        if proj > 1.001:
            projected += f"; {round(100 * (mc.gain - 1) / (proj - 1))}% of the projected gain"
    else:       # timed while the machine was busy: the tuner's figures and the model's disagree wholly
        projected = ", more than the untuned model takes"
    say(line + f"; the tuner estimated {est:.2f}x over its kernels, saving {signed_time(saving)}{projected})")


def signed_time(seconds: float) -> str:
    """fmt_time of a saving that may be negative (a loss)."""
    return ("-" if seconds < 0 else "") + fmt_time(abs(seconds))


def report(sched, peak: float, seconds: float, log_path: str, interrupted: bool, resume_cmd: str | None) -> None:
    """The table of a tuning run (per task: trials, best, % of peak, share, speed-up) and the lines after it."""
    rows = sched.summary()
    out = []
    for k, r in enumerate(rows):
        gf = r.best_flops / 1e9
        out.append([k + 1, task_label(r.task.name, r.task.args), int(r.weight), r.trials,
                    fmt_num(gf, 1) if r.best_flops else "-",
                    fmt_num(100 * gf / peak, 1, "%") if r.best_flops and peak else "-",
                    fmt_num(100 * r.share, 1, "%"),
                    fmt_num(r.speedup, 2, "x")])
    default_total, tuned_total, complete = estimated_times(rows)
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
