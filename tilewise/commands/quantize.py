"""tilewise quantize: an fp32 ONNX model -> a QDQ int8 model, calibrated with tilewise's fp32 build."""
from __future__ import annotations

import os

from . import add_parser
from ..common import (CLIError, check_file, check_output_folder, fmt_num, fmt_time, parse_shapes, refuse_foreign,
                      say, table)
from ..progress import Status
from .build import parse_target, refuse_overwrite

DESCRIPTION = """\
Quantise an fp32 ONNX model to int8 and write a standard QDQ model (QuantizeLinear /
DequantizeLinear around each quantised node) that ONNX Runtime and tilewise run.  Each
BatchNormalization is folded into the Conv before it first.  The ranges of the activations come
from running tilewise's own fp32 build of the model on calibration inputs: real ones from an
.npz (--calibration: one array per model input, the input's shape or N samples stacked), or
--samples N seeded random ones -- right for the built-in zoo models, whose weights are random
too, but not for a trained model: give it real inputs.  Weights are int8 (per output channel
with --per-channel), activations u8 (or s8).  The QDQ file is written by onnxruntime's
quantiser from tilewise's ranges.

--auto quantises only where it pays: it times every Conv/Gemm/MatMul alone, int8 against fp32,
on this CPU, keeps fp32 where int8 is not faster, and gives layers back to fp32 while the top-1
agreement with fp32 drops by more than --max-top1-drop.

At the end the command prints the accuracy report: the quantised model's top-1/top-5 agreement
with the fp32 model and its error (max, mean and relative) on the calibration inputs."""

EXAMPLES = """\
  tilewise quantize resnet50.onnx -o resnet50.int8.onnx --calibration images.npz --per-channel
  tilewise quantize squeezenet.onnx -o squeezenet.int8.onnx --samples 32 --method percentile
  tilewise quantize model.onnx -o model.int8.onnx --auto --max-top1-drop 0.01"""


def register(sub, common) -> None:
    p = add_parser(sub, common, "quantize", "quantise a model to int8 (QDQ ONNX)", DESCRIPTION, EXAMPLES)
    p.add_argument("model", metavar="MODEL.onnx", help="the fp32 ONNX model")
    p.add_argument("-o", "--output", metavar="OUT.onnx", help="the QDQ model to write (default: MODEL.int8.onnx)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--calibration", metavar="INPUTS.npz",
                     help="calibration inputs: one array per model input (np.savez), N samples stacked on axis 0")
    src.add_argument("--samples", type=int, metavar="N",
                     help="calibrate on N seeded random inputs (default 16; fine for random-weight models only)")
    p.add_argument("--method", choices=("minmax", "percentile", "entropy"), default="minmax",
                   help="how a range is taken from the calibration values (default minmax)")
    p.add_argument("--per-channel", action="store_true", help="a weight scale per output channel")
    p.add_argument("--reduce-range", action="store_true",
                   help="7-bit weights, which ONNX Runtime sums exactly on CPUs without VNNI (it saturates "
                        "8-bit ones there); tilewise is exact either way")
    p.add_argument("--activation-type", choices=("u8", "s8"), default="u8",
                   help="activations as uint8 (default, what VNNI multiplies) or int8")
    p.add_argument("--seed", type=int, default=0, help="the seed of --samples (default 0)")
    p.add_argument("--shape", action="append", metavar="NAME=DIMS", help="fix an input shape, e.g. data=1x3x224x224")
    p.add_argument("--target", metavar="TARGET", help="target of tilewise's builds (default: this CPU)")
    p.add_argument("--auto", action="store_true",
                   help="quantise only the layers that run faster in int8 on this CPU (times each layer)")
    p.add_argument("--max-top1-drop", type=float, metavar="FRACTION",
                   help="with --auto: the top-1 agreement with fp32 it may lose (default 0.01, one point)")
    p.set_defaults(run=run)


def output_path(model: str, output: str | None) -> str:
    """The output path (default MODEL.int8.onnx beside the current folder), checked it can be written."""
    out = output or os.path.splitext(os.path.basename(model))[0] + ".int8.onnx"
    if os.path.isdir(out):
        raise CLIError(f"-o {out}: is a folder; give the model's file name")
    check_output_folder("-o", out)
    refuse_overwrite([("-o", out)], [("MODEL", model)])
    refuse_foreign("-o", out, "onnx")
    return out


def run(args) -> int:
    check_file(args.model, "model file")
    out = output_path(args.model, args.output)
    if args.calibration is not None:
        check_file(args.calibration, "calibration file")
        refuse_overwrite([("-o", out)], [("--calibration", args.calibration)])
    if args.samples is not None and args.samples < 1:
        raise CLIError(f"--samples {args.samples}: give at least 1")
    if args.max_top1_drop is not None and not args.auto:
        raise CLIError("--max-top1-drop applies to --auto only; add --auto")
    budget = 0.01 if args.max_top1_drop is None else args.max_top1_drop
    if not 0.0 <= budget <= 1.0:
        raise CLIError(f"--max-top1-drop {budget}: give a fraction between 0 and 1 (0.01 is one point)")
    samples = None if args.calibration else (args.samples or 16)
    target = parse_target(args.target)
    from frontends import ModelError           # after the checks above: a wrong argument answers at once
    from frontends.quantize import quantize
    st = Status()
    st.update(f"quantising {args.model}{' (timing every layer)' if args.auto else ''}...", force=True)
    try:
        res = quantize(args.model, out, calibration=args.calibration, samples=samples, method=args.method,
                       per_channel=args.per_channel, activation_type=args.activation_type, seed=args.seed,
                       shapes=parse_shapes(args.shape) or None, target=target,
                       auto=args.auto, max_top1_drop=budget, reduce_range=args.reduce_range,
                       progress=lambda k, n, node: st.update(f"timing layer {k + 1}/{n}: {node}..."))
    except ModelError as e:
        raise CLIError(str(e)) from None
    finally:
        st.clear()
    cal = res.calibration
    where = args.calibration or f"{samples} random input(s), seed {args.seed}"
    say(f"calibrated {len(cal.ranges.data)} tensors ({args.method}) on {where} with tilewise's fp32 build "
        f"in {cal.seconds:.1f}s")
    if res.folded_batchnorms:
        say(f"folded {res.folded_batchnorms} BatchNormalization node(s) into the Conv before them")
    if res.auto is not None:
        rows = [[d.node, d.op, fmt_time(d.fp32_s), fmt_time(d.int8_s), fmt_num(d.speedup, 2, "x"),
                 "int8" if d.int8 else "fp32", d.reason] for d in res.auto.layers]
        say(table(["layer", "op", "fp32", "int8", "speedup", "runs", "why"], rows, "llrrrll"))
        say(f"--auto: {res.auto.summary()}")
    say(f"wrote {out}: {len(res.quantised_nodes)} node(s) quantised"
        f"{', per channel' if args.per_channel else ''}{', 7-bit weights' if args.reduce_range else ''}, "
        f"activations {args.activation_type}")
    for line in res.report.lines():
        say(line)
    return 0
