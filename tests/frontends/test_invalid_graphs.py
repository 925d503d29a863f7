"""Graphs that onnx.checker and ONNX Runtime refuse end in one ModelError naming the node or tensor."""
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import frontends
from frontends import ModelError

from .onnx_helpers import tiny, vi


def node(op, ins, outs, name):
    return helper.make_node(op, ins, outs, name=name)


def refused(m, *parts, **kw) -> str:
    """The import's error message, checked to contain every part."""
    with pytest.raises(ModelError) as e:
        frontends.from_onnx(m, **kw)
    msg = str(e.value)
    for p in parts:
        assert p in msg, msg
    return msg


def test_a_node_reading_its_own_output_is_a_cycle():
    m = tiny([node("Add", ["x", "p"], ["p"], "n1")], [vi("x", [4])], [vi("p", [4])])
    refused(m, "node n1 (Add): reads its own output 'p'")


def test_a_cycle_names_its_nodes():
    m = tiny([node("Add", ["x", "b"], ["a"], "n1"), node("Relu", ["a"], ["b"], "n2")],
             [vi("x", [4])], [vi("b", [4])])
    refused(m, "cycle", "node n1 (Add) reads 'b' from node n2 (Relu)", "node n2 (Relu) reads 'a' from node n1 (Add)")


def test_two_nodes_writing_one_tensor():
    m = tiny([node("Relu", ["x"], ["y"], "n1"), node("Neg", ["x"], ["y"], "n2")], [vi("x", [4])], [vi("y", [4])])
    refused(m, "node n2 (Neg): writes 'y', which node n1 (Relu) already defines")


def test_a_node_writing_an_initializer():
    w = numpy_helper.from_array(np.ones(4, np.float32), "w")
    m = tiny([node("Relu", ["x"], ["w"], "n1")], [vi("x", [4])], [vi("w", [4])], [w])
    refused(m, "node n1 (Relu): writes 'w', which initializer 'w' already defines")


def test_duplicate_input_names():
    m = tiny([node("Add", ["x", "x"], ["y"], "n1")], [vi("x", [4]), vi("x", [4])], [vi("y", [4])])
    refused(m, "input 'x' is declared twice")


def test_an_input_nothing_defines():
    m = tiny([node("Add", ["x", "z"], ["y"], "n1")], [vi("x", [4])], [vi("y", [4])])
    refused(m, "node n1 (Add): input 'z' is not a graph input, an initializer or any node's output")


def test_an_output_nothing_produces():
    m = tiny([node("Relu", ["x"], ["y"], "n1")], [vi("x", [4])], [vi("y", [4]), vi("q", [4])])
    refused(m, "output 'q': no node produces it")


def test_nodes_out_of_order_run_in_dependency_order():
    # ONNX Runtime sorts such a graph; tilewise ran n2 on a not-yet-written tensor
    m = tiny([node("Neg", ["a"], ["y"], "n2"), node("Relu", ["x"], ["a"], "n1")], [vi("x", [4])], [vi("y", [4])])
    x = np.array([-1, 0, 1, 2], np.float32)
    (y,) = frontends.build(frontends.from_onnx(m)).run(x=x)
    np.testing.assert_array_equal(y, -np.maximum(x, 0))


def test_initializer_data_that_does_not_fill_its_shape():
    for raw in (False, True):
        w = helper.make_tensor("w", TensorProto.FLOAT, [2], b"\0" * 8 if raw else [1.0, 2.0], raw=raw)
        w.dims[:] = [4]
        m = tiny([node("Add", ["x", "w"], ["y"], "n1")], [vi("x", [4])], [vi("y", [4])], [w])
        refused(m, "initializer 'w'", "declared shape [4]")


def test_opset_newer_than_known():
    m = tiny([node("Relu", ["x"], ["y"], "n1")], [vi("x", [4])], [vi("y", [4])], opset=99)
    refused(m, "opset 99 is newer")


