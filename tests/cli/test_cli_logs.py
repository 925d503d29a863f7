"""tilewise logs show|best|merge|stats on logs written without measuring."""
from __future__ import annotations

import json

import pytest

from tilewise.common import isa_tag

from ..tiny_models import fake_records, other_isa, write_log


def test_show_groups_records_by_workload_and_target(cli, tiny_log):
    r = cli("logs", "show", tiny_log)
    assert r.code == 0, r.err
    assert "conv2d 1x8x16x16 w16x8x3x3 s1 p1" in r.out
    assert "conv2d 1x16x16x16 w16x16x1x1 s1 p0" in r.out
    assert "5 record(s), 2 workload(s)" in r.out
    assert "(this CPU)" in r.out
    assert "10.5 us" in r.out            # the best of each workload (median of its costs)


def test_show_records_and_filter(cli, tiny_log):
    r = cli("logs", "show", tiny_log, "--records", "--workload", "1x16x16x16")
    assert r.code == 0, r.err
    assert "1x8x16x16" not in r.out
    assert r.out.count('{"bn"') == 2                 # a 1x1 conv: the GEMM's knobs


def test_best_for_this_cpu_and_for_every_isa(cli, tiny_onnx, tmp_path):
    other = fake_records(tiny_onnx, isa=other_isa())
    log = write_log(tmp_path / "two-isas.jsonl", other)
    r = cli("logs", "best", log)
    assert r.code == 0, r.err
    assert "no valid records for this CPU's ISA" in r.out and isa_tag(other_isa()) in r.out
    r = cli("logs", "best", log, "--all-isas")
    assert r.code == 0, r.err
    assert r.out.count(isa_tag(other_isa())) >= 2 and "10.5 us" in r.out


def test_merge_keeps_the_best_per_workload_and_isa(cli, tiny_log, tiny_onnx, tmp_path):
    other = write_log(tmp_path / "other.jsonl", fake_records(tiny_onnx, isa=other_isa()))
    out = tmp_path / "merged.jsonl"
    r = cli("logs", "merge", tiny_log, other, "-o", out)
    assert r.code == 0, r.err
    assert "into" in r.out and "4 best records" in r.out
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(lines) == 4 and all(x["error_no"] == 0 and min(x["costs"]) == 1e-5 for x in lines)
    r = cli("logs", "merge", tiny_log, "-o", tmp_path / "all.jsonl", "--all-records")
    assert r.code == 0 and len((tmp_path / "all.jsonl").read_text().splitlines()) == 5


def test_a_file_with_no_record_is_refused_not_merged_into_an_empty_log(cli, tiny_log, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("buy milk\ntune resnet\n")
    out = tmp_path / "merged.jsonl"
    r = cli("logs", "merge", tiny_log, notes, "-o", out)
    assert r.code == 1 and not out.exists()
    assert r.err.count("\n") == 1 and f"{notes}: not a tuning log" in r.err and "line 1" in r.err
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")                    # an empty log is a log (no records yet)
    r = cli("logs", "merge", tiny_log, empty, "-o", out)
    assert r.code == 0, r.err


def test_stats_counts_errors_and_bad_lines(cli, tiny_log, tmp_path):
    lines = open(tiny_log).read().splitlines()
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join([lines[0], "{not json", lines[1].replace('"version":1', '"version":99')] + lines[2:])
                   + "\n" + lines[0][:40])          # and a cut-off last line
    r = cli("logs", "stats", tiny_log, bad)
    assert r.code == 0, r.err
    assert "2 error(s): compile_error 2" in r.out
    assert f"{bad}:2" in r.err and f"{bad}:3" in r.err and "version 99" in r.err
    assert "cut off" in r.err
    row = next(x for x in r.out.splitlines() if x.startswith(str(bad)))
    assert row.split()[1:3] == ["4", "3"]        # 4 valid records, 3 bad lines (one of them the cut-off tail)


def test_pretrain_features_use_the_measuring_machines_caches():
    """Records name no cache sizes: `logs pretrain --caches` gives them (default: this machine's),
    so the model it writes is trained on the features the searches will compute."""
    from te.caches import host_caches
    from tilewise.commands.logs import CLIError, _log_caches
    assert _log_caches(None) == host_caches()
    assert _log_caches("-l1d=48K -l2=2M -l3=150M").options() == "-l1d=48K -l2=2M -l3=150M"
    with pytest.raises(CLIError, match="--caches"):
        _log_caches("-l2=lots")
