"""ONNX's own node conformance cases (onnx.backend.test.case.node), run through tilewise.

Each case is a small model with input/output sets and tolerances.  A case counts as
applicable when every op in its graph is one tilewise supports; it passes when every output
matches within the case's tolerances.  A case that tilewise rejects with its clear import
error (an unsupported dtype, say) is counted apart from wrong answers and crashes.
"""
from __future__ import annotations

import enum
import logging
import time
from dataclasses import dataclass

import numpy as np

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


def all_cases() -> list:
    """Every node test case the installed onnx package ships (in memory)."""
    import warnings

    from onnx.backend.test.case.node import collect_testcases
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return collect_testcases(None)


def applicable(case) -> bool:
    """Does the case use only operators tilewise supports (or folds)?"""
    ops = {n.op_type for n in case.model.graph.node}
    return bool(ops) and all(op in SUPPORTED or op in FOLD for op in ops)


def run_case(case) -> CaseResult:
    """Import, build and run one case against each of its data sets."""
    import frontends
    t0 = time.perf_counter()
    try:
        inits = {t.name for t in case.model.graph.initializer}
        model_inputs = [i.name for i in case.model.graph.input if i.name not in inits]
        first = case.data_sets[0][0] if case.data_sets else []
        shapes = {n: np.asarray(v).shape for n, v in zip(model_inputs, first)}
        g = frontends.from_onnx(case.model, shapes=shapes)
        lib = frontends.build(g)
        for inputs, expected in case.data_sets:
            names = [i.name for i in g.inputs]
            feed = {}
            for name, value in zip(model_inputs, inputs):
                if name in names:
                    feed[name] = np.asarray(value)
            outs = lib.run(**feed)
            for got, want, info in zip(outs, expected, g.outputs):
                want = np.asarray(want)
                if got.shape != want.shape:
                    return CaseResult(case.name, Outcome.WRONG, f"{info.name}: shape {got.shape} != {want.shape}",
                                      time.perf_counter() - t0)
                if want.dtype.kind in "fc":
                    ok = np.allclose(got, want, rtol=case.rtol, atol=case.atol, equal_nan=True)
                else:
                    ok = np.array_equal(got, want.astype(got.dtype))
                if not ok:
                    err = np.nanmax(np.abs(got.astype(np.float64) - want.astype(np.float64))) if got.size else 0
                    return CaseResult(case.name, Outcome.WRONG, f"{info.name}: max abs error {err:.3g}",
                                      time.perf_counter() - t0)
    except frontends.ModelError as e:
        return CaseResult(case.name, Outcome.REJECTED, str(e).splitlines()[1 if "\n" in str(e) else 0].strip(),
                          time.perf_counter() - t0)
    except Exception as e:           # a bug of ours: reported, never hidden
        return CaseResult(case.name, Outcome.ERROR, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}",
                          time.perf_counter() - t0)
    return CaseResult(case.name, Outcome.PASS, "", time.perf_counter() - t0)


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
