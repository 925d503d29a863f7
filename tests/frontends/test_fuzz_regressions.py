"""Models the ONNX fuzzer broke (issue 17), rebuilt from its seed model: each is refused with one
ModelError naming the value, node or field, or compiled to ONNX Runtime's answer."""
import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

import frontends
from frontends import ModelError

from ..fuzz import seeds


def seed() -> onnx.ModelProto:
    """The fuzzer's seed: Conv+bias -> Relu -> Reshape -> MatMul ('fc') -> Softmax, x (1,3,8,8) -> y (1,10)."""
    return onnx.load_from_string(seeds.model_bytes())


def refused(m, *parts) -> str:
    """The import's ModelError message, checked to contain every part."""
    with pytest.raises(ModelError) as e:
        frontends.from_onnx(m.SerializeToString())
    msg = str(e.value)
    for p in parts:
        assert p in msg, msg
    return msg


def test_an_ir_version_too_large_for_onnx_is_refused():
    m = seed()
    m.ir_version = 2 ** 40
    refused(m, "IR version 1099511627776")


def with_initializer(m: onnx.ModelProto, name: str, value: np.ndarray) -> onnx.ModelProto:
    """m with initializer `name` replaced by value."""
    k = next(i for i, t in enumerate(m.graph.initializer) if t.name == name)
    m.graph.initializer[k].CopyFrom(numpy_helper.from_array(value, name))
    return m


def with_attribute(m: onnx.ModelProto, node: str, **attrs) -> onnx.ModelProto:
    """m with the named node's attributes set (replaced if present)."""
    n = next(n for n in m.graph.node if n.name == node)
    keep = [a for a in n.attribute if a.name not in attrs]
    del n.attribute[:]
    n.attribute.extend(keep + [helper.make_attribute(k, v) for k, v in attrs.items()])
    return m


@pytest.mark.parametrize("shape", [(64, 5), (64, 3, 1, 1), (5,)])
def test_a_conv_bias_of_the_wrong_shape_is_refused_at_import(shape):
    m = with_initializer(seed(), "b", np.zeros(shape, np.float32))
    refused(m, "node conv (Conv): bias 'b'", f"{shape}", "(4,)")


@pytest.mark.parametrize("shape", [(), (4, 3, 3)])
def test_a_conv_weight_of_the_wrong_rank_is_refused_at_import(shape):
    # the fuzzer's initializer w -> shape () ended in an IndexError in the Conv check
    m = with_initializer(seed(), "w", np.zeros(shape, np.float32))
    refused(m, "node conv (Conv): weight 'w'", f"{shape}", "rank 4")


@pytest.mark.parametrize("attr, value, needs", [("pads", [1], 4), ("pads", [1, 1, 1, 1, 1, 1], 4),
                                                ("strides", [1], 2), ("dilations", [1, 1, 1], 2),
                                                ("kernel_shape", [3], 2)])
def test_conv_attributes_of_the_wrong_length_are_refused(attr, value, needs):
    m = with_attribute(seed(), "conv", **{attr: value})
    refused(m, f"node conv (Conv): attribute {attr} has {len(value)} value(s)", f"needs {needs}")


def test_pooling_attributes_of_the_wrong_length_are_refused():
    m = seed()
    m.graph.node[1].CopyFrom(helper.make_node("MaxPool", ["c"], ["r"], name="pool", kernel_shape=[1, 1],
                                              pads=[0, 0]))
    refused(m, "node pool (MaxPool): attribute pads has 2 value(s)", "needs 4")


def test_a_1d_conv_with_pads_of_the_wrong_length_is_refused():
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 2, 8])
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)
    w = numpy_helper.from_array(np.ones((3, 2, 3), np.float32), "w")
    g = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"], name="c1", pads=[1])], "c1d", [x], [y], [w])
    refused(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]),
            "node c1 (Conv): attribute pads has 1 value(s), but its 1-D data 'x' needs 2")


def with_output_shape(m: onnx.ModelProto, dims: list) -> onnx.ModelProto:
    """m with its output 'y' declared with dims."""
    m.graph.output[0].CopyFrom(helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, dims))
    return m


def assert_as_onnx_runtime(m: onnx.ModelProto) -> None:
    """tilewise's outputs have ONNX Runtime's shapes and values."""
    import onnxruntime as ort
    x = np.random.default_rng(0).uniform(-1, 1, (1, 3, 8, 8)).astype(np.float32)
    want = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    got = frontends.build(frontends.from_onnx(m.SerializeToString())).run(x=x)
    for g, w in zip(got, want):
        assert g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5, equal_nan=True)


@pytest.mark.parametrize("dims", [[1], [1, 10, 0], [1, 10, 1], [2, 10], ["N", 11]])
def test_a_declared_output_shape_that_disagrees_gives_way_to_the_computed_one(dims, caplog):
    m = with_output_shape(seed(), dims)
    assert frontends.from_onnx(m.SerializeToString()).outputs[0].shape == (1, 10)
    assert f"output 'y': the model declares shape {dims}, but it is computed as [1, 10]" in caplog.text
    assert_as_onnx_runtime(m)


def test_a_rewired_node_input_gives_the_computed_shape_not_the_declared_one():
    m = seed()
    m.graph.node[4].input[0] = "c"          # Softmax reads the Conv's (1, 4, 8, 8) output
    assert frontends.from_onnx(m.SerializeToString()).outputs[0].shape == (1, 4, 8, 8)
    assert_as_onnx_runtime(m)


def test_infinities_in_a_matmul_weight_make_the_softmax_row_nan_as_in_onnx_runtime():
    m = seed()
    fc = numpy_helper.to_array(next(t for t in m.graph.initializer if t.name == "fc")).copy()
    fc[89, 0], fc[130, 7], fc[223, 0] = -np.inf, np.inf, -np.inf      # the fuzzer's edit: inf * 0 gives NaN
    assert_as_onnx_runtime(with_initializer(m, "fc", fc))


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax"])
@pytest.mark.parametrize("shape, axis", [((2, 37), 1), ((2, 37), 0), ((3, 4, 16), 2), ((3, 4, 16), 1)])
def test_a_nan_or_inf_in_a_softmax_row_makes_the_row_nan(op, shape, axis):
    import onnxruntime as ort
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    x[0, 3], x[1, -1] = np.nan, np.inf                  # a NaN, and an inf (inf - max(x) = NaN)
    g = helper.make_graph([helper.make_node(op, ["x"], ["y"], axis=axis)], "sm",
                          [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, list(shape))],
                          [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
    want = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    (got,) = frontends.build(frontends.from_onnx(m)).run(x=x)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6, equal_nan=True)


def test_a_value_info_shape_that_disagrees_is_ignored():
    m = seed()
    m.graph.value_info.extend([helper.make_tensor_value_info("r", onnx.TensorProto.FLOAT, [1, 4, 8]),
                               helper.make_tensor_value_info("m", onnx.TensorProto.FLOAT, [1, 10, 0])])
    assert frontends.from_onnx(m.SerializeToString()).outputs[0].shape == (1, 10)
    assert_as_onnx_runtime(m)


def test_a_node_inference_refuses_is_named_even_when_its_output_is_declared():
    m = seed()
    m.graph.node[4].input[0] = "b"          # Softmax(axis=1) of the 1-D bias; 'y' is declared (1, 10)
    refused(m, "node softmax (Softmax): invalid for its inputs [(4,)]", "'axis'")
