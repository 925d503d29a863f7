"""Post-training static quantisation: an fp32 ONNX model -> a standard QDQ int8 model.

    q = quantize("model.onnx", "model.int8.onnx", samples=16)     # or calibration="inputs.npz"
    print("\\n".join(q.report.lines()))

The steps, one function each:

1. `prepare`: load the model, refuse one that is quantised already, name every node (the QDQ
   writer and `--auto` select nodes by name), fold each BatchNormalization into the Conv before it
   (tilewise's own `passes.fold_batchnorm`, run on the pair).
2. `calibrate`: tilewise's fp32 build of the model with every float tensor the quantiser may ask
   for added as an output, run on the calibration inputs; the ranges per tensor (min/max, or the
   histograms of onnxruntime's percentile and entropy methods), and the model outputs.
3. `write_qdq`: onnxruntime.quantization's QDQ writer (`quantize_static`), fed with those ranges
   through its calibration cache, so no ONNX Runtime calibration run happens.
4. `accuracy_report` (quant_report.py): the quantised model against the fp32 outputs.

`--auto` (quant_auto.py) decides per layer whether int8 pays on this CPU.
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import numpy_helper

from te.files import atomic_path

from .graph import Graph, Node, TensorInfo
from .onnx_model import ModelError, load_model

log = logging.getLogger(__name__)

METHODS = ("minmax", "percentile", "entropy")
QDQ_OPSET = 13                  # DequantizeLinear's axis (per-channel weights) needs opset 13
ACTIVATION_TYPES = ("u8", "s8")
# ops that only a quantised model holds
QUANTISED_OPS = frozenset({"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "QLinearConv",
                           "QLinearMatMul", "QLinearAdd", "QLinearMul", "QLinearConcat", "QLinearSigmoid",
                           "QLinearAveragePool", "QLinearGlobalAveragePool", "QLinearLeakyRelu",
                           "QLinearSoftmax", "MatMulInteger", "ConvInteger", "MatMulIntegerToFloat",
                           "DynamicQuantizeMatMul", "QGemm"})


def ort_quantization():
    """onnxruntime.quantization, or a one-line error that says how to get it."""
    try:
        import onnxruntime.quantization as q
        from onnxruntime.quantization import calibrate
    except ImportError as e:
        raise ModelError(f"quantising needs onnxruntime's QDQ writer ({e}); install it: "
                         "pip install onnxruntime") from None
    return q, calibrate


# ---------------------------------------------------------------- 1. prepare

def prepare(model) -> onnx.ModelProto:
    """A copy of the model ready to quantise: checked not quantised, every node named, BatchNorm
    folded into the Conv before it."""
    m = _copy(load_model(model))
    found = sorted({n.op_type for n in m.graph.node if n.op_type in QUANTISED_OPS})
    if found:
        raise ModelError(f"the model is quantised already (it has {', '.join(found)} nodes); "
                         "give tilewise quantize the fp32 model")
    if not any(n.op_type in ("Conv", "Gemm", "MatMul") for n in m.graph.node):
        raise ModelError("the model has no Conv, Gemm or MatMul node: nothing to quantise")
    m = _opset_at_least(m, QDQ_OPSET)
    name_nodes(m)
    return fold_batchnorm(m)


def _opset_at_least(m: onnx.ModelProto, opset: int) -> onnx.ModelProto:
    """m converted to `opset` where its default-domain opset is older (per-channel QDQ needs 13: the
    axis of DequantizeLinear), so the model calibrated is the model the QDQ writer quantises."""
    have = next((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), opset)
    if have >= opset:
        return m
    try:
        out = onnx.version_converter.convert_version(m, opset)
    except Exception as e:      # noqa: BLE001  (the converter raises many kinds; the message is what helps)
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ModelError(f"the model's opset {have} could not be converted to opset {opset}, which QDQ models "
                         f"need ({first}); convert it with onnx.version_converter first") from None
    log.info("converted the model from opset %d to %d", have, opset)
    return out


def _copy(m: onnx.ModelProto) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(m)
    return out


def name_nodes(m: onnx.ModelProto) -> None:
    """Give every unnamed node (and each repeat of a name) a unique name, in place."""
    seen: set[str] = set()
    for k, n in enumerate(m.graph.node):
        name = n.name or f"{n.op_type}_{k}"
        while name in seen:
            name = f"{name}_{k}"
        n.name = name
        seen.add(name)


def fold_batchnorm(m: onnx.ModelProto) -> onnx.ModelProto:
    """The model with each BatchNormalization whose input is a Conv's only use folded into that
    Conv (new weight and bias), by tilewise's passes.fold_batchnorm on the pair; m is left as it is."""
    from .passes import fold_batchnorm as fold_pair
    m = _copy(m)
    g = m.graph
    inits = {t.name: t for t in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    uses: dict[str, int] = {}
    for n in g.node:
        for i in n.input:
            uses[i] = uses.get(i, 0) + 1
    outputs = {o.name for o in g.output}
    folded: set[str] = set()
    for bn in g.node:
        conv = producer.get(bn.input[0]) if bn.op_type == "BatchNormalization" else None
        if (conv is None or conv.op_type != "Conv" or uses.get(conv.output[0]) != 1 or conv.output[0] in outputs
                or any(bn.output[1:]) or any(i not in inits for i in [*conv.input[1:], *bn.input[1:5]])):
            continue
        consts = {i: numpy_helper.to_array(inits[i]) for i in [*conv.input[1:], *bn.input[1:5]]}
        w = consts[conv.input[1]]
        eps = next((a.f for a in bn.attribute if a.name == "epsilon"), 1e-5)
        pair = Graph("pair")
        pair.constants = consts
        rank_shape = (1, w.shape[0]) + (1,) * (w.ndim - 2)
        pair.inputs = [TensorInfo(conv.input[0], (1, w.shape[1]) + (1,) * (w.ndim - 2), "float32")]
        pair.infos = {v: TensorInfo(v, rank_shape, "float32") for v in (conv.output[0], bn.output[0])}
        pair.outputs = [pair.infos[bn.output[0]]]
        pair.nodes = [Node("Conv", conv.name, list(conv.input), [conv.output[0]]),
                      Node("BatchNormalization", bn.name, list(bn.input[:5]), [bn.output[0]], {"epsilon": eps})]
        out = fold_pair(pair)
        if len(out.nodes) != 1:
            continue
        w_new, b_new = (out.constants[v] for v in out.nodes[0].inputs[1:3])
        names = (f"{conv.name}.W_bnfolded", f"{conv.name}.B_bnfolded")
        g.initializer.extend(numpy_helper.from_array(a, v) for a, v in zip((w_new, b_new), names))
        del conv.input[:]
        conv.input.extend([pair.inputs[0].name, *names])
        conv.output[0] = bn.output[0]
        folded.add(bn.name)
    if folded:
        keep = [n for n in g.node if n.name not in folded]
        del g.node[:]
        g.node.extend(keep)
        used = {i for n in g.node for i in n.input} | outputs
        keep_inits = [t for t in g.initializer if t.name in used]
        del g.initializer[:]
        g.initializer.extend(keep_inits)
        log.info("folded %d BatchNormalization node(s) into the Conv before them", len(folded))
    return m


# ---------------------------------------------------------------- 2. calibrate

def calibration_tensors(m: onnx.ModelProto, graph: Graph) -> list[str]:
    """The float tensors whose ranges the QDQ writer may ask for: every node's float inputs and
    outputs that are not initializers, those tilewise's import folded into constants too (DenseNet's
    batch-norm scales, an Unsqueeze of an initializer: the writer quantises them as activations)."""
    inits = {t.name for t in m.graph.initializer}
    names: list[str] = []
    for n in m.graph.node:
        for v in [*n.input, *n.output]:
            if v and v not in inits and v not in names and (
                    graph.infos[v].dtype == "float32" if v in graph.infos
                    else v in graph.constants and graph.constants[v].dtype == np.float32):
                names.append(v)
    return names


def load_samples(path: str, model: onnx.ModelProto) -> tuple[list[dict[str, np.ndarray]], dict[str, list[int]]]:
    """Calibration inputs from an .npz (one array per model input: the input's shape for one sample,
    or N of them stacked on a new first axis, or on the batch axis of a batch-1 input); returns the
    samples and the input shapes they fix."""
    inits = {t.name for t in model.graph.initializer}
    inputs = [vi for vi in model.graph.input if vi.name not in inits]
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise ModelError(f"--calibration {path}: no such file") from None
    except (OSError, ValueError, EOFError) as e:
        raise ModelError(f"--calibration {path}: not a readable .npz file ({e})") from None
    want = [vi.name for vi in inputs]
    if sorted(arrays) != sorted(want):
        raise ModelError(f"--calibration {path}: holds arrays {sorted(arrays)}, the model's inputs are {want}; "
                         "save one array per input under the input's name (np.savez)")
    per_input, shapes, counts = {}, {}, set()
    for vi in inputs:
        a = arrays[vi.name]
        dims = [d.dim_value if d.HasField("dim_value") else None for d in vi.type.tensor_type.shape.dim]
        stacked = _unstack(a, dims)
        if stacked is None:
            raise ModelError(f"--calibration {path}: array {vi.name} has shape {list(a.shape)}, which is neither "
                             f"the input's shape {['?' if d is None else d for d in dims]} nor N of them stacked")
        want_dt = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type))
        if (a.dtype.kind == "f") != (want_dt.kind == "f"):
            raise ModelError(f"--calibration {path}: array {vi.name} is {a.dtype}, the input is {want_dt}")
        per_input[vi.name] = stacked.astype(want_dt, copy=False)     # float64 -> float32, int32 -> int64
        shapes[vi.name] = list(stacked.shape[1:])
        counts.add(stacked.shape[0])
    if len(counts) != 1:
        raise ModelError(f"--calibration {path}: the arrays hold different numbers of samples ({sorted(counts)})")
    n = counts.pop()
    if n == 0:
        raise ModelError(f"--calibration {path}: the arrays hold no samples")
    return [{k: np.ascontiguousarray(v[i]) for k, v in per_input.items()} for i in range(n)], shapes


