"""The frontend's dtype tables: ONNX element types <-> numpy dtypes <-> te dtypes.

te's dtype names are numpy's ("float32", "bool"...), so np.dtype(name) is a te dtype's numpy
dtype and needs no table; the ONNX element types do.
"""
from __future__ import annotations

import ml_dtypes
import numpy as np

from te.expr import DTYPES

# ONNX element type -> numpy dtype, for what numpy folding computes (bfloat16, float8, float4,
# int4, uint4, int2 and uint2 are ml_dtypes')
ONNX_TO_NUMPY: dict[int, np.dtype] = {
    1: np.dtype(np.float32), 2: np.dtype(np.uint8), 3: np.dtype(np.int8), 4: np.dtype(np.uint16),
    5: np.dtype(np.int16), 6: np.dtype(np.int32), 7: np.dtype(np.int64), 9: np.dtype(np.bool_),
    10: np.dtype(np.float16), 11: np.dtype(np.float64), 12: np.dtype(np.uint32), 13: np.dtype(np.uint64),
    16: np.dtype(ml_dtypes.bfloat16), 17: np.dtype(ml_dtypes.float8_e4m3fn), 18: np.dtype(ml_dtypes.float8_e4m3fnuz),
    19: np.dtype(ml_dtypes.float8_e5m2), 20: np.dtype(ml_dtypes.float8_e5m2fnuz), 21: np.dtype(ml_dtypes.uint4),
    22: np.dtype(ml_dtypes.int4), 23: np.dtype(ml_dtypes.float4_e2m1fn), 24: np.dtype(ml_dtypes.float8_e8m0fnu),
    25: np.dtype(ml_dtypes.uint2), 26: np.dtype(ml_dtypes.int2)}
# The 16-bit float element types: a model's tensors of these types are computed in float32
# (frontends/low_precision.py), converted at its inputs, its outputs and its Casts.
LOW_PRECISION: dict[int, str] = {10: "float16", 16: "bfloat16"}
# The element types a model is not computed in, each with the one it is computed in: the 16-bit
# floats and the byte-coded float8/float4 in float32, int4/int2 in int8, uint4/uint2 in uint8
# (frontends/low_precision.py converts them at the model's inputs, outputs and Casts).
NARROW: dict[int, int] = {10: 1, 16: 1, 17: 1, 18: 1, 19: 1, 20: 1, 23: 1, 24: 1, 21: 2, 25: 2, 22: 3, 26: 3}
# ONNX element type -> te dtype: the element types tilewise's kernels take
ONNX_DTYPES: dict[int, str] = {k: v.name for k, v in ONNX_TO_NUMPY.items() if v.name in DTYPES}


def onnx_elem_type(dtype) -> int:
    """The ONNX element type of a numpy or te dtype (any onnx knows, also those tilewise does not run)."""
    import onnx
    return onnx.helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
