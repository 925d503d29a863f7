"""Measuring on a Dask cluster: a LocalCluster of 2 worker processes (1 thread each, loopback),
the same tuners, the same records as local tuning, and faults that cost a candidate at most."""
import os
import signal
import threading
import time

import pytest

import autotune
from autotune import record as rec
from autotune.record import ErrorNo
from te.target import Target, host

from . import autotune_templates, cluster_templates  # noqa: F401  (register test_vadd, test_reps)

distributed = pytest.importorskip("distributed")
cluster_mod = pytest.importorskip("autotune.cluster")

# run_timeout counts a fresh runner's start: on a loaded 2-core machine that alone can take seconds
OPTION = dict(n_parallel=1, min_repeat_ms=2, repeat=2, run_timeout=10, build_timeout=60)


@pytest.fixture(scope="module")
def client():
    import dask
    # a task lost with its worker fails at once: the client's own retry is the only one
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                           host="127.0.0.1", dashboard_address=":0",
                                           resources={cluster_mod.isa_resource(host().isa): 1})
        c = distributed.Client(cluster)
        try:
            yield c
        finally:
            c.close()
            cluster.close()


def option(client, **kw):
    return autotune.measure_option(cluster=client, **{**OPTION, **kw})


def test_errors_are_records_as_locally(client):
    """Each failure mode ends as the record local tuning writes; a hang is cut by the worker's timeout."""
    task = autotune.create_task("test_vadd", (256,))
    modes = ["ok", "invalid", "wrong", "crash", "hang", "ok"]
    configs = [task.config_space.from_json({"tile": [-1, 16], "mode": m}) for m in modes]
    with autotune.Measurer(option(client, run_timeout=3)) as m:
        assert isinstance(m, cluster_mod.ClusterMeasurer)
        recs = m.measure(task, configs)
    assert [r.error_no for r in recs] == [ErrorNo.NO_ERROR, ErrorNo.INSTANTIATION_ERROR, ErrorNo.WRONG_ANSWER,
                                          ErrorNo.RUNTIME_ERROR, ErrorNo.RUN_TIMEOUT, ErrorNo.NO_ERROR]
    assert "died" in recs[3].error_msg and "within 3 s" in recs[4].error_msg
    assert all(r.config == c.to_json() and r.isa == task.target.isa and r.host for r, c in zip(recs, configs))


def _tune(task, measure_option, log, n_trial):
    tuner = autotune.XGBTuner(task, seed=7)
    tuner.tune(n_trial, measure_option=measure_option, callbacks=[autotune.log_to_file(log)])
    return tuner


def test_cluster_finds_the_best_config_a_local_run_finds(client, tmp_path):
    """The tuner cannot tell where it measures: through the cluster it visits the space and ends
    on the config a local run on the same seed ends on, with every trial in the log."""
    task = autotune.create_task("test_reps", (65536,))
    n = len(task.config_space)
    local = _tune(task, autotune.measure_option(**OPTION), tmp_path / "local.jsonl", n)
    remote = _tune(task, option(client), tmp_path / "cluster.jsonl", n)
    assert local.best_config.to_json() == remote.best_config.to_json() == cluster_templates.FAST
    assert remote.trials == local.trials == n
    logged = rec.load(tmp_path / "cluster.jsonl")
    main = [r for r in logged if not r.checked]
    assert sorted(r.config_key for r in main) == sorted(r.config_key for r in rec.load(tmp_path / "local.jsonl")
                                                       if not r.checked)
    assert all(r.ok and r.host for r in logged)
    assert not any(r.host for r in rec.load(tmp_path / "local.jsonl"))
    assert '"host"' not in (tmp_path / "local.jsonl").read_text()     # local logs read as before


def test_a_worker_killed_mid_run_costs_no_trial(client, tmp_path):
    """A worker process killed while it builds or times: its task is submitted again elsewhere,
    and the run ends with a record for every trial."""
    task = autotune.create_task("test_reps", (65536,))
    n = len(task.config_space)
    box = {}
    measurer = autotune.Measurer(option(client))

    def run():
        tuner = autotune.XGBTuner(task, seed=3)
        box["tuner"] = tuner
        tuner.tune(n, callbacks=[autotune.log_to_file(tmp_path / "log.jsonl")], measurer=measurer)

    th = threading.Thread(target=run, daemon=True)
    th.start()
    pids = client.run(os.getpid)
    victim = None
    deadline = time.monotonic() + 30
    while victim is None and time.monotonic() < deadline:
        busy = {a: ks for a, ks in client.processing().items() if any(str(k).startswith("tw-") for k in ks)}
        if busy and box.get("tuner") and box["tuner"].trials >= 8:
            victim = next(iter(busy))
        time.sleep(0.02)
    assert victim is not None, "the run never kept a worker busy"
    os.kill(pids[victim], signal.SIGKILL)
    th.join(90)
    measurer.close()
    assert not th.is_alive()
    tuner = box["tuner"]
    assert tuner.trials == n
    main = [r for r in rec.load(tmp_path / "log.jsonl") if not r.checked]
    assert len({r.config_key for r in main}) == n            # every trial accounted for
    assert tuner.best_config.to_json() == cluster_templates.FAST
    if measurer.lost == 0:      # the task it was busy with finished in the moment before the kill
        pytest.skip("the worker was killed between two of its tasks: nothing to submit again this time")


def test_workers_that_advertise_no_cpu_are_given_theirs(client):
    """A plain LocalCluster's or `dask worker`'s workers time for their own CPU, as `tilewise worker`'s."""
    res = cluster_mod.isa_resource(host().isa)

    async def silence(dask_worker):
        await dask_worker.set_resources(**{res: 0})
    client.run(silence)
    task = autotune.create_task("test_vadd", (256,))
    with autotune.Measurer(option(client)) as m:
        assert m.measure(task, [task.config_space.get(task.config_space.default_index())])[0].ok
    assert all(w["resources"][res] == 1 for w in client.scheduler_info(n_workers=-1)["workers"].values())


def test_a_task_of_an_isa_no_worker_has_is_a_clear_error(client):
    other = Target("haswell", "+sse4.2,+avx,+avx2,+fma")
    task = autotune.create_task("test_vadd", (256,), other)
    assert task.target.isa != host().isa
    with autotune.Measurer(option(client)) as m:
        with pytest.raises(cluster_mod.ClusterError, match="no worker .* advertises isa:x86_64.*tilewise worker"):
            m.measure(task, [task.config_space.get(0)])


def test_without_distributed_the_error_names_the_extra(monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(cluster_mod.ClusterError, match=r"pip install 'tilewise\[distributed\]'"):
        autotune.Measurer(autotune.measure_option(cluster="tcp://127.0.0.1:1"))


def test_a_host_field_is_optional_in_logs(tmp_path):
    """Records timed on a cluster name their machine; lines without the field load as before."""
    w = '["matmul",[8,8,8,"float32"]]'
    cfg = autotune.create_task("matmul", (8, 8, 8, "float32")).config_space.get(0).to_json()
    r = rec.Record(workload=w, config=cfg, costs=[1e-3], isa=host().isa, host="node7")
    plain = rec.Record(workload=w, config=cfg, costs=[1e-3], isa=host().isa)
    rec.append(tmp_path / "l.jsonl", [r, plain])
    back = rec.load(tmp_path / "l.jsonl")
    assert [b.host for b in back] == ["node7", ""] and '"host"' not in plain.to_json()
    bad = r.to_json().replace('"node7"', "7")
    with pytest.raises(ValueError, match="host"):
        rec.Record.from_json(bad)
