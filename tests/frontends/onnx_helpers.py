"""Small ONNX models built by hand, shared by the importer and graph-validation tests."""
from onnx import TensorProto, helper


def tiny(nodes, inputs, outputs, inits=(), opset=13):
    """A one-graph ONNX model of these nodes, inputs, outputs and initializers."""
    g = helper.make_graph(nodes, "tiny", inputs, outputs, list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def vi(name, shape, t=TensorProto.FLOAT):
    """A value info: a named input or output of this shape and element type."""
    return helper.make_tensor_value_info(name, t, shape)


def quantize_qdq(src, out, feeds) -> None:
    """onnxruntime.quantization.quantize_static of the model file src into out as bench/quantized.py
    quantises its models: QDQ, per-channel int8 weights, uint8 activations, calibrated on `feeds`."""
    from onnxruntime import quantization as q
    it = iter(feeds)

    class Reader(q.CalibrationDataReader):
        def get_next(self):
            return next(it, None)
    q.quantize_static(str(src), str(out), Reader(), quant_format=q.QuantFormat.QDQ, per_channel=True,
                      activation_type=q.QuantType.QUInt8, weight_type=q.QuantType.QInt8)
