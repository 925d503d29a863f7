"""tilewise worker and tilewise tune --cluster: a scheduler in this process, a worker started as a
user would, a tiny model tuned through them (loopback only)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from .cli_helpers import one_line_error

distributed = pytest.importorskip("distributed")

FAST = ["--tuner", "random", "--repeat", "1", "--min-repeat-ms", "2", "--no-shared-logs"]
QUICK = {"DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "1s"}      # an unreachable scheduler fails fast


@pytest.fixture(scope="module")
def scheduler():
    cluster = distributed.LocalCluster(n_workers=0, host="127.0.0.1", dashboard_address=":0")
    try:
        yield cluster.scheduler_address
    finally:
        cluster.close()


@pytest.fixture(scope="module")
def worker(scheduler, cli_env, tmp_path_factory):
    """`tilewise worker` joined to the scheduler; stopped with SIGTERM at the end (and checked)."""
    out = tmp_path_factory.mktemp("worker") / "out.txt"
    with open(out, "w") as f:
        p = subprocess.Popen([sys.executable, "-m", "tilewise", "worker", scheduler], env=cli_env,
                             stdout=f, stderr=subprocess.STDOUT, text=True)
    from distributed import Client
    with Client(scheduler, timeout=10) as c:
        deadline = time.monotonic() + 60
        while not any(k.startswith("isa:") for w in c.scheduler_info(n_workers=-1)["workers"].values()
                      for k in w["resources"]):
            assert p.poll() is None and time.monotonic() < deadline, out.read_text()
            time.sleep(0.2)
    yield p
    p.send_signal(signal.SIGTERM)
    assert p.wait(30) == 0, out.read_text()
    text = out.read_text()
    assert "joined " + scheduler in text and "stopped" in text and "Traceback" not in text


def test_tune_through_a_cluster_worker(cli, tiny_onnx, tmp_path, scheduler, worker):
    log = tmp_path / "t.jsonl"
    r = cli("tune", tiny_onnx, "--cluster", scheduler, "--targets", "all-in-cluster", "--trials", "4",
            "--log", log, *FAST)
    assert r.code == 0, r.err
    assert f"Dask cluster {scheduler}: 1 worker(s); dashboard http" in r.out and "measured on the cluster" in r.out
    assert "cluster: 1 worker(s)" in r.err                      # the workers in the progress lines
    records = [json.loads(line) for line in open(log)]
    assert len({(d["workload"], json.dumps(d["config"], sort_keys=True)) for d in records if not d["checked"]}) == 4
    assert all(d["error_no"] == 0 and d["host"] for d in records)
    host = records[0]["host"]
    stats = cli("logs", "stats", log)
    assert stats.code == 0 and "timed on" in stats.out and f"{host} " in stats.out
    # --resume continues a cluster run locally, and the local records join the same log
    more = cli("tune", tiny_onnx, "--trials", "6", "--log", log, "--resume", *FAST)
    assert more.code == 0 and "resumed: 4 trial(s)" in more.out, more.err
    local = [json.loads(line) for line in open(log)][len(records):]
    assert local and not any("host" in d for d in local)


@pytest.mark.parametrize("args, says", [
    (["--targets", "all-in-cluster"], "--targets all-in-cluster needs --cluster ADDRESS"),
    (["--cluster", "tcp://127.0.0.1:9"], "cannot reach the Dask scheduler at tcp://127.0.0.1:9"),
])
def test_cluster_option_errors_are_one_line(cli, tiny_onnx, tmp_path, args, says):
    r = cli("tune", tiny_onnx, "--log", tmp_path / "t.jsonl", *args, env=QUICK, timeout=60)
    assert says in one_line_error(r)


def test_a_worker_without_a_scheduler_is_one_line(cli):
    r = cli("worker", "tcp://127.0.0.1:9", env=QUICK, timeout=60)
    assert "cannot join the Dask scheduler at tcp://127.0.0.1:9" in one_line_error(r)


def test_a_second_worker_of_the_same_name_is_one_line(cli, scheduler, worker):
    r = cli("worker", scheduler, timeout=90)
    assert "a worker named" in one_line_error(r) and "--name" in r.err
