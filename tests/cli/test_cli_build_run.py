"""tilewise build / run / bench from a subprocess, with given and shared logs."""
from __future__ import annotations

import numpy as np

from frontends.profile import onnxruntime_session

from .cli_helpers import one_line_error


def _reference(model: str, x: np.ndarray) -> np.ndarray:
    return onnxruntime_session(model).run(None, {"x": x})[0]


def test_build_says_which_logs_it_used(cli, tiny_onnx, tiny_log, tmp_path):
    out = tmp_path / "m.so"
    r = cli("build", tiny_onnx, "-o", out, "--log", tiny_log, "--no-shared-logs", "--header", tmp_path / "m.h")
    assert r.code == 0, r.err
    assert "tuning logs used:" in r.out and f"{tiny_log}: 5 record(s) for this CPU" in r.out
    assert "tuned kernels: 2 of the model's 2" in r.out
    assert out.exists() and (tmp_path / "m.h").exists()
    import te
    m = te.runtime.load_module(out)
    assert m.is_model and m.input_names == ["x"]
    x = np.random.default_rng(1).standard_normal((1, 8, 16, 16)).astype(np.float32)
    np.testing.assert_allclose(m.run(x=x)[0], _reference(tiny_onnx, x), rtol=1e-4, atol=1e-4)


def test_build_without_logs_or_output_name(cli, tiny_onnx, tmp_path):
    """Default schedules, and the library named after the model in the current folder (one build
    for both: each build of the tiny model is a 3-4 s subprocess)."""
    r = cli("build", tiny_onnx, "--no-shared-logs", cwd=tmp_path)
    assert r.code == 0, r.err
    assert "tuning logs used: none" in r.out
    assert "0 of the model's 2" in r.out and "default schedule" in r.out
    assert (tmp_path / "tiny.so").exists()


def test_shared_logs_are_validated_and_bad_ones_skipped(cli, tiny_onnx, tiny_log, tmp_path):
    from te.target import host
    shared = tmp_path / "shared"
    (shared / host().isa).mkdir(parents=True)
    (shared / "x86_64+sse4.2").mkdir()                       # another ISA's folder: not read
    good = open(tiny_log).read()
    (shared / host().isa / "good.jsonl").write_text(good)
    lines = good.splitlines()
    (shared / "bad-version.jsonl").write_text(lines[0] + "\n" + lines[1].replace('"version":1', '"version":2') + "\n")
    (shared / "bad-config.jsonl").write_text(lines[0].replace('"tile_oc":', '"tile_qq":') + "\n")
    (shared / "bad-target.jsonl").write_text(lines[0].replace('"isa":"x86_64', '"isa":"riscv') + "\n")
    (shared / "x86_64+sse4.2" / "garbage.jsonl").write_text("garbage\n")
    r = cli("build", tiny_onnx, "-o", tmp_path / "m.so", env={"TILEWISE_LOGS": str(shared)})
    assert r.code == 0, r.err
    assert "good.jsonl: 5 record(s) for this CPU (shared)" in r.out
    assert "tuned kernels: 2 of the model's 2" in r.out
    assert f"{shared / 'bad-version.jsonl'}:2: record version 2" in r.err
    assert f"{shared / 'bad-config.jsonl'}:1: config does not fit" in r.err
    assert f"{shared / 'bad-target.jsonl'}:1: target" in r.err
    assert "garbage" not in r.text
    assert "Traceback" not in r.text
    r = cli("build", tiny_onnx, "-o", tmp_path / "m2.so", "--no-shared-logs", env={"TILEWISE_LOGS": str(shared)})
    assert r.code == 0 and "tuning logs used: none" in r.out and "bad-version" not in r.err


def test_a_bad_line_in_a_given_log_is_skipped_not_fatal(cli, tiny_onnx, tiny_log, tmp_path):
    log = tmp_path / "mine.jsonl"
    log.write_text(open(tiny_log).read() + "{oops\n")
    r = cli("build", tiny_onnx, "-o", tmp_path / "m.so", "--log", log, "--no-shared-logs")
    assert r.code == 0, r.err
    assert f"{log}:6" in r.err and "1 bad line(s) skipped" in r.out


