"""The accuracy report of a quantised model: its outputs against the fp32 model's on the same inputs.

Per model output: top-1 agreement (the same class as fp32), top-5 agreement (fp32's class among the
quantised model's five best), and the error statistics max |q - f|, mean |q - f| and the relative
error ||q - f|| / ||f|| over all samples.  The quantised model runs with tilewise when its import
reads QDQ models, else with ONNX Runtime; the report names which.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import onnx

from .onnx_model import ModelError

log = logging.getLogger(__name__)

ENGINES = ("auto", "tilewise", "onnxruntime")


@dataclass(frozen=True)
class OutputAccuracy:
    """One output's agreement and error statistics (top-k None where the output is not class scores)."""
    name: str
    samples: int
    top1: float | None
    top5: float | None
    max_abs: float
    mean_abs: float
    rel: float


@dataclass
class AccuracyReport:
    """The quantised model against the fp32 model, per output; `engine` ran the quantised model."""
    engine: str
    outputs: list[OutputAccuracy] = field(default_factory=list)
    note: str = ""

    @property
    def top1(self) -> float | None:
        """The lowest top-1 agreement over the outputs that are class scores (None: there are none)."""
        vals = [o.top1 for o in self.outputs if o.top1 is not None]
        return min(vals) if vals else None

    def lines(self) -> list[str]:
        """The report as text lines."""
        n = self.outputs[0].samples if self.outputs else 0
        out = [f"accuracy against fp32 on {n} calibration input(s) (int8 run by {self.engine}):"]
        for o in self.outputs:
            k = "" if o.top1 is None else f"top-1 {o.top1:.1%}, top-5 {o.top5:.1%}; "
            out.append(f"  {o.name}: {k}max abs err {o.max_abs:.3g}, mean abs err {o.mean_abs:.3g}, "
                       f"relative err {o.rel:.2%}")
        if self.note:
            out.append(f"  note: {self.note}")
        return out


def class_rows(a: np.ndarray) -> np.ndarray | None:
    """a as (rows, classes) where it holds class scores (batch x one axis of >= 2 classes), else None."""
    if a.ndim < 2:
        return None
    rest = [d for d in a.shape[1:] if d != 1]
    if len(rest) != 1 or rest[0] < 2:
        return None
    return a.reshape(a.shape[0], rest[0])


def compare(name: str, quantised: list[np.ndarray], reference: list[np.ndarray]) -> OutputAccuracy:
    """The agreement and error statistics of one output over its samples."""
    q = np.concatenate([np.asarray(a, np.float64).reshape(-1) for a in quantised])
    f = np.concatenate([np.asarray(a, np.float64).reshape(-1) for a in reference])
    err = np.abs(q - f)
    norm = np.linalg.norm(f)
    rel = float(np.linalg.norm(q - f) / norm) if norm > 0 else float(err.max(initial=0.0) > 0)
    top1 = top5 = None
    rows_q = [class_rows(np.asarray(a)) for a in quantised]
    rows_f = [class_rows(np.asarray(a)) for a in reference]
    if all(r is not None for r in rows_q + rows_f):
        rq, rf = np.concatenate(rows_q), np.concatenate(rows_f)
        want = rf.argmax(axis=1)
        top1 = float(np.mean(rq.argmax(axis=1) == want))
        k = min(5, rq.shape[1])
        best = np.argsort(-rq, axis=1, kind="stable")[:, :k]
        top5 = float(np.mean((best == want[:, None]).any(axis=1)))
    return OutputAccuracy(name, len(quantised), top1, top5, float(err.max(initial=0.0)),
                          float(err.mean()) if err.size else 0.0, rel)


def run_quantised(model: onnx.ModelProto, inputs: list[dict[str, np.ndarray]], shapes: dict | None = None,
                  target=None, engine: str = "auto") -> tuple[str, list[list[np.ndarray]], str]:
    """(engine, outputs per sample, note) of a quantised model: tilewise where its import reads it
    (engine "auto" or "tilewise"), else ONNX Runtime (or "onnxruntime" always).  With "auto", a
    tilewise build or run that fails gives way to ONNX Runtime, and the note says why."""
    if engine not in ENGINES:
        raise ValueError(f"engine {engine!r}: use one of {', '.join(ENGINES)}")
    note = ""
    if engine in ("auto", "tilewise"):
        try:
            lib = tilewise_int8_build(model, shapes, target, quiet=engine == "auto")
            if lib is not None:
                return "tilewise", [lib.run(**x) for x in inputs], note
        except Exception as e:      # noqa: BLE001  (auto: reported in the note, ONNX Runtime answers)
            if engine == "tilewise":
                raise
            why = (str(e).strip().splitlines() or [""])[0]
            note = f"tilewise imports this model but could not run it ({type(e).__name__}: {why[:120]})"
            log.warning("%s; ONNX Runtime runs it for the report", note)
    from .profile import onnxruntime_session
    sess = onnxruntime_session(model)
    names = [o.name for o in sess.get_outputs()]
    return "ONNX Runtime", [[np.asarray(v) for v in sess.run(names, x)] for x in inputs], note


def tilewise_int8_build(model: onnx.ModelProto, shapes: dict | None = None, target=None, quiet: bool = True):
    """tilewise's build of a QDQ model, or None (quiet) / the ModelError where its import does not
    read one yet."""
    from .compile import build
    from .onnx import from_onnx
    try:
        graph = from_onnx(model, shapes=shapes)
    except ModelError as e:
        if not quiet:
            raise
        log.info("tilewise does not import this QDQ model yet (%s); ONNX Runtime runs it", str(e).splitlines()[0])
        return None
    return build(graph, target=target)


def accuracy_report(quantised, inputs: list[dict[str, np.ndarray]], reference: list[list[np.ndarray]] | None = None,
                    output_names: list[str] | None = None, fp32=None, shapes: dict | None = None, target=None,
                    engine: str = "auto") -> AccuracyReport:
    """The quantised model (ModelProto or path) against fp32 outputs on the inputs: `reference`
    (outputs per sample, as calibrate returns them) or, without it, tilewise's build of `fp32`."""
    from .onnx_model import load_model
    qm = load_model(quantised)
    if reference is None:
        if fp32 is None:
            raise ModelError("accuracy_report needs the fp32 outputs or the fp32 model")
        from .compile import build
        from .onnx import from_onnx
        graph = from_onnx(fp32, shapes=shapes)
        lib = build(graph, target=target)
        reference = [lib.run(**x) for x in inputs]
        output_names = [o.name for o in graph.outputs]
    names = output_names or [o.name for o in qm.graph.output]
    used, got, note = run_quantised(qm, inputs, shapes, target, engine)
    report = AccuracyReport(used, note=note)
    for j, name in enumerate(names):
        report.outputs.append(compare(name, [o[j] for o in got], [r[j] for r in reference]))
    if report.top1 is None:
        report.note = "; ".join(filter(None, [note, "no output holds class scores, so there is no top-1/top-5 "
                                              "agreement"]))
    return report
