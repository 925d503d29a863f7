"""Memory-bound operators on ResNet-50 / MobileNet / BERT-base shapes: the untuned default
schedule (te.ops.schedule) against ONNX Runtime (one-node model, 2 intra-op threads, in the same
process) and numpy where numpy has the operator, and against the machine's memory bandwidth.

    python bench/ops_memory.py                 # every case
    python bench/ops_memory.py --quick         # fewer repeats
    python bench/ops_memory.py --only softmax layer_norm

GB/s counts the bytes an operator must move: every input read once and the output written
once.  "of BW" divides that by te.machine.bandwidth_gbs() (a single-thread 256 MB copy, so
DRAM); tensors that fit in the caches can go past 100%.  "vs ORT" is ORT's time over ours
(above 1 = tilewise is faster).
"""
from __future__ import annotations

import argparse
import math
import os
import sys
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import te                                            # noqa: E402
from frontends.profile import onnxruntime_session    # noqa: E402
from te import machine, ops                          # noqa: E402
from common import env_note, table, time_call        # noqa: E402

ORT_THREADS = 2


@dataclass
class Case:
    """One benchmark row: the te graph, the ONNX node that does the same, and numpy's version."""
    name: str
    shapes: list                     # input shapes (float32 unless dtypes says otherwise)
    build: Callable                  # (*placeholders) -> output tensor
    onnx: tuple | None = None        # (op_type, attrs, opset, extra constant inputs {name: array})
    numpy: Callable | None = None    # (*arrays) -> result
    dtypes: list = field(default_factory=list)
    positive: bool = False           # inputs must be > 0

    def label(self) -> str:
        """The first input's shape, as 1x256x56x56."""
        return "x".join(map(str, self.shapes[0]))


def _np_softmax(a):
    e = np.exp(a - a.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _np_layer_norm(a, g, b):
    mu = a.mean(-1, keepdims=True)
    var = a.var(-1, keepdims=True)
    return (a - mu) / np.sqrt(var + 1e-5) * g + b


R50 = (1, 256, 56, 56)
CASES = [
    Case("relu", [R50], lambda x: ops.relu(x), ("Relu", {}, 17, {}), lambda a: np.maximum(a, 0)),
    Case("add (residual)", [R50, R50], lambda x, y: ops.add(x, y), ("Add", {}, 17, {}), np.add),
    Case("add+relu (fused)", [R50, R50], lambda x, y: ops.relu(ops.add(x, y)), None,
         lambda a, b: np.maximum(a + b, 0)),
    Case("add bias (broadcast)", [R50, (256, 1, 1)], lambda x, y: ops.add(x, y), ("Add", {}, 17, {}), np.add),
    Case("batch_norm (inference)", [R50, (256,), (256,), (256,), (256,)],
         lambda x, g, b, m, v: ops.batch_norm(x, g, b, m, v), ("BatchNormalization", {"epsilon": 1e-5}, 15, {}),
         None, positive=True),
    Case("relu6 / clip", [(1, 144, 56, 56)], lambda x: ops.relu6(x),
         ("Clip", {}, 13, {"lo": np.float32(0), "hi": np.float32(6)}), lambda a: np.clip(a, 0, 6)),
    Case("hard_swish", [(1, 96, 56, 56)], lambda x: ops.hard_swish(x), ("HardSwish", {}, 14, {}), None),
    Case("sigmoid", [R50], lambda x: ops.sigmoid(x), ("Sigmoid", {}, 13, {}), None),
    Case("tanh", [(128, 3072)], lambda x: ops.tanh(x), ("Tanh", {}, 13, {}), np.tanh),
    Case("gelu (erf)", [(128, 3072)], lambda x: ops.gelu(x), ("Gelu", {}, 20, {}), None),
    Case("exp", [(128, 3072)], lambda x: ops.exp(x), ("Exp", {}, 13, {}), np.exp),
    Case("max_pool 3x3 s2 p1", [(1, 64, 112, 112)], lambda x: ops.max_pool2d(x, 3, 2, 1),
         ("MaxPool", {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}, 12, {}), None),
    Case("avg_pool 3x3 s1 p1", [(1, 256, 28, 28)], lambda x: ops.avg_pool2d(x, 3, 1, 1),
         ("AveragePool", {"kernel_shape": [3, 3], "strides": [1, 1], "pads": [1, 1, 1, 1]}, 19, {}), None),
    Case("global_avg_pool", [(1, 2048, 7, 7)], lambda x: ops.global_avg_pool2d(x),
         ("GlobalAveragePool", {}, 1, {}), lambda a: a.mean((2, 3), keepdims=True)),
    Case("softmax (last axis)", [(12, 128, 128)], lambda x: ops.softmax(x), ("Softmax", {"axis": -1}, 13, {}),
         _np_softmax),
    Case("layer_norm", [(128, 768), (768,), (768,)], lambda x, g, b: ops.layer_norm(x, g, b),
         ("LayerNormalization", {"axis": -1, "epsilon": 1e-5}, 17, {}), _np_layer_norm),
    Case("reduce_mean (last axis)", [(128, 768)], lambda x: ops.mean(x, -1, keepdims=True),
         ("ReduceMean", {"keepdims": 1}, 18, {"axes": np.array([-1], np.int64)}),
         lambda a: a.mean(-1, keepdims=True)),
    Case("reduce_sum (H, W)", [R50], lambda x: ops.sum(x, (2, 3), keepdims=True),
         ("ReduceSum", {"keepdims": 1}, 13, {"axes": np.array([2, 3], np.int64)}),
         lambda a: a.sum((2, 3), keepdims=True)),
    Case("lrn (AlexNet)", [(1, 96, 55, 55)], lambda x: ops.lrn(x, 5, 1e-4, 0.75, 2.0),
         ("LRN", {"size": 5, "alpha": 1e-4, "beta": 0.75, "bias": 2.0}, 13, {}), None),
    Case("transpose (BERT heads)", [(1, 128, 12, 64)], lambda x: ops.transpose(x, (0, 2, 1, 3)),
         ("Transpose", {"perm": [0, 2, 1, 3]}, 13, {}),
         lambda a: np.ascontiguousarray(a.transpose(0, 2, 1, 3))),
    Case("pad 1 (constant)", [(1, 64, 112, 112)], lambda x: ops.pad(x, [(0, 0), (0, 0), (1, 1), (1, 1)]),
         ("Pad", {"mode": "constant"}, 13, {"pads": np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64)}),
         lambda a: np.pad(a, [(0, 0), (0, 0), (1, 1), (1, 1)])),
    Case("concat (channels)", [(1, 128, 28, 28), (1, 128, 28, 28)], lambda x, y: ops.concat([x, y], 1),
         ("Concat", {"axis": 1}, 13, {}), lambda a, b: np.concatenate([a, b], 1)),
    Case("resize nearest 2x", [(1, 256, 14, 14)],
         lambda x: ops.resize(x, (28, 28), "nearest", "asymmetric", "floor"),
         ("Resize", {"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"},
          13, {"roi": None, "scales": None, "sizes": np.array([1, 256, 28, 28], np.int64)}), None),
]


