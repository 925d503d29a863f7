"""float16 and bfloat16 models: imported, computed in float32, inputs and outputs in the model's
type; checked against ONNX Runtime and onnx's own float16/bfloat16 node cases."""
from __future__ import annotations

import re

import ml_dtypes  # noqa: F401  (numpy's 'bfloat16')
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import frontends
from frontends import conformance
from frontends.conformance import Outcome
from frontends.dtypes import ONNX_DTYPES
from frontends.low_precision import uses_low_precision
from frontends.profile import onnxruntime_session

from ..classifier_models import INPUT_SHAPE, squeezenet_like
from .onnx_helpers import tiny, vi


def _as_float32(m: onnx.ModelProto) -> onnx.ModelProto:
    """m with its 16-bit weights, inputs and outputs as float32 (the same values): the reference."""
    out = onnx.ModelProto()
    out.CopyFrom(m)
    for t in out.graph.initializer:
        if t.data_type in (TensorProto.FLOAT16, TensorProto.BFLOAT16):
            t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t).astype(np.float32), t.name))
    for v in (*out.graph.input, *out.graph.output):
        v.type.tensor_type.elem_type = TensorProto.FLOAT
    return out


def test_fp16_squeezenet_matches_onnxruntime():
    import tilewise
    m = squeezenet_like(dtype="float16")
    lib = frontends.build(frontends.from_onnx(m))
    sess = onnxruntime_session(m)
    assert [(a.name, a.type) for a in lib.get_inputs() + lib.get_outputs()] == \
        [(a.name, a.type) for a in sess.get_inputs() + sess.get_outputs()] == [("x", "tensor(float16)"),
                                                                             ("prob", "tensor(float16)")]
    assert tilewise.InferenceSession(m.SerializeToString()).get_outputs()[0].type == "tensor(float16)"
    rng = np.random.default_rng(0)
    for _ in range(3):
        x = rng.standard_normal(INPUT_SHAPE).astype(np.float16)
        (got,), (want,) = lib.run(None, {"x": x}), sess.run(None, {"x": x})
        assert got.dtype == np.float16
        np.testing.assert_allclose(got.astype(np.float32), want.astype(np.float32), rtol=4e-3, atol=1e-3)


def test_bf16_squeezenet_matches_its_float32_twin():
    m = squeezenet_like(dtype="bfloat16")
    lib = frontends.build(frontends.from_onnx(m))
    ref = onnxruntime_session(_as_float32(m))
    x = np.random.default_rng(1).standard_normal(INPUT_SHAPE).astype("bfloat16")
    (got,) = lib.run(x=x)
    (want,) = ref.run(None, {"x": x.astype(np.float32)})
    assert got.dtype == np.dtype("bfloat16")
    # computed in fp32 from the same bf16 values: only the output's rounding to bf16 differs
    np.testing.assert_allclose(got.astype(np.float32), want, rtol=2 ** -8, atol=1e-6)


def test_a_cast_to_float16_inside_the_graph_keeps_its_rounding():
    nodes = [helper.make_node("Cast", ["x"], ["h"], to=TensorProto.FLOAT16),
             helper.make_node("Cast", ["h"], ["f"], to=TensorProto.FLOAT),
             helper.make_node("Mul", ["f", "f"], ["y"])]
    m = tiny(nodes, [vi("x", [64])], [vi("y", [64])])
    x = np.random.default_rng(2).standard_normal(64).astype(np.float32) * 100
    (got,) = frontends.build(frontends.from_onnx(m)).run(x=x)
    want = x.astype(np.float16).astype(np.float32) ** 2
    np.testing.assert_array_equal(got, want)
    assert not np.array_equal(got, x * x)


# The onnx package's float16/bfloat16 node cases of these operators (each module's examples run
# when it is imported: a few seconds, where collecting every case takes half a minute; the whole
# set runs with bench/onnx_conformance.py).  Of attention's, which take a second each, two.
MODULES = ("cast", "castlike", "celu", "mod", "max", "min", "isnan", "isinf", "onehot", "attention")
ATTENTION = ("test_attention_4d_causal_fp16_expanded", "test_attention_4d_causal_bf16_expanded")


def _low_precision_cases() -> list:
    import importlib
    import warnings

    from onnx.backend.test.case import node
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        for name in MODULES:
            importlib.import_module(f"onnx.backend.test.case.node.{name}")

    def types(g) -> set[int]:
        return {v.type.tensor_type.elem_type for v in (*g.input, *g.output)} | {t.data_type for t in g.initializer}
    ours = re.compile(rf"test_({'|'.join(MODULES)})_")
    return [c for c in node._NodeTestCases if ours.match(c.name) and conformance.applicable(c)
            and uses_low_precision(c.model.graph) and types(c.model.graph) <= set(ONNX_DTYPES)
            and ("attention" not in c.name or c.name in ATTENTION)]


def test_onnx_float16_and_bfloat16_node_cases():
    results = [conformance.run_case(c) for c in _low_precision_cases()]
    bad = [f"{r.name}: {r.outcome.value}: {r.message}" for r in results if r.outcome is not Outcome.PASS]
    assert not bad, "\n".join(bad)
    passed = {r.name for r in results if r.outcome is Outcome.PASS}
    assert len(passed) >= 25 and set(ATTENTION) <= passed
    assert {"test_cast_FLOAT_to_FLOAT16", "test_cast_FLOAT_to_BFLOAT16", "test_celu_float16"} <= passed


def test_mixed_element_types_are_still_refused():
    w = numpy_helper.from_array(np.ones(4, np.float16), "w")
    m = tiny([helper.make_node("Add", ["x", "w"], ["y"], name="add")], [vi("x", [4])], [vi("y", [4])], [w])
    with pytest.raises(frontends.ModelError, match=r"node add \(Add\): inputs 'x' \(float32\) and 'w' \(float16\)"):
        frontends.from_onnx(m)
