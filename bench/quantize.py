"""`tilewise quantize` against onnxruntime's own quantize_static, on the same calibration inputs.

    python bench/quantize.py                                   # squeezenet, 16 samples, minmax
    python bench/quantize.py --models resnet50 squeezenet --samples 32 --method entropy --per-channel

Per model: the seconds tilewise takes (its calibration by the fp32 build, and the whole command)
and the seconds onnxruntime's quantize_static takes with its own calibrator; whether the two QDQ
models carry the same scales; and the accuracy report of each against tilewise's fp32 outputs.
The models are the onnx package's light models with seeded random weights (frontends.zoo), the
inputs seeded random (as `tilewise quantize --samples`).
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time

import numpy as np
import onnx

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from frontends import zoo                                  # noqa: E402
from frontends.onnx import from_onnx                       # noqa: E402
from frontends.quant_report import accuracy_report         # noqa: E402
from frontends.quantize import prepare, quantize, random_samples   # noqa: E402
from common import env_note, table                         # noqa: E402


def scales(path: str) -> dict[str, np.ndarray]:
    """The scale initializers of a QDQ model by name."""
    return {t.name: onnx.numpy_helper.to_array(t) for t in onnx.load(path).graph.initializer
            if t.name.endswith("_scale")}


def ort_quantize(model: onnx.ModelProto, out: str, inputs: list[dict], method: str, per_channel: bool) -> float:
    """onnxruntime's quantize_static with its own calibrator on the inputs; returns the seconds."""
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(inputs)

        def get_next(self):
            return next(self.it, None)
    cal = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
           "entropy": CalibrationMethod.Entropy}[method]
    t = time.perf_counter()
    quantize_static(model, out, Reader(), per_channel=per_channel, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8, calibrate_method=cal)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["squeezenet"])
    ap.add_argument("--samples", type=int, default=16)
    ap.add_argument("--method", choices=("minmax", "percentile", "entropy"), default="minmax")
    ap.add_argument("--per-channel", action="store_true")
    args = ap.parse_args()
    logging.disable(logging.WARNING)            # onnxruntime's advice to pre-process, per call
    rows, reports = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            src = os.path.join(tmp, f"{name}.onnx")
            onnx.save(zoo.light_model(name), src)
            t = time.perf_counter()
            ours = os.path.join(tmp, f"{name}.tilewise.onnx")
            res = quantize(src, ours, samples=args.samples, method=args.method, per_channel=args.per_channel)
            t_ours = time.perf_counter() - t
            m = prepare(src)                    # the model tilewise quantised: same opset, BatchNorm folded
            inputs = random_samples(from_onnx(m), args.samples)
            theirs = os.path.join(tmp, f"{name}.ort.onnx")
            t_ort = ort_quantize(m, theirs, inputs, args.method, args.per_channel)
            a, b = scales(ours), scales(theirs)
            common = a.keys() & b.keys()
            worst = max((float(np.max(np.abs(a[k] - b[k]) / np.maximum(np.abs(b[k]), 1e-30))) for k in common),
                        default=float("nan"))
            rows.append([name, f"{res.calibration.seconds:.1f}", f"{t_ours:.1f}", f"{t_ort:.1f}",
                         f"{len(common)} of {len(b)}", f"{worst:.1e}"])
            ort_report = accuracy_report(theirs, inputs, res.calibration.outputs, res.calibration.output_names)
            reports.append((name, res.report, ort_report))
    print(env_note())
    print(f"{args.samples} seeded random samples, {args.method}{', per channel' if args.per_channel else ''}\n")
    print(table(["model", "tilewise calibration s", "tilewise quantize s", "ORT quantize_static s",
                 "same scales", "max rel scale diff"], rows))
    for name, ours, theirs in reports:
        print(f"\n{name}, quantised by tilewise: " + "\n".join(ours.lines()))
        print(f"{name}, quantised by onnxruntime: " + "\n".join(theirs.lines()))


if __name__ == "__main__":
    main()
