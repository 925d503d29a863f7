"""The int8 1x1 GEMM on float32 FMAs for targets without VNNI (te/ops/int8_gemm_f32.py): exactly the
int64 conv on odd shapes, worst-case products over the most channels it takes; chosen on large maps
of an AVX2 target only; the requantising epilogue fused after it."""
from __future__ import annotations

import pytest

from te.ops import int8_gemm_f32 as igf
from te.ops import registry
from te.ops.implementations import _conv
from te.target import Target, host

from .test_int8_conv2d import check, check_requantising_epilogue

HOST = host()
AVX2 = Target("haswell")
NAME = "conv2d.int8_gemm1x1_f32"
needs_avx2 = pytest.mark.skipif("avx2" not in HOST.feature_set, reason="this CPU lacks AVX2")

CASES = [  # x, w, strides: 1x1 unpadded convs on maps over 14x14
    ((1, 16, 55, 55), (20, 16, 1, 1), (1, 1)),      # 3025 pixels: no whole tile, the input packed
    ((1, 7, 16, 32), (5, 7, 1, 1), (1, 1)),         # odd channels, the input read in place
    ((1, 514, 17, 15), (9, 514, 1, 1), (1, 1)),     # the most channels float32 sums exactly
    ((1, 24, 33, 31), (16, 24, 1, 1), (2, 2)),      # strided: 17x16
]


def _wl(case):
    return _conv(*case, (0, 0, 0, 0), (1, 1), groups=1, dtype="uint8")


@needs_avx2
@pytest.mark.parametrize("case", CASES)
def test_int8_gemm_f32_equals_the_int64_conv(rng, case):
    wl = _wl(case)
    assert registry.select(wl, AVX2).name == NAME
    assert registry.IMPLEMENTATIONS[NAME].pack_weight(None, wl, None, AVX2) is None     # read as it is
    check(rng, wl, AVX2, NAME, prepacked=False)      # x[:, 0] = 255, w[0] = -128: the largest sums


@needs_avx2
def test_requantising_epilogue_fuses_after_the_int8_gemm_f32(rng):
    check_requantising_epilogue(rng, _wl(CASES[0]), registry.IMPLEMENTATIONS[NAME], AVX2, 0.0005)


def test_taken_only_where_exact_on_large_maps_without_vnni():
    impl = registry.IMPLEMENTATIONS[NAME]
    assert impl.match(_wl(((1, 515, 17, 15), (9, 515, 1, 1), (1, 1))), AVX2) is None    # past 2**24
    assert impl.match(_wl(((1, 64, 14, 14), (64, 64, 1, 1), (1, 1))), AVX2) is None     # small map
    assert impl.match(_wl(CASES[0]), Target("icelake-server")) is None                  # VNNI
    assert registry.select(_wl(((1, 64, 13, 13), (256, 64, 1, 1), (1, 1))), AVX2).name.endswith("_pmaddwd")
    assert not igf.exact_channels(515)


def test_a_uint8_input_is_required():
    import te
    from te.ops.conv_geometry import geometry
    x = te.placeholder((1, 8, 16, 16), "int8", name="x")
    w = te.placeholder((4, 8, 1, 1), "int8", name="w")
    with pytest.raises(ValueError, match="uint8 input"):
        igf.conv1x1_int8_f32(x, w, geometry(x.shape, w.shape))