def test_run_with_random_inputs(cli, tiny_so):
    r = cli("run", tiny_so)
    assert r.code == 0, r.err
    assert "input x: float32[1, 8, 16, 16] from random" in r.out
    row = next(ln for ln in r.out.splitlines() if ln.startswith("y "))
    assert "1x16x16x16" in row and "float32" in row


def test_run_with_input_files_and_saved_outputs(cli, tiny_so, tiny_onnx, tmp_path):
    x = np.random.default_rng(2).standard_normal((1, 8, 16, 16)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    r = cli("run", tiny_so, "--input", f"x={tmp_path / 'x.npy'}", "--output", tmp_path / "out.npz")
    assert r.code == 0, r.err
    assert "from file" in r.out and "saved 1 output(s)" in r.out
    y = np.load(tmp_path / "out.npz")["y"]
    np.testing.assert_allclose(y, _reference(tiny_onnx, x), rtol=1e-4, atol=1e-4)
    # one input: the name may be left out; float64 is converted
    np.save(tmp_path / "x64.npy", x.astype(np.float64))
    r = cli("run", tiny_so, "-i", tmp_path / "x64.npy")
    assert r.code == 0 and "converted float64 to float32" in r.err


def test_run_vector_outputs_show_top_classes(cli, tmp_path):
    import onnx
    from onnx import helper, numpy_helper
    w = np.random.default_rng(0).standard_normal((16, 10)).astype(np.float32)
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["scores"])], "clf",
                          [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 16])],
                          [helper.make_tensor_value_info("scores", onnx.TensorProto.FLOAT, [1, 10])],
                          [numpy_helper.from_array(w, "w")])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), tmp_path / "clf.onnx")
    assert cli("build", tmp_path / "clf.onnx", "-o", tmp_path / "clf.so", "--no-shared-logs").code == 0
    r = cli("run", tmp_path / "clf.so", "--top", "3")
    assert r.code == 0, r.err
    assert "scores: argmax" in r.out and "top 3" in r.out


def test_run_input_errors(cli, tiny_so, tmp_path):
    np.save(tmp_path / "small.npy", np.zeros((1, 8, 4, 4), np.float32))
    line = one_line_error(cli("run", tiny_so, "--input", f"x={tmp_path / 'small.npy'}"))
    assert "shape" in line
    line = one_line_error(cli("run", tiny_so, "--input", f"nope={tmp_path / 'small.npy'}"))
    assert "no input 'nope'" in line
    line = one_line_error(cli("run", tiny_so, "--input", f"x={tmp_path / 'missing.npy'}"))
    assert "missing.npy" in line


def test_bench_onnx_against_onnxruntime_with_kernel_roofline(cli, tiny_onnx, tiny_log):
    r = cli("bench", tiny_onnx, "--repeat", "3", "--log", tiny_log, "--no-shared-logs")
    assert r.code == 0, r.err
    assert "median" in r.out and "ONNX Runtime" in r.out and "without spinning" in r.out
    assert "outputs agree with ONNX Runtime" in r.out
    assert "per-kernel roofline" in r.out and "at their roofs" in r.out
    for col in ("FLOP/B", "GFLOP/s", "MB moved", "bound", "of roof"):
        assert col in r.out
    kernels = [ln for ln in r.out.splitlines() if ln.startswith("k") and "_conv" in ln.split()[0]]
    assert len(kernels) == 2


def test_bench_library_and_model(cli, tiny_so, tiny_onnx):
    r = cli("bench", tiny_so, "--repeat", "3")
    assert r.code == 0, r.err
    assert "tiny.so" in r.out and "ONNX Runtime" not in r.out and "--model" in r.out
    r = cli("bench", tiny_so, "--model", tiny_onnx, "--repeat", "3", "--no-kernels", "--no-shared-logs")
    assert r.code == 0, r.err
    assert "ONNX Runtime" in r.out and "per-kernel" not in r.out


def test_roofline_plot(cli, tiny_onnx, tmp_path):
    import pytest
    pytest.importorskip("matplotlib")
    r = cli("bench", tiny_onnx, "--repeat", "2", "--roofline", tmp_path / "r.png", "--no-shared-logs")
    assert r.code == 0, r.err
    assert (tmp_path / "r.png").stat().st_size > 1000
