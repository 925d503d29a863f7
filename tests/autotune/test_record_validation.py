"""The one loader of tuning logs (record.read_log) against hostile logs: wrong field types, deep or
huge lines, absurd workloads, malformed targets, files that are not logs; and the writers
(append, write, merge) against files that are not logs or are their own inputs."""
from __future__ import annotations

import json
import os
import threading

import pytest

import autotune
from autotune import record as rec
from autotune.dispatch import ApplyHistoryBest

W = '["matmul",[8,8,8,"float32"]]'
ISA = "x86_64+sse4.2+avx+avx2+fma+f16c"


def task():
    return autotune.create_task("matmul", (8, 8, 8, "float32"))


def good(i: int = 0, **changes) -> rec.Record:
    """A valid record of config i of matmul 8x8x8 (later configs faster)."""
    t = task()
    return rec.Record(**{**dict(workload=W, config=t.config_space.get(i).to_json(), costs=[1e-3 / (i + 1)],
                                isa=t.target.isa, cpu="cpu", target="llvm -mcpu=cpu"), **changes})


def line(**changes) -> str:
    """The JSON line of good(1) with some fields replaced by raw JSON values."""
    d = json.loads(good(1).to_json())
    d.update(changes)
    return json.dumps(d)


def config_with(**knobs) -> dict:
    return {**good(1).config, **knobs}


def finishes(fn, seconds: float = 60.0):
    """fn() run in a thread: its result, or a failure if it has not returned in `seconds` (a reader
    that spins or blocks would otherwise hang the test run instead of failing it)."""
    out: dict = {}

    def go():
        try:
            out["value"] = fn()
        except BaseException as e:      # noqa: BLE001  (handed to the test)
            out["error"] = e
    th = threading.Thread(target=go, daemon=True)
    th.start()
    th.join(seconds)
    assert not th.is_alive(), f"{fn} did not return within {seconds} s"
    if "error" in out:
        raise out["error"]
    return out["value"]


