"""`tilewise quantize --auto`: int8 only where it pays on this CPU, within an accuracy budget.

Each quantisable layer (a Conv, Gemm or MatMul with a constant weight) is compiled alone twice by
the model compiler, as the fp32 node and as its QDQ form, and the two anchor kernels are timed on
this CPU; the int8 kernel is whichever the op registry picks for the int8 workload, so faster
kernels registered later change the answer without a change here.  A layer stays fp32 where int8
is not faster.  Then the chosen layers are quantised together and the model's top-1 agreement
with fp32 on the calibration inputs is measured; while the drop exceeds the budget, the chosen
layer that saves the least time goes back to fp32.
"""
from __future__ import annotations

import logging
import math
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import helper

from .onnx_model import ModelError
from .quantize import Calibration, ort_quantization, write_qdq

log = logging.getLogger(__name__)

ANCHOR_OPS = ("Conv", "Gemm", "MatMul")


@dataclass(frozen=True)
class Layer:
    """One quantisable node alone: as an fp32 model and as its QDQ model."""
    node: str
    op: str
    fp32: onnx.ModelProto
    int8: onnx.ModelProto


LayerTimer = Callable[[Layer], tuple[float, float]]     # a layer -> (fp32 seconds, int8 seconds)


@dataclass
class LayerDecision:
    """A layer's timings and whether it runs int8, with the reason."""
    node: str
    op: str
    fp32_s: float
    int8_s: float
    int8: bool
    reason: str

    @property
    def speedup(self) -> float:
        return self.fp32_s / self.int8_s if self.int8_s > 0 else math.nan


@dataclass
class AutoResult:
    """The decisions of --auto and the accuracy they cost."""
    layers: list[LayerDecision] = field(default_factory=list)
    budget: float = 0.01
    top1_drop: float | None = None
    evaluations: int = 0
    model: onnx.ModelProto | None = None            # the last model evaluated (the answer), and its report
    report: object | None = None

    @property
    def int8_nodes(self) -> list[str]:
        return [d.node for d in self.layers if d.int8]

    def summary(self) -> str:
        """One line: how many layers run int8 and the accuracy they cost against the budget."""
        drop = "not measured (no output holds class scores)" if self.top1_drop is None else f"{self.top1_drop:.1%}"
        return (f"{len(self.int8_nodes)} of {len(self.layers)} layer(s) int8; top-1 drop against fp32 {drop} "
                f"(budget {self.budget:.1%}, {self.evaluations} accuracy run(s))")


def quantisable_nodes(m: onnx.ModelProto) -> list[onnx.NodeProto]:
    """The Conv, Gemm and MatMul nodes whose weight (second input) is a constant."""
    inits = {t.name for t in m.graph.initializer}
    return [n for n in m.graph.node if n.op_type in ANCHOR_OPS and len(n.input) > 1 and n.input[1] in inits]


def layer_models(m: onnx.ModelProto, cal: Calibration, per_channel: bool, activation_type: str) -> list[Layer]:
    """Each quantisable node of m alone, fp32 and QDQ (with the model's calibrated ranges)."""
    _, ort_cal = ort_quantization()
    inits = {t.name: t for t in m.graph.initializer}
    opset = [o for o in m.opset_import]
    layers = []
    for n in quantisable_nodes(m):
        x, y = n.input[0], n.output[0]
        if x not in cal.shapes or y not in cal.shapes or x not in cal.ranges or y not in cal.ranges:
            log.info("%s: no calibrated range for its input or output; left fp32", n.name)
            continue
        node = onnx.NodeProto()
        node.CopyFrom(n)
        g = helper.make_graph([node], n.name, [_value_info(x, cal.shapes[x])], [_value_info(y, cal.shapes[y])],
                              [inits[i] for i in n.input[1:] if i in inits])
        fp32 = helper.make_model(g, opset_imports=opset, ir_version=m.ir_version)
        ranges = ort_cal.TensorsData(cal.ranges.calibration_method, {v: cal.ranges[v] for v in (x, y)})
        with tempfile.TemporaryDirectory(prefix="tilewise-quant.") as tmp:
            path = os.path.join(tmp, "layer.onnx")
            write_qdq(fp32, ranges, path, per_channel, activation_type)
            int8 = onnx.load(path)
        layers.append(Layer(n.name, n.op_type, fp32, int8))
    return layers


def _value_info(name: str, shape) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, list(shape))


# ---------------------------------------------------------------- timing on this CPU

