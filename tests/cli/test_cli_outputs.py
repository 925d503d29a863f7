"""What build and run write, and what they refuse to write over; targets and thread counts."""
from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from .cli_helpers import one_line_error


def test_run_output_is_written_at_exactly_the_path_given(cli, tiny_so, tmp_path):
    r = cli("run", tiny_so, "--output", tmp_path / "adir.onnx")
    assert r.code == 0, r.err
    assert (tmp_path / "adir.onnx").exists() and not (tmp_path / "adir.onnx.npz").exists()
    assert f"saved 1 output(s) to {tmp_path / 'adir.onnx'}" in r.out
    assert np.load(tmp_path / "adir.onnx")["y"].shape == (1, 16, 16, 16)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


def test_run_refuses_to_write_over_its_inputs(cli, tiny_so, tmp_path):
    lib = tmp_path / "tiny.so"
    shutil.copy(tiny_so, lib)
    before = lib.read_bytes()
    line = one_line_error(cli("run", lib, "--output", lib))
    assert "is the same file as MODEL.so" in line and "another name" in line
    x = tmp_path / "x.npy"
    np.save(x, np.zeros((1, 8, 16, 16), np.float32))
    line = one_line_error(cli("run", lib, "--input", f"x={x}", "--output", tmp_path / "." / "x.npy"))
    assert "is the same file as --input" in line
    assert lib.read_bytes() == before and np.load(x).shape == (1, 8, 16, 16)
    line = one_line_error(cli("run", lib, "--output", tmp_path))
    assert "is a folder" in line


def test_build_refuses_to_write_over_its_inputs(cli, tiny_onnx, tiny_log, tmp_path):
    victim = tmp_path / "victim.onnx"
    shutil.copy(tiny_onnx, victim)
    log = tmp_path / "victim.jsonl"
    shutil.copy(tiny_log, log)
    model, records = victim.read_bytes(), log.read_bytes()
    line = one_line_error(cli("build", victim, "-o", victim))
    assert f"-o {victim}: is the same file as MODEL {victim}" in line
    (tmp_path / "link.so").symlink_to(victim)
    line = one_line_error(cli("build", victim, "-o", tmp_path / "link.so"))
    assert "is the same file as MODEL" in line
    line = one_line_error(cli("build", victim, "-o", tmp_path / "m.so", "--log", log, "--header", log))
    assert "--header" in line and "is the same file as --log" in line
    line = one_line_error(cli("build", victim, "-o", tmp_path / "m.so", "--header", tmp_path / "m.so"))
    assert "--header" in line and "is the same file as -o" in line
    line = one_line_error(cli("build", victim, "-o", tmp_path / "m.so", "--header", tmp_path / "no" / "m.h"))
    assert f"--header {tmp_path / 'no' / 'm.h'}: the folder {tmp_path / 'no'} does not exist" in line
    assert victim.read_bytes() == model and log.read_bytes() == records
    assert not (tmp_path / "m.so").exists()


def test_an_existing_output_is_replaced_only_by_its_own_kind(cli, tiny_onnx, tiny_so, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("mine\n")
    for args, what in [(("build", tiny_onnx, "-o", notes), "-o"),
                       (("build", tiny_onnx, "-o", tmp_path / "m.so", "--header", notes), "--header"),
                       (("run", tiny_so, "--output", notes), "--output")]:
        line = one_line_error(cli(*args))
        assert f"{what} {notes}: exists and is not" in line and "not replaced" in line, line
    assert notes.read_text() == "mine\n" and not (tmp_path / "m.so").exists()
    for _ in range(2):          # a library, header or .npz written before is replaced
        r = cli("build", tiny_onnx, "-o", tmp_path / "m.so", "--header", tmp_path / "m.h")
        assert r.code == 0, r.err
        r = cli("run", tmp_path / "m.so", "--output", tmp_path / "out.npz")
        assert r.code == 0, r.err


def test_build_with_an_unknown_cpu_is_one_line(cli, tiny_onnx, tmp_path):
    r = cli("build", tiny_onnx, "-o", tmp_path / "m.so", "--target", "llvm -mcpu=nonsense")
    line = one_line_error(r)
    assert "unknown CPU -mcpu='nonsense'" in line and "tilewise info --targets" in line
    assert "LLVM ERROR" not in r.text
    r = cli("info", "--targets")
    assert r.code == 0 and "bdver2" in r.out and "fma4" in r.out


def test_run_with_too_many_threads_is_one_line(cli, tiny_so):
    for value in ("99999", "0", "many"):
        line = one_line_error(cli("run", tiny_so, env={"TILEWISE_NUM_THREADS": value}))
        assert f"TILEWISE_NUM_THREADS='{value}'" in line and "give 1 to 1024" in line


def test_run_refuses_a_damaged_library(cli, tiny_so, tmp_path):
    data = open(tiny_so, "rb").read()
    (tmp_path / "half.so").write_bytes(data[: len(data) // 2])
    line = one_line_error(cli("run", tmp_path / "half.so"))
    assert "is damaged (cut short or modified)" in line


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux's /proc, which takes no new file")
def test_an_output_folder_that_takes_no_file_is_refused_before_any_work(cli, tiny_onnx, tiny_so, tiny_log):
    # /proc refuses new files even to root (whom permission bits do not stop): the folder is
    # probed before the model is compiled, tuned or run, each command naming its option
    for args, flag in [(["build", tiny_onnx, "-o", "/proc/m.so"], "-o"),
                       (["build", tiny_onnx, "-o", "m.so", "--header", "/proc/m.h"], "--header"),
                       (["tune", tiny_onnx, "--log", "/proc/t.jsonl", "--trials", "1"], "--log"),
                       (["logs", "merge", tiny_log, "-o", "/proc/m.jsonl"], "-o"),
                       (["run", tiny_so, "--output", "/proc/o.npz"], "--output")]:
        line = one_line_error(cli(*args))
        assert f"{flag} /proc/" in line and "no file can be written in the folder /proc" in line, line
