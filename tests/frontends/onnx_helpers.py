"""Small ONNX models built by hand, shared by the importer and graph-validation tests; ONNX
Runtime's int8 references that stay exact on CPUs without VNNI."""
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def tiny(nodes, inputs, outputs, inits=(), opset=13):
    """A one-graph ONNX model of these nodes, inputs, outputs and initializers."""
    g = helper.make_graph(nodes, "tiny", inputs, outputs, list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def vi(name, shape, t=TensorProto.FLOAT):
    """A value info: a named input or output of this shape and element type."""
    return helper.make_tensor_value_info(name, t, shape)


def ort_int8_exact() -> bool:
    """Does ONNX Runtime's u8 x s8 GEMM sum exactly on this CPU?  With VNNI, yes; without it (AVX2),
    its vpmaddubsw adds two products in int16 with saturation, so a model it should compare
    exactly against is quantised with 7-bit weights (reduce_range, as ONNX Runtime advises there)."""
    from te.target import has_vnni, host
    return has_vnni(host())


def int8_weight_range(lo: int = -128, hi: int = 128) -> tuple[int, int]:
    """The range [lo, hi) to draw hand-made int8 weights from so that ONNX Runtime sums their products
    exactly on this CPU: as asked where ort_int8_exact(), else cut to 7 bits, [-64, 64), where no
    pair of u8 x s8 products reaches the int16 limit."""
    return (lo, hi) if ort_int8_exact() else (max(lo, -64), min(hi, 64))


def ort_qdq_run(model, feeds: dict) -> list[np.ndarray]:
    """ONNX Runtime's outputs of a QDQ model (ModelProto or path) on one thread: from its fused int8
    kernels where they sum exactly (ort_int8_exact), else from the graph as written (optimisations
    off: each DequantizeLinear -> float op -> QuantizeLinear), as its fused sums would saturate."""
    import onnxruntime as ort

    from frontends.profile import onnxruntime_session
    if ort_int8_exact():
        return onnxruntime_session(model, threads=1).run(None, feeds)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.intra_op_num_threads = 1
    src = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    return ort.InferenceSession(src, opts, providers=["CPUExecutionProvider"]).run(None, feeds)


def seven_bit_weights(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of a QDQ model requantised as reduce_range would have written it: the int8 weight
    codes of each Conv, Gemm and MatMul halved (|w| <= 64: no pair of u8 x s8 products saturates
    int16) and their scales doubled, with the int32 bias codes of scale x_scale * w_scale (zero
    points 0, as onnxruntime.quantization writes them)."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    inits = {t.name: t for t in m.graph.initializer}
    made = {o: n for n in m.graph.node for o in n.output}
    for node in m.graph.node:
        if node.op_type not in ("Conv", "Gemm", "MatMul"):
            continue
        for dq in (made.get(i) for i in node.input[1:3]):
            if dq is None or dq.op_type != "DequantizeLinear" or dq.input[0] not in inits:
                continue
            codes, scale = (numpy_helper.to_array(inits[x]) for x in dq.input[:2])
            if codes.dtype in (np.int8, np.int32):
                halved = np.round(codes / 2).astype(codes.dtype)
                inits[dq.input[0]].CopyFrom(numpy_helper.from_array(halved, dq.input[0]))
                inits[dq.input[1]].CopyFrom(numpy_helper.from_array(scale * 2, dq.input[1]))
    return m


def quantize_qdq(src, out, feeds, reduce_range: bool = False) -> None:
    """onnxruntime.quantization.quantize_static of the model file src into out as bench/quantized.py
    quantises its models: QDQ, per-channel int8 weights, uint8 activations, calibrated on `feeds`
    (reduce_range: 7-bit weights)."""
    from onnxruntime import quantization as q
    it = iter(feeds)

    class Reader(q.CalibrationDataReader):
        def get_next(self):
            return next(it, None)
    q.quantize_static(str(src), str(out), Reader(), quant_format=q.QuantFormat.QDQ, per_channel=True,
                      activation_type=q.QuantType.QUInt8, weight_type=q.QuantType.QInt8, reduce_range=reduce_range)
