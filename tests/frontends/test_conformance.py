"""ONNX's own node conformance cases through tilewise: a fast subset of the core operators.

Every applicable case (one whose operators tilewise supports) of the operators below must pass
or be rejected at import with the clear ModelError: no wrong answer, no crash.  The whole set
runs with `python bench/onnx_conformance.py`.
"""
from __future__ import annotations

import functools
import re

import pytest

import frontends
from frontends import conformance
from frontends.conformance import Outcome
from frontends.onnx import shape_inputs

# The operators of the networks tilewise compiles, plus the ones with tricky semantics
# (integer Div/Mod/Pow, 1-D MatMul, multi-output Split, shape inputs bound at import).
CORE = ("add", "sub", "mul", "div", "mod", "pow", "relu", "leakyrelu", "sigmoid", "tanh", "gelu", "clip",
        "where", "cast", "conv", "gemm", "matmul", "maxpool", "averagepool", "globalaveragepool",
        "batchnorm", "layer_normalization", "softmax", "reshape", "transpose", "concat", "split", "slice",
        "gather", "constant_pad", "edge_pad", "reflect_pad", "wrap_pad", "resize", "reduce_sum",
        "reduce_mean", "flatten", "squeeze", "unsqueeze", "expand", "prelu", "argmax", "cumsum", "dropout",
        "range", "shape", "quantizelinear", "dequantizelinear", "qlinearconv", "qlinearmatmul", "matmulinteger",
        "convinteger", "dynamicquantizelinear", "top_k", "einsum", "convtranspose")


@functools.lru_cache(maxsize=None)
def _cases() -> tuple:
    return tuple(conformance.all_cases())


def _named(name: str):
    return next(c for c in _cases() if c.name == name)


def _of(op: str) -> list:
    pattern = re.compile(rf"test_{op}(_|$)")
    return [c for c in _cases() if pattern.match(c.name) and "expanded" not in c.name
            and conformance.applicable(c)]


@pytest.mark.parametrize("op", CORE)
def test_core_cases_pass_or_are_rejected_at_import(op):
    results = [conformance.run_case(c) for c in _of(op)]
    assert results, f"no applicable conformance case for {op}"
    bad = [f"{r.name}: {r.outcome.value}: {r.message}" for r in results
           if r.outcome in (Outcome.WRONG, Outcome.ERROR)]
    assert not bad, "\n".join(bad)
    assert any(r.outcome is Outcome.PASS for r in results), f"no {op} case passes"


def test_unsupported_dtype_is_rejected_at_import():
    case = _named("test_equal_string")
    with pytest.raises(frontends.ModelError, match="element type STRING is not supported"):
        frontends.from_onnx(case.model)
    r = conformance.run_case(case)
    assert r.outcome is Outcome.REJECTED and "STRING" in r.message


@pytest.mark.parametrize("name", ["test_cast_FLOAT_to_FLOAT8E4M3FN", "test_cast_no_saturate_FLOAT16_to_FLOAT8E5M2",
                                  "test_cast_INT4_to_INT8", "test_castlike_FLOAT_to_FLOAT4E2M1",
                                  "test_dequantizelinear_int4", "test_quantizelinear_e4m3fn",
                                  "test_lstm_with_peepholes", "test_gru_seq_length", "test_scatternd_max",
                                  "test_gridsample_bicubic_align_corners_1_additional_1"])
def test_new_operators_and_element_types_pass(name):
    r = conformance.run_case(_named(name))
    assert r.outcome is Outcome.PASS, f"{r.outcome.value}: {r.message}"


def test_shape_inputs_are_bound_from_the_data_set():
    case = _named("test_reshape_reordered_all_dims")
    assert shape_inputs(case.model) == ["shape"]
    with pytest.raises(frontends.ModelError, match="computed at run time"):
        frontends.from_onnx(case.model)
    assert conformance.run_case(case).outcome is Outcome.PASS


def test_a_crash_is_an_error_not_a_rejection(monkeypatch):
    case = _named("test_relu")

    def boom(*args, **kwargs):
        raise IndexError("a bug")
    monkeypatch.setattr(frontends, "build", boom)
    r = conformance.run_case(case)
    assert r.outcome is Outcome.ERROR and "IndexError" in r.message
