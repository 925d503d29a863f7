"""te.ops.conv_pool: the stem conv + max pool kernel against a float64 numpy conv and max pool, with
bands that do and do not divide the pooled map and register tiles that overhang the band's rows."""
from __future__ import annotations

import numpy as np
import pytest

import te
from te import ops
from te.ops import conv_pool
from te.ops.conv_geometry import geometry

from .conv_reference import conv_ref


def max_pool_ref(y: np.ndarray, k: int, s: int) -> np.ndarray:
    """An unpadded k x k / s max pool of NCHW y."""
    OH, OW = (y.shape[2] - k) // s + 1, (y.shape[3] - k) // s + 1
    out = np.full(y.shape[:2] + (OH, OW), -np.inf, y.dtype)
    for i in range(k):
        for j in range(k):
            out = np.maximum(out, y[:, :, i:i + s * (OH - 1) + 1:s, j:j + s * (OW - 1) + 1:s])
    return out


@pytest.mark.parametrize("band", [None, 1, 3], ids=["default", "band1", "band3_overhang"])
@pytest.mark.parametrize("k,pad", [(3, 0), (7, 3)], ids=["squeezenet", "resnet"])
def test_conv_pool_matches_numpy(k, pad, band, rand, monkeypatch):
    if band is not None:
        monkeypatch.setattr(conv_pool, "band_rows", lambda *a: band)
    xs, ws = (1, 3, 33, 37), (16, 3, k, k)
    x, w, b = te.placeholder(xs, name="x"), te.placeholder(ws, name="w"), te.placeholder((16,), name="b")
    g = geometry(xs, ws, (2, 2), (pad,) * 4, (1, 1), 1)
    y = conv_pool.conv_stem_max_pool(x, w, g, b, lambda v, idx: te.max_of(v, te.const(0.0, "float32")),
                                     (3, 3), (2, 2), (0, 0, 0, 0))
    f = te.build(ops.schedule([y]), [x, w, b, y])
    a, wv, bv = rand(xs), rand(ws), rand((16,))
    out = np.full(y.shape, np.nan, np.float32)
    f(a, wv, bv, out)
    conv = np.maximum(conv_ref(a, wv, (2, 2), (pad,) * 4) + bv[None, :, None, None], 0)
    np.testing.assert_allclose(out, max_pool_ref(conv, 3, 2), rtol=1e-4, atol=1e-4)


def test_a_conv_of_many_channels_is_refused():
    x, w = te.placeholder((1, 16, 20, 20), name="x"), te.placeholder((8, 16, 3, 3), name="w")
    g = geometry(x.shape, w.shape, (2, 2), (0,) * 4, (1, 1), 1)
    with pytest.raises(ValueError, match="run te.ops.conv2d and te.ops.max_pool2d apart"):
        conv_pool.conv_stem_max_pool(x, w, g, None, None, (3, 3), (2, 2), (0, 0, 0, 0))


def test_pool_reads_inside():
    g = geometry((1, 3, 224, 224), (64, 3, 3, 3), (2, 2), (0,) * 4, (1, 1), 1)       # 111 x 111
    assert conv_pool.pool_reads_inside(g, (3, 3), (2, 2), (0,) * 4, (1, 1), False)
    assert not conv_pool.pool_reads_inside(g, (3, 3), (2, 2), (1,) * 4, (1, 1), False)
    g = geometry((1, 3, 224, 224), (64, 3, 3, 3), (2, 2), (1,) * 4, (1, 1), 1)       # 112 x 112
    assert conv_pool.pool_reads_inside(g, (3, 3), (2, 2), (0,) * 4, (1, 1), False)
    assert not conv_pool.pool_reads_inside(g, (3, 3), (2, 2), (0,) * 4, (1, 1), True)
