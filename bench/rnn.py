"""LSTM, GRU and RNN models against ONNX Runtime: end to end, and the sum of their kernels alone.

    python bench/rnn.py                      # LSTM, GRU, RNN: T=32, batch 1, 128 -> 256
    python bench/rnn.py --op LSTM --steps 64 --hidden 512

The recurrences are unrolled at import (frontends/lower_rnn.py): one input-projection Gemm and a
few kernels per step.  The kernels' own times (frontends.profile.profile_kernels) beside the
end-to-end time say how much of a run is calling them one after the other.
"""
from __future__ import annotations

import argparse

import numpy as np
from onnx import helper, numpy_helper

import frontends
from frontends.profile import onnxruntime_session, profile_kernels, time_interleaved

from common import env_note, table

GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}


def model(op: str, steps: int, batch: int, inputs: int, hidden: int, seed: int = 0):
    """A one-node model of op with constant random weights, as an exported model has them."""
    rng = np.random.default_rng(seed)
    g = GATES[op]
    inits = [numpy_helper.from_array(rng.uniform(-0.1, 0.1, (1, g * hidden, inputs)).astype(np.float32), "W"),
             numpy_helper.from_array(rng.uniform(-0.1, 0.1, (1, g * hidden, hidden)).astype(np.float32), "R"),
             numpy_helper.from_array(rng.uniform(-0.1, 0.1, (1, 2 * g * hidden)).astype(np.float32), "B")]
    node = helper.make_node(op, ["X", "W", "R", "B"], ["Y", "Y_h"], hidden_size=hidden)
    x = helper.make_tensor_value_info("X", 1, [steps, batch, inputs])
    ys = [helper.make_tensor_value_info("Y", 1, [steps, 1, batch, hidden]),
          helper.make_tensor_value_info("Y_h", 1, [1, batch, hidden])]
    graph = helper.make_graph([node], op.lower(), [x], ys, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--op", choices=sorted(GATES), action="append", help="the ops to time (default: all)")
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--inputs", type=int, default=128)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--repeat", type=int, default=20)
    a = ap.parse_args()
    rows = []
    for op in a.op or ["LSTM", "GRU", "RNN"]:
        m = model(op, a.steps, a.batch, a.inputs, a.hidden)
        g = frontends.from_onnx(m)
        lib = frontends.build(g)
        sess = onnxruntime_session(m, threads=None, spinning=False)
        x = np.random.default_rng(1).standard_normal((a.steps, a.batch, a.inputs)).astype(np.float32)
        for got, want in zip(lib.run(X=x), sess.run(None, {"X": x})):
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
        t = time_interleaved({"tilewise": lambda: lib.run(X=x), "ort": lambda: sess.run(None, {"X": x})},
                             repeat=a.repeat)
        kernels = sum(k.calls * k.latency.median for k in profile_kernels(g, repeat=3, min_time=0.002))
        rows.append([op, len(g.nodes), f"{t['tilewise'].median * 1e3:.2f}", f"{kernels * 1e3:.2f}",
                     f"{t['ort'].median * 1e3:.2f}"])
    print(f"T={a.steps}, batch {a.batch}, {a.inputs} -> {a.hidden}; {env_note()}")
    print(table(["op", "graph nodes", "tilewise ms", "its kernels alone ms", "ONNX Runtime ms"], rows))


if __name__ == "__main__":
    main()
