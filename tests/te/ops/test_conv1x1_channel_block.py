"""The direct 1x1 conv's output-channel block where two vectors do not divide the channels."""
import numpy as np
import pytest

import te
from te import ops
from te.ops.conv2d import PackedWeight, as_matmul, default_ocb, geometry, pack_weight_numpy

from .conv_reference import conv_ref

AVX512 = te.target.parse("llvm -mcpu=skylake-avx512")
AVX2 = te.target.parse("llvm -mcpu=haswell")


@pytest.mark.parametrize("K, want", [(1000, 32), (1024, 32), (24, 32), (144, 16), (496, 16), (40, 16)])
def test_two_vectors_where_the_padding_is_small(K, want):
    """SqueezeNet's 512 -> 1000 at 13x13 (the direct kernel there) takes 32 channels: 1000 pads to
    1024, 16 more than to 1008 (1.6%); 24 pads to 32 either way; 144 would pad to 160, not 144."""
    g = geometry((1, 512, 13, 13), (K, 512, 1, 1))
    assert not as_matmul(g)
    assert default_ocb(g, AVX512) == want
    assert default_ocb(g, AVX2) <= 8            # 16 registers: one-vector blocks as before


def test_a_padded_two_vector_block_matches_numpy():
    rng = np.random.default_rng(3)
    xs, ws = (1, 8, 5, 5), (520, 8, 1, 1)       # 520 channels in 32-channel blocks: 24 padded
    ocb = default_ocb(geometry(xs, ws), AVX512)        # (16 registers run this 1x1 as the GEMM)
    a, wa, ba = (rng.standard_normal(s).astype(np.float32) for s in (xs, ws, (ws[0],)))
    wpk = pack_weight_numpy(wa, ocb)
    x, wp, b = te.placeholder(xs, name="x"), te.placeholder(wpk.shape, name="wp"), te.placeholder((520,), name="b")
    y = ops.conv2d(x, PackedWeight(wp, ws), bias=b, target=AVX512)
    assert y.op.attrs["ocb"] == ocb == 32
    out = np.zeros(y.shape, np.float32)
    te.build(ops.schedule([y], AVX512), [x, wp, b, y], target=AVX512)(a, wpk, ba, out)
    np.testing.assert_allclose(out, conv_ref(a, wa) + ba[:, None, None], rtol=1e-4, atol=1e-4)
