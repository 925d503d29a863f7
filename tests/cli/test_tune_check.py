"""tilewise tune's model check: kernels the log changed judged in the model, and the verdict kept."""
from __future__ import annotations

import dataclasses
import math
import time

import pytest

import autotune
import frontends
from autotune import record as rec
from frontends import profile, step_timing
from te.target import host
from tilewise.commands import tune_check

from te.export import MEMCPY

from ..frontends.test_passes import conv_chain_model
from ..tiny_models import fake_records, write_log


def test_compare_builds_times_the_kernels_the_log_changed(tiny_onnx, tmp_path):
    g = frontends.from_onnx(tiny_onnx)
    log = write_log(tmp_path / "t.jsonl", fake_records(tiny_onnx))
    untuned, tuned = frontends.build(g, host()), frontends.build(g, host(), logs=[log])
    pairs = step_timing.compare_builds(untuned, tuned, rounds=2, repeat=2,
                                   only=lambda a, b: any(c.task is not None for c in b))
    assert {p.nodes[0] for p in pairs} == {n.name for n in g.nodes if n.op == "Conv"}
    for p in pairs:
        assert len(p.times_a) == len(p.times_b) == 2 and min(p.times_a + p.times_b) > 0
        assert math.isfinite(p.ratio)


def steps_timed_at(monkeypatch, seconds) -> None:
    """Make time_steps time call k of a build at seconds(lib, k) on every pass."""
    def timed(lib, inputs, repeat=20, outputs=None, order="model"):
        calls = [st for st in lib.plan.steps if st.kernel != MEMCPY]
        return [(st, profile.Latency([seconds(lib, k)] * repeat)) for k, st in enumerate(calls)]
    monkeypatch.setattr(step_timing, "time_steps", timed)


def test_builds_whose_kernel_lists_differ_are_matched_by_node(rng, monkeypatch):
    """The packed-layout build adds a pack and an unpack kernel: each joins the conv it serves,
    and the piece's time is the sum of its calls."""
    g = frontends.from_onnx(conv_chain_model(rng, N=2))       # two images: direct convs on every CPU
    plain, packed = frontends.build(g), frontends.build(g, layout="NCHWc")
    steps_timed_at(monkeypatch, lambda lib, k: 1e-4 if lib is plain else 1e-4 * (k + 1))
    pairs = step_timing.compare_builds(plain, packed, rounds=2, repeat=2)
    got = {tuple(c.kernel for c in p.b): [n for n in p.nodes if "." in n] for p in pairs}
    assert list(got.values()) == [["Conv_0.pack"], [], ["Conv_4.unpack"], []]
    assert [len(p.a) for p in pairs] == [1, 1, 1, 1]          # every call of each build in one piece, once
    calls_b = [st for st in packed.plan.steps if st.kernel != MEMCPY]
    assert [c for p in pairs for c in p.b] == calls_b
    for p in pairs:
        want = sum(1e-4 * (calls_b.index(c) + 1) for c in p.b)
        assert p.times_a == pytest.approx([1e-4] * 2) and p.times_b == pytest.approx([want] * 2)


def kernels_timed_at(monkeypatch, times_a: list, times_b: list) -> None:
    """Make the model check time each piece it judges at times_a (untuned) and times_b (tuned) per round."""
    compare = step_timing.compare_builds

    def timed(lib_a, lib_b, inputs, rounds, only):
        pairs = compare(lib_a, lib_b, inputs, 1, repeat=1, only=only)
        for p in pairs:
            p.times_a, p.times_b = list(times_a), list(times_b)
        return pairs
    monkeypatch.setattr(step_timing, "compare_builds", timed)


def _checked_with_times(model, tmp_path, monkeypatch, times_a: list, times_b: list):
    """(check_model's verdict, the log) on the tiny model with a fake log, each kernel pair timed
    at times_a (untuned) and times_b (tuned) per round."""
    g = frontends.from_onnx(model)
    log = write_log(tmp_path / "t.jsonl", fake_records(model))
    kernels_timed_at(monkeypatch, times_a, times_b)
    return tune_check.check_model(g, log, host(), repeat=2), log


