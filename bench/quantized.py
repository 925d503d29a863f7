"""Quantised models, batch 1, 2 threads: tilewise int8 vs ONNX Runtime int8, and both in fp32.

    python bench/quantized.py                                # resnet50, squeezenet, encoder_layer
    python bench/quantized.py --models squeezenet --check 100
    python bench/quantized.py --quantizer tilewise         # the models `tilewise quantize` writes
    python bench/quantized.py --target "llvm -mcpu=haswell"  # tilewise built for AVX2 (no VNNI, no AMX)
    python bench/quantized.py --models mobilenet_block,shufflenet --check 20   # depthwise and grouped convs

ResNet-50 and SqueezeNet are the onnx package's light models with seeded random weights,
upgraded to opset 13 where older (per-channel scales need it), prepared with
onnxruntime.quantization's `quant_pre_process` and quantised by `quantize_static` (QDQ,
per-channel int8 weights, uint8 activations, min-max calibration on a few seeded inputs); the
encoder layer (zoo.encoder_layer) is quantised by `quantize_dynamic` (int8 weights).  Two more
models are not in the default list: `mobilenet_block` (zoo.mobilenet_block, a MobileNetV2 inverted
residual: 1x1 expand, 3x3 depthwise, 1x1 project, residual Add) and `shufflenet` (the light model:
grouped 1x1 convs, depthwise 3x3, channel shuffles), quantised statically like ResNet-50; and
`attention`, the encoder layer quantised statically (QDQ), whose Q.K^T and scores.V are MatMuls of
two quantised activations (tilewise: the int8 batched matmul, te/ops/int8_batch_matmul.py).  With
`--quantizer tilewise` every model is quantised instead by tilewise's own quantiser
(frontends.quantize, what `tilewise quantize --per-channel` runs: BatchNorm folded, calibrated
with tilewise's fp32 build on the same seeded inputs, min-max, QDQ), and both engines run that
model.  The
engines run in alternating blocks of runs in one process, medians quoted: ONNX Runtime's session
as built by default (its idle threads spinning between runs, as users run it; the ratio is
against it) and beside it the int8 session without spinning, as bench/models.py does (spinning
threads left over from one engine's block take a core from the next one's first runs).  `--check N`
runs N seeded inputs through tilewise int8 and ONNX Runtime int8 and counts how often their top-1
classes agree (for the encoder, the arg-max of each row), with the largest output difference in
quantisation steps of the output (the encoder's output is float: absolute).
"""
from __future__ import annotations

import argparse
import functools
import os
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import frontends                                          # noqa: E402
from frontends import zoo                                 # noqa: E402
from frontends.profile import onnxruntime_session, time_interleaved  # noqa: E402
from common import env_note, table, time_call             # noqa: E402

MODELS = ["resnet50", "squeezenet", "encoder_layer"]
# the models built by zoo functions rather than read from the onnx package's light models
ZOO = {"encoder_layer": lambda: zoo.encoder_layer(), "mobilenet_block": lambda: zoo.mobilenet_block(),
       "attention": lambda: zoo.encoder_layer()}
CALIBRATION_INPUTS = 4


def _inputs(model, seed: int) -> dict[str, np.ndarray]:
    """A seeded N(0, 1) float input per graph input of model."""
    rng = np.random.default_rng(seed)
    feed = {}
    for vi in model.graph.input:
        dims = [d.dim_value for d in vi.type.tensor_type.shape.dim]
        feed[vi.name] = rng.standard_normal(dims).astype(np.float32)
    return feed


def fp32_model(name: str):
    """The float model: a light model with seeded weights (logits as an output too), or a zoo model."""
    return ZOO[name]() if name in ZOO else zoo.light_model(name, logits=True)


