"""Tiny fp32 models for the quantiser's tests (tests/frontends and tests/cli): small convs, a
BatchNorm, a Gemm, a MatMul; and attention's two batched MatMuls, float or QDQ."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def _f32(name: str, a) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(a, np.float32), name)


def _model(nodes, inputs, outputs, inits, name="m", opset=13) -> onnx.ModelProto:
    g = helper.make_graph(nodes, name, [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs],
                          [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in outputs], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def conv_bn_gemm(seed: int = 0, classes: int = 10, opset: int = 13) -> onnx.ModelProto:
    """x[1,3,12,12] -> Conv 3x3 -> BatchNorm -> Relu -> Conv 1x1 -> Relu -> GlobalAveragePool ->
    Flatten -> Gemm -> y[1,classes]; the first two nodes unnamed."""
    rng = np.random.default_rng(seed)
    inits = [_f32("w1", rng.standard_normal((8, 3, 3, 3)) * 0.3), _f32("b1", rng.standard_normal(8) * 0.1),
             _f32("s", 1 + 0.1 * rng.standard_normal(8)), _f32("bb", 0.1 * rng.standard_normal(8)),
             _f32("m", 0.1 * rng.standard_normal(8)), _f32("v", rng.uniform(0.5, 1.5, 8)),
             _f32("w2", rng.standard_normal((16, 8, 1, 1)) * 0.3),
             _f32("wf", rng.standard_normal((classes, 16)) * 0.5), _f32("bf", rng.standard_normal(classes) * 0.1)]
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c1", "s", "bb", "m", "v"], ["n1"]),
             helper.make_node("Relu", ["n1"], ["r1"], name="relu1"),
             helper.make_node("Conv", ["r1", "w2"], ["c2"], name="conv2", kernel_shape=[1, 1]),
             helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
             helper.make_node("GlobalAveragePool", ["r2"], ["p"], name="pool"),
             helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
             helper.make_node("Gemm", ["f", "wf", "bf"], ["y"], name="fc", transB=1)]
    return _model(nodes, [("x", [1, 3, 12, 12])], [("y", [1, classes])], inits, "conv_bn_gemm", opset)


def matmul_mlp(seed: int = 0) -> onnx.ModelProto:
    """x[4,16] -> MatMul -> Add -> Relu -> MatMul -> y[4,8] (a batch of 4 rows)."""
    rng = np.random.default_rng(seed)
    inits = [_f32("w1", rng.standard_normal((16, 32)) * 0.3), _f32("b1", rng.standard_normal(32) * 0.1),
             _f32("w2", rng.standard_normal((32, 8)) * 0.3)]
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"], name="mm1"),
             helper.make_node("Add", ["h", "b1"], ["hb"], name="add1"),
             helper.make_node("Relu", ["hb"], ["r"], name="relu"),
             helper.make_node("MatMul", ["r", "w2"], ["y"], name="mm2")]
    return _model(nodes, [("x", [4, 16])], [("y", [4, 8])], inits, "mlp")


def near_tie(seed: int = 0) -> onnx.ModelProto:
    """Conv -> Relu -> GlobalAveragePool -> Flatten -> Gemm whose class rows are almost equal, so the
    smallest quantisation error changes the top class: a model int8 cannot keep the top-1 of."""
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((1, 16))
    inits = [_f32("w1", rng.standard_normal((16, 8, 3, 3)) * 0.3),
             _f32("wf", base + 1e-4 * rng.standard_normal((10, 16)))]
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c"], name="conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("GlobalAveragePool", ["r"], ["p"], name="pool"),
             helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
             helper.make_node("Gemm", ["f", "wf"], ["y"], name="fc", transB=1)]
    return _model(nodes, [("x", [1, 8, 8, 8])], [("y", [1, 10])], inits, "near_tie")


def two_same_convs(seed: int = 0) -> onnx.ModelProto:
    """x[1,8,10,10] -> Conv 3x3 -> Relu -> Conv 3x3 (the same shapes, other weights) -> y."""
    rng = np.random.default_rng(seed)
    inits = [_f32("w1", rng.standard_normal((8, 8, 3, 3)) * 0.2), _f32("w2", rng.standard_normal((8, 8, 3, 3)) * 0.2)]
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c"], name="conv1", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("Conv", ["r", "w2"], ["y"], name="conv2", kernel_shape=[3, 3], pads=[1, 1, 1, 1])]
    return _model(nodes, [("x", [1, 8, 10, 10])], [("y", [1, 8, 10, 10])], inits, "two_convs")


# attention_core's QDQ parameters: (scale, uint8 zero point) of each quantised value
ATTENTION_QPARAMS = {"q": (0.03, 120), "kt": (0.03, 130), "s": (0.1, 100), "p": (1 / 255, 0), "v": (0.03, 100),
                     "c": (0.02, 128)}


def attention_core(qdq: bool, heads: int = 2, seq: int = 6, d: int = 8) -> onnx.ModelProto:
    """q[h,s,d], kt[h,d,s], v[h,s,d] -> MatMul(q, kt) -> Softmax -> MatMul(., v) -> y[h,s,d]; with
    `qdq` every input and the three results quantised (QuantizeLinear -> DequantizeLinear, uint8,
    ATTENTION_QPARAMS), so both MatMuls multiply two quantised activations."""
    nodes, inits = [], []

    def qdq_of(x: str) -> str:
        if not qdq:
            return x
        scale, zero = ATTENTION_QPARAMS[x]
        inits.extend([_f32(f"{x}.s", scale), numpy_helper.from_array(np.array(zero, np.uint8), f"{x}.z")])
        nodes.append(helper.make_node("QuantizeLinear", [x, f"{x}.s", f"{x}.z"], [f"{x}.q"]))
        nodes.append(helper.make_node("DequantizeLinear", [f"{x}.q", f"{x}.s", f"{x}.z"], [f"{x}.dq"]))
        return f"{x}.dq"
    q, kt, v = qdq_of("q"), qdq_of("kt"), qdq_of("v")
    nodes.append(helper.make_node("MatMul", [q, kt], ["s"], name="qk"))
    nodes.append(helper.make_node("Softmax", [qdq_of("s")], ["p"], axis=-1))
    nodes.append(helper.make_node("MatMul", [qdq_of("p"), v], ["c"], name="pv"))
    nodes.append(helper.make_node("Identity", [qdq_of("c")], ["y"]))
    return _model(nodes, [("q", [heads, seq, d]), ("kt", [heads, d, seq]), ("v", [heads, seq, d])],
                  [("y", [heads, seq, d])], inits, "attention")


def ort_run(model, feeds: dict, outputs: list[str] | None = None) -> list[np.ndarray]:
    """ONNX Runtime's outputs of a model (ModelProto or path)."""
    from frontends.profile import onnxruntime_session
    sess = onnxruntime_session(model, threads=1)
    return sess.run(outputs, feeds)


def with_outputs(model: onnx.ModelProto, names: list[str]) -> onnx.ModelProto:
    """A copy of the model with these intermediate tensors as extra outputs (for ONNX Runtime)."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    m.graph.output.extend(helper.make_empty_tensor_value_info(n) for n in names)
    return m
