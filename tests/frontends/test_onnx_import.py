"""ONNX import: folding, static shapes, and errors that list every offending node before compiling."""
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import frontends
from frontends import ModelError, zoo


def tiny(nodes, inputs, outputs, inits=(), opset=13):
    g = helper.make_graph(nodes, "tiny", inputs, outputs, list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def vi(name, shape, t=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, t, shape)


def test_light_models_import_with_static_shapes():
    for name in ("squeezenet", "resnet50"):
        g = frontends.from_onnx(zoo.light_model(name))
        assert g.inputs[0].shape == (1, 3, 224, 224)
        assert all(n.op != "ConstantOfShape" for n in g.nodes)    # weights were folded
        for n in g.nodes:
            for o in n.outputs:
                if o:
                    assert all(isinstance(d, int) for d in g.info(o).shape)


def test_constant_shape_subgraph_is_folded():
    # y = Reshape(x, Concat(Shape(x)[0:1], [-1])) : the shape is computed, then folded
    nodes = [helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("Slice", ["s", "st", "en"], ["s0"]),
             helper.make_node("Concat", ["s0", "minus1"], ["shape"], axis=0),
             helper.make_node("Reshape", ["x", "shape"], ["y"])]
    inits = [numpy_helper.from_array(np.array([0], np.int64), "st"),
             numpy_helper.from_array(np.array([1], np.int64), "en"),
             numpy_helper.from_array(np.array([-1], np.int64), "minus1")]
    g = frontends.from_onnx(tiny(nodes, [vi("x", [2, 3, 4])], [vi("y", None)], inits))
    assert [n.op for n in g.nodes] == ["Reshape"]
    assert list(g.nodes[0].attrs["shape"]) == [2, -1]
    assert g.outputs[0].shape == (2, 12)


def test_every_problem_is_listed_at_once():
    nodes = [helper.make_node("Relu", ["x"], ["a"], name="r1"),
             helper.make_node("NonMaxSuppression", ["a", "a"], ["b"], name="nms"),
             helper.make_node("Unique", ["a"], ["c"], name="uniq")]
    m = tiny(nodes, [vi("x", [1, 4])], [vi("b", None), vi("c", None)])
    with pytest.raises(ModelError) as e:
        frontends.from_onnx(m)
    msg = str(e.value)
    assert "nms (NonMaxSuppression)" in msg and "uniq (Unique)" in msg and "What to do" in msg


def test_dynamic_input_needs_shapes():
    m = tiny([helper.make_node("Relu", ["x"], ["y"])], [vi("x", ["batch", 8])], [vi("y", ["batch", 8])])
    with pytest.raises(ModelError, match="not static.*shapes="):
        frontends.from_onnx(m)
    g = frontends.from_onnx(m, shapes={"x": (3, 8)})
    assert g.outputs[0].shape == (3, 8)


def test_runtime_shape_input_is_reported():
    nodes = [helper.make_node("Reshape", ["x", "shape"], ["y"], name="rs")]
    m = tiny(nodes, [vi("x", [2, 6]), vi("shape", [2], TensorProto.INT64)], [vi("y", None)])
    with pytest.raises(ModelError, match="rs \\(Reshape\\).*computed at run time"):
        frontends.from_onnx(m)


def test_bad_files_are_one_line(tmp_path):
    p = tmp_path / "not.onnx"
    p.write_text("hello, I am not a model")
    with pytest.raises(ModelError) as e:
        frontends.from_onnx(p)
    assert "\n" not in str(e.value) and "not a readable ONNX model" in str(e.value)
    good = zoo.mobilenet_block(size=8).SerializeToString()
    q = tmp_path / "cut.onnx"
    q.write_bytes(good[: len(good) // 2])
    with pytest.raises(ModelError):
        frontends.from_onnx(q)
    with pytest.raises(ModelError, match="no such file"):
        frontends.from_onnx(tmp_path / "missing.onnx")


def test_unsupported_dtype_is_reported():
    m = tiny([helper.make_node("Relu", ["x"], ["y"])], [vi("x", [4], TensorProto.FLOAT16)],
             [vi("y", [4], TensorProto.FLOAT16)])
    with pytest.raises(ModelError, match="element type"):
        frontends.from_onnx(m)
