"""A stem conv + Relu + 3x3/2 max pool at full size (SqueezeNet's): the fused kernel (passes.fuse_conv_max_pool, in the default pipeline) against the
two kernels apart (the pipeline without it) and ONNX Runtime.

    python bench/conv_pool.py [--threads 1] [--repeat 50]
"""
from __future__ import annotations

import argparse
import os
import sys
from unittest import mock

import numpy as np
from onnx import TensorProto, helper, numpy_helper

STEMS = {   # name: (kernel, conv stride, conv pad, pool pad)
    "squeezenet": (3, 2, 0, 0),
}


def stem_model(k: int, stride: int, pad: int, pool_pad: int, seed: int = 0):
    """x (1, 3, 224, 224) -> Conv k x k/stride (64 outputs, bias) -> Relu -> MaxPool 3x3/2."""
    rng = np.random.default_rng(seed)
    w = numpy_helper.from_array(rng.standard_normal((64, 3, k, k)).astype(np.float32) * 0.1, "w")
    b = numpy_helper.from_array(rng.standard_normal(64).astype(np.float32), "b")
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], kernel_shape=[k, k], strides=[stride] * 2,
                              pads=[pad] * 4),
             helper.make_node("Relu", ["c"], ["a"]),
             helper.make_node("MaxPool", ["a"], ["y"], kernel_shape=[3, 3], strides=[2, 2], pads=[pool_pad] * 4)]
    g = helper.make_graph(nodes, "stem", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 224, 224])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [w, b])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])


def main() -> None:
    """Time each stem three ways and print microseconds (median)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=50)
    a = ap.parse_args()
    os.environ["TILEWISE_NUM_THREADS"] = str(a.threads)
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import frontends
    from frontends import passes
    from frontends.conv_pool import fuse_conv_max_pool
    from frontends.profile import onnxruntime_session, time_interleaved
    without = [p for p in passes.PIPELINE if p is not fuse_conv_max_pool]
    x = np.random.default_rng(1).standard_normal((1, 3, 224, 224)).astype(np.float32)
    print(f"threads {a.threads}; microseconds, median of {a.repeat} (rough: the machine is shared)")
    for name, (k, s, p, pp) in STEMS.items():
        m = stem_model(k, s, p, pp)
        fused = frontends.build(frontends.from_onnx(m))
        with mock.patch.object(passes, "PIPELINE", without):
            two = frontends.build(frontends.from_onnx(m))
        assert len(fused.plan.funcs) < len(two.plan.funcs), "the stem and its pool did not fuse"
        # not spinning: its idle threads would take the cores from the OpenMP workers between turns
        ort = onnxruntime_session(m, threads=a.threads, spinning=False)
        want = ort.run(None, {"x": x})[0]
        for lib in (fused, two):
            np.testing.assert_allclose(lib.run(x=x)[0], want, rtol=1e-4, atol=1e-4)
        t = time_interleaved({"fused": lambda: fused.run(x=x), "apart": lambda: two.run(x=x),
                              "ort": lambda: ort.run(None, {"x": x})}, repeat=a.repeat)
        print(f"{name:11s} fused {t['fused'].median * 1e6:7.1f}  apart {t['apart'].median * 1e6:7.1f}  "
              f"ORT {t['ort'].median * 1e6:7.1f}")


if __name__ == "__main__":
    main()