def test_negative_dimensions():
    m = tiny([node("Relu", ["x"], ["y"], "n1")], [vi("x", [-3, 4])], [vi("y", None)])
    refused(m, "input x: the model declares a negative dimension")
    assert frontends.from_onnx(m, shapes={"x": (3, 4)}).inputs[0].shape == (3, 4)
    refused(m, "input x: shapes= gives (-1, 4)", shapes={"x": (-1, 4)})
    refused(m, "input x: shapes= gives 4", shapes={"x": 4})


def external_model(folder, location: str) -> str:
    """A model file in folder whose initializer 'w' (4 floats) lives in the external file location."""
    w = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[4], data_location=TensorProto.EXTERNAL)
    w.external_data.add(key="location", value=location)
    m = tiny([node("Add", ["x", "w"], ["y"], "n1")], [vi("x", [4])], [vi("y", [4])], [w])
    path = str(folder / "m.onnx")
    onnx.save(m, path)
    return path


def test_external_data_is_read_from_the_models_folder(tmp_path, monkeypatch):
    (tmp_path / "model").mkdir()
    (tmp_path / "cwd").mkdir()
    np.arange(4, dtype=np.float32).tofile(tmp_path / "model" / "w.bin")
    np.full(4, 7, np.float32).tofile(tmp_path / "cwd" / "w.bin")      # where the user stands
    path = external_model(tmp_path / "model", "w.bin")
    monkeypatch.chdir(tmp_path / "cwd")
    np.testing.assert_array_equal(frontends.from_onnx(path).constants["w"], np.arange(4, dtype=np.float32))


def test_external_data_outside_the_models_folder_is_refused(tmp_path, monkeypatch):
    (tmp_path / "model").mkdir()
    secret = tmp_path / "secret.bin"
    np.full(4, 9, np.float32).tofile(secret)
    monkeypatch.chdir(tmp_path / "model")
    for loc in ("../secret.bin", str(secret)):
        refused(external_model(tmp_path / "model", loc), f"initializer 'w': external data '{loc}' is outside")
    (tmp_path / "model" / "link.bin").symlink_to(secret)
    refused(external_model(tmp_path / "model", "link.bin"), "is outside the model's folder")
    refused(external_model(tmp_path / "model", "nope.bin"), "'nope.bin': no such file")
    m = onnx.load(external_model(tmp_path / "model", "w.bin"), load_external_data=False)
    refused(m, "given in memory; pass the model's file path")


def test_constants_of_unsupported_element_types():
    w16 = numpy_helper.from_array(np.ones(4, np.float16), "w")
    m = tiny([node("Add", ["x", "w"], ["y"], "n1")], [vi("x", [4])], [vi("y", [4])], [w16])
    refused(m, "inputs 'x' (float32) and 'w' (float16) must have one element type")
    s = helper.make_tensor("s", TensorProto.STRING, [1], [b"hi"])
    m = tiny([node("Identity", ["s"], ["y"], "n1")], [vi("x", [4])], [vi("y", None)], [s])
    refused(m, "element type string is not supported")
    # float16 weights cast to float32 at import are fine
    cast = helper.make_node("Cast", ["w"], ["wf"], name="c", to=TensorProto.FLOAT)
    m = tiny([cast, node("Add", ["x", "wf"], ["y"], "n1")], [vi("x", [4])], [vi("y", [4])], [w16])
    (y,) = frontends.build(frontends.from_onnx(m)).run(x=np.ones(4, np.float32))
    np.testing.assert_array_equal(y, np.full(4, 2, np.float32))


def test_constant_gather_indices_outside_the_axis():
    for op, idx in (("Gather", [0, 7]), ("GatherElements", [[0, -5, 1]])):
        i = numpy_helper.from_array(np.array(idx, np.int64), "i")
        m = tiny([node(op, ["x", "i"], ["y"], "g")], [vi("x", [4, 3])], [vi("y", None)], [i])
        refused(m, f"node g ({op}): index {np.array(idx).flat[1]} in 'i' is outside [-4, 3]")


def i64(name, v):
    return numpy_helper.from_array(np.array(v, np.int64), name)