# The hostile probe's lines: each must be skipped and counted, never raise.
HOSTILE = {
    "split as a number": lambda: line(config=config_with(tile_y=5)),
    "split with a null": lambda: line(config=config_with(tile_y=[-1, None])),
    "string timestamp": lambda: line(timestamp="yesterday"),
    "isa as a list": lambda: line(isa=["x86_64"]),
    "costs as strings": lambda: line(costs=["1e-3"]),
    "error_no as a float": lambda: line(error_no=1.5),
    "checked as a string": lambda: line(checked="yes"),
    "version true": lambda: line(version=True),
    "infinite cost": lambda: line(costs=[1e999]).replace("Infinity", "1e999"),
    "200k-deep JSON": lambda: "[" * 200_000 + "]" * 200_000,
    "20k-deep JSON (within the line bound)": lambda: "[" * 20_000 + "]" * 20_000,
    "workload 1e12": lambda: line(workload='["matmul",[1,1e12,1e12,"float32"]]'),
    "workload with a huge int": lambda: line(workload='["matmul",[1,1000000000000,8,"float32"]]'),
    "workload with size 0": lambda: line(workload='["matmul",[0,8,8,"float32"]]'),
    "workload with an unknown dtype": lambda: line(workload='["matmul",[8,8,8,"float128"]]'),
    "workload with too many args": lambda: line(workload='["matmul",[8,8,8,"float32",1,2]]'),
    "workload nested deep": lambda: line(workload="[" * 5000 + "]" * 5000),
    "malformed target": lambda: line(target="cuda -arch=sm_80"),
    "target with junk": lambda: line(target="llvm -mcpu=x; rm -rf /"),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_a_hostile_line_is_skipped_and_counted(tmp_path, name):
    p = tmp_path / "log.jsonl"
    p.write_text(good(0).to_json() + "\n" + HOSTILE[name]() + "\n" + good(2).to_json() + "\n")
    chk = finishes(lambda: rec.read_log(p))
    assert chk.n_bad == 1 and chk.problems[0].line == 2, chk.problems
    assert [r.config for r in chk.records] == [good(0).config, good(2).config]
    assert len(finishes(lambda: rec.load(p))) == 2
    ctx = finishes(lambda: ApplyHistoryBest(str(p)))        # what a build reads
    assert ctx.query(task()).to_json() == good(2).config


def test_an_absurd_workload_is_refused_before_a_task_is_created():
    with pytest.raises(ValueError, match="whole numbers"):
        finishes(lambda: autotune.create_task("matmul", [1, 1e12, 1e12, "float32"]))
    with pytest.raises(ValueError, match=r"outside 1\.\.1048576"):
        finishes(lambda: autotune.create_task("matmul", [1, 10**12, 10**12, "float32"]))
    with pytest.raises(ValueError, match="unknown dtype"):
        autotune.create_task("matmul", [8, 8, 8, "float16x"])
    # paddings may be 0; real workloads pass
    autotune.create_task("conv2d_nchw", [[1, 8, 16, 16], [16, 8, 3, 3], [1, 1], [0, 0, 0, 0], [1, 1], 1, "float32"])


def test_a_malformed_target_is_not_used_by_a_build(tmp_path):
    """The checker skipped it but the build's loader used it (and put it in the library's metadata)."""
    p = tmp_path / "log.jsonl"
    fastest = good(3, target="llvm -mcpu=cpu -Xjunk")
    rec.append(p, [good(0), fastest])
    chk = rec.read_log(p)
    assert chk.n_bad == 1 and "target" in chk.problems[0].reason
    ctx = ApplyHistoryBest(str(p))
    assert ctx.query(task()).to_json() == good(0).config
    assert all(r.target == "llvm -mcpu=cpu" for r in ctx.used.values())


def test_a_line_longer_than_the_bound_is_skipped_unread(tmp_path):
    p = tmp_path / "log.jsonl"
    p.write_bytes(b"x" * (3 * rec.MAX_LINE_BYTES) + b"\n" + good(0).to_json().encode() + b"\n"
                  + b"y" * (2 * rec.MAX_LINE_BYTES))                    # and a long last line, no newline
    chk = rec.read_log(p)
    assert len(chk.records) == 1 and chk.n_bad == 2
    assert "longer than" in chk.problems[0].reason and chk.problems[0].line == 1


@pytest.mark.parametrize("kind", ["fifo", "device", "folder"])
def test_a_log_that_is_not_a_regular_file_is_refused(tmp_path, kind):
    if kind == "fifo":
        path = tmp_path / "log.jsonl"
        os.mkfifo(path)
    elif kind == "device":
        path = "/dev/full" if os.path.exists("/dev/full") else "/dev/zero"
    else:
        path = tmp_path
    with pytest.raises(rec.LogError, match="not a regular file|folder"):
        finishes(lambda: rec.read_log(path), 30)
    with pytest.raises(rec.LogError):
        finishes(lambda: rec.append(path, [good(0)]), 30)
    with pytest.raises(rec.LogError):
        finishes(lambda: autotune.log_to_file(path), 30)


def test_empty_and_comment_only_logs(tmp_path):
    p = tmp_path / "empty.jsonl"
    p.write_text("")
    assert rec.load(p) == [] and rec.read_log(p).ok
    p.write_text("# nothing measured yet\n\n")
    rec.append(p, [good(0)])
    assert [r.config for r in rec.load(p)] == [good(0).config]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files without read permission")
def test_a_log_without_read_permission(tmp_path):
    p = tmp_path / "secret.jsonl"
    rec.append(p, [good(0)])
    p.chmod(0)
    with pytest.raises(rec.LogError, match="cannot be"):
        rec.read_log(p)


def test_appending_to_a_file_that_is_not_a_log_is_refused(tmp_path):
    model = tmp_path / "m.onnx"
    model.write_bytes(b"\x08\x07\x12\x04onnx\x00\x01binary protobuf")
    before = model.read_bytes()
    with pytest.raises(rec.LogError, match="not a tuning log"):
        rec.append(model, [good(0)])
    with pytest.raises(rec.LogError, match="not a tuning log"):
        autotune.log_to_file(model)
    assert model.read_bytes() == before
    # a log whose only line was cut off by an interrupted writer is still a log
    cut = tmp_path / "cut.jsonl"
    cut.write_text(good(0).to_json()[:40])
    rec.append(cut, [good(1)])
    assert [r.config for r in rec.load(cut)] == [good(1).config]


def test_merging_into_an_input_is_refused(tmp_path):
    p = tmp_path / "good.jsonl"
    rec.append(p, [good(i) for i in range(6)])
    before = p.read_text()
    link = tmp_path / "alias.jsonl"
    link.symlink_to(p)
    for out in (p, link):
        with pytest.raises(rec.LogError, match="also an input"):
            rec.merge([p], out)
    assert p.read_text() == before


def test_merge_writes_a_unique_temporary_file_not_a_planted_link(tmp_path):
    src = tmp_path / "a.jsonl"
    rec.append(src, [good(0), good(1)])
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    out = tmp_path / "merged.jsonl"
    os.symlink(victim, f"{out}.tmp")        # the fixed name the merge used to write through
    assert rec.merge([src], out) == 1
    assert victim.read_text() == "keep me" and len(rec.load(out)) == 1
    assert sorted(os.listdir(tmp_path)) == sorted(["a.jsonl", "victim.txt", "merged.jsonl", "merged.jsonl.tmp"])


def test_merge_refuses_to_replace_a_file_that_is_not_a_log(tmp_path):
    src = tmp_path / "a.jsonl"
    rec.append(src, [good(0)])
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    with pytest.raises(rec.LogError, match="not a tuning log"):
        rec.merge([src], notes)
    assert notes.read_text() == "my notes\n"


def test_an_interrupted_write_leaves_the_old_log_and_no_temporary_file(tmp_path, monkeypatch):
    out = tmp_path / "merged.jsonl"
    rec.write(out, [good(0)])
    before = out.read_text()

    def ctrl_c(*a):
        raise KeyboardInterrupt
    monkeypatch.setattr(rec.os, "replace", ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        rec.write(out, [good(1), good(2)])
    assert out.read_text() == before and os.listdir(tmp_path) == ["merged.jsonl"]