def ort_session(case: Case, arrays: list):
    """An ONNX Runtime session running the case's one-node model, and its feed dict."""
    from onnx import helper, numpy_helper

    op_type, attrs, opset, extra = case.onnx
    names = [f"x{i}" for i in range(len(arrays))]
    consts, node_inputs = [], list(names)
    for n, v in extra.items():
        node_inputs.append("" if v is None else n)
        if v is not None:
            consts.append(numpy_helper.from_array(np.asarray(v), n))
    node = helper.make_node(op_type, node_inputs, ["y"], **attrs)
    graph = helper.make_graph([node], case.name,
                              [helper.make_tensor_value_info(n, 1, a.shape) for n, a in zip(names, arrays)],
                              [helper.make_tensor_value_info("y", 1, None)], initializer=consts)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    sess = onnxruntime_session(model, ORT_THREADS)
    return sess, dict(zip(names, arrays))


def run_case(case: Case, bw: float, repeats: dict) -> list:
    """Measure one case; returns its table row."""
    rng = np.random.default_rng(0)
    arrays = [(rng.uniform(0.1, 2.0, s) if case.positive else rng.standard_normal(s)).astype(np.float32)
              for s in case.shapes]
    xs = [te.placeholder(s, name=f"x{i}") for i, s in enumerate(case.shapes)]
    out = case.build(*xs)
    f = te.build(ops.schedule([out]), xs + [out], name="op")
    res = np.zeros(out.shape, np.float32)
    f(*arrays, res)
    nbytes = sum(a.nbytes for a in arrays) + res.nbytes
    t_te = time_call(f, *arrays, res, **repeats)["median"]
    gbs = nbytes / t_te / 1e9
    row = [case.name, case.label(), f"{t_te * 1e6:.1f}", f"{gbs:.1f}", f"{100 * gbs / bw:.0f}%"]
    if case.onnx is not None:
        sess, feed = ort_session(case, arrays)
        want = sess.run(None, feed)[0]
        err = np.abs(want - res).max() / max(1e-6, float(np.abs(want).max()))
        if err > 1e-4:
            raise SystemExit(f"{case.name}: tilewise and ONNX Runtime differ (relative error {err:.2e})")
        t_ort = time_call(sess.run, None, feed, **repeats)["median"]
        row += [f"{t_ort * 1e6:.1f}", f"{t_ort / t_te:.2f}x"]
    else:
        row += ["-", "-"]
    if case.numpy is not None:
        t_np = time_call(case.numpy, *arrays, **repeats)["median"]
        row += [f"{t_np * 1e6:.1f}", f"{t_np / t_te:.2f}x"]
    else:
        row += ["-", "-"]
    return row


def main() -> None:
    """Run the cases and print the table."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer repeats (noisier)")
    ap.add_argument("--only", nargs="*", default=None, help="run the cases whose name contains one of these")
    a = ap.parse_args()
    repeats = dict(min_repeats=5, min_seconds=0.05) if a.quick else dict(min_repeats=20, min_seconds=0.5)
    cases = [c for c in CASES if not a.only or any(k in c.name for k in a.only)]
    print(env_note())
    bw = machine.bandwidth_gbs()
    threads = te.target.num_threads()
    print(f"measured memory bandwidth (1 thread, 256 MB copy): {bw:.1f} GB/s; tilewise threads: {threads}, "
          f"ONNX Runtime intra-op threads: {ORT_THREADS}, numpy: 1 thread\n")
    rows = []
    for c in cases:
        rows.append(run_case(c, bw, repeats))
        print(f"  {c.name}: {rows[-1][3]} GB/s", file=sys.stderr, flush=True)
    print("Memory-bound operators, fp32, untuned default schedules — median times in microseconds")
    print(table(["operator", "shape", "tilewise us", "GB/s", "of BW", "ORT us", "vs ORT", "numpy us",
                 "vs numpy"], rows, "ll" + "r" * 7))
    ratios = [float(r[6][:-1]) for r in rows if r[6] != "-"]
    if ratios:
        print(f"\ngeometric mean speed-up over ONNX Runtime: {math.exp(np.mean(np.log(ratios))):.2f}x")


if __name__ == "__main__":
    main()
