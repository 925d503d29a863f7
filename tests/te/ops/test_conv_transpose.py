"""te.ops.conv_transpose against a numpy scatter, including phases no tap reaches and negative end pads."""
import numpy as np
import pytest

import te
from te import ops
from te.ops.conv_transpose import conv_transpose_output_shape

from .build_run import build_run


def _reference(x, w, strides, pads, dil, out_pad, groups):
    """Every input pixel scattered through every tap (the definition)."""
    n, c, h, wd = x.shape
    cog = w.shape[1]
    cig = c // groups
    oh, ow = conv_transpose_output_shape(x.shape, w.shape, strides, pads[:2], pads[2:], dil, out_pad, groups)[2:]
    y = np.zeros((n, cog * groups, oh, ow), x.dtype)
    for ci in range(c):
        g = ci // cig
        for kh in range(w.shape[2]):
            for kw in range(w.shape[3]):
                for i in range(h):
                    for j in range(wd):
                        o1, o2 = i * strides[0] - pads[0] + kh * dil[0], j * strides[1] - pads[1] + kw * dil[1]
                        if 0 <= o1 < oh and 0 <= o2 < ow:
                            y[:, g * cog:(g + 1) * cog, o1, o2] += x[:, ci, i, j, None] * w[ci, :, kh, kw]
    return y


@pytest.mark.parametrize("strides,pads,dil,out_pad,groups", [
    ((2, 2), (1, 1, 1, 1), (1, 1), (0, 0), 1),
    ((2, 3), (0, 2, 1, 0), (2, 1), (1, 2), 2),       # stride 2 with dilation 2: a phase no tap reaches
    ((1, 2), (2, 0, 0, -1), (1, 3), (0, 0), 1),      # a negative end pad widens the output
])
@pytest.mark.parametrize("by_conv2d", [False, True])
def test_conv_transpose_matches_the_scatter(rand, strides, pads, dil, out_pad, groups, by_conv2d):
    x, w = rand((2, 4, 5, 4)), rand((4, 3, 3, 2))
    want = _reference(x, w, strides, pads, dil, out_pad, groups)
    xt = te.placeholder(x.shape, "float32", name="x")
    wt = te.placeholder(w.shape, "float32", name="w")
    target = te.target.host() if by_conv2d else None       # with a target: phases as conv2d
    y = ops.conv_transpose(xt, wt, want.shape[2:], strides, pads[:2], dil, groups, target=target)
    np.testing.assert_allclose(build_run(y, [xt, wt], [x, w]), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("by_conv2d", [False, True])
def test_conv_transpose_1d_matches_the_scatter(rand, by_conv2d):
    x, w = rand((2, 4, 7)), rand((4, 3, 4))
    want = _reference(x[:, :, None], w[:, :, None], (1, 3), (0, 1, 0, 2), (1, 1), (0, 1), 1)[:, :, 0]
    xt = te.placeholder(x.shape, "float32", name="x")
    wt = te.placeholder(w.shape, "float32", name="w")
    y = ops.conv_transpose(xt, wt, want.shape[2:], (3,), (1,), (1,), target=te.target.host() if by_conv2d else None)
    np.testing.assert_allclose(build_run(y, [xt, wt], [x, w]), want, rtol=1e-5, atol=1e-5)
