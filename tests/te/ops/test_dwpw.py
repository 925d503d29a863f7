"""The fused depthwise + 1x1 conv (te/ops/dwpw.py) against numpy."""
from __future__ import annotations

import numpy as np
import pytest

import te
from te.ops import dwpw
from te.ops.conv_geometry import geometry

from .conv_reference import conv_ref


def run_fused(xs, wds, K, pads, dil, rng, bias=True, residual=True, **knobs):
    """clip(depthwise(x) + bd, 0, 6) -> 1x1 conv + bp (+ r): the fused kernel against numpy."""
    C = xs[1]
    x, wd, wp = (te.placeholder(s, name=n) for s, n in ((xs, "x"), (wds, "wd"), ((K, C, 1, 1), "wp")))
    bd, bp = (te.placeholder((n,), name=name) if bias else None for n, name in ((C, "bd"), (K, "bp")))
    g = geometry(xs, wds, 1, pads, dil, groups=C)
    r = te.placeholder((1, K, g.OH, g.OW), name="r") if residual else None
    y = dwpw.dwpw_conv2d(x, wd, bd, lambda v, i: te.min_of(te.max_of(v, 0.0), 6.0), wp, bp,
                         (lambda v, i: v + r[i]) if residual else None, g)
    s = te.create_schedule(y.op)
    if knobs:
        dwpw.schedule_dwpw_cfg(Knobs(knobs), s, y, y, te.target.host())
    else:
        dwpw.schedule_dwpw(s, y, None, te.target.host())
    args = [t for t in (x, wd, bd, wp, bp, r) if t is not None]
    arrays = [rng.standard_normal(t.shape).astype(np.float32) for t in args]
    got = np.zeros(y.shape, np.float32)
    te.build(s, args + [y])(*arrays, got)
    a = dict(zip([t.name for t in args], arrays))
    act = np.clip(conv_ref(a["x"], a["wd"], (1, 1), pads, dil, C) + (a["bd"][None, :, None, None] if bias else 0),
                  0, 6)
    want = np.einsum("kc,nchw->nkhw", a["wp"][:, :, 0, 0], act)
    if bias:
        want = want + a["bp"][None, :, None, None]
    if residual:
        want = want + a["r"]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    return y


class Knobs:
    """A config that answers define_knob with the given values (the defaults for the others)."""
    def __init__(self, values):
        self.values, self.vals = values, {}

    def define_knob(self, name, options, default=None):
        self.vals[name] = self.values.get(name, default)

    def __getitem__(self, name):
        return type("Knob", (), {"val": self.vals[name]})


# MobileNet's 3x3 (56x56 and 28x28 maps), a row wider than FLAT_CHUNK, uneven pads with dilation,
# a 5x5 filter, no biases
@pytest.mark.parametrize("xs, wds, K, pads, dil, bias", [
    ((1, 24, 56, 56), (24, 1, 3, 3), 8, (1, 1, 1, 1), (1, 1), True),
    ((1, 40, 28, 28), (40, 1, 3, 3), 12, (1, 1, 1, 1), (1, 1), True),
    ((1, 4, 66, 66), (4, 1, 3, 3), 4, (1, 1, 1, 1), (1, 1), True),
    ((1, 6, 29, 31), (6, 1, 3, 3), 5, (2, 1, 2, 3), (2, 2), True),
    ((1, 7, 28, 30), (7, 1, 5, 5), 3, (2, 2, 2, 2), (1, 1), False)])
def test_fused_matches_numpy(xs, wds, K, pads, dil, bias, rng):
    y = run_fused(xs, wds, K, pads, dil, rng, bias=bias, residual=bias)
    assert y.op.attrs["row"] % te.target.host().lanes() == 0          # the GEMM's columns are whole vectors


@pytest.mark.parametrize("knobs", [dict(band_rows=1, tile_k=2, nv=1), dict(band_rows=7, tile_k=6, nv=2)])
def test_other_knobs_match_numpy(knobs, rng):
    run_fused((1, 10, 28, 28), (10, 1, 3, 3), 12, (1, 1, 1, 1), (1, 1), rng, **knobs)


def test_applies_to_stride_1_wide_maps_of_one_image():
    assert dwpw.applies(geometry((1, 8, 28, 28), (8, 1, 3, 3), 1, 1, 1, 8))
    assert not dwpw.applies(geometry((1, 8, 28, 28), (8, 1, 3, 3), 2, 1, 1, 8))     # strided
    assert not dwpw.applies(geometry((1, 8, 14, 14), (8, 1, 3, 3), 1, 1, 1, 8))     # narrow
    assert not dwpw.applies(geometry((2, 8, 28, 28), (8, 1, 3, 3), 1, 1, 1, 8))     # a batch
    assert not dwpw.applies(geometry((1, 8, 28, 28), (16, 1, 3, 3), 1, 1, 1, 8))    # a multiplier
    with pytest.raises(ValueError, match="1x1 weight"):
        x, wd, wp = te.placeholder((1, 8, 28, 28)), te.placeholder((8, 1, 3, 3)), te.placeholder((4, 8, 3, 3))
        dwpw.dwpw_conv2d(x, wd, None, None, wp, None, None, geometry(x.shape, wd.shape, 1, 1, 1, 8))
