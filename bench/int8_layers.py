"""Where a quantised model's int8 loses to its fp32, layer by layer, on one thread (for a --target).

    python bench/int8_layers.py squeezenet --target "llvm -mcpu=haswell"
    python bench/int8_layers.py resnet50 --target "llvm -mcpu=haswell" --repeat 10 --top 15

The model is the one bench/quantized.py times (a light model with seeded weights, quantised by
onnxruntime.quantization: QDQ, per-channel int8 weights, uint8 activations) and its fp32 form;
both are built by the model compiler for the target, untuned, and run here with one thread, each
kernel call timed alone (frontends.profile.time_steps, order "alone"; the fastest of --repeat
calls, so time the OS gave other processes mostly drops out).  Kernel calls of the two builds are
matched by their workload (op and shapes, without the dtype), one row per distinct layer shape
(its calls summed), the largest int8 loss first, with the implementations the registry picked;
the calls without a workload (QuantizeLinear of the input, pools, copies) are summed per build.
Last, the two whole models in alternating blocks of runs (the fastest run each).  Timings on a shared machine are rough.
"""
from __future__ import annotations

import os

os.environ["TILEWISE_NUM_THREADS"] = "1"        # before te loads: the kernels' thread count

import argparse                                  # noqa: E402
import functools                                 # noqa: E402
import sys                                       # noqa: E402

import onnx                                      # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import frontends                                 # noqa: E402
from frontends.profile import time_interleaved, time_steps  # noqa: E402
from common import env_note, table               # noqa: E402
from quantized import _inputs, fp32_model, int8_model_bytes  # noqa: E402

DTYPES = ("float32", "uint8")


def shape_key(task: tuple) -> tuple:
    """A kernel's workload without its dtype: the fp32 and the int8 form of a layer share it."""
    return (task[0].split("_")[0], tuple(a for a in task[1] if a not in DTYPES))


def per_shape(lib, feed, repeat: int) -> tuple[dict[tuple, list], float]:
    """({workload key: [calls, fastest seconds summed, kernel's template]}, seconds of the calls
    without a workload: quantisation of the input, pools, copies) of a build."""
    out: dict[tuple, list] = {}
    rest = 0.0
    for call, lat in time_steps(lib, feed, repeat=repeat, order="alone"):
        if call.task is None:
            rest += lat.min
            continue
        row = out.setdefault(shape_key(call.task), [0, 0.0, call.task[0]])
        row[0] += 1
        row[1] += lat.min
    return out, rest


def main(argv: list[str] | None = None) -> None:
    """Print the per-layer table."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="a bench/quantized.py model name (squeezenet, resnet50, ...)")
    ap.add_argument("--target", default=None, help='e.g. "llvm -mcpu=haswell" (default: this CPU)')
    ap.add_argument("--repeat", type=int, default=5, help="calls per kernel; the fastest counts")
    ap.add_argument("--top", type=int, default=0, help="only the N largest losses (0: every layer)")
    args = ap.parse_args(argv)
    print(env_note(), flush=True)
    fp32 = fp32_model(args.model)
    int8 = onnx.load_from_string(int8_model_bytes(args.model))
    feed = _inputs(fp32, 0)
    libs = {label: frontends.build(frontends.from_onnx(model), target=args.target)
            for label, model in (("fp32", fp32), ("int8", int8))}
    timed = {label: per_shape(lib, feed, args.repeat) for label, lib in libs.items()}
    whole = time_interleaved({k: functools.partial(lib.run, **feed) for k, lib in libs.items()},
                             repeat=4 * args.repeat, settle=0, block=2)
    (f32, rest32), (i8, rest8) = timed["fp32"], timed["int8"]
    both = sorted(set(f32) & set(i8), key=lambda k: f32[k][1] - i8[k][1])
    rows = [[k[0], " ".join(map(str, k[1][:2])), " ".join(map(str, k[1][2:])), i8[k][0],
             f"{1e6 * f32[k][1]:.1f}", f"{1e6 * i8[k][1]:.1f}", f"{i8[k][1] / f32[k][1]:.2f}x", i8[k][2], f32[k][2]]
            for k in both]
    print(table(["op", "shapes", "attributes", "calls", "fp32 us", "int8 us", "int8/fp32", "int8 kernel",
                 "fp32 kernel"], rows[:args.top] if args.top else rows))
    t32, t8 = sum(f32[k][1] for k in both), sum(i8[k][1] for k in both)
    print(f"anchors: fp32 {1e3 * t32:.2f} ms, int8 {1e3 * t8:.2f} ms ({t8 / t32:.2f}x), int8 slower on "
          f"{sum(i8[k][1] > f32[k][1] for k in both)} of {len(both)} shapes; other kernels: fp32 "
          f"{1e3 * rest32:.2f} ms, int8 {1e3 * rest8:.2f} ms")
    print(f"whole model (fastest of {8 * args.repeat} runs, alternating): fp32 {1e3 * whole['fp32'].min:.2f} ms, "
          f"int8 {1e3 * whole['int8'].min:.2f} ms ({whole['int8'].min / whole['fp32'].min:.2f}x)")
    if set(f32) ^ set(i8):
        print(f"workloads in one build only: {sorted(set(f32) ^ set(i8))[:6]}")


if __name__ == "__main__":
    main()