def test_a_config_slower_in_the_model_loses_to_the_untuned_kernel(tiny_onnx, tmp_path, monkeypatch):
    """The tuned kernels are made to time 3x slower than the untuned ones: the check appends
    in_model records that say so, and a build with the log goes back to the default configs."""
    mc, log = _checked_with_times(tiny_onnx, tmp_path, monkeypatch, [1e-4] * 3, [3e-4] * 3)
    assert mc.kernels == 2 and len(mc.slower) == 2 and mc.records == 4
    assert mc.kernel_saving == 0.0                  # the tuned build went back to the untuned kernels
    assert mc.untuned > 0 and mc.tuned > 0
    judged = [r for r in rec.load(log) if r.in_model]
    assert sorted(round(r.vs_default, 6) for r in judged) == [0.333333, 0.333333, 1.0, 1.0]
    history = autotune.apply_history_best([log])
    for r in rec.best(rec.load(log)).values():         # each task's best is now its default config
        task = autotune.create_task(*autotune.task.parse_workload(r.workload), host())
        space = task.config_space
        assert r.config == space.get(space.default_index()).to_json()
    assert history is not None


def _two_configs_above_the_default(model, tmp_path):
    """A log in which the tuner's check ranked two configs per task above the default; (log, the
    second config per workload, the records)."""
    records, seconds = [], {}
    for r in fake_records(model):
        if r.ok and r.costs[0] < 2e-5:             # the faster config: checked, and one more like it
            space = autotune.create_task(*autotune.task.parse_workload(r.workload), host()).config_space
            seconds[r.workload] = space.get((space.default_index() + 3) % len(space)).to_json()
            records += [dataclasses.replace(r, checked=True, vs_default=2.0),
                        dataclasses.replace(r, config=seconds[r.workload], costs=[1.5e-5], checked=True,
                                            vs_default=1.5)]
        else:
            records.append(r)
    return write_log(tmp_path / "t.jsonl", records), seconds, records


def _best_configs(log) -> dict:
    """workload -> the config record.best ranks first in the log."""
    return {w: r.config for w, r in rec.best(rec.load(log)).items()}


def test_the_check_converges_in_one_pass(tiny_onnx, tmp_path, monkeypatch):
    """When the first config loses in the model, the second, which the model
    never ran, ranks below the judged default, so the next build runs the defaults and judges
    nothing (one judging pass).  A record a tune adds after the check ranks as before, and the
    next check judges it."""
    g = frontends.from_onnx(tiny_onnx)
    log, seconds, records = _two_configs_above_the_default(tiny_onnx, tmp_path)
    kernels_timed_at(monkeypatch, [1e-4] * 3, [3e-4] * 3)
    mc = tune_check.check_model(g, log, host(), repeat=2)
    assert mc.passes == 1 and len(mc.lost) == 2 and mc.kernels == 2 and len(mc.slower) == 2
    assert not {(w, c) for w, _, c in mc.lost} & {(w, rec.Record(w, c, []).config_key) for w, c in seconds.items()}
    for w, config in _best_configs(log).items():         # each task's best is now its default config
        space = autotune.create_task(*autotune.task.parse_workload(w), host()).config_space
        assert config == space.get(space.default_index()).to_json()
    later = [dataclasses.replace(r, config=c, costs=[1.4e-5], checked=True, vs_default=1.6, timestamp=time.time() + 1)
             for r in records for w, c in seconds.items() if r.workload == w and r.vs_default == 2.0]
    rec.append(log, later)                              # a tune after the check: not judged yet
    assert {r.config_key for r in rec.best(rec.load(log)).values()} == {r.config_key for r in later}
    mc = tune_check.check_model(g, log, host(), repeat=2)
    assert mc.passes == 1 and {(w, c) for w, _, c in mc.lost} == {(r.workload, r.config_key) for r in later}


