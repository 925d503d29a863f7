"""TopK through the importer: both outputs, largest and smallest, ties, refusals."""
import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import frontends
from frontends import ModelError

from .onnx_helpers import tiny, vi


def _model(shape, k, axis=-1, largest=1, outputs=("v", "i")):
    node = helper.make_node("TopK", ["x", "k"], ["v", "i"], axis=axis, largest=largest, name="tk")
    outs = [vi(o, None, TensorProto.FLOAT if o == "v" else TensorProto.INT64) for o in outputs]
    return tiny([node], [vi("x", list(shape))], outs,
                [numpy_helper.from_array(np.array([k], np.int64), "k")], opset=11)


def _run(m, x):
    g = frontends.from_onnx(m)
    return frontends.build(g).run(x=x)


@pytest.mark.parametrize("axis,largest", [(-1, 1), (0, 1), (1, 0)])
def test_topk_matches_a_stable_sort(rand, axis, largest):
    x = rand((5, 9, 3))
    x[1, 2:5, :] = 0.25                                 # ties: the lower index first
    v, i = _run(_model(x.shape, 3, axis, largest), x)
    order = np.argsort(-x if largest else x, axis=axis, kind="stable")
    want_i = np.take(order, np.arange(3), axis=axis)
    np.testing.assert_array_equal(i, want_i)
    np.testing.assert_array_equal(v, np.take_along_axis(x, want_i, axis=axis))


@pytest.mark.parametrize("largest", [1, 0])
def test_topk_ranks_nan_above_every_number(largest):
    x = np.array([[1.0, np.nan, 3.0, -2.0, np.nan, 0.5]], np.float32)
    v, i = _run(_model(x.shape, 4, largest=largest), x)
    order = np.argsort(x if not largest else -np.nan_to_num(x, nan=np.inf), axis=1, kind="stable")[:, :4]
    np.testing.assert_array_equal(i, order)
    np.testing.assert_array_equal(v, np.take_along_axis(x, order, axis=1))


def test_topk_indices_alone_are_computed(rand):
    x = rand((4, 6))
    m = _model(x.shape, 2, outputs=("i",))
    (i,) = _run(m, x)
    np.testing.assert_array_equal(i, np.argsort(-x, axis=1, kind="stable")[:, :2])


def test_topk_refuses_a_k_larger_than_the_axis():
    with pytest.raises(ModelError, match=r"k = 7 is outside \[0, 6\]"):
        frontends.from_onnx(_model((4, 6), 7))
