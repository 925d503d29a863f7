"""The AMX int8 GEMM (int8_matmul.py's AMX schedule, te/amx.py): weights packed 64-byte aligned,
odd shapes padded to whole tiles and equal to numpy's int64 matmul, built for a Sapphire Rapids
target whatever the host (the run itself only where the CPU has AMX)."""
from __future__ import annotations

import numpy as np
import pytest

import te
from te.ops import registry
from te.ops.conv_geometry import geometry
from te.ops.int8_conv2d import pack_weight_amx_direct_numpy, pack_weight_amx_numpy
from te.ops.int8_matmul import pack_weight_numpy
from te.target import Target, host

SPR = Target("sapphirerapids")
HAS_AMX = {"amx-tile", "amx-int8"} <= host().feature_set


@pytest.mark.parametrize("shape,transpose_b", [((256, 96), False), ((40, 128), True), ((1024, 1024), False)])
def test_packed_int8_weights_start_on_a_cache_line(rng, shape, transpose_b):
    # a tile row (64 bytes) of a weight 16 bytes past a line, as numpy places large arrays,
    # reads two cache lines: the packers hand out aligned arrays
    w = rng.integers(-128, 128, shape, dtype=np.int8)
    p = pack_weight_numpy(w, 16, 4, transpose_b)
    assert p.ctypes.data % 64 == 0 and p.flags.c_contiguous
    b = w.T if transpose_b else w
    K, N = b.shape
    unpacked = p.transpose(0, 2, 1, 3).reshape(-1, K)[:N].T      # (No, L, Kq, G) -> (N, K) -> (K, N)
    np.testing.assert_array_equal(unpacked, b)


def test_amx_conv_weights_start_on_a_cache_line(rng):
    g1 = geometry((1, 128, 7, 7), (64, 128, 1, 1))
    g3 = geometry((1, 64, 9, 9), (32, 64, 3, 3), padding=1)
    for g, pack in ((g1, pack_weight_amx_numpy), (g3, pack_weight_amx_direct_numpy)):
        w = rng.integers(-128, 128, (g.K, g.C, g.R, g.S), dtype=np.int8)
        assert pack(w, g).ctypes.data % 64 == 0
