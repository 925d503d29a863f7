"""tilewise tune: the budget, the table, Ctrl-C and --resume; and tilewise demo, kept short."""
from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time

FAST = ["--tuner", "random", "--repeat", "1", "--min-repeat-ms", "2"]


def _configs(log) -> list[tuple[str, str]]:
    out = []
    for line in open(log):
        d = json.loads(line)
        out.append((d["workload"], json.dumps(d["config"], sort_keys=True)))
    return out


def test_tune_spends_the_budget_and_prints_the_table(tuned_tiny, tiny_onnx):
    r, log = tuned_tiny
    header = next(ln for ln in r.out.splitlines() if ln.startswith("#"))
    for col in ("task", "occurrences", "trials", "best GFLOP/s", "% of peak", "share of model time",
                "speed-up vs default"):
        assert col in header
    # a task per implementation of each conv: the direct 3x3 and its Winograd F(4x4) and F(2x2),
    # the 1x1 GEMM and the direct 1x1; the build keeps the fastest of each
    rows = [ln for ln in r.out.splitlines() if ln[:1].isdigit() and "conv2d" in ln]
    assert len(rows) == 5 and sum("(winograd" in ln for ln in rows) == 2
    configs = _configs(log)
    assert len(set(configs)) == 7                  # 7 configs measured, then the final check re-times some
    assert len(configs) > 7 and "final check" in r.out
    assert "overall [" in r.err and "task 1/5" in r.err          # the progress bars
    # every task starts with its default config measured (the defaults of the command's one thread)
    import dataclasses

    import frontends
    from frontends.tasks import extract_tasks
    from te.target import host
    one_thread = dataclasses.replace(host(), threads=1)
    for mt in extract_tasks(frontends.from_onnx(tiny_onnx), target=one_thread):
        default = json.dumps(mt.task.config_space.get(mt.task.config_space.default_index()).to_json(), sort_keys=True)
        assert (mt.task.workload_key, default) in configs


def test_time_budget(cli, tiny_onnx, tmp_path):
    t = time.time()
    r = cli("tune", tiny_onnx, "--time-budget", "0.03", "--log", tmp_path / "t.jsonl", "--no-shared-logs", *FAST)
    assert r.code == 0, r.err
    assert "budget 2s" in r.out and time.time() - t < 60
    assert len(_configs(tmp_path / "t.jsonl")) >= 1


