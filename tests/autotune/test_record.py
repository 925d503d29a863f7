"""Tuning records: round trip, tolerance to bad lines, best/merge/stats."""
import json
import logging

import pytest

import autotune
from autotune import record as rec

# the loader checks records against their templates: real workloads and configs of their spaces
W = '["matmul",[8,8,8,"float32"]]'
V = '["matmul",[16,16,16,"float32"]]'
OTHER = "x86_64+sse4.2"


def cfg(i: int, workload: str = W) -> dict:
    """Config i of the workload's space, as a record holds it."""
    name, args = json.loads(workload)
    return autotune.create_task(name, args).config_space.get(i).to_json()


def make(workload=W, config=None, costs=(1e-3,), error_no=0, isa="x86_64+avx2"):
    return rec.Record(workload=workload, config=config or cfg(0, workload), costs=list(costs),
                      error_no=error_no, isa=isa, cpu="cpu", target="llvm -mcpu=cpu")


def test_round_trip(tmp_path):
    p = tmp_path / "log.jsonl"
    rs = [make(costs=(1e-3, 2e-3)), make(config=cfg(1), costs=(), error_no=rec.ErrorNo.WRONG_ANSWER)]
    rec.append(p, rs)
    back = rec.load(p)
    assert [r.to_json() for r in back] == [r.to_json() for r in rs]
    assert back[0].ok and back[0].cost == pytest.approx(1.5e-3)
    assert not back[1].ok and back[1].cost == float("inf")
    assert json.loads(p.read_text().splitlines()[0])["version"] == rec.RECORD_VERSION


def test_bad_lines_skipped_with_one_warning(tmp_path, caplog):
    p = tmp_path / "log.jsonl"
    good = make().to_json()
    p.write_text("# a comment\n" + good + "\nnot json\n" + '{"version": 99}\n' + good + "\n" + good[:30])
    with caplog.at_level(logging.WARNING):
        back = rec.load(p)
    assert len(back) == 2
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "skipped 3" in warnings[0].getMessage()


def test_append_after_truncated_line_starts_fresh(tmp_path):
    p = tmp_path / "log.jsonl"
    p.write_text(make().to_json() + "\n" + make().to_json()[:20])     # killed mid-line
    rec.append(p, [make(config=cfg(2))])
    back = rec.load(p)
    assert len(back) == 2 and back[1].config == cfg(2)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        rec.load(tmp_path / "nope.jsonl")


def test_best_merge_stats(tmp_path):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    rec.append(a, [make(costs=(3e-3,)), make(config=cfg(2), costs=(1e-3,)),
                   make(workload=V, costs=(), error_no=rec.ErrorNo.COMPILE_ERROR)])
    rec.append(b, [make(config=cfg(1), costs=(2e-3,)), make(isa=OTHER, costs=(1e-4,))])
    allr = rec.load([a, b])
    best = rec.best(allr, isa="x86_64+avx2")
    assert best[W].config == cfg(2) and V not in best
    assert rec.best(allr)[W].isa == OTHER
    out = tmp_path / "merged.jsonl"
    n = rec.merge([a, b], out)
    assert n == 2 and {r.isa for r in rec.load(out)} == {"x86_64+avx2", OTHER}
    st = rec.stats(allr)
    assert st[V]["errors"] == {"COMPILE_ERROR": 1}
    assert st[W]["records"] == 4 and st[W]["best_cost"] == pytest.approx(1e-4)


def test_best_pools_timings_and_prefers_checked_configs(tmp_path):
    """A config's cost is the median of all its timings, or of its final check's timings if it had
    one; a config re-timed by a final check beats a faster-looking one measured once."""
    wl = W
    lucky = rec.Record(wl, cfg(1), [1.0], isa="x86_64")
    steady = [rec.Record(wl, cfg(2), [2.0], isa="x86_64"), rec.Record(wl, cfg(2), [2.2, 1.8], isa="x86_64", checked=True)]
    noisy = [rec.Record(wl, cfg(3), [0.5], isa="x86_64"), rec.Record(wl, cfg(3), [3.0, 3.0], isa="x86_64")]
    b = rec.best([lucky, *steady, *noisy])[wl]
    assert b.config == cfg(2) and b.checked and sorted(b.costs) == [1.8, 2.2]   # not the 2.0 before the check
    assert rec.best([lucky, *noisy])[wl].config == cfg(1)       # 0.5 and 3.0, 3.0 pool to a median of 3.0
    log = tmp_path / "l.jsonl"
    rec.append(log, [lucky, *steady])
    out = tmp_path / "m.jsonl"
    rec.merge([log], out)
    (m,) = rec.load(out)
    assert m.config == cfg(2) and m.checked


def test_a_model_check_judges_a_config_alone(tmp_path):
    """Records the model check timed (in_model) decide a config's cost and speed-up over the
    default, whatever the tuner's final check said of it: a config slower in the model loses."""
    wl = W
    default = rec.Record(wl, cfg(1), [2.0], isa="x86_64", checked=True, vs_default=1.0)
    tuned = [rec.Record(wl, cfg(2), [1.0], isa="x86_64", checked=True, vs_default=2.0) for _ in range(3)]
    assert rec.best([default, *tuned])[wl].config == cfg(2)
    in_model = rec.Record(wl, cfg(2), [2.5, 2.6], isa="x86_64", checked=True, vs_default=0.8, in_model=True)
    b = rec.best([default, *tuned, in_model])
    assert b[wl].config == cfg(1)
    (pooled,) = [r for r in rec.pooled([*tuned, in_model])]
    assert pooled.in_model and pooled.vs_default == 0.8 and sorted(pooled.costs) == [2.5, 2.6]
    log = tmp_path / "l.jsonl"
    rec.append(log, [default, in_model])
    assert '"in_model"' not in open(log).readline()             # written only when true
    assert [r.in_model for r in rec.load(log)] == [False, True]
    with pytest.raises(ValueError, match="in_model"):
        rec.Record.from_json(in_model.to_json().replace('"in_model":true', '"in_model":1'))
