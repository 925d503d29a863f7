"""Small ONNX models built by hand, shared by the importer and graph-validation tests."""
from onnx import TensorProto, helper


def tiny(nodes, inputs, outputs, inits=(), opset=13):
    """A one-graph ONNX model of these nodes, inputs, outputs and initializers."""
    g = helper.make_graph(nodes, "tiny", inputs, outputs, list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def vi(name, shape, t=TensorProto.FLOAT):
    """A value info: a named input or output of this shape and element type."""
    return helper.make_tensor_value_info(name, t, shape)
