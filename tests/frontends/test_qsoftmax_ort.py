"""tilewise.QSoftmax rounds as ONNX Runtime 1.32's QLinearSoftmax: the quotient e * floor(1 / y_scale)
/ sum in float64 (float32 arithmetic put one probability of a QDQ attention layer a code off, its
output a step)."""
import numpy as np
import pytest

import frontends
from frontends.profile import onnxruntime_session

from .test_qsoftmax import ONE_255, _softmax_model

# attention scores (x scale 0.0408, zero point 134) of zoo.encoder_layer quantised as bench/quantized.py's
# `attention`, input seed 46, head 1, query 111: key 99's code is 19, float32 arithmetic gave 20
ROW = [120, 147, 102, 122, 175, 114, 122, 137, 154, 130, 159, 152, 132, 119, 189, 139, 114, 152, 128, 138,
       130, 184, 163, 144, 97, 77, 100, 140, 115, 106, 143, 149, 151, 97, 154, 136, 111, 123, 158, 142, 123,
       114, 157, 140, 122, 137, 147, 185, 164, 107, 125, 168, 167, 110, 161, 111, 129, 140, 178, 145, 150,
       165, 125, 151, 137, 131, 162, 115, 124, 92, 107, 115, 174, 126, 153, 126, 135, 176, 117, 99, 129, 93,
       157, 134, 117, 121, 153, 165, 143, 149, 156, 120, 166, 135, 152, 123, 157, 150, 139, 204, 129, 141,
       114, 131, 155, 145, 100, 120, 108, 116, 91, 133, 175, 160, 157, 139, 148, 98, 120, 128, 182, 133, 141,
       95, 127, 139, 117, 152]


def _check(m, x):
    got = frontends.build(frontends.from_onnx(m)).run(x=x)[0]
    np.testing.assert_array_equal(got, onnxruntime_session(m, threads=1).run(None, {"x": x})[0])


def test_qsoftmax_rounds_the_attention_row_as_onnxruntime():
    x = np.array([ROW], np.uint8)
    _check(_softmax_model(np.float32(0.04079997), 134, ONE_255, 0, shape=x.shape), x)


@pytest.mark.parametrize("sx,sy,zy", [(0.02, 0.0041, 0), (0.013, 0.0037, 3)])
def test_qsoftmax_codes_equal_onnxruntime_on_many_rows(sx, sy, zy):
    shape = (2000, 128)
    x = np.random.default_rng(0).integers(100, 256, shape).astype(np.uint8)
    _check(_softmax_model(np.float32(sx), 0, np.float32(sy), zy, shape=shape), x)