W = numpy_helper.from_array(np.ones((4, 3, 3, 3), np.float32), "w")
SCALES = numpy_helper.from_array(np.array([1, 1, 0, 0], np.float32), "sc")
BAD_NODES = {     # case -> (node, input shape, initializers, what the error says)
    "conv_stride_0": (node("Conv", ["x", "w"], ["y"], "c"), [1, 3, 8, 8], [W],
                      "node c (Conv): strides and dilation must be >= 1, got (0, 0)"),
    "pool_stride_0": (helper.make_node("AveragePool", ["x"], ["y"], name="p", kernel_shape=[2, 2], strides=[0, 0]),
                      [1, 3, 8, 8], [], "node p (AveragePool): invalid for its inputs [(1, 3, 8, 8)]: Attribute strides"),
    "conv_groups": (node("Conv", ["x", "w"], ["y"], "c"), [1, 5, 8, 8], [W],
                    "node c (Conv): input channels 5, weight (4, 3, 3, 3) and groups=1 do not match"),
    "conv_kernel_past_the_input": (node("Conv", ["x", "w"], ["y"], "c"), [1, 3, 2, 2], [W],
                                   "node c (Conv): the output is empty (0x0) for input 2x2, kernel 3x3"),
    "lrn_size_0": (node("LRN", ["x"], ["y"], "l"), [1, 3, 8, 8], [], "node l (LRN): size=0"),
    "depth_to_space": (node("DepthToSpace", ["x"], ["y"], "d"), [1, 3, 8, 8], [],
                       "node d (DepthToSpace): 3 channels do not divide into blocks of 2x2"),
    "cumsum_axis": (node("CumSum", ["x", "a"], ["y"], "c"), [1, 3, 8, 8], [i64("a", 9)],
                    "node c (CumSum): axis 9 is outside [-4, 3]"),
    "trilu_vector": (node("Trilu", ["x"], ["y"], "t"), [4], [], "node t (Trilu): its input has rank 1"),
    "resize_scale_0": (node("Resize", ["x", "", "sc"], ["y"], "r"), [1, 3, 8, 8], [SCALES],
                       "node r (Resize): scales [1.0, 1.0, 0.0, 0.0] must all be positive"),
    "split_sizes": (helper.make_node("Split", ["x", "sp"], ["y"], name="s", axis=1), [1, 3, 8, 8],
                    [i64("sp", [1, 1])], "node s.0 (Slice): invalid for its inputs [(1, 3, 8, 8)]: Mismatch between"),
    "pad_past_the_axis": (node("Pad", ["x", "p"], ["y"], "p"), [1, 3, 8, 8], [i64("p", [0, 0, -9, 0, 0, 0, 0, 0])],
                          "node p (Pad): ONNX shape inference gives output 'y' no shape from inputs of shapes"),
}


@pytest.mark.parametrize("case", sorted(BAD_NODES))
def test_nodes_onnx_runtime_refuses_are_named(case):
    n, shape, inits, says = BAD_NODES[case]
    if case == "conv_stride_0":
        n.attribute.append(helper.make_attribute("strides", [0, 0]))
    if case == "lrn_size_0":
        n.attribute.append(helper.make_attribute("size", 0))
    if case == "depth_to_space":
        n.attribute.append(helper.make_attribute("blocksize", 2))
    refused(tiny([n], [vi("x", shape)], [vi("y", None)], inits, opset=18), says)


@pytest.mark.parametrize("bad, says", [
    (node("Add", ["x", ""], ["y"], "n1"), "node n1 (Add): Node (n1)'s input 1 is marked single"),
    (node("Relu", ["x", "x"], ["y"], "n1"), "node n1 (Relu): Node(n1) with schema(::Relu:13) has input size 2"),
    (helper.make_node("Softmax", ["x"], ["y"], name="n1", axis="one"), "node n1 (Softmax): Mismatched attribute type"),
    (helper.make_node("Relu", ["x"], ["y"], name="n1", foo=3), "node n1 (Relu): Unrecognized attribute: foo"),
    (node("Trilu", ["x"], ["y"], "n1"), "node n1 (Trilu): No Op registered for Trilu with domain_version of 13"),
])
def test_nodes_that_do_not_fit_their_schema(bad, says):
    refused(tiny([bad], [vi("x", [4, 4])], [vi("y", None)]), says)


