"""A dynamic-batch build against static builds of the same batch: ResNet-50 with a symbolic "N".

    python bench/dynamic_batch.py                          # batch 1 and 8, untuned, 2 threads
    python bench/dynamic_batch.py --batches 1,4,8 --check  # also compare with ONNX Runtime
    python bench/dynamic_batch.py --logs tuning_logs/      # with the shipped tuning records

The model is the onnx package's light ResNet-50 (seeded random weights) with its input's and
outputs' first dimension renamed "N" and its flatten's target (a Reshape to [1, 2048]) made
[-1, 2048], as PyTorch exports it with dynamic axes. The dynamic build (frontends/batch.py) is
compiled once for max_batch 8 and runs the batch-1 kernels image by image; each static build is
compiled for its batch. Both are timed in alternating rounds; medians quoted.
"""
from __future__ import annotations

import argparse
import functools
import os
import sys
import time

import numpy as np
from onnx import numpy_helper

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import frontends                                          # noqa: E402
from frontends import zoo                                 # noqa: E402
from frontends.profile import onnxruntime_session, time_interleaved  # noqa: E402
from common import env_note, log_paths, table  # noqa: E402


def dynamic_resnet50():
    """The light ResNet-50 with a symbolic batch "N" (input, outputs, flatten target)."""
    m = zoo.light_model("resnet50", logits=True)
    for vi in list(m.graph.input[:1]) + list(m.graph.output):
        dims = vi.type.tensor_type.shape.dim
        if len(dims):
            dims[0].dim_param = "N"
    flatten = next(n for n in m.graph.node if n.op_type == "Reshape")
    for t in m.graph.initializer:
        if t.name == flatten.input[1]:
            t.CopyFrom(numpy_helper.from_array(np.array([-1, 2048], np.int64), t.name))
    return m


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batches", default="1,8", help="comma list of batches (default: %(default)s)")
    ap.add_argument("--max-batch", type=int, default=8, help="the dynamic build's maximum (default 8)")
    ap.add_argument("--logs", nargs="*", default=None, help="tuning logs (files or folders) for both builds")
    ap.add_argument("--check", action="store_true", help="compare every build's output with ONNX Runtime")
    ap.add_argument("--rounds", type=int, default=10, help="alternating timing rounds (default 10)")
    a = ap.parse_args()
    os.environ.setdefault("TILEWISE_NUM_THREADS", "2")
    logs = log_paths(a.logs)
    print(env_note())
    model = dynamic_resnet50()
    name = model.graph.input[0].name
    t0 = time.perf_counter()
    dyn = frontends.build(frontends.from_onnx(model, max_batch=a.max_batch), logs=logs or None)
    dyn.run(None, {name: np.zeros((1, 3, 224, 224), np.float32)})         # compiles (JIT)
    print(f"dynamic build: {dyn.summary()}, {time.perf_counter() - t0:.0f} s with the JIT compile")
    sess = onnxruntime_session(model) if a.check else None
    rows = []
    for n in (int(b) for b in a.batches.split(",")):
        x = np.random.default_rng(n).standard_normal((n, 3, 224, 224)).astype(np.float32)
        t0 = time.perf_counter()
        static = frontends.build(frontends.from_onnx(model, shapes={name: (n, 3, 224, 224)}), logs=logs or None)
        static.run(None, {name: x})
        print(f"  static batch {n}: {static.summary()}, {time.perf_counter() - t0:.0f} s with the JIT compile")
        fns = {"static": functools.partial(static.run, None, {name: x}),
               "dynamic": functools.partial(dyn.run, None, {name: x})}
        if sess is not None:
            want = sess.run(None, {name: x})[1]
            for label, fn in fns.items():
                got = fn()[1]
                err = float(np.abs(got - want).max() / np.abs(want).max())
                print(f"  batch {n} {label}: relative error against ONNX Runtime {err:.1e}")
                assert err < 1e-3, (n, label, err)
        med = {k: v.median for k, v in time_interleaved(fns, repeat=a.rounds, warmup=1).items()}
        rows.append([n, f"{med['static'] * 1e3:.1f}", f"{med['dynamic'] * 1e3:.1f}",
                     f"{med['dynamic'] / med['static']:.2f}x", f"{static.plan.workspace_bytes / 2**20:.1f}",
                     f"{dyn.plan.workspace_bytes / 2**20:.1f}"])
        print(f"  batch {n}: static {rows[-1][1]} ms, dynamic {rows[-1][2]} ms", flush=True)
    print(f"\nResNet-50, {os.environ['TILEWISE_NUM_THREADS']} threads, median latency of a whole batch "
          f"({'tuned' if logs else 'untuned'}; dynamic: one build, max batch {a.max_batch})")
    print(table(["batch", "static ms", "dynamic ms", "dynamic / static", "static workspace MiB",
                 "dynamic workspace MiB"], rows))


if __name__ == "__main__":
    main()
