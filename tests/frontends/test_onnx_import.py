"""ONNX import: folding, static shapes, and errors that list every offending node before compiling."""
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import frontends
from frontends import ModelError, zoo

from .onnx_helpers import tiny, vi


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
    m = tiny([helper.make_node("Identity", ["x"], ["y"])], [vi("x", [4], TensorProto.COMPLEX64)],
             [vi("y", [4], TensorProto.COMPLEX64)], opset=21)
    with pytest.raises(ModelError, match="element type COMPLEX64 is not supported"):
        frontends.from_onnx(m)


def _reference(m, feeds: dict) -> list:
    from onnx.reference import ReferenceEvaluator
    return ReferenceEvaluator(m).run(None, feeds)


def _run(m, feeds: dict, **kw) -> list:
    g = frontends.from_onnx(m, **kw)
    return frontends.build(g).run(**{i.name: feeds[i.name] for i in g.inputs})


def test_constants_bind_shape_inputs():
    nodes = [helper.make_node("Reshape", ["x", "shape"], ["y"], name="rs")]
    m = tiny(nodes, [vi("x", [2, 6]), vi("shape", [2], TensorProto.INT64)], [vi("y", None)])
    assert frontends.onnx.shape_inputs(m) == ["shape"]
    g = frontends.from_onnx(m, constants={"shape": np.array([3, 4])})
    assert [i.name for i in g.inputs] == ["x"] and g.outputs[0].shape == (3, 4)
    x = np.arange(12, dtype=np.float32).reshape(2, 6)
    np.testing.assert_array_equal(frontends.build(g).run(x=x)[0], x.reshape(3, 4))
    with pytest.raises(ModelError, match="constants= names unknown inputs: nope"):
        frontends.from_onnx(m, constants={"shape": np.array([3, 4]), "nope": np.zeros(1)})


def test_shape_inputs_see_through_computations_but_not_shape_of():
    # shape = Concat(Shape(x)[:1], k): k decides the shape, x only through its shape
    nodes = [helper.make_node("Shape", ["x"], ["s"], end=1),
             helper.make_node("Concat", ["s", "k"], ["shape"], axis=0),
             helper.make_node("Reshape", ["x", "shape"], ["y"])]
    m = tiny(nodes, [vi("x", [2, 6]), vi("k", [1], TensorProto.INT64)], [vi("y", None)])
    assert frontends.onnx.shape_inputs(m) == ["k"]


def test_checks_list_every_unsupported_node_at_import():
    nodes = [helper.make_node("MaxPool", ["x"], ["p", "idx"], kernel_shape=[2, 2], name="mp"),
             helper.make_node("Conv", ["v", "w"], ["c"], name="conv3d"),
             helper.make_node("BatchNormalization", ["x", "s", "b", "mu", "var"], ["bn"], training_mode=1,
                              name="bn")]
    inits = [numpy_helper.from_array(np.ones((2, 2, 1, 1, 1), np.float32), "w")] + [
        numpy_helper.from_array(np.ones(2, np.float32), n) for n in ("s", "b", "mu", "var")]
    m = tiny(nodes, [vi("x", [1, 2, 4, 4]), vi("v", [1, 2, 3, 3, 3])],
             [vi("p", None), vi("idx", None), vi("c", None), vi("bn", None)], inits, opset=15)
    with pytest.raises(ModelError) as e:
        frontends.from_onnx(m)
    msg = str(e.value)
    assert "mp (MaxPool): MaxPool with an Indices output" in msg
    assert "conv3d (Conv): Conv3D" in msg and "bn (BatchNormalization): BatchNormalization in training" in msg


def test_every_output_of_split_is_computed(rand):
    nodes = [helper.make_node("Split", ["x"], ["a", "b", "c"], axis=1, num_outputs=3)]
    m = tiny(nodes, [vi("x", [2, 7])], [vi("a", None), vi("b", None), vi("c", None)], opset=18)
    x = rand((2, 7))
    got = _run(m, {"x": x})
    for g, w in zip(got, np.split(x, [3, 6], axis=1)):           # ceil(7 / 3) = 3: 3, 3, 1
        np.testing.assert_array_equal(g, w)