def _unstack(a: np.ndarray, dims: list) -> np.ndarray | None:
    """a as (samples, *input shape), or None where it does not fit the input's dims."""
    def fits(shape) -> bool:
        return len(shape) == len(dims) and all(d is None or d == s for d, s in zip(dims, shape))
    if fits(a.shape[1:]):
        return a
    if fits(a.shape) and not (dims and dims[0] == 1 and a.shape[0] != 1):
        return a[None]
    if dims and dims[0] == 1 and a.ndim == len(dims) and fits((1, *a.shape[1:])):
        return a[:, None]                   # a batch of samples for a batch-1 input
    return None


def _need_static_inputs(m: onnx.ModelProto, shapes: dict) -> None:
    """A one-line error for a model input without static dimensions that random samples cannot draw."""
    inits = {t.name for t in m.graph.initializer}
    for vi in m.graph.input:
        dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in vi.type.tensor_type.shape.dim]
        if vi.name not in inits and vi.name not in shapes and not all(isinstance(d, int) and d > 0 for d in dims):
            example = "x".join(str(d) if isinstance(d, int) and d > 0 else "1" for d in dims)
            raise ModelError(f"input {vi.name} has dimensions {dims}, not all static, so random samples cannot be "
                             f"drawn: fix them with --shape {vi.name}={example} (or give an .npz of real inputs)")


