"""te.ops.lowbit: the byte-coded types (float8, float4, int4, int2) against ml_dtypes and onnx."""
import ml_dtypes
import numpy as np
import pytest

import te
from te.expr import BYTE_CODED
from te.ops.lowbit import convert

from .build_run import build_run

CODES = {"float4_e2m1fn": 16, "int4": 16, "uint4": 16, "int2": 4, "uint2": 4}


def _convert(a: np.ndarray, src: str, dst: str, **kw) -> np.ndarray:
    x = te.placeholder(a.shape, src, name="x")
    return build_run(convert(x, dst, **kw), [x], [a])


def _sweep(values: np.ndarray) -> np.ndarray:
    """Every finite value, the midpoints between them (the ties), a range beyond, and the specials."""
    v = np.unique(values[np.isfinite(values)])
    mids = (v[:-1] + v[1:]) / 2
    return np.concatenate([v, mids, np.linspace(-600, 600, 301), np.geomspace(1e-9, 1e5, 200),
                           -np.geomspace(1e-9, 1e5, 200), [np.nan, np.inf, -np.inf, -0.0]]).astype(np.float32)


@pytest.mark.parametrize("dtype", BYTE_CODED)
def test_every_code_decodes_as_ml_dtypes_does(dtype):
    codes = np.arange(CODES.get(dtype, 256), dtype=np.uint8).view(getattr(ml_dtypes, dtype))
    got = _convert(codes, dtype, "float32")
    np.testing.assert_array_equal(got, codes.astype(np.float32))


@pytest.mark.parametrize("dtype", ["float8_e4m3fn", "float8_e5m2fnuz", "float4_e2m1fn", "int4", "uint2"])
def test_encoding_rounds_and_overflows_as_ml_dtypes_does(dtype):
    dt = getattr(ml_dtypes, dtype)
    x = _sweep(np.arange(CODES.get(dtype, 256), dtype=np.uint8).view(dt).astype(np.float32))
    with np.errstate(all="ignore"):
        want = x.astype(dt)
    got = _convert(x, "float32", dtype, saturate=False)
    np.testing.assert_array_equal(got.view(np.uint8), want.view(np.uint8))


def test_saturation_clips_to_the_largest_float8_and_keeps_nan():
    x = np.array([1e6, -1e6, np.inf, -np.inf, 500.0, np.nan], np.float32)
    got = _convert(x, "float32", "float8_e4m3fn").astype(np.float32)
    np.testing.assert_array_equal(got, [448, -448, 448, -448, 448, np.nan])


@pytest.mark.parametrize("mode", ["up", "nearest"])
def test_e8m0_rounds_as_onnx(mode):
    from onnx.numpy_helper import to_float8e8m0
    x = np.concatenate([np.geomspace(1e-40, 3e38, 400), [0.0, 1.5, 3.0, 2.0 ** 127 * 1.5, np.nan, np.inf]])
    x = x.astype(np.float32)
    got = _convert(x, "float32", "float8_e8m0fnu", round_mode=mode)
    np.testing.assert_array_equal(got.view(np.uint8), to_float8e8m0(x, True, mode).view(np.uint8))


def test_integers_keep_their_low_bits():
    x = np.array([7, 8, -9, 100, -1], np.int8)
    np.testing.assert_array_equal(_convert(x, "int8", "int4").view(np.uint8),
                                  x.astype(ml_dtypes.int4).view(np.uint8))


def test_a_byte_coded_value_has_no_arithmetic():
    x = te.placeholder((4,), "float8_e4m3fn", name="x")
    with pytest.raises(ValueError, match="casts to and from its bits .uint8. only; convert its values with te.ops"):
        te.compute((4,), lambda i: x[i].astype("float32"))
    with pytest.raises(ValueError, match="float8_e4m3fn has no arithmetic or comparisons in te"):
        te.compute((4,), lambda i: x[i] + x[i])