def test_inputs_of_one_type_parameter_must_agree():
    m = tiny([node("Add", ["x", "z"], ["y"], "n1")], [vi("x", [4]), vi("z", [4], TensorProto.INT64)], [vi("y", [4])])
    refused(m, "node n1 (Add): inputs 'x' (float32) and 'z' (int64) must have one element type")


def test_an_output_declared_with_another_element_type():
    # tilewise returned an int64 buffer for a float32 result
    m = tiny([node("Relu", ["x"], ["y"], "n1")], [vi("x", [4])], [vi("y", [4], TensorProto.INT64)])
    refused(m, "output 'y': the model declares element type INT64, but it is computed as float32")


def test_a_ceil_mode_window_starting_in_the_end_padding_is_named():
    """onnx's shape inference counts a last window that starts in the end padding; the spec and its
    reference drop it, as tilewise does: the build says so instead of a lowering-shape mismatch."""
    def model(end_pad):
        pool = helper.make_node("MaxPool", ["x"], ["y"], name="mp", kernel_shape=[2, 2], strides=[2, 2],
                                pads=[0, 0, 0, end_pad], ceil_mode=1)
        return tiny([pool], [vi("x", [1, 1, 4, 8])], [vi("y", [1, 1, 2, 4 + end_pad])], opset=18)

    with pytest.raises(ValueError, match=r"node mp \(MaxPool\): ceil_mode gives the output \(1, 1, 2, 4\).*"
                                         r"declares \(1, 1, 2, 5\); lower the end pads"):
        frontends.build(frontends.from_onnx(model(1)))
    x = np.arange(32, dtype=np.float32).reshape(1, 1, 4, 8)
    np.testing.assert_array_equal(frontends.build(frontends.from_onnx(model(0))).run(x=x)[0],
                                  x.reshape(1, 1, 2, 2, 4, 2).max(axis=(3, 5)))


def test_a_reshape_whose_target_cannot_hold_its_input():
    # ONNX's shape inference gives a Reshape its target without counting the elements: a
    # classifier head written for batch 1 ([1, 8]) took a batch of 2 and read image 0 only
    shape = numpy_helper.from_array(np.array([1, 8], np.int64), "shape")
    m = tiny([node("Reshape", ["x", "shape"], ["y"], "head")], [vi("x", [2, 8, 1, 1])], [vi("y", [1, 8])], [shape])
    refused(m, "node head (Reshape): its input (2, 8, 1, 1) has 16 elements, its output (1, 8) 8")
    sym = tiny([node("Reshape", ["x", "shape"], ["y"], "head")], [vi("x", ["N", 8, 1, 1])], [vi("y", [1, 8])], [shape])
    refused(sym, "does not import at batch 2", "node head (Reshape)", max_batch=4)
    frontends.from_onnx(sym, shapes={"x": (1, 8, 1, 1)})      # the fix the message gives


def test_a_bad_node_is_named_once_not_with_every_node_after_it():
    # a wrong shape given for x makes the first MatMul invalid; the Relu and MatMul after it,
    # whose inputs it leaves unshaped, add nothing to the error
    w = numpy_helper.from_array(np.ones((4, 4), np.float32), "w")
    nodes = [node("MatMul", ["x", "w"], ["a"], "m1"), node("Relu", ["a"], ["b"], "r1"),
             node("MatMul", ["b", "w"], ["y"], "m2")]
    msg = refused(tiny(nodes, [vi("x", [1, 4])], [vi("y", None)], [w]), "node m1 (MatMul)", shapes={"x": [1, 5]})
    assert "1 problem(s)" in msg and "r1" not in msg and "m2" not in msg, msg
