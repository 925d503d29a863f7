"""The real inputs the fuzzer mutates: a small ONNX model, a tuning log, an exported library.

Each seed is a valid input of its kind, made the way a user makes one (onnx.helper, the
record format of autotune/record.py, te.export_library), so the mutations start from what
tilewise really reads.  The library's kernels and their numpy references live here too: the
child process checks a loaded library's answers against them.
"""
from __future__ import annotations

import glob
import os

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# The seed library's kernels: name -> argument specs (name, shape, dtype, written).
M, K, N = 12, 8, 16
LIB_KERNELS = {
    "mm": [("A", (M, K), "float32", False), ("B", (K, N), "float32", False),
           ("C", (M, N), "float32", True)],
    "add_relu": [("X", (7, 5), "int32", False), ("Y", (7, 5), "int32", False),
                 ("Z", (7, 5), "int32", True)],
}
LIB_REFERENCES = {
    "mm": lambda a, b: (a.astype(np.float64) @ b.astype(np.float64)).astype(np.float32),
    "add_relu": lambda x, y: np.maximum(x + y, 0).astype(np.int32),
}


def model_bytes() -> bytes:
    """A five-node image classifier (Conv+bias, Relu, Reshape by a shape initializer, MatMul,
    Softmax) on a 1x3x8x8 input: shape inputs, attributes, weights and several op kinds to mutate."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(0)
    weights = {"w": (rng.standard_normal((4, 3, 3, 3)) * 0.2).astype(np.float32),
               "b": (rng.standard_normal(4) * 0.1).astype(np.float32),
               "fc": (rng.standard_normal((4 * 8 * 8, 10)) * 0.1).astype(np.float32),
               "shape": np.array([1, -1], np.int64)}
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", kernel_shape=[3, 3],
                              pads=[1, 1, 1, 1], strides=[1, 1]),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("Reshape", ["r", "shape"], ["f"], name="flatten"),
             helper.make_node("MatMul", ["f", "fc"], ["m"], name="fc"),
             helper.make_node("Softmax", ["m"], ["y"], name="softmax", axis=1)]
    graph = helper.make_graph(
        nodes, "fuzz_seed", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])],
        [numpy_helper.from_array(v, k) for k, v in weights.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(model)
    return model.SerializeToString()


def log_bytes() -> bytes:
    """A tuning log in the record format: real records from tuning_logs/ (a few lines of one
    log), plus an error record and a final-check record, so every field is present somewhere."""
    from autotune.record import ErrorNo, Record
    lines: list[str] = []
    for path in sorted(glob.glob(os.path.join(ROOT, "tuning_logs", "*", "squeezenet.jsonl")))[:1]:
        with open(path, encoding="utf-8") as fh:
            lines = [ln.strip() for ln in fh if ln.strip() and not ln.startswith("#")][:4]
    first = Record.from_json(lines[0]) if lines else Record(
        workload='["matmul",[64,64,64,"float32"]]', config={"tile_x": [-1, 8]}, costs=[1e-4],
        isa="x86_64+sse4.2+avx+avx2+fma+f16c", cpu="haswell", target="llvm -mcpu=haswell")
    base = dict(workload=first.workload, config=first.config, isa=first.isa, cpu=first.cpu,
                target=first.target, tilewise_version="0.1.0", timestamp=1.8e9)
    lines.append(Record(costs=[], error_no=int(ErrorNo.COMPILE_ERROR), error_msg="boom", **base).to_json())
    lines.append(Record(costs=[1.1e-4, 1.2e-4], checked=True, vs_default=1.05, **base).to_json())
    return ("# a comment line\n" + "\n".join(lines) + "\n").encode("utf-8")


def build_library(path: str) -> str:
    """Export the seed library (two kernels, one of them vectorized and parallel) to path."""
    import te
    a = te.placeholder((M, K), name="A")
    b = te.placeholder((K, N), name="B")
    k = te.reduce_axis((0, K), name="k")
    c = te.compute((M, N), lambda i, j: te.sum(a[i, k] * b[k, j], axis=k), name="C")
    s = te.create_schedule(c.op)
    io, ii = s[c].split(c.op.axis[0], factor=4)
    jo, ji = s[c].split(c.op.axis[1], factor=8)
    s[c].reorder(io, jo, ii, k, ji)
    s[c].vectorize(ji)
    s[c].parallel(io)
    x = te.placeholder((7, 5), dtype="int32", name="X")
    y = te.placeholder((7, 5), dtype="int32", name="Y")
    z = te.compute((7, 5), lambda i, j: te.max(x[i, j] + y[i, j], te.const(0, "int32")), name="Z")
    funcs = [te.lower(s, [a, b, c], name="mm"),
             te.lower(te.create_schedule(z.op), [x, y, z], name="add_relu")]
    te.export_library(funcs, path, cache=False)      # no compile cache: nothing written outside path
    return path


def make_inputs(specs, seed: int = 0) -> list[np.ndarray]:
    """Deterministic arguments for (name, shape, dtype[, written]) specs: random inputs, zeroed outputs."""
    rng = np.random.default_rng(seed)
    out = []
    for spec in specs:
        shape, dtype = tuple(spec[1]), np.dtype(spec[2] if spec[2] != "bool" else np.bool_)
        if len(spec) > 3 and spec[3]:
            out.append(np.zeros(shape, dtype))
        elif dtype == np.bool_:
            out.append(rng.random(shape) < 0.5)
        elif dtype.kind == "f":
            out.append(rng.uniform(-1, 1, shape).astype(dtype))
        else:
            out.append(rng.integers(-8, 9, shape).astype(dtype))
    return out
