"""NaN, infinities and signed zeros through the activations and Max/Min/Clip, against ONNX Runtime."""
import numpy as np
import pytest
from onnx import helper, numpy_helper

import frontends
from frontends.profile import onnxruntime_session

from .onnx_helpers import tiny, vi

SPECIAL = np.array([np.nan, np.inf, -np.inf, -0.0, 0.0, 1.5, -2.5, 7.0, 3e38, -3e38, 1e-3, -1e-3, 6.0, -6.0,
                    np.nan, 0.25, -0.25], np.float32)
X = np.concatenate([SPECIAL, SPECIAL[::-1], SPECIAL[3:]])       # the vector loop and its remainder
OTHER = np.roll(np.where(np.isnan(X), 1.0, X), 5)                # NaN on one side, then the other
OTHER[[2, 20]] = np.nan


def scalar(name, v):
    return numpy_helper.from_array(np.array(v, np.float32), name)


CASES = {
    "Relu": ([], {}), "LeakyRelu": ([], {"alpha": 0.1}), "HardSigmoid": ([], {}), "HardSwish": ([], {}),
    "Elu": ([], {}), "Selu": ([], {}), "Celu": ([], {}), "ThresholdedRelu": ([], {}), "Softplus": ([], {}),
    "Softsign": ([], {}), "Mish": ([], {}), "Shrink": ([], {"lambd": 0.5, "bias": 0.25}), "Sigmoid": ([], {}),
    "Tanh": ([], {}), "Clip": ([], {}), "Clip.0.6": ([("lo", 0.0), ("hi", 6.0)], {}),
    "Clip.lo": ([("lo", 0.0)], {}), "Clip.hi": ([("", None), ("hi", 6.0)], {}),
    "Max": ([("z", None)], {}), "Min": ([("z", None)], {}), "PRelu": ([("slope", [0.1])], {}),
}


def model(case: str):
    op = case.split(".")[0]
    extra, attrs = CASES[case]
    names = ["x"] + [n for n, _ in extra]
    inits = [scalar(n, v) for n, v in extra if n and v is not None]
    inputs = [vi("x", [X.size])] + ([vi("z", [X.size])] if "z" in names else [])
    return tiny([helper.make_node(op, names, ["y"], **attrs)], inputs, [vi("y", None)], inits, opset=18)


@pytest.mark.parametrize("case", sorted(CASES))
def test_special_values_match_onnx_runtime(case):
    m = model(case)
    feeds = {"x": X, "z": OTHER} if case in ("Max", "Min") else {"x": X}
    want = onnxruntime_session(m).run(None, feeds)[0]
    (got,) = frontends.build(frontends.from_onnx(m)).run(**feeds)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, equal_nan=True, err_msg=f"x={X}")
