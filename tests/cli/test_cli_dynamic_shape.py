"""A model with a symbolic dimension: the command line says which --shape to give, in its own words."""
from __future__ import annotations

import onnx
from onnx import helper


def _dynamic_model(path) -> str:
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", 3, 8, 8])
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["N", 3, 8, 8])
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "dyn", [x], [y])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return str(path)


def test_dynamic_batch_error_names_the_shape_option(cli, tmp_path):
    model = _dynamic_model(tmp_path / "dyn.onnx")
    r = cli("build", model, "-o", tmp_path / "dyn.so")
    assert r.code == 1 and "Traceback" not in r.text
    assert "input x: dimension(s) ['N', 3, 8, 8] are not static; give it with --shape x=1x3x8x8" in r.err
    assert "shapes=" not in r.err and "from_onnx" not in r.err
    r = cli("build", model, "-o", tmp_path / "dyn.so", "--shape", "x=2x3x8x8")
    assert r.code == 0, r.text
    assert "x: float32[2, 3, 8, 8]" in r.out