def test_the_check_judges_the_runners_up_in_the_same_pass(tiny_onnx, tmp_path, monkeypatch):
    """runners_up: the first pass also times the configs the build would take next: here the first configs
    run 3x slower than untuned in the model and the second ones 2x faster, so after one pass
    the build runs the second ones, judged, and the check converges."""
    g = frontends.from_onnx(tiny_onnx)
    log, seconds, _ = _two_configs_above_the_default(tiny_onnx, tmp_path)
    compare, builds = step_timing.compare_builds, []

    def timed(lib_a, lib_b, inputs, rounds, only):
        builds.append(lib_b)
        pairs = compare(lib_a, lib_b, inputs, 1, repeat=1, only=only)
        for p in pairs:
            p.times_a, p.times_b = [1e-4] * 3, [3e-4 if len(builds) == 1 else 0.5e-4] * 3
        return pairs
    monkeypatch.setattr(step_timing, "compare_builds", timed)
    mc = tune_check.check_model(g, log, host(), repeat=2, runners_up=True)
    assert mc.passes == 1 and len(builds) == 3 and mc.kernels == 2 and not mc.slower and len(mc.lost) == 2
    assert _best_configs(log) == seconds
    assert {r.workload: r.config for r in frontends.build(g, host(), logs=[log]).records} == seconds


def test_the_model_check_records_name_no_cluster_worker(tiny_onnx, tmp_path, monkeypatch):
    """The in_model records copy a tuned record a cluster worker may have timed: they say they were timed here."""
    g = frontends.from_onnx(tiny_onnx)
    log = write_log(tmp_path / "t.jsonl", [dataclasses.replace(r, host="worker-3") for r in fake_records(tiny_onnx)])
    kernels_timed_at(monkeypatch, [1e-4] * 3, [3e-4] * 3)
    tune_check.check_model(g, log, host(), repeat=2)
    judged = [r for r in rec.load(log) if r.in_model]
    assert judged and all(r.host == "" for r in judged)


def test_the_tune_command_ends_with_the_model_check(cli, tuned_tiny, tiny_onnx, tmp_path):
    r = tuned_tiny[0]              # tests/cli/conftest.py: tilewise tune of the tiny model, 7 trials
    assert "model check:" in r.out
    line = next(ln for ln in r.out.splitlines() if ln.startswith("model: "))
    assert "untuned" in line and "the tuner estimated" in line
    r2 = cli("tune", tiny_onnx, "--trials", "6", "--log", tmp_path / "u.jsonl", "--no-shared-logs",
             "--no-model-check", "--tuner", "random", "--repeat", "1", "--min-repeat-ms", "2")
    assert r2.code == 0 and "model check" not in r2.out


def test_the_isolated_check_reports_a_failure_in_one_line(tiny_onnx, tmp_path):
    import pytest
    with pytest.raises(RuntimeError) as e:
        tune_check.check_model_isolated(frontends.from_onnx(tiny_onnx), str(tmp_path / "missing.jsonl"))
    assert "\n" not in str(e.value) and "missing.jsonl" in str(e.value)


def test_the_kernels_saving_in_the_model_is_counted_per_call(tiny_onnx, tmp_path, monkeypatch):
    mc, _ = _checked_with_times(tiny_onnx, tmp_path, monkeypatch, [4e-4, 3e-4, 3e-4], [1e-4, 1e-4, 5e-4])
    assert not mc.slower and mc.kernel_saving == pytest.approx(2 * 2e-4)     # two kernels, medians 3e-4 - 1e-4


def test_the_estimate_is_projected_on_the_whole_model():
    """Saving 1 ms of a 4 ms model is a 1.33x gain, whatever the tuned kernels' own gain."""
    assert tune_check.projected_gain(4e-3, 1e-3) == pytest.approx(4 / 3)
    assert math.isnan(tune_check.projected_gain(1e-3, 2e-3))      # an estimate saving more than the model takes