def test_layer_norm_statistics_outputs(rand):
    nodes = [helper.make_node("LayerNormalization", ["x", "g"], ["y", "mean", "inv"], axis=1, epsilon=1e-3)]
    inits = [numpy_helper.from_array(rand((3, 4)), "g")]
    m = tiny(nodes, [vi("x", [2, 3, 4])], [vi("y", None), vi("mean", None), vi("inv", None)], inits, opset=17)
    x = rand((2, 3, 4))
    for got, want in zip(_run(m, {"x": x}), _reference(m, {"x": x})):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_1d_conv_and_3d_pooling_are_rewritten(rand):
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 2], strides=[2], dilations=[2]),
             helper.make_node("AveragePool", ["v"], ["a"], kernel_shape=[2, 3, 2], pads=[1, 0, 1, 0, 1, 1],
                              strides=[1, 2, 1], ceil_mode=1),
             helper.make_node("MaxPool", ["v"], ["p"], kernel_shape=[3, 2, 2], dilations=[1, 2, 1])]
    inits = [numpy_helper.from_array(rand((4, 3, 3)), "w")]
    m = tiny(nodes, [vi("x", [2, 3, 11]), vi("v", [1, 2, 5, 6, 4])], [vi("c", None), vi("a", None),
                                                                        vi("p", None)], inits, opset=19)
    g = frontends.from_onnx(m)
    assert {n.op for n in g.nodes} >= {"Conv", "AveragePool", "MaxPool", "Reshape"}
    feeds = {"x": rand((2, 3, 11)), "v": rand((1, 2, 5, 6, 4))}
    for got, want in zip(_run(m, feeds), _reference(m, feeds)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_zero_size_values_and_castlike_of_constants_fold():
    nodes = [helper.make_node("Slice", ["x", "st", "en"], ["empty"]),
             helper.make_node("Concat", ["x", "empty"], ["y"], axis=0),
             helper.make_node("CastLike", ["half", "x"], ["h"]),
             helper.make_node("Mul", ["y", "h"], ["z"])]
    inits = [numpy_helper.from_array(np.array([5], np.int64), "st"),
             numpy_helper.from_array(np.array([9], np.int64), "en"),
             numpy_helper.from_array(np.array(0.5, np.float64), "half")]
    m = tiny(nodes, [vi("x", [3])], [vi("z", None)], inits, opset=15)
    g = frontends.from_onnx(m)
    assert sorted(n.op for n in g.nodes) == ["Concat", "Mul"]
    x = np.array([1, 2, 3], np.float32)
    np.testing.assert_array_equal(frontends.build(g).run(x=x)[0], x * 0.5)


def test_integer_semantics_follow_onnx():
    nodes = [helper.make_node("Div", ["a", "b"], ["q"]), helper.make_node("Mod", ["a", "b"], ["r"], fmod=1),
             helper.make_node("Pow", ["a", "e"], ["p"])]
    m = tiny(nodes, [vi("a", [4], TensorProto.INT32), vi("b", [4], TensorProto.INT32),
                     vi("e", [4], TensorProto.INT32)],
             [vi("q", None, TensorProto.INT32), vi("r", None, TensorProto.INT32), vi("p", None, TensorProto.INT32)])
    feeds = {"a": np.array([-7, 7, -7, 13], np.int32), "b": np.array([2, -2, -2, 5], np.int32),
             "e": np.array([3, 2, 0, 7], np.int32)}
    got = _run(m, feeds)
    np.testing.assert_array_equal(got[0], [-3, -3, 3, 2])        # toward zero
    np.testing.assert_array_equal(got[1], [-1, 1, -1, 3])        # the sign of the dividend
    np.testing.assert_array_equal(got[2], [-343, 49, 1, 62748517])


@pytest.mark.parametrize("case", ["gather", "batchnorm", "layernorm", "concat"])
def test_one_element_constants_next_to_runtime_tensors(case, rand):
    # the kernels get constants of one element as numbers; ops that index them must cope
    k = numpy_helper.from_array
    nodes, inits, shape = {
        "gather": ([helper.make_node("Gather", ["x", "i"], ["y"], axis=1)], [k(np.array(2, np.int64), "i")], [2, 5]),
        "batchnorm": ([helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y"])],
                      [k(np.array([0.5 + j], np.float32), n) for j, n in enumerate("sbmv")], [2, 1, 3, 3]),
        "layernorm": ([helper.make_node("LayerNormalization", ["x", "g", "b"], ["y"])],
                      [k(np.array([1.5], np.float32), "g"), k(np.array([0.5], np.float32), "b")], [2, 5, 1]),
        "concat": ([helper.make_node("Concat", ["x", "c"], ["y"], axis=1)], [k(np.ones((1, 1), np.float32), "c")],
                   [1, 5]),
    }[case]
    m = tiny(nodes, [vi("x", shape)], [vi("y", None)], inits, opset=17)
    x = rand(tuple(shape))
    np.testing.assert_allclose(_run(m, {"x": x})[0], _reference(m, {"x": x})[0], rtol=1e-5, atol=1e-5)


def test_dropout_ratio_input_is_ignored_at_inference(rand):
    nodes = [helper.make_node("Dropout", ["x", "r"], ["y", "mask"])]
    m = tiny(nodes, [vi("x", [2, 3]), vi("r", [], TensorProto.FLOAT)],
             [vi("y", None), vi("mask", None, TensorProto.BOOL)])
    g = frontends.from_onnx(m)
    assert [n.op for n in g.nodes] == ["Dropout"] and g.nodes[0].inputs == ["x"]
    x = rand((2, 3))
    y, mask = frontends.build(g).run(x=x, r=np.array(0.3, np.float32))
    np.testing.assert_array_equal(y, x)
    assert mask.dtype == np.bool_ and mask.all()
