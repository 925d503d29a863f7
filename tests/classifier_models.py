"""A small SqueezeNet-like classifier (conv, max pool, one fire module, global pool, softmax) as
an ONNX model in float32, float16 or bfloat16, shared by the C example and low-precision tests."""
from __future__ import annotations

import numpy as np

INPUT_SHAPE = (1, 3, 32, 32)
CLASSES = 10


def squeezenet_like(path=None, dtype: str = "float32", seed: int = 0):
    """The model (saved to path when given; returns the path, else the ModelProto): weights and
    the input/output of `dtype`, so an fp16 model is what a float16 export looks like."""
    import onnx
    from onnx import helper, numpy_helper
    rng = np.random.default_rng(seed)
    elem = {"float32": onnx.TensorProto.FLOAT, "float16": onnx.TensorProto.FLOAT16,
            "bfloat16": onnx.TensorProto.BFLOAT16}[dtype]
    inits, nodes = [], []

    def weight(name, shape, scale):
        w = rng.standard_normal(shape).astype(np.float32) * scale
        if dtype == "bfloat16":
            import ml_dtypes
            inits.append(numpy_helper.from_array(w.astype(ml_dtypes.bfloat16), name))
        else:
            inits.append(numpy_helper.from_array(w.astype(dtype), name))
        return name

    def conv(x, out, cin, cout, k, stride=1, pad=0):
        w = weight(f"{out}.w", (cout, cin, k, k), (2.0 / (cin * k * k)) ** 0.5)
        b = weight(f"{out}.b", (cout,), 0.1)
        nodes.append(helper.make_node("Conv", [x, w, b], [out + ".c"], kernel_shape=[k, k],
                                      strides=[stride, stride], pads=[pad] * 4))
        nodes.append(helper.make_node("Relu", [out + ".c"], [out]))
        return out

    h = conv("x", "conv1", 3, 16, 3, stride=2, pad=1)                    # 16 x 16 x 16
    nodes.append(helper.make_node("MaxPool", [h], ["pool1"], kernel_shape=[2, 2], strides=[2, 2]))
    s = conv("pool1", "fire.squeeze", 16, 8, 1)                           # 8 x 8 x 8
    e1 = conv(s, "fire.e1", 8, 16, 1)
    e3 = conv(s, "fire.e3", 8, 16, 3, pad=1)
    nodes.append(helper.make_node("Concat", [e1, e3], ["fire"], axis=1))  # 32 x 8 x 8
    c = conv("fire", "conv10", 32, CLASSES, 1)
    nodes += [helper.make_node("GlobalAveragePool", [c], ["gap"]),
              helper.make_node("Flatten", ["gap"], ["logits"]),
              helper.make_node("Softmax", ["logits"], ["prob"], axis=1)]
    g = helper.make_graph(nodes, f"squeezenet_like_{dtype}",
                          [helper.make_tensor_value_info("x", elem, list(INPUT_SHAPE))],
                          [helper.make_tensor_value_info("prob", elem, [1, CLASSES])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    if path is None:
        return m
    onnx.save(m, str(path))
    return str(path)
