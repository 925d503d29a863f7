"""Symbolic dimensions on the command line: a symbolic batch builds as a dynamic batch (run with
any batch up to --max-batch); any other symbolic dimension is refused with the --shape to give."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper


def _dynamic_model(path, dims=("N", 3, 8, 8)) -> str:
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, list(dims))
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, list(dims))
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "dyn", [x], [y])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return str(path)


def test_a_symbolic_batch_builds_without_shape_and_runs_any_batch_up_to_the_maximum(cli, tmp_path):
    model = _dynamic_model(tmp_path / "dyn.onnx")
    r = cli("build", model, "-o", tmp_path / "dyn.so", "--max-batch", "4", "--header", tmp_path / "dyn.h")
    assert r.code == 0, r.text
    assert "x: float32[N, 3, 8, 8]" in r.out and "dynamic batch N: 1 to 4 (--max-batch)" in r.out
    assert "#define TILEWISE_MAX_BATCH 4\n" in (tmp_path / "dyn.h").read_text()
    r = cli("run", tmp_path / "dyn.so", "--batch", "3")
    assert r.code == 0 and "input x: float32[3, 3, 8, 8] from random (seed 0)" in r.out, r.text
    x = np.random.default_rng(0).standard_normal((4, 3, 8, 8)).astype(np.float32)
    np.save(tmp_path / "x4.npy", x)
    r = cli("run", tmp_path / "dyn.so", "-i", tmp_path / "x4.npy", "-o", tmp_path / "y.npz")
    assert r.code == 0, r.text
    np.testing.assert_array_equal(np.load(tmp_path / "y.npz")["y"], np.maximum(x, 0))
    np.save(tmp_path / "x5.npy", np.zeros((5, 3, 8, 8), np.float32))
    r = cli("run", tmp_path / "dyn.so", "-i", tmp_path / "x5.npy")
    assert r.code == 1 and "Traceback" not in r.text
    assert "input x: batch 5 is outside 1..4, the maximum this model was built for; rebuild it with --max-batch 5" in r.err
    r = cli("run", tmp_path / "dyn.so", "--batch", "9")
    assert r.code == 1 and "--batch 9: give 1 to 4" in r.err
    r = cli("build", model, "-o", tmp_path / "bad.so", "--max-batch", "0")
    assert r.code == 1 and "--max-batch 0: give the largest batch" in r.err


def test_a_fixed_batch_with_shape_and_other_symbolic_dims_name_the_shape_option(cli, tmp_path):
    model = _dynamic_model(tmp_path / "dyn.onnx")
    r = cli("build", model, "-o", tmp_path / "dyn.so", "--shape", "x=2x3x8x8")
    assert r.code == 0, r.text
    assert "x: float32[2, 3, 8, 8]" in r.out and "dynamic batch" not in r.out
    r = cli("run", tmp_path / "dyn.so", "--batch", "2")
    assert r.code == 1 and "was built for fixed shapes" in r.err
    model = _dynamic_model(tmp_path / "hw.onnx", (1, 3, "H", "W"))
    r = cli("build", model, "-o", tmp_path / "hw.so")
    assert r.code == 1 and "Traceback" not in r.text
    assert "input x: dimension(s) [1, 3, 'H', 'W'] are not static; give it with --shape x=1x3x1x1" in r.err
    assert "shapes=" not in r.err and "from_onnx" not in r.err
