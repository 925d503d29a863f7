"""autotune.shared_logs: discovery by ISA folder, validation line by line, bad logs skipped."""
from __future__ import annotations

import re

import pytest

from autotune import shared_logs

from ..tiny_models import fake_records, other_isa, write_log

OTHER_ISA = other_isa()


@pytest.fixture
def isa():
    from te.target import host
    return host().isa


@pytest.fixture
def good_lines(tiny_onnx, isa) -> list[str]:
    return [r.to_json() for r in fake_records(tiny_onnx, isa)]


def test_a_valid_log(tmp_path, good_lines, isa):
    p = tmp_path / "a.jsonl"
    p.write_text("# a comment\n" + "\n".join(good_lines) + "\n")
    chk = shared_logs.validate_log(p)
    assert chk.ok and len(chk.records) == 5 and len(chk.usable(isa)) == 5 and not chk.usable(OTHER_ISA)


@pytest.mark.parametrize("mutate, reason", [
    (lambda s: s.replace('"version":1', '"version":3'), "record version 3"),
    (lambda s: "[1, 2]", "JSON object"),
    (lambda s: "{broken", "not a JSON record"),
    (lambda s: s.replace('"isa":"x86_64', '"isa":"sparc'), "ISA key"),
    (lambda s: s.replace('"target":"llvm', '"target":"cuda'), "target string"),
    (lambda s: re.sub(r'"tile_oc":\d+', '"tile_oc":17', s), "config does not fit"),
    (lambda s: s.replace('"tile_oc":', '"tile_zz":'), "config does not fit"),
    (lambda s: s.replace('conv2d_nchw', 'conv9d'), "unknown template"),
    (lambda s: s.replace('[1,8,16,16]', '[1,8]'), "do not fit the template"),
    (lambda s: s.replace('"costs":[2e-05,2.1e-05]', '"costs":[]'), "without costs"),
])
def test_bad_lines_are_reported_with_file_and_line(tmp_path, good_lines, mutate, reason):
    p = tmp_path / "bad.jsonl"
    p.write_text("\n".join([good_lines[1], mutate(good_lines[0])] + good_lines[2:]) + "\n")
    chk = shared_logs.validate_log(p)
    assert not chk.ok and chk.n_bad == 1
    assert chk.problems[0].line == 2 and reason in chk.problems[0].reason
    assert str(chk.summary()).startswith(f"{p}:2: ")


def test_a_cut_off_last_line_is_tolerated(tmp_path, good_lines):
    p = tmp_path / "cut.jsonl"
    p.write_text("\n".join(good_lines) + "\n" + good_lines[0][:50])
    chk = shared_logs.validate_log(p)
    assert chk.ok and chk.truncated_tail and len(chk.records) == 5


def test_unreadable_file(tmp_path):
    chk = shared_logs.validate_log(tmp_path / "none.jsonl")
    assert chk.error and not chk.ok


def test_discovery_reads_this_isa_folder_only(tmp_path, monkeypatch, good_lines, isa, tiny_onnx):
    root = tmp_path / "logs"
    (root / isa / "deep").mkdir(parents=True)
    (root / OTHER_ISA).mkdir()
    write_log(root / "top.jsonl", fake_records(tiny_onnx, isa))
    write_log(root / isa / "deep" / "mine.jsonl", fake_records(tiny_onnx, isa))
    write_log(root / OTHER_ISA / "theirs.jsonl", fake_records(tiny_onnx, OTHER_ISA))
    write_log(root / "other-cpu.jsonl", fake_records(tiny_onnx, OTHER_ISA))
    (root / "broken.jsonl").write_text(good_lines[0] + "\n{oops\n")
    monkeypatch.setenv("TILEWISE_LOGS", str(root))
    dirs = shared_logs.log_dirs(include_repo=False)
    assert dirs == [root]
    found = {p.name for p in shared_logs.find_logs(isa, dirs)}
    assert found == {"top.jsonl", "mine.jsonl", "other-cpu.jsonl", "broken.jsonl"}
    sl = shared_logs.load_shared_logs(isa, dirs)
    assert sorted(p.rsplit("/", 1)[1] for p, _ in sl.used) == ["mine.jsonl", "top.jsonl"]
    assert [c.path.rsplit("/", 1)[1] for c in sl.skipped] == ["broken.jsonl"]
    assert sl.skipped[0].problems[0].line == 2
    assert [p.rsplit("/", 1)[1] for p, _ in sl.other_isa] == ["other-cpu.jsonl"]
    assert len(sl.records) == 10 and all(r.isa == isa for r in sl.records)


def test_repo_folder_is_searched_by_default(monkeypatch):
    monkeypatch.delenv("TILEWISE_LOGS", raising=False)
    assert shared_logs.log_dirs() == [shared_logs.REPO_LOGS]
    assert (shared_logs.REPO_LOGS / "README.md").exists()


def test_user_logs_keep_good_lines(tmp_path, good_lines):
    p = tmp_path / "mine.jsonl"
    p.write_text("\n".join(good_lines[:2] + ["{bad"] + good_lines[2:]) + "\n")
    records, checks = shared_logs.load_user_logs([p])
    assert len(records) == 5 and checks[0].n_bad == 1
    with pytest.raises(FileNotFoundError):
        shared_logs.load_user_logs([tmp_path / "none.jsonl"])