def test_ctrl_c_keeps_every_record_and_resume_does_not_measure_again(cli, cli_env, tiny_onnx, tmp_path):
    log = tmp_path / "t.jsonl"
    # each candidate timed for at least 40 ms: the tiny model's whole run (about 70 trials before
    # its tasks stop improving) then lasts seconds, so Ctrl-C lands while it is still tuning
    # (with FAST's 2 ms one CI run exited 0 at its final check: the signal came too late)
    slow = FAST[:-1] + ["40"]
    cmd = [sys.executable, "-m", "tilewise", "tune", tiny_onnx, "--trials", "200", "--log", str(log),
           "--no-shared-logs", *slow]
    # a job started in the background by a non-interactive shell (as CI may start the tests)
    # inherits SIGINT ignored, and so would `tilewise tune`: give it the default disposition, as a
    # terminal's Ctrl-C finds it
    p = subprocess.Popen(cmd, cwd=tmp_path, env=cli_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.time() + 120
        while not (log.exists() and log.stat().st_size > 0):
            assert p.poll() is None, p.communicate()
            assert time.time() < deadline, "no batch was logged"
            time.sleep(0.05)
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 130, (out, err)
    assert "Traceback" not in out + err
    assert "interrupted after" in out and "--resume" in out
    before = _configs(log)
    assert 1 <= len(before) < 200
    assert all(len(ln) > 0 and ln.endswith("}") for ln in open(log).read().splitlines())

    n = len(before) + 5
    r = cli("tune", tiny_onnx, "--trials", n, "--log", log, "--resume", "--no-shared-logs", *FAST)
    assert r.code == 0, r.err
    assert f"resumed: {len(before)} trial(s)" in r.out
    after = _configs(log)
    assert after[:len(before)] == before
    assert len(set(after)) == n                 # nothing measured twice but by the final check


def test_resume_of_a_complete_budget_measures_nothing(cli, tuned_tiny, tiny_onnx, tmp_path):
    log = tmp_path / "t.jsonl"
    shutil.copy(tuned_tiny[1], log)
    size = os.path.getsize(log)
    r = cli("tune", tiny_onnx, "--trials", "7", "--log", log, "--resume", "--no-shared-logs", *FAST)
    assert r.code == 0, r.err
    assert "whole budget" in r.out and os.path.getsize(log) == size


def test_shared_logs_seed_the_first_round(cli, tiny_onnx, tiny_log, tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "tiny.jsonl").write_text(open(tiny_log).read())
    log = tmp_path / "t.jsonl"
    r = cli("tune", tiny_onnx, "--trials", "8", "--log", log, *FAST, env={"TILEWISE_LOGS": str(shared)})
    assert r.code == 0, r.err
    assert "shared logs" in r.out and "measured first" in r.out
    seeded = {(rec.workload, json.dumps(rec.config, sort_keys=True))
              for rec in _records(tiny_log) if rec.ok and min(rec.costs) == 1e-5}
    assert seeded <= set(_configs(log))


def _records(path):
    from autotune import load_records
    return load_records(path)


def test_demo_on_a_given_model_is_short_with_few_trials(cli, tiny_onnx, tmp_path):
    r = cli("demo", tiny_onnx, "--trials", "4", "--repeat", "2", "--tuner", "random", "--log", tmp_path / "d.jsonl")
    assert r.code == 0, r.err
    for what in ("untuned", "tuned vs untuned", "ONNX Runtime", "speed-up", "outputs agree with ONNX Runtime",
                 "int8 (tilewise quantize)", "ONNX Runtime int8 (the same model)", "int8 vs ONNX Runtime int8"):
        assert what in r.out
    assert len(set(_configs(tmp_path / "d.jsonl"))) == 4


def test_demo_with_no_arguments_builds_the_builtin_model(cli):
    # the command as the README gives it, cut short by --trials (and without the int8 rows, which the
    # test above checks on a small model)
    r = cli("demo", "--trials", "4", "--repeat", "2", "--tuner", "random", "--max-tasks", "2", "--no-int8")
    assert r.code == 0, r.err
    assert "demo model: squeezenet" in r.out
    assert "tuned vs untuned" in r.out and "tuned vs ONNX Runtime" in r.out
    # no int8 rows (the shared logs' file names may say int8: squeezenet_int8.jsonl ships)
    assert "int8 (tilewise quantize)" not in r.out and "int8 vs ONNX Runtime int8" not in r.out


def test_stopped_tasks_are_said_in_one_line_per_reason():
    from tilewise.commands.tune_report import _ranges
    assert _ranges([1, 2, 3, 5, 7, 8]) == "1-3, 5, 7-8"
    assert _ranges([4]) == "4"


def test_the_estimate_counts_each_kernel_once_over_its_alternatives(monkeypatch):
    """Two implementations of one kernel (a group) and a kernel of its own: the untuned estimate
    is the preferred alternative's default, the tuned one the fastest alternative's best."""
    from types import SimpleNamespace

    from autotune.scheduler import TaskSummary
    from tilewise.commands import tune_report
    said = []
    monkeypatch.setattr(tune_report, "say", said.append)
    task = SimpleNamespace(name="conv2d_nchw", args=(), flops=1e9)
    rows = [TaskSummary(task, 1, 8, 2e9, 1e9, 0.5, 0.5, "", group="k1"),     # default 1 s, best 0.5 s
            TaskSummary(task, 1, 8, 4e9, 5e8, 0.25, 0.25, "", group="k1"),    # best 0.25 s
            TaskSummary(task, 2, 8, 1e9, 1e9, 2.0, 0.5, "", group=None)]      # 2 calls of 1 s
    sched = SimpleNamespace(summary=lambda: rows, trials_this_run=24, total_trials=24, checked=0)
    tune_report.report(sched, 100.0, 1.0, "x.jsonl", False, None)
    line = next(s for s in said if s.startswith("estimated time"))
    assert "2.25 s per run, 3.00 s with default schedules (1.33x)" in line, line


def test_the_estimate_counts_no_gain_the_build_takes_as_a_tie():
    """A best config within the records' tie margin of its default (autotune.ranking.check_score)
    is not what a build with the log runs: the estimate keeps the default there."""
    from types import SimpleNamespace

    from autotune.ranking import DEFAULT_MARGIN
    from autotune.scheduler import TaskSummary
    from tilewise.commands.tune_report import estimated_times
    task = SimpleNamespace(name="conv2d_nchw", args=(), flops=1e9)
    tie = 1e9 * (1 + DEFAULT_MARGIN / 2)
    rows = [TaskSummary(task, 1, 8, tie, 1e9, 1.0, 1.0, "", group=None),                 # a tie: 1 s
            TaskSummary(task, 1, 8, 2e9, 1e9, 1.0, 1.0, "", group=None),                 # a gain: 0.5 s
            TaskSummary(task, 1, 8, 1e9, 1e9, 1.0, 1.0, "", group="k"),                  # preferred: 1 s
            TaskSummary(task, 1, 8, tie, 1e9, 1.0, 1.0, "", group="k")]      # another implementation's tie
    default, tuned, complete = estimated_times(rows)
    assert complete and math.isclose(default, 3.0) and math.isclose(tuned, 2.5)


def test_auto_schedule_takes_all_but_not_the_model_as_its_value():
    from tilewise.cli import _bare_auto_schedule, build_parser
    parse = lambda *a: build_parser().parse_args(_bare_auto_schedule(list(a)))     # noqa: E731
    assert parse("tune", "--auto-schedule", "m.onnx").auto_schedule == "rest"
    assert parse("tune", "m.onnx", "--auto-schedule").auto_schedule == "rest"
    args = parse("tune", "--auto-schedule", "all", "m.onnx")
    assert (args.auto_schedule, args.model) == ("all", "m.onnx")
    assert parse("tune", "m.onnx").auto_schedule is None
