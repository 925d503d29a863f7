"""ONNX's own node conformance cases (onnx.backend.test.case.node), run through tilewise.

Each case is a small model with input/output sets and tolerances.  A case counts as
applicable when every op in its graph is one tilewise supports; it passes when every output
matches within the case's tolerances (and has the expected shape and dtype).  A case that
tilewise rejects with its clear import error (an unsupported dtype, say) is counted apart from
wrong answers and crashes.  The inputs that decide shapes are bound to the data set's values at
import (`frontends.onnx.shape_inputs`), as a static-shape compiler does.
"""
from __future__ import annotations

import enum
import logging
import time
from dataclasses import dataclass

import numpy as np

from te.expr import BYTE_CODED

from .fold import FOLD
from .lowering import SUPPORTED

log = logging.getLogger(__name__)


class Outcome(enum.Enum):
    PASS = "pass"
    WRONG = "wrong answer"
    REJECTED = "rejected with a clear error"
    ERROR = "error"


@dataclass
class CaseResult:
    name: str
    outcome: Outcome
    message: str = ""
    seconds: float = 0.0
    folded: bool = False        # the whole graph folded to constants at import (bound inputs)


def all_cases() -> list:
    """Every node test case the installed onnx package ships (in memory)."""
    import warnings

    from onnx.backend.test.case.node import collect_testcases
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return collect_testcases(None)


def applicable(case) -> bool:
    """Does the case use only operators tilewise supports (or folds)?"""
    from .qoperators import DEFAULT_OPS          # rewritten into QDQ form at import
    ops = {n.op_type for n in case.model.graph.node}
    return bool(ops) and all(op in SUPPORTED or op in FOLD or op in DEFAULT_OPS for op in ops)


def _array(v) -> np.ndarray:
    """A data set value as numpy (the cases store some as TensorProtos)."""
    import onnx
    from onnx import numpy_helper
    return numpy_helper.to_array(v) if isinstance(v, onnx.TensorProto) else np.asarray(v)


# the machine epsilon of the 16-bit float outputs (numpy's finfo, ml_dtypes' for bfloat16)
LOW_PRECISION_EPS = {"float16": 2.0 ** -10, "bfloat16": 2.0 ** -7}
# the byte-coded float types (te/expr.py), whose numpy dtypes are of kind "V"
BYTE_CODED_FLOATS = frozenset(t for t in BYTE_CODED if t.startswith("float"))


def _compare(name: str, got: np.ndarray, want: np.ndarray, rtol: float, atol: float) -> str | None:
    """Why got is not want (None when they match within the case's tolerances)."""
    if got.shape != want.shape:
        return f"{name}: shape {got.shape} != {want.shape}"
    if got.dtype != want.dtype and not (got.dtype == np.bool_ and want.dtype == np.bool_):
        return f"{name}: dtype {got.dtype} != {want.dtype}"
    if want.dtype.name in LOW_PRECISION_EPS:
        # tilewise computes in float32 and rounds once; the reference rounds after every node:
        # they agree within the output type's precision (two units in the last place)
        eps = LOW_PRECISION_EPS[want.dtype.name]
        got, want = got.astype(np.float32), want.astype(np.float32)
        rtol, atol = max(rtol, 2 * eps), max(atol, eps)
    if want.dtype.name in BYTE_CODED_FLOATS:
        # float8/float4 results are exact (one rounding, as the reference's); NaN matches NaN
        got, want, rtol, atol = got.astype(np.float32), want.astype(np.float32), 0.0, 0.0
    if want.dtype.kind in "fc":
        ok = np.allclose(got, want, rtol=rtol, atol=atol, equal_nan=True)
    else:
        ok = np.array_equal(got, want)
    if ok:
        return None
    with np.errstate(all="ignore"):
        err = np.nanmax(np.abs(got.astype(np.float64) - want.astype(np.float64))) if got.size else 0
    return f"{name}: max abs error {err:.3g}"


# inputs that decide a node's structure rather than a shape, which a static build takes as
# constants: a recurrence's sequence lengths (lower_rnn.py unrolls it for them)
STRUCTURE_INPUTS = {"LSTM": 4, "GRU": 4, "RNN": 4}


def structure_inputs(model) -> list[str]:
    """The graph inputs of model that decide a node's structure (STRUCTURE_INPUTS)."""
    graph_inputs = {i.name for i in model.graph.input}
    return [n.input[k] for n in model.graph.node for op, k in STRUCTURE_INPUTS.items()
            if n.op_type == op and len(n.input) > k and n.input[k] in graph_inputs]


def run_case(case) -> CaseResult:
    """Import, build and run one case against each of its data sets.

    The inputs that decide shapes (onnx.shape_inputs: a Reshape's shape, Pad's pads...) and
    structure (structure_inputs) are bound to the data set's values at import, as a static-shape
    compiler does (TVM's freeze_params); a case whose data sets bind them differently is built once per data set.
    """
    import frontends
    from frontends.onnx import shape_inputs
    t0 = time.perf_counter()

    folded = True

    def result(outcome: Outcome, message: str = "") -> CaseResult:
        return CaseResult(case.name, outcome, message, time.perf_counter() - t0,
                          folded and outcome is Outcome.PASS)
    try:
        inits = {t.name for t in case.model.graph.initializer}
        model_inputs = [i.name for i in case.model.graph.input if i.name not in inits]
        frozen = set(shape_inputs(case.model)) | set(structure_inputs(case.model))
        built: dict[bytes, object] = {}
        for inputs, expected in case.data_sets:
            values = {n: _array(v) for n, v in zip(model_inputs, inputs)}
            consts = {n: v for n, v in values.items() if n in frozen}
            key = b"".join(n.encode() + v.tobytes() + str(v.dtype).encode() for n, v in sorted(consts.items()))
            if key not in built:
                shapes = {n: v.shape for n, v in values.items() if n not in frozen}
                g = frontends.from_onnx(case.model, shapes=shapes, constants=consts)
                built[key] = (g, frontends.build(g))
            g, lib = built[key]
            folded = folded and not g.nodes
            names = {i.name for i in g.inputs}
            outs = lib.run(**{n: v for n, v in values.items() if n in names})
            for got, want, info in zip(outs, expected, g.outputs):
                why = _compare(info.name, got, _array(want), case.rtol, case.atol)
                if why:
                    return result(Outcome.WRONG, why)
    except frontends.ModelError as e:
        lines = str(e).splitlines()
        return result(Outcome.REJECTED, lines[1 if len(lines) > 1 else 0].strip())
    except Exception as e:           # a bug of ours: reported, never hidden
        return result(Outcome.ERROR, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
    return result(Outcome.PASS)


def run(pattern: str | None = None, limit: int | None = None, progress=None) -> list[CaseResult]:
    """Run the applicable cases (whose name contains pattern), optionally the first `limit`."""
    cases = [c for c in all_cases() if applicable(c) and (pattern is None or pattern in c.name)]
    cases = cases[:limit] if limit else cases
    results = []
    for k, c in enumerate(cases):
        results.append(run_case(c))
        if progress:
            progress(k + 1, len(cases), results[-1])
    return results