def int8_import_missing(target=None) -> str | None:
    """Why tilewise cannot build a QDQ conv yet (its import refuses one, or the registry has no int8
    conv), or None when it can."""
    from te.ops import registry
    from te.ops.registry import ConvWorkload
    from te.target import parse

    from .onnx import from_onnx
    try:
        from_onnx(tiny_qdq_conv())
    except ModelError as e:
        lines = [ln.strip() for ln in str(e).splitlines()]
        first = next((ln for ln in lines if "not supported" in ln), lines[0])
        return f"tilewise's ONNX import does not read QDQ models ({first})"
    wl = ConvWorkload((1, 8, 8, 8), (8, 8, 3, 3), padding=(1, 1, 1, 1), dtype="uint8")
    try:
        impls = registry.candidates(wl, parse(target))
    except Exception as e:      # noqa: BLE001  (an fp32 implementation that trips on a uint8 workload)
        return f"the op registry cannot match an int8 conv ({type(e).__name__}: {e})"
    if not impls:
        return "the op registry has no int8 conv2d implementation (te/ops/qnn.py)"
    return None


def tiny_qdq_conv() -> onnx.ModelProto:
    """x -> Q -> DQ -> Conv(DQ(w)) -> Q -> DQ: the smallest QDQ layer, per-tensor, u8 activations."""
    return conv_layer("qdq_conv", (1, 8, 8, 8), (8, 8, 3, 3), pads=(1, 1, 1, 1)).int8


