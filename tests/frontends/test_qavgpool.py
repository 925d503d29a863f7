"""DequantizeLinear -> AveragePool -> QuantizeLinear of uint8 values as one tilewise.QAveragePool
that rounds as ONNX Runtime's QLinearAveragePool: bit-exact on seeded codes for the window shapes
quantised CNNs use (ShuffleNet's 3x3 stride 2 with padding, stride 1, count_include_pad, ceil_mode);
int8 values and dilated pools keep the float path."""
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import frontends
from frontends.lower_qnn import QAVGPOOL
from frontends.passes import run_passes
from frontends.profile import onnxruntime_session

SHAPE = (1, 24, 23, 30)


def _pool_model(sx, zx, sy, zy, dtype: str = "uint8", opset: int = 13, **pool) -> onnx.ModelProto:
    """x (8-bit codes) -> DequantizeLinear -> AveragePool -> QuantizeLinear -> DequantizeLinear -> y."""
    npdt, et = (np.uint8, TensorProto.UINT8) if dtype == "uint8" else (np.int8, TensorProto.INT8)
    inits = [numpy_helper.from_array(np.array(v, np.float32), n) for n, v in (("sx", sx), ("sy", sy))]
    inits += [numpy_helper.from_array(np.array(v, npdt), n) for n, v in (("zx", zx), ("zy", zy))]
    n = helper.make_node
    nodes = [n("DequantizeLinear", ["x", "sx", "zx"], ["dx"]), n("AveragePool", ["dx"], ["p"], **pool),
             n("QuantizeLinear", ["p", "sy", "zy"], ["qy"]), n("DequantizeLinear", ["qy", "sy", "zy"], ["y"])]
    g = helper.make_graph(nodes, "qavgpool", [helper.make_tensor_value_info("x", et, list(SHAPE))],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


POOLS = [dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
         dict(kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1], count_include_pad=1),
         dict(kernel_shape=[2, 3], strides=[2, 2], pads=[0, 1, 0, 0], ceil_mode=1),
         dict(kernel_shape=[5, 5], strides=[3, 3])]


@pytest.mark.parametrize("pool", POOLS, ids=lambda p: "-".join(f"{k}{v}" for k, v in p.items()))
def test_quantised_avgpool_is_bit_exact_with_onnxruntime(pool):
    rng = np.random.default_rng(11)
    for _ in range(3):
        # scales whose ratio puts many window means near a rounding boundary
        sx = np.float32(rng.uniform(0.01, 1.0))
        sy, zx, zy = np.float32(sx * rng.uniform(0.3, 1.2)), int(rng.integers(0, 256)), int(rng.integers(0, 256))
        m = _pool_model(sx, zx, sy, zy, **pool)
        g = run_passes(frontends.from_onnx(m))
        assert [n.op for n in g.nodes if n.op in (QAVGPOOL, "AveragePool")] == [QAVGPOOL]
        x = rng.integers(0, 256, SHAPE).astype(np.uint8)
        want = onnxruntime_session(m).run(None, {"x": x})[0]
        got = frontends.build(frontends.from_onnx(m)).run(x=x)[0]
        np.testing.assert_array_equal(got, want, err_msg=f"{pool} {sx} {zx} {sy} {zy}")


@pytest.mark.parametrize("dtype,pool", [("int8", POOLS[0]), ("uint8", dict(POOLS[0], dilations=[2, 2]))])
def test_other_quantised_avgpools_keep_the_float_pool(dtype, pool):
    m = _pool_model(np.float32(0.1), 3, np.float32(0.07), 5, dtype, 19, **pool)     # dilations: opset 19
    g = run_passes(frontends.from_onnx(m))
    assert not any(n.op == QAVGPOOL for n in g.nodes)
    assert any(n.op == "AveragePool" for n in g.nodes)
