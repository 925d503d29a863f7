"""Fixtures for the command-line tests: run `python -m tilewise` as a user would, on tiny models."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from ..tiny_models import fake_records, write_log
from .cli_helpers import Result, run_cli

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="session")
def cli_env(tmp_path_factory) -> dict:
    """The environment of every command: its own cache (with the machine ceilings filled in), no
    user log folders, one thread (timings on a busy 2-core machine are steadier that way)."""
    cache = tmp_path_factory.mktemp("cache")
    env = dict(os.environ)
    env.pop("TILEWISE_LOGS", None)
    path = os.pathsep.join(p for p in (REPO, env.get("PYTHONPATH", "")) if p)
    env.update(TILEWISE_CACHE_DIR=str(cache), TILEWISE_NUM_THREADS="1", PYTHONPATH=path,
               PYTHONUNBUFFERED="1", COLUMNS="200")
    # pretend the machine was measured already, so only test_cli_info pays for the measurement
    from te.machine import PEAK_KERNEL
    from te.target import host
    (cache / "machine.json").write_text(json.dumps({host().isa: {
        "cpu": host().cpu, "peak_gflops": {"1": 100.0, "2": 200.0}, "bandwidth_gbs": 20.0,
        "measured_at": time.time(), "peak_kernel": PEAK_KERNEL}}))
    return env


@pytest.fixture
def cli(cli_env, tmp_path):
    """cli(*args, env=None, timeout=...) -> Result: `python -m tilewise ARGS` run in a fresh folder."""
    def run(*args, env: dict | None = None, timeout: float = 300, cwd=None) -> Result:
        return run_cli(cli_env, cwd or tmp_path, *args, env=env, timeout=timeout)
    return run


@pytest.fixture(scope="session")
def tiny_log(tiny_onnx, tmp_path_factory) -> str:
    """A valid log for the tiny model on this CPU (5 records, 1 of them an error)."""
    return write_log(tmp_path_factory.mktemp("logs") / "tiny.jsonl", fake_records(tiny_onnx))


@pytest.fixture(scope="session")
def tiny_so(tiny_onnx, tiny_log, tmp_path_factory, cli_env) -> str:
    """The tiny model built into a library (by the command line)."""
    out = tmp_path_factory.mktemp("libs") / "tiny.so"
    p = subprocess.run([sys.executable, "-m", "tilewise", "build", tiny_onnx, "-o", str(out), "--log", tiny_log],
                       env=cli_env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    return str(out)


@pytest.fixture(scope="session")
def tuned_tiny(cli_env, tiny_onnx, tmp_path_factory) -> tuple[Result, str]:
    """(result, log) of one `tilewise tune --trials 7` of the tiny model (random tuner, short
    timings, its model check at the end), shared by the tests of its table, of --resume on a
    complete budget and of the model check: a tuning run each cost 4-6 s."""
    folder = tmp_path_factory.mktemp("tuned")
    log = folder / "t.jsonl"
    r = run_cli(cli_env, folder, "tune", tiny_onnx, "--trials", "7", "--log", log, "--no-shared-logs",
                "--tuner", "random", "--repeat", "1", "--min-repeat-ms", "2")
    assert r.code == 0, r.err
    return r, str(log)
