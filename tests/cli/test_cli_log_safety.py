"""The command line against hostile tuning logs and options: bad lines are skipped and counted,
files that are not logs are refused before anything is written, numeric options are bounded."""
from __future__ import annotations

import json
import os

import pytest

from ..tiny_models import fake_records, write_log
from .cli_helpers import one_line_error


def hostile_lines(good: str) -> list[str]:
    """The probe's lines, each built from a good record of the tiny model."""
    d = json.loads(good)
    split = next(k for k, v in d["config"].items() if isinstance(v, list))

    def with_(**kv):
        return json.dumps({**d, **kv})
    return [with_(config={**d["config"], split: 5}), with_(config={**d["config"], split: [-1, None]}),
            with_(timestamp="yesterday"), with_(isa=["x86_64"]), "[" * 200_000 + "]" * 200_000,
            with_(workload='["matmul",[1,1e12,1e12,"float32"]]'), with_(target="cuda -arch=sm_80")]


@pytest.fixture
def hostile_log(tiny_log, tmp_path) -> str:
    lines = open(tiny_log).read().splitlines()
    p = tmp_path / "hostile.jsonl"
    p.write_text("\n".join(lines + hostile_lines(lines[1])) + "\n")
    return str(p)


def test_logs_stats_skips_and_counts_hostile_lines(cli, hostile_log):
    r = cli("logs", "stats", hostile_log, timeout=120)
    assert r.code == 0, r.text
    assert "Traceback" not in r.text
    row = next(ln for ln in r.out.splitlines() if ln.startswith(hostile_log))
    assert row.split()[1:3] == ["5", "7"]           # 5 records, 7 bad lines


def test_build_skips_hostile_lines_of_a_given_log(cli, tiny_onnx, hostile_log, tmp_path):
    r = cli("build", tiny_onnx, "-o", tmp_path / "m.so", "--log", hostile_log, "--no-shared-logs", timeout=300)
    assert r.code == 0, r.text
    assert "7 bad line(s) skipped" in r.out and "Traceback" not in r.text


def test_build_skips_a_hostile_shared_log(cli, tiny_onnx, hostile_log, tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    os.replace(hostile_log, shared / "hostile.jsonl")
    r = cli("logs", "show", shared / "hostile.jsonl")       # readable by hand, bad lines said
    assert r.code == 0, r.text
    r = cli("build", tiny_onnx, "-o", tmp_path / "m.so", env={"TILEWISE_LOGS": str(shared)}, timeout=300)
    assert r.code == 0, r.text
    assert "hostile.jsonl" in r.err and "Traceback" not in r.text


def test_merge_into_one_of_its_inputs_is_refused(cli, tiny_onnx, tmp_path):
    p = write_log(tmp_path / "good.jsonl", fake_records(tiny_onnx) * 8)
    before = open(p).read()
    line = one_line_error(cli("logs", "merge", p, "-o", p))
    assert "also an input" in line
    assert open(p).read() == before
    assert "must not be one of the inputs" in " ".join(cli("logs", "merge", "--help").out.split())


def test_merge_never_overwrites_a_file_that_is_not_a_log(cli, tiny_log, tiny_onnx, tmp_path):
    target = tmp_path / "copy.onnx"
    target.write_bytes(open(tiny_onnx, "rb").read())
    line = one_line_error(cli("logs", "merge", tiny_log, "-o", target))
    assert "not a tuning log" in line
    assert target.read_bytes() == open(tiny_onnx, "rb").read()


def test_tune_refuses_a_log_that_is_not_a_tuning_log(cli, tiny_onnx, tmp_path):
    model = tmp_path / "m.onnx"
    model.write_bytes(open(tiny_onnx, "rb").read())
    line = one_line_error(cli("tune", model, "--log", model, "--resume", "--trials", "1"))
    assert "not a tuning log" in line
    assert model.read_bytes() == open(tiny_onnx, "rb").read()


@pytest.mark.parametrize("kind", ["device", "fifo", "folder"])
def test_tune_and_logs_refuse_a_log_that_is_not_a_regular_file(cli, tiny_onnx, tmp_path, kind):
    path = {"device": "/dev/full", "fifo": tmp_path / "f.jsonl", "folder": tmp_path}[kind]
    if kind == "fifo":
        os.mkfifo(path)
    line = one_line_error(cli("tune", tiny_onnx, "--log", path, "--resume", "--trials", "1", timeout=60))
    assert "regular file" in line or "folder" in line
    line = one_line_error(cli("logs", "stats", path, timeout=60))
    assert "regular file" in line or "folder" in line


@pytest.mark.parametrize("args, says", [
    (["--builders", "100000"], "--builders"),
    (["--time-budget", "inf"], "--time-budget"),
    (["--min-repeat-ms", "nan"], "--min-repeat-ms"),
    (["--repeat", "0"], "--repeat"),
    (["--repeat", "1000000"], "--repeat"),
])
def test_tune_numeric_options_are_bounded(cli, tiny_onnx, args, says):
    r = cli("tune", tiny_onnx, *args)
    assert r.code == 2 and "Traceback" not in r.text
    assert says in r.err.splitlines()[-1]


def test_tune_timing_that_cannot_fit_the_run_timeout(cli, tiny_onnx, tmp_path):
    line = one_line_error(cli("tune", tiny_onnx, "--log", tmp_path / "t.jsonl", "--repeat", "3",
                              "--min-repeat-ms", "6000"))
    assert "--min-repeat-ms" in line and "timeout" in line
