"""Bad invocations exit 2; problems the user can fix print one line and exit 1; --debug shows the traceback."""
from __future__ import annotations

import importlib.util
import os

import pytest
from .cli_helpers import one_line_error


@pytest.mark.parametrize("args", [
    [],                                              # no command
    ["frobnicate"],                                  # unknown command
    ["tune"],                                        # missing model
    ["tune", "m.onnx", "--trials", "0"],             # not a positive count
    ["tune", "m.onnx", "--trials", "many"],
    ["tune", "m.onnx", "--trials", "5", "--time-budget", "1"],   # exclusive budgets
    ["tune", "m.onnx", "--tuner", "genetic"],
    ["build", "m.onnx", "--bogus"],
    ["logs"],                                        # missing action
    ["logs", "show"],                                # missing files
    ["logs", "merge", "a.jsonl"],                    # missing -o
    ["bench", "m.onnx", "--compare", "tvm"],
])
def test_bad_invocation_exits_2(cli, args):
    r = cli(*args)
    assert r.code == 2, (r.code, r.text)
    assert "usage:" in r.err
    assert "Traceback" not in r.text


@pytest.mark.parametrize("command", [["build"], ["tune"], ["bench"], ["demo"]])
def test_missing_model_file(cli, command):
    line = one_line_error(cli(*command, "no-such-model.onnx"))
    assert "no-such-model.onnx" in line and "no such" in line


@pytest.mark.parametrize("command", [["build"], ["tune"], ["bench"]])
def test_non_onnx_file_is_one_line(cli, tmp_path, command):
    bad = tmp_path / "notes.onnx"
    bad.write_text("this is not a model\n" * 20)
    line = one_line_error(cli(*command, bad))
    assert "notes.onnx" in line and "ONNX" in line


def test_truncated_onnx_file(cli, tmp_path, tiny_onnx):
    data = open(tiny_onnx, "rb").read()
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(data[: len(data) // 2])
    line = one_line_error(cli("build", cut))
    assert "cut.onnx" in line


def test_debug_shows_the_traceback(cli, tmp_path):
    bad = tmp_path / "notes.onnx"
    bad.write_text("nope")
    r = cli("--debug", "build", bad)
    assert r.code != 0 and "Traceback" in r.err
    r = cli("build", bad, "--debug")          # after the subcommand, too
    assert r.code != 0 and "Traceback" in r.err


def test_run_rejects_files_that_are_not_libraries(cli, tmp_path, tiny_onnx):
    line = one_line_error(cli("run", tmp_path / "missing.so"))
    assert "missing.so" in line
    line = one_line_error(cli("run", tiny_onnx))        # an ONNX model: the fix is to build it
    assert "is an ONNX model, not a library" in line and f"tilewise build {tiny_onnx} -o model.so" in line
    notes = tmp_path / "notes.txt"
    notes.write_text("not a library")
    assert "not a tilewise library" in one_line_error(cli("run", notes))


def test_logs_errors(cli, tmp_path):
    line = one_line_error(cli("logs", "show", tmp_path / "none.jsonl"))
    assert "none.jsonl" in line
    line = one_line_error(cli("logs", "stats", tmp_path))
    assert "folder" in line


def test_tune_refuses_to_mix_into_an_existing_log(cli, tmp_path, tiny_onnx, tiny_log):
    line = one_line_error(cli("tune", tiny_onnx, "--log", tiny_log, "--trials", "4"))
    assert "--resume" in line


def test_bad_shape_option(cli, tiny_onnx):
    line = one_line_error(cli("build", tiny_onnx, "--shape", "x:1x2"))
    assert "NAME=DIMS" in line


def test_bad_target(cli, tiny_onnx, tmp_path):
    line = one_line_error(cli("build", tiny_onnx, "-o", tmp_path / "m.so", "--target", "cuda"))
    assert "--target" in line


def test_bench_of_a_library_needs_the_model_to_compare(cli, tiny_so):
    line = one_line_error(cli("bench", tiny_so, "--compare", "onnxruntime"))
    assert "--model" in line


def test_roofline_without_matplotlib_says_how_to_get_it(cli, cli_env, tiny_onnx, tmp_path):
    env = None
    if importlib.util.find_spec("matplotlib") is not None:
        # hide the installed matplotlib from the command (a None entry in sys.modules makes
        # find_spec answer None and an import fail), as on a machine without the plot extra
        hide = tmp_path / "hide"
        hide.mkdir()
        (hide / "sitecustomize.py").write_text("import sys\nsys.modules['matplotlib'] = None\n")
        env = {"PYTHONPATH": os.pathsep.join([str(hide), cli_env["PYTHONPATH"]])}
    line = one_line_error(cli("bench", tiny_onnx, "--roofline", tmp_path / "r.png", env=env))
    assert "matplotlib" in line and "tilewise[plot]" in line
