"""tilewise check-log: the model check on an existing log, which stays as it was; --prune writes
the log without the configs that lost in the model."""
from __future__ import annotations

import argparse

import autotune
from autotune import record as rec
from te.target import host
from tilewise.commands import check_log, tune_check

from ..tiny_models import fake_records, write_log
from .test_tune_check import kernels_timed_at


def _judged(monkeypatch, times_a: list, times_b: list) -> None:
    """The model check runs in this process, each kernel pair timed at times_a (untuned) and times_b (tuned)."""
    kernels_timed_at(monkeypatch, times_a, times_b)
    monkeypatch.setattr(tune_check, "check_model_isolated", lambda g, log: tune_check.check_model(g, log, repeat=2))


def _args(model, log, prune=None):
    return argparse.Namespace(model=str(model), log=str(log), prune=None if prune is None else str(prune), shape=None)


def test_prune_leaves_out_the_configs_slower_in_the_model(tiny_onnx, tmp_path, monkeypatch, capsys):
    log = write_log(tmp_path / "t.jsonl", fake_records(tiny_onnx))
    before = open(log, "rb").read()
    _judged(monkeypatch, [1e-4] * 3, [3e-4] * 3)            # every tuned kernel 3x slower in the model
    out = tmp_path / "pruned.jsonl"
    assert check_log.run(_args(tiny_onnx, log, out)) == 0
    assert open(log, "rb").read() == before                 # the checked log is never changed
    said = capsys.readouterr().out
    assert "2 of 2 tuned kernel(s) ran slower" in said and f"wrote {out}" in said
    original, kept = rec.load(log), rec.load(out)
    best = rec.best(original)
    for r in best.values():                                 # the configs a build took are gone...
        assert not any(k.workload == r.workload and k.config_key == r.config_key for k in kept)
    assert any(k.in_model for k in kept)                    # ...the check's timings of the defaults are in
    for r in rec.best(kept).values():                       # and a build with it runs the default configs
        space = autotune.create_task(*autotune.task.parse_workload(r.workload), host()).config_space
        assert r.config == space.get(space.default_index()).to_json()


def test_a_log_that_holds_up_keeps_its_records(tiny_onnx, tmp_path, monkeypatch, capsys):
    log = write_log(tmp_path / "t.jsonl", fake_records(tiny_onnx))
    _judged(monkeypatch, [3e-4] * 3, [1e-4] * 3)
    out = tmp_path / "pruned.jsonl"
    assert check_log.run(_args(tiny_onnx, log, out)) == 0
    assert "none of the 2 tuned kernel(s) ran slower" in capsys.readouterr().out
    original, kept = rec.load(log), rec.load(out)
    assert kept[:len(original)] == original and all(k.in_model for k in kept[len(original):])
    assert {r.config_key for r in rec.best(kept).values()} == {r.config_key for r in rec.best(original).values()}


def test_check_log_refuses_bad_paths_in_one_line(cli, tiny_onnx, tmp_path):
    log = write_log(tmp_path / "t.jsonl", fake_records(tiny_onnx))
    model_bytes = open(tiny_onnx, "rb").read()
    cases = [(["--log", tmp_path / "missing.jsonl"], "no such tuning log"),
             (["--log", log, "--prune", log], "is the checked log itself"),
             (["--log", log, "--prune", tiny_onnx], "choose another file"),
             (["--log", log, "--prune", tmp_path / "nowhere" / "o.jsonl"], "does not exist"),
             (["--log", tiny_onnx], "--log")]
    for extra, why in cases:
        r = cli("check-log", tiny_onnx, *extra)
        assert r.code == 1 and why in r.err and len(r.err.strip().splitlines()) == 1, (extra, r.err)
    assert open(tiny_onnx, "rb").read() == model_bytes       # the model was not overwritten


def test_check_log_runs_the_model_check(cli, tiny_onnx, tmp_path):
    log = write_log(tmp_path / "t.jsonl", fake_records(tiny_onnx))
    before = open(log, "rb").read()
    r = cli("check-log", tiny_onnx, "--log", log, "--prune", tmp_path / "out.jsonl")
    assert r.code == 0, r.err
    assert "model check:" in r.out and "per run untuned" in r.out and "wrote" in r.out
    assert open(log, "rb").read() == before
    out = rec.read_log(tmp_path / "out.jsonl")
    assert out.ok and any(r.in_model for r in out.records)