def random_samples(graph: Graph, n: int, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """n seeded random inputs of the graph (profile.random_inputs, one seed per sample)."""
    from .profile import random_inputs
    specs = [{"name": i.name, "shape": i.shape, "dtype": i.dtype} for i in graph.inputs]
    return [random_inputs(specs, seed * 100003 + k) for k in range(n)]


@dataclass
class Calibration:
    """What calibration found: the ranges (onnxruntime's TensorsData) and the fp32 outputs per sample."""
    method: str
    ranges: object                                  # onnxruntime.quantization.calibrate.TensorsData
    outputs: list[list[np.ndarray]] = field(default_factory=list)
    output_names: list[str] = field(default_factory=list)
    shapes: dict[str, tuple] = field(default_factory=dict)      # of every calibrated tensor
    seconds: float = 0.0


def calibrate(m: onnx.ModelProto, samples: list[dict[str, np.ndarray]], method: str = "minmax",
              shapes: dict | None = None, target=None) -> Calibration:
    """Run tilewise's fp32 build of m, with its calibration tensors as extra outputs, on the samples."""
    import time

    from .compile import build
    from .onnx import from_onnx
    if method not in METHODS:
        raise ModelError(f"--method {method}: not a calibration method; use one of {', '.join(METHODS)}")
    if not samples:
        raise ModelError("calibration needs at least one sample")
    t0 = time.perf_counter()
    graph = from_onnx(m, shapes=shapes)
    names = calibration_tensors(m, graph)
    probe = graph.copy()
    model_outputs = [o.name for o in graph.outputs]
    probe.outputs = list(graph.outputs) + [graph.info(v) for v in names if v not in model_outputs
                                           and v not in {i.name for i in graph.inputs} and v not in graph.constants]
    lib = build(probe, target=target)
    collect = _collector(method)
    outputs = []
    for k, x in enumerate(samples):
        try:
            values = lib.run(**x)
        except ValueError as e:
            raise ModelError(f"calibration sample {k}: {e}") from None
        named = dict(zip([o.name for o in probe.outputs], values))
        named.update({i: x[i] for i in x if i in names})
        named.update({v: graph.constants[v] for v in names if v in graph.constants})
        collect.add({v: named[v] for v in names if v in named})
        outputs.append(values[:len(model_outputs)])
    cal = Calibration(method, collect.result(), outputs, model_outputs,
                      {v: tuple(graph.constants[v].shape) if v in graph.constants else graph.info(v).shape
                       for v in names})
    cal.seconds = time.perf_counter() - t0
    log.info("calibrated %d tensors on %d sample(s) in %.1f s", len(names), len(samples), cal.seconds)
    return cal


class _MinMax:
    """The min and max of each tensor over all samples (onnxruntime's MinMax without moving average)."""

    def __init__(self):
        self.lo: dict[str, np.float32] = {}
        self.hi: dict[str, np.float32] = {}

    def add(self, values: dict[str, np.ndarray]) -> None:
        for v, a in values.items():
            if a.size == 0:
                continue
            lo, hi = np.float32(np.nanmin(a)), np.float32(np.nanmax(a))
            self.lo[v] = min(self.lo.get(v, lo), lo)
            self.hi[v] = max(self.hi.get(v, hi), hi)

    def result(self):
        _, cal = ort_quantization()
        return cal.TensorsData(cal.CalibrationMethod.MinMax,
                               {v: cal.TensorData(lowest=np.float32(self.lo[v]), highest=np.float32(self.hi[v]))
                                for v in self.lo})


class _Histogram:
    """onnxruntime's HistogramCollector with the settings of its percentile / entropy calibrators.

    Like onnxruntime's calibrator, it keeps every sample's tensors and makes one histogram of them
    all (a histogram merged sample by sample shifts the entropy method's thresholds by tens of
    percent on a few samples), so memory grows with the samples times the model's activations."""
    SETTINGS = {"percentile": dict(symmetric=True, num_bins=2048, num_quantized_bins=128, percentile=99.999),
                "entropy": dict(symmetric=False, num_bins=128, num_quantized_bins=128, percentile=99.999)}

    def __init__(self, method: str):
        self.method = method
        self.values: dict[str, list[np.ndarray]] = {}

    def add(self, values: dict[str, np.ndarray]) -> None:
        for v, a in values.items():
            if a.size:
                self.values.setdefault(v, []).append(np.array(a, np.float32))

    def result(self):
        _, cal = ort_quantization()
        collector = cal.HistogramCollector(method=self.method, scenario="same", **self.SETTINGS[self.method])
        with contextlib.redirect_stdout(io.StringIO()):        # it prints its progress
            collector.collect(self.values)
            data = collector.compute_collection_result()
        method = cal.CalibrationMethod.Percentile if self.method == "percentile" else cal.CalibrationMethod.Entropy
        return cal.TensorsData(method, data)


def _collector(method: str):
    return _MinMax() if method == "minmax" else _Histogram(method)


# ---------------------------------------------------------------- 3. write

def write_qdq(m: onnx.ModelProto, ranges, path: str, per_channel: bool = False, activation_type: str = "u8",
              nodes: list[str] | None = None, reduce_range: bool = False) -> None:
    """Write m as a QDQ model to path with onnxruntime's QDQ writer and the given ranges; `nodes`
    limits the quantised nodes to those names (None: every node it can quantise).

    reduce_range: weights in 7 bits ([-64, 63], the writer's reduce_range), so no pair of u8 x s8
    products passes int16: ONNX Runtime's int8 kernel on a CPU without VNNI adds such pairs in
    int16 with saturation (vpmaddubsw), and with full 8-bit weights its outputs then drift from the
    exact sums tilewise computes (bench/RESULTS.md, session 29)."""
    q, cal = ort_quantization()
    import inspect
    if "calibration_cache_path" not in inspect.signature(q.quantize_static).parameters:
        import onnxruntime
        raise ModelError(f"onnxruntime {onnxruntime.__version__}'s quantize_static takes no precomputed ranges "
                         "(calibration_cache_path); upgrade it: pip install -U onnxruntime")
    if activation_type not in ACTIVATION_TYPES:
        raise ModelError(f"--activation-type {activation_type}: use u8 or s8")
    act = q.QuantType.QUInt8 if activation_type == "u8" else q.QuantType.QInt8
    with tempfile.TemporaryDirectory(prefix="tilewise-quant.") as tmp:
        cache = os.path.join(tmp, "ranges.json")
        cal.save_tensors_data(ranges, cache)
        # its advice to pre-process goes to the root logger: we did (BatchNorm folded, shapes inferred)
        previous = logging.root.manager.disable
        logging.disable(max(previous, logging.WARNING))
        try:
            q.quantize_static(m, path, None, quant_format=q.QuantFormat.QDQ, per_channel=per_channel,
                              activation_type=act, weight_type=q.QuantType.QInt8, nodes_to_quantize=nodes,
                              reduce_range=reduce_range,
                              calibrate_method=ranges.calibration_method, calibration_cache_path=cache)
        finally:
            logging.disable(previous)
        m_out = onnx.load(path)
        if match_zero_point_shapes(m_out):
            onnx.save(m_out, path)


def match_zero_point_shapes(m: onnx.ModelProto) -> int:
    """Give each (De)QuantizeLinear's constant zero point its scale's shape where they differ only in
    shape (onnxruntime writes a bias scale of shape (1,) with a zero point of shape (); ONNX asks
    for one shape, and stricter importers refuse the pair); returns how many it changed."""
    inits = {t.name: t for t in m.graph.initializer}
    changed = 0
    for n in m.graph.node:
        if n.op_type in ("QuantizeLinear", "DequantizeLinear") and len(n.input) > 2 \
                and n.input[1] in inits and n.input[2] in inits:
            scale, zp = inits[n.input[1]], inits[n.input[2]]
            if list(scale.dims) != list(zp.dims) and np.prod(scale.dims) == np.prod(zp.dims):
                a = numpy_helper.to_array(zp).reshape(tuple(scale.dims))
                zp.CopyFrom(numpy_helper.from_array(a, zp.name))
                changed += 1
    return changed


def save_atomic(m: onnx.ModelProto, path: str) -> None:
    """Save an ONNX model to path through a temporary file in the same folder (no half-written file)."""
    with atomic_path(path, ".onnx") as tmp:
        onnx.save(m, tmp)


# ---------------------------------------------------------------- the whole pipeline

@dataclass
class QuantizeResult:
    """What quantize did: the model written, the calibration, the accuracy report, the decisions of --auto."""
    path: str
    calibration: Calibration
    report: object                                  # quant_report.AccuracyReport
    quantised_nodes: list[str]
    folded_batchnorms: int
    auto: object | None = None                      # quant_auto.AutoResult


def quantize(model, output: str, calibration: str | None = None, samples: int | None = None,
             method: str = "minmax", per_channel: bool = False, activation_type: str = "u8", seed: int = 0,
             shapes: dict | None = None, target=None, auto: bool = False, max_top1_drop: float = 0.01,
             timer: Callable | None = None, progress: Callable[[int, int, str], None] | None = None,
             reduce_range: bool = False) -> QuantizeResult:
    """Quantise an fp32 ONNX model into a QDQ model at `output` (written atomically), calibrated with
    tilewise's fp32 build on the .npz inputs or on `samples` seeded random inputs; with auto, only the
    layers that run faster in int8 on this CPU (quant_auto.choose_layers, which calls `timer` and
    `progress`), within max_top1_drop; reduce_range: 7-bit weights (write_qdq)."""
    from .quant_report import accuracy_report
    if calibration is None and not samples:
        raise ModelError("give calibration inputs (an .npz) or a number of random samples")
    if auto and timer is None:                      # before calibrating: say at once what is missing
        from .quant_auto import int8_import_missing
        missing = int8_import_missing(target)
        if missing:
            raise ModelError(f"--auto times each layer with tilewise's int8 kernels, which this build lacks: {missing}")
    src = load_model(model)
    m = prepare(src)
    n_bn = (sum(n.op_type == "BatchNormalization" for n in src.graph.node)
            - sum(n.op_type == "BatchNormalization" for n in m.graph.node))
    if calibration is not None:
        inputs, npz_shapes = load_samples(calibration, m)
        shapes = {**npz_shapes, **(shapes or {})}
    else:
        from .onnx import from_onnx
        _need_static_inputs(m, shapes or {})
        inputs = random_samples(from_onnx(m, shapes=shapes), samples, seed)
    cal = calibrate(m, inputs, method, shapes, target)
    chosen, decisions = None, None
    if auto:
        from .quant_auto import choose_layers
        decisions = choose_layers(m, cal, inputs, per_channel, activation_type, max_top1_drop, timer, target,
                                  progress, reduce_range)
        chosen = decisions.int8_nodes
    if decisions is not None and decisions.model is not None:   # --auto's last evaluation is the answer
        qmodel, report = decisions.model, decisions.report
    else:
        if chosen == []:                            # --auto kept every layer fp32
            qmodel = m
        else:
            with tempfile.TemporaryDirectory(prefix="tilewise-quant.") as tmp:
                qpath = os.path.join(tmp, "model.int8.onnx")
                write_qdq(m, cal.ranges, qpath, per_channel, activation_type, chosen, reduce_range)
                qmodel = onnx.load(qpath)
        report = accuracy_report(qmodel, inputs, cal.outputs, cal.output_names, shapes=shapes, target=target)
    save_atomic(qmodel, output)
    return QuantizeResult(output, cal, report, quantised_nodes(qmodel), n_bn, decisions)


def quantised_nodes(model: onnx.ModelProto) -> list[str]:
    """The names of the nodes a QDQ model runs in int8: those that read a DequantizeLinear output and
    are a Conv/Gemm/MatMul or write into a QuantizeLinear (a node between a DQ and fp32 is fp32)."""
    dq = {o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    q_in = {n.input[0] for n in model.graph.node if n.op_type == "QuantizeLinear"}
    return sorted(n.name for n in model.graph.node
                  if n.op_type not in ("QuantizeLinear", "DequantizeLinear") and any(i in dq for i in n.input)
                  and (n.op_type in ("Conv", "Gemm", "MatMul") or any(o in q_in for o in n.output)))
