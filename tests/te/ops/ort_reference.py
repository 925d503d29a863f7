"""Reference results from ONNX Runtime: one-node ONNX models built with onnx.helper."""
from __future__ import annotations

import numpy as np

from frontends.dtypes import onnx_elem_type


def run_node(op_type: str, inputs: dict[str, np.ndarray], opset: int = 19, n_outputs: int = 1,
             **attrs) -> list[np.ndarray]:
    """Run one ONNX node on the given named inputs (in order; None = an omitted optional input)
    with ONNX Runtime on one thread."""
    from onnx import helper

    from frontends.profile import onnxruntime_session

    names = [n if a is not None else "" for n, a in inputs.items()]
    inputs = {n: a for n, a in inputs.items() if a is not None}
    outs = [f"y{i}" for i in range(n_outputs)]
    node = helper.make_node(op_type, names, outs, **attrs)
    graph = helper.make_graph(
        [node], "one_node",
        [helper.make_tensor_value_info(n, onnx_elem_type(a.dtype), a.shape) for n, a in inputs.items()],
        [helper.make_tensor_value_info(o, 1, None) for o in outs])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    return onnxruntime_session(model, threads=1).run(None, dict(inputs))
