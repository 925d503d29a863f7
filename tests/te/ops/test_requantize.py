"""qnn.requantize: QuantizeLinear(DequantizeLinear(x)) as one multiply-add where that is proven
exact for every input value, else the divide; both equal numpy's float32 chain exactly."""
from __future__ import annotations

import numpy as np
import pytest

import te
from te.ops import qnn
from te.target import host


def onnx_chain(v, si, zi, so, zo, out_dtype):
    """DequantizeLinear then QuantizeLinear in float32, as ONNX Runtime computes them."""
    lo, hi = qnn.QRANGE[out_dtype]
    x = (v.astype(np.int64) - zi).astype(np.float32) * np.float32(si)
    return np.clip(np.rint(x / np.float32(so)) + zo, lo, hi).astype(out_dtype)


CASES = [  # in dtype, in scale, in zero point, out scale, out zero point, out dtype
    ("uint8", 0.0213, 3, 0.0371, 0, "uint8"),
    ("uint8", 0.05, 128, 0.011, 130, "uint8"),     # saturates at both ends
    ("int8", 0.017, -5, 0.023, 7, "int8"),
    ("uint8", 0.02, 9, 0.04, 2, "uint8"),          # scale ratio 1/2: half of the values are ties
]


@pytest.mark.parametrize("case", CASES)
def test_requantize_equals_the_onnx_chain_for_every_value(case):
    din, si, zi, so, zo, dout = case
    v = np.arange(qnn.QRANGE[din][0], qnn.QRANGE[din][1] + 1).astype(din)
    x = te.placeholder((v.size,), din, name="x")
    y = qnn.requantize(x, si, zi, so, zo, dout)
    s = te.create_schedule(y.op)
    _, lane = s[y].split(y.op.axis[0], factor=16)
    s[y].vectorize(lane)
    f = te.build(s, [x, y], target=host())
    out = np.zeros(v.size, dout)
    f(v, out)
    np.testing.assert_array_equal(out, onnx_chain(v, si, zi, so, zo, dout))


def test_ties_keep_the_divide():
    # (v - 9) * 0.02 / 0.04 is a half-integer for every odd v - 9: no multiply-add is trusted there
    assert qnn.requantize_affine(0.02, 9, "uint8", 0.04, 2, "uint8") is None
    assert qnn.requantize_affine(0.0213, 3, "uint8", 0.0371, 0, "uint8") is not None
