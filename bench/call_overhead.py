"""Per-call Python overhead of running a model: a one-Add model (1x16 floats, nothing to compute),
so a call's time is what happens around the native entry point.

    python bench/call_overhead.py                  # JIT'd GraphLibrary, loaded library, ONNX Runtime
    python bench/call_overhead.py --calls 50000

Each engine is one thread (TILEWISE_NUM_THREADS=1, ONNX Runtime threads=1); figures are the CPU
time of the calling thread per call (time.thread_time), the least noisy measure on a shared
machine, and wall time beside it.  Best of --rounds rounds.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np
from onnx import TensorProto, helper

os.environ.setdefault("TILEWISE_NUM_THREADS", "1")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import frontends                                          # noqa: E402
import te                                                 # noqa: E402
from frontends.profile import onnxruntime_session         # noqa: E402
from common import env_note, table                        # noqa: E402


def add_model():
    """z = x + y on 1x16 floats."""
    vi = lambda name: helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, 16])  # noqa: E731
    graph = helper.make_graph([helper.make_node("Add", ["x", "y"], ["z"])], "add", [vi("x"), vi("y")], [vi("z")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def per_call(fn, calls: int, rounds: int) -> tuple[float, float]:
    """Best (thread CPU, wall) microseconds per call over rounds of `calls` calls."""
    for _ in range(min(calls, 1000)):
        fn()
    cpu, wall = [], []
    for _ in range(rounds):
        c0, w0 = time.thread_time(), time.perf_counter()
        for _ in range(calls):
            fn()
        cpu.append((time.thread_time() - c0) / calls * 1e6)
        wall.append((time.perf_counter() - w0) / calls * 1e6)
    return min(cpu), min(wall)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args()
    model = add_model()
    feed = {"x": np.ones((1, 16), np.float32), "y": np.ones((1, 16), np.float32)}
    lib = frontends.build(frontends.from_onnx(model))
    with tempfile.TemporaryDirectory() as tmp:
        lib.export_library(os.path.join(tmp, "add.so"))
        loaded = te.runtime.load_module(os.path.join(tmp, "add.so"))
    sess = onnxruntime_session(model, threads=1)
    for got in (lib.run(None, feed)[0], loaded.run(None, feed)[0]):
        np.testing.assert_array_equal(got, feed["x"] + feed["y"])
    engines = {"tilewise JIT (frontends.build)": lambda: lib.run(None, feed),
               "tilewise library (load_module)": lambda: loaded.run(None, feed),
               "onnxruntime session.run": lambda: sess.run(None, feed)}
    rows = []
    for name, fn in engines.items():
        cpu, wall = per_call(fn, a.calls, a.rounds)
        rows.append([name, f"{cpu:.2f}", f"{wall:.2f}"])
    print(table(["engine", "us/call (thread CPU)", "us/call (wall)"], rows))
    print(env_note())


if __name__ == "__main__":
    main()