def conv_layer(name: str, x_shape: tuple, w_shape: tuple, group: int = 1, strides: tuple = (1, 1),
               pads: tuple = (0, 0, 0, 0), seed: int = 0) -> Layer:
    """One Conv with seeded weights and a bias, as an fp32 model and as its QDQ form (per-tensor,
    u8 activations, int8 weights): what time_layer compares, for a conv shape given by hand."""
    rng = np.random.default_rng(seed)
    w = rng.integers(-100, 100, w_shape).astype(np.int8)
    bias = rng.integers(-500, 500, w_shape[0]).astype(np.int32)
    H, W = x_shape[2:]
    y_shape = (x_shape[0], w_shape[0], (H + pads[0] + pads[2] - w_shape[2]) // strides[0] + 1,
               (W + pads[1] + pads[3] - w_shape[3]) // strides[1] + 1)
    t, n = helper.make_tensor, helper.make_node
    attrs = dict(pads=list(pads), strides=list(strides), group=group)
    fp32 = helper.make_graph([n("Conv", ["x", "w", "b"], ["y"], **attrs)], name, [_value_info("x", x_shape)],
                             [_value_info("y", y_shape)],
                             [onnx.numpy_helper.from_array((w * 0.01).astype(np.float32), "w"),
                              onnx.numpy_helper.from_array((bias * 0.0005).astype(np.float32), "b")])
    inits = [onnx.numpy_helper.from_array(w, "wq"), onnx.numpy_helper.from_array(bias, "bq"),
             t("s", onnx.TensorProto.FLOAT, [], [0.05]), t("ws", onnx.TensorProto.FLOAT, [], [0.01]),
             t("bs", onnx.TensorProto.FLOAT, [], [0.0005]), t("z", onnx.TensorProto.UINT8, [], [128]),
             t("wz", onnx.TensorProto.INT8, [], [0]), t("bz", onnx.TensorProto.INT32, [], [0])]
    nodes = [n("QuantizeLinear", ["x", "s", "z"], ["xq"]), n("DequantizeLinear", ["xq", "s", "z"], ["xd"]),
             n("DequantizeLinear", ["wq", "ws", "wz"], ["wd"]), n("DequantizeLinear", ["bq", "bs", "bz"], ["bd"]),
             n("Conv", ["xd", "wd", "bd"], ["c"], **attrs),
             n("QuantizeLinear", ["c", "s", "z"], ["cq"]), n("DequantizeLinear", ["cq", "s", "z"], ["y"])]
    int8 = helper.make_graph(nodes, name, [_value_info("x", x_shape)], [_value_info("y", y_shape)], inits)
    opset = [helper.make_opsetid("", 13)]
    return Layer(name, "Conv", helper.make_model(fp32, opset_imports=opset),
                 helper.make_model(int8, opset_imports=opset))


def time_layer(layer: Layer, target=None, repeat: int = 5) -> tuple[float, float]:
    """(fp32 seconds, int8 seconds) of a layer's anchor kernel, each form built alone by the model
    compiler (the registry picks the kernel) and timed by profile.profile_kernels.

    Only the kernels that compute the Conv/Gemm/MatMul count: the int8 form's QuantizeLinear of its
    fp32 input is a boundary that vanishes between int8 layers (the previous epilogue writes u8)."""
    from .onnx import from_onnx
    from .profile import profile_kernels
    seconds = []
    for model in (layer.fp32, layer.int8):
        kernels = profile_kernels(from_onnx(model), target, repeat=repeat)
        anchors = [k for k in kernels if set(k.ops.split("+")) & set(ANCHOR_OPS)] or kernels
        bad = next((k for k in anchors if k.error), None)
        if bad is not None:
            raise ModelError(f"{layer.node}: its kernel {bad.ops} could not be timed: {bad.error}")
        seconds.append(sum(k.seconds * k.calls for k in anchors))
    return seconds[0], seconds[1]


# ---------------------------------------------------------------- the choice

def layer_key(layer: Layer) -> str:
    """What decides a layer's speed: its op, attributes and the shapes of its inputs and output."""
    g = layer.fp32.graph
    node = g.node[0]
    shapes = [[d.dim_value for d in v.type.tensor_type.shape.dim] for v in [*g.input, *g.output]]
    attrs = sorted(str(onnx.helper.get_attribute_value(a)) + a.name for a in node.attribute)
    return repr((node.op_type, attrs, shapes, [list(t.dims) for t in g.initializer]))


def choose_layers(m: onnx.ModelProto, cal: Calibration, inputs: list[dict[str, np.ndarray]], per_channel: bool,
                  activation_type: str, budget: float, timer: LayerTimer | None = None, target=None,
                  progress: Callable[[int, int, str], None] | None = None, reduce_range: bool = False) -> AutoResult:
    """Time every quantisable layer int8 vs fp32 (timer, default time_layer), keep int8 where it is
    faster, then give layers back to fp32, least time saved first, until the top-1 drop against fp32
    on the calibration inputs is within budget.  progress(done, total, layer) is called per layer;
    reduce_range: 7-bit weights in the model it evaluates (write_qdq)."""
    from .quant_report import accuracy_report
    if not 0.0 <= budget <= 1.0:
        raise ModelError(f"--max-top1-drop {budget}: give a fraction between 0 and 1 (0.01 is one point)")
    if timer is None:
        missing = int8_import_missing(target)
        if missing:
            raise ModelError(f"--auto times each layer with tilewise's int8 kernels, which this build lacks: {missing}")

        def timer(layer: Layer) -> tuple[float, float]:
            return time_layer(layer, target)
    result = AutoResult(budget=budget)
    layers = layer_models(m, cal, per_channel, activation_type)
    timed: dict[str, tuple[float, float]] = {}      # layers of one shape are timed once
    for k, layer in enumerate(layers):
        if progress:
            progress(k, len(layers), layer.node)
        key = layer_key(layer)
        try:
            t32, t8 = timed[key] if key in timed else timer(layer)
            timed[key] = (t32, t8)
        except Exception as e:      # noqa: BLE001  (shown in the table: this layer stays fp32)
            why = (str(e).strip() or type(e).__name__).splitlines()[0]
            log.warning("%s: int8 could not be built or timed (%s); it stays fp32", layer.node, why)
            result.layers.append(LayerDecision(layer.node, layer.op, math.nan, math.nan, False,
                                               f"int8 failed: {why[:80]}"))
            continue
        faster = t8 < t32
        result.layers.append(LayerDecision(layer.node, layer.op, t32, t8, faster,
                                           "faster in int8" if faster else "int8 not faster"))
    while True:
        chosen = result.int8_nodes
        if not chosen:                              # all fp32: nothing lost, no QDQ model to keep
            result.top1_drop, result.model, result.report = 0.0, None, None
            break
        with tempfile.TemporaryDirectory(prefix="tilewise-quant.") as tmp:
            path = os.path.join(tmp, "auto.onnx")
            write_qdq(m, cal.ranges, path, per_channel, activation_type, chosen, reduce_range)
            report = accuracy_report(path, inputs, cal.outputs, cal.output_names, target=target)
            result.model, result.report = onnx.load(path), report
        result.evaluations += 1
        result.top1_drop = None if report.top1 is None else 1.0 - report.top1
        if result.top1_drop is None or result.top1_drop <= budget:
            break
        least = min((d for d in result.layers if d.int8), key=lambda d: d.fp32_s - d.int8_s)
        least.int8, least.reason = False, "fp32 for the accuracy budget"
        log.info("top-1 drop %.1f%% over the budget: %s back to fp32", 100 * result.top1_drop, least.node)
    return result
