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


@pytest.mark.parametrize("axis,largest,k", [(-1, 1, 3), (0, 1, 3), (1, 0, 3), (1, 1, 2), (1, 0, 1)])
def test_topk_matches_a_stable_sort(rand, axis, largest, k):
    x = rand((5, 9, 3))
    x[1, 2:5, :] = 0.25                                 # ties: the lower index first
    v, i = _run(_model(x.shape, k, axis, largest), x)
    order = np.argsort(-x if largest else x, axis=axis, kind="stable")
    want_i = np.take(order, np.arange(k), axis=axis)
    np.testing.assert_array_equal(i, want_i)
    np.testing.assert_array_equal(v, np.take_along_axis(x, want_i, axis=axis))


@pytest.mark.parametrize("n,k", [(6, 4), (40, 3)])          # counting ranks; selection steps
@pytest.mark.parametrize("largest", [1, 0])
def test_topk_ranks_nan_above_every_number(rng, largest, n, k):
    x = rng.integers(-3, 3, (3, n)).astype(np.float32)         # ties
    x[0, [1, 4]] = np.nan
    x[1, :] = np.nan
    v, i = _run(_model(x.shape, k, largest=largest), x)
    order = np.argsort(x if not largest else -np.nan_to_num(x, nan=np.inf), axis=1, kind="stable")[:, :k]
    np.testing.assert_array_equal(i, order)
    np.testing.assert_array_equal(v, np.take_along_axis(x, order, axis=1))


def test_topk_of_integers_by_selection_steps(rng):
    x = rng.integers(-4, 4, (2, 30)).astype(np.int64)
    x[0, 7] = np.iinfo(np.int64).min                    # the value the steps start from
    for largest in (1, 0):
        m = _model(x.shape, 5, largest=largest)
        m.graph.input[0].type.tensor_type.elem_type = TensorProto.INT64
        m.graph.output[0].type.tensor_type.elem_type = TensorProto.INT64
        v, i = _run(m, x)
        key = x.astype(np.float64)                       # -x would overflow at the minimum
        order = np.argsort(-key if largest else key, axis=1, kind="stable")[:, :5]
        np.testing.assert_array_equal(i, order)


def test_topk_indices_alone_are_computed(rand):
    x = rand((4, 6))
    m = _model(x.shape, 2, outputs=("i",))
    (i,) = _run(m, x)
    np.testing.assert_array_equal(i, np.argsort(-x, axis=1, kind="stable")[:, :2])


def test_topk_refuses_a_k_larger_than_the_axis():
    with pytest.raises(ModelError, match=r"k = 7 is outside \[0, 6\]"):
        frontends.from_onnx(_model((4, 6), 7))
