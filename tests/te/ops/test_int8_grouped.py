"""int8 grouped convs: 1x1 ones as one GEMM per group on the 1x1 kernels (te/ops/int8_conv2d.py;
scheduled by group and block of pixels, int8_grouped.schedule_grouped_gemm), the others on the
dense int8 kernels of their block-diagonal weight (te/ops/int8_grouped.py); each
exactly the int64 grouped conv, the weight packed at build time or in the kernel, on VNNI and on
vpmaddwd (AVX2); more groups than MAX_GROUPS and depthwise convs go elsewhere."""
from __future__ import annotations

import numpy as np
import pytest

import te
from te.ops import int8_grouped as ig
from te.ops import registry
from te.ops.implementations import _conv
from te.target import Target, host

HOST = host()
NAME = "conv2d.int8_grouped_dense"


def grouped_int64(x, w, strides, pads, groups):
    """The int32 sum of products of a grouped conv, in int64: each group's dense conv."""
    N, C, H, W = x.shape
    K, Cg, R, S = w.shape
    Kg = K // groups
    (sh, sw), (pt, pl, pb, pr) = strides, pads
    xp = np.pad(x.astype(np.int64), ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    OH, OW = (H + pt + pb - R) // sh + 1, (W + pl + pr - S) // sw + 1
    out = np.zeros((N, K, OH, OW), np.int64)
    for g in range(groups):
        for r in range(R):
            for s in range(S):
                patch = xp[:, g * Cg:(g + 1) * Cg, r:r + (OH - 1) * sh + 1:sh, s:s + (OW - 1) * sw + 1:sw]
                out[:, g * Kg:(g + 1) * Kg] += np.einsum("nchw,kc->nkhw", patch,
                                                         w[g * Kg:(g + 1) * Kg, :, r, s].astype(np.int64))
    return out


CASES = [  # x, w, strides, padding, groups
    ((1, 24, 7, 9), (16, 6, 1, 1), (1, 1), (0, 0, 0, 0), 4),       # ShuffleNet's grouped 1x1
    ((1, 34, 6, 6), (68, 17, 1, 1), (1, 1), (0, 0, 0, 0), 2),      # channels per group not by 4
    ((2, 16, 8, 10), (24, 2, 3, 3), (2, 2), (1, 1, 1, 1), 8),      # a grouped 3x3, strided, 2 images
]


def _run(rng, wl, target, prepacked, name=NAME):
    impl = registry.IMPLEMENTATIONS[name]
    cfg = impl.config(wl, target)
    s, args = impl.instantiate(cfg, impl.args(wl), target, prepacked=prepacked)
    f = te.build(s, args, target=target)
    x = rng.integers(0, 256, wl.x_shape).astype(np.uint8)
    w = rng.integers(-128, 128, wl.w_shape).astype(np.int8)
    x[:, 0], w[0] = 255, -128
    y = np.zeros(args[-1].shape, np.int32)
    f(x, impl.pack_weight(w, wl, cfg, target) if prepacked else w, y)
    np.testing.assert_array_equal(y, grouped_int64(x, w, wl.strides, wl.padding, wl.groups))


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("prepacked", [True, False])
def test_int8_grouped_conv_as_dense_equals_the_int64_conv(rng, case, prepacked):
    wl = _conv(*case[:4], (1, 1), groups=case[4], dtype="uint8")
    if case[1][2:] != (1, 1):
        assert registry.select(wl, HOST).name == NAME
    _run(rng, wl, HOST, prepacked)


@pytest.mark.parametrize("case", CASES[:2] + [((2, 12, 5, 7), (8, 3, 1, 1), (2, 1), (0, 0, 0, 0), 4)])
@pytest.mark.parametrize("prepacked", [True, False])
@pytest.mark.parametrize("name", ["conv2d.int8_grouped_gemm_vnni", "conv2d.int8_gemm1x1_vnni"])
def test_int8_grouped_1x1_conv_is_one_gemm_per_group(rng, case, prepacked, name):
    """Scheduled by conv group and block of pixels, each task packing its own input block (the
    preferred), or by channel tiles over an input packed first; odd channels per group, a row
    stride, two images."""
    wl = _conv(*case[:4], (1, 1), groups=case[4], dtype="uint8")
    if "vnni" not in registry.select(wl, HOST).name:
        pytest.skip("no VNNI here")
    assert registry.select(wl, HOST).name == "conv2d.int8_grouped_gemm_vnni"
    _run(rng, wl, HOST, prepacked, name)


@pytest.mark.skipif("avx2" not in HOST.feature_set, reason="this CPU lacks AVX2")
def test_int8_grouped_convs_on_avx2_run_on_vpmaddwd(rng):
    tgt = Target("haswell")
    wl = _conv(*CASES[1][:4], (1, 1), groups=2, dtype="uint8")
    assert registry.select(wl, tgt).name == "conv2d.int8_grouped_gemm_pmaddwd"
    _run(rng, wl, tgt, True, "conv2d.int8_grouped_gemm_pmaddwd")
    wl = _conv(*CASES[2][:4], (1, 1), groups=8, dtype="uint8")
    assert registry.IMPLEMENTATIONS[NAME].inner(wl, tgt).name == "conv2d.int8_direct_pmaddwd"
    _run(rng, wl, tgt, True)


def test_block_diagonal_weight_and_what_stays_elsewhere():
    w = np.arange(2 * 4 * 1 * 1, dtype=np.int8).reshape(4, 2, 1, 1)
    d = ig.block_diagonal_numpy(w, 2)[:, :, 0, 0]
    assert d.tolist() == [[0, 1, 0, 0], [2, 3, 0, 0], [0, 0, 4, 5], [0, 0, 6, 7]]
    many = _conv((1, 32, 6, 6), (32, 2, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1), groups=16, dtype="uint8")
    assert registry.IMPLEMENTATIONS[NAME].match(many, HOST) is None
    assert registry.select(many, HOST).name == "conv2d.int8_reference"
    # a 1x1 conv of any groups is a GEMM per group, which wastes nothing
    many_1x1 = _conv((1, 32, 6, 6), (32, 2, 1, 1), (1, 1), (0, 0, 0, 0), (1, 1), groups=16, dtype="uint8")
    assert registry.select(many_1x1, HOST).name.startswith("conv2d.int8_grouped_gemm_")
    dw = _conv((1, 8, 6, 6), (8, 1, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1), groups=8, dtype="uint8")
    assert registry.IMPLEMENTATIONS[NAME].match(dw, HOST) is None