@functools.lru_cache(maxsize=None)
def int8_model_bytes(name: str, quantizer: str = "ort") -> bytes:
    """The quantised model's bytes (made once per process), by onnxruntime.quantization or tilewise's."""
    import onnx
    if quantizer == "tilewise":
        return _tilewise_int8_bytes(name)
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process
    model = fp32_model(name)
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    if opset < 13:                  # per-channel DequantizeLinear needs opset 13
        model = onnx.version_converter.convert_version(model, 13)
    with tempfile.TemporaryDirectory() as tmp:
        src, pre, out = (os.path.join(tmp, f) for f in ("model.onnx", "pre.onnx", "int8.onnx"))
        onnx.save(model, src)
        if name == "encoder_layer":
            quantize_dynamic(src, out, weight_type=QuantType.QInt8)
        else:
            quant_pre_process(src, pre)
            feeds = iter([_inputs(model, 1000 + k) for k in range(CALIBRATION_INPUTS)])

            class Reader(CalibrationDataReader):
                def get_next(self):
                    return next(feeds, None)
            quantize_static(pre, out, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        with open(out, "rb") as f:
            return f.read()


def _tilewise_int8_bytes(name: str) -> bytes:
    """The model `tilewise quantize --per-channel --calibration` writes, calibrated on the inputs
    onnxruntime.quantization's calibration reads."""
    import onnx

    from frontends.quantize import quantize
    model = fp32_model(name)
    with tempfile.TemporaryDirectory() as tmp:
        src, cal, out = (os.path.join(tmp, f) for f in ("model.onnx", "cal.npz", "int8.onnx"))
        onnx.save(model, src)
        feeds = [_inputs(model, 1000 + k) for k in range(CALIBRATION_INPUTS)]
        np.savez(cal, **{k: np.stack([f[k] for f in feeds]) for k in feeds[0]})
        quantize(src, out, calibration=cal, per_channel=True)
        with open(out, "rb") as f:
            return f.read()


def _top1(outputs: list[np.ndarray], names: list[str]) -> np.ndarray:
    """The class picked: arg-max of the logits output if the model has one, else of the first output."""
    k = next((i for i, n in enumerate(names) if "logit" in n.lower()), 0)
    y = outputs[k]
    return np.argmax(y.reshape(-1, y.shape[-1]), axis=-1)


def _output_steps(q_bytes: bytes, names: list[str]) -> list[float]:
    """The quantisation step of each output: the scale of the DequantizeLinear that makes it (1.0 for
    an output computed in float)."""
    import onnx
    from onnx import numpy_helper
    m = onnx.load_from_string(q_bytes)
    inits = {t.name: t for t in m.graph.initializer}
    steps = []
    for name in names:
        node = next((n for n in m.graph.node if name in n.output), None)
        ok = node is not None and node.op_type == "DequantizeLinear" and node.input[1] in inits
        steps.append(float(numpy_helper.to_array(inits[node.input[1]]).reshape(-1)[0]) if ok else 1.0)
    return steps


def check(name: str, lib, sess, model, n: int, q_bytes: bytes) -> tuple[float, float]:
    """(share of the n seeded inputs whose top-1 agrees with ONNX Runtime int8, largest |difference|
    in quantisation steps of the output, or in absolute terms for a float output)."""
    names = [o.name for o in sess.get_outputs()]
    steps = _output_steps(q_bytes, names)
    agree, worst = 0.0, 0.0
    for seed in range(n):
        feed = _inputs(model, seed)
        want, got = sess.run(None, feed), lib.run(**feed)
        agree += float(np.mean(_top1(got, names) == _top1(want, names)))
        worst = max(worst, max(float(np.abs(a - b).max()) / st for a, b, st in zip(got, want, steps)))
    return agree / max(n, 1), worst


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join(MODELS), help="comma list (default: %(default)s)")
    ap.add_argument("--check", type=int, default=0, metavar="N", help="top-1 agreement over N seeded inputs")
    ap.add_argument("--seconds", type=float, default=3.0, help="about how long each engine is timed per model")
    ap.add_argument("--quantizer", choices=("ort", "tilewise"), default="ort",
                    help="who quantises the models: onnxruntime.quantization (default) or tilewise quantize")
    ap.add_argument("--target", default=None,
                    help="build tilewise for this target (e.g. 'llvm -mcpu=haswell'); default: this CPU")
    a = ap.parse_args()
    os.environ.setdefault("TILEWISE_NUM_THREADS", "2")
    print(env_note())
    rows = []
    for name in a.models.split(","):
        model, q_bytes = fp32_model(name), int8_model_bytes(name, a.quantizer)
        feed = _inputs(model, 0)
        fns, libs = {}, {}
        for label, m in (("int8", q_bytes), ("fp32", model)):
            sess = onnxruntime_session(m)          # a default session, as users run it
            lib = frontends.build(frontends.from_onnx(m), target=a.target)
            lib.run(**feed)                                   # compiles (JIT) and warms up
            libs[label] = (lib, sess)
            fns[f"tilewise {label}"] = functools.partial(lib.run, **feed)
            fns[f"ort {label}"] = functools.partial(sess.run, None, feed)
        fns["ort int8 no-spin"] = functools.partial(onnxruntime_session(q_bytes, spinning=False).run, None, feed)
        # engines alternate in blocks of runs back to back (about 0.2 s each), as bench/models.py does
        t_once = time_call(fns["ort int8"], min_repeats=1, min_seconds=0)["median"]
        block = max(1, min(50, int(0.2 / max(t_once, 1e-6))))
        rounds = max(5, min(100, int(a.seconds / max(t_once * block, 1e-6))))
        med = {k: v.median * 1e3 for k, v in time_interleaved(fns, repeat=rounds, block=block).items()}
        row = [name, f"{med['tilewise int8']:.2f}", f"{med['ort int8']:.2f}",
               f"{med['tilewise int8'] / med['ort int8']:.2f}x", f"{med['ort int8 no-spin']:.2f}",
               f"{med['tilewise fp32']:.2f}", f"{med['ort fp32']:.2f}"]
        if a.check:
            lib, sess = libs["int8"]
            agree, worst = check(name, lib, sess, model, a.check, q_bytes)
            row += [f"{agree:.1%}", f"{worst:.3g}"]
        rows.append(row)
        print(f"  {name}: " + ", ".join(f"{k} {v:.2f} ms" for k, v in med.items()) + f" ({rounds} rounds)",
              flush=True)
    heads = ["model", "tilewise int8 ms", "ort int8 ms", "int8 tilewise / ort", "ort int8 no-spin ms",
             "tilewise fp32 ms", "ort fp32 ms"]
    if a.check:
        heads += [f"top-1 = ort int8 ({a.check} inputs)", "max |diff| (output steps; encoder: absolute)"]
    by = "onnxruntime.quantization" if a.quantizer == "ort" else "tilewise quantize"
    built = f", tilewise built for {a.target!r}" if a.target else ""
    print(f"\nquantised by {by}{built}; batch 1, 2 threads, median latency (a ratio < 1 means tilewise is faster "
          "than ONNX Runtime)")
    print(table(heads, rows))


if __name__ == "__main__":
    main()
