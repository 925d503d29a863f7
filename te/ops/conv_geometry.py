"""Convolution geometry and padding: what every conv kernel (direct, NCHWc, depthwise, Winograd)
derives from its shapes and attributes before it declares any compute.

`geometry()` resolves strides, padding (numbers or ONNX's SAME_UPPER/SAME_LOWER/VALID), dilation
and groups into a `ConvGeometry` (output size, flops, per-group channels); `pad_nchw` builds the
zero-padded input by whole chunks of columns, so its copy is plain vector loads.
"""
from __future__ import annotations

from dataclasses import dataclass

import te

Padding = int | tuple[int, ...] | str


# ---------------------------------------------------------------- geometry

def pair(v, name: str, op: str = "conv2d") -> tuple[int, int]:
    """(h, w) from an int or a pair (a window's strides, dilation, kernel); `op` names the caller
    in the error."""
    if isinstance(v, int):
        return v, v
    v = tuple(int(x) for x in v)
    if len(v) != 2:
        raise ValueError(f"{op}: {name} must be an int or a pair, got {v}")
    return v


def resolve_padding(padding, in_hw: tuple[int, int], kernel_hw: tuple[int, int],
                    strides: tuple[int, int], dilation: tuple[int, int],
                    op: str = "conv2d") -> tuple[int, int, int, int]:
    """Padding as (top, left, bottom, right) from an int, a pair, a 4-tuple or SAME/SAME_UPPER/SAME_LOWER/VALID
    (ONNX's auto_pad: the padding that keeps ceil(n / stride) outputs, the odd one at the end, or
    with SAME_LOWER at the start); convolutions and poolings alike, `op` naming the caller in errors."""
    if isinstance(padding, str):
        mode = padding.upper()
        if mode == "VALID":
            return 0, 0, 0, 0
        if mode not in ("SAME", "SAME_UPPER", "SAME_LOWER"):
            raise ValueError(f"{op}: unknown padding {padding!r}; use SAME, SAME_UPPER, SAME_LOWER or VALID")
        pads = []
        for n, k, s, d in zip(in_hw, kernel_hw, strides, dilation):
            total = max((-(-n // s) - 1) * s + (k - 1) * d + 1 - n, 0)
            small = total // 2
            pads.append((small, total - small) if mode != "SAME_LOWER" else (total - small, small))
        return pads[0][0], pads[1][0], pads[0][1], pads[1][1]
    if isinstance(padding, int):
        return (padding,) * 4
    p = tuple(int(x) for x in padding)
    if len(p) == 2:
        return p[0], p[1], p[0], p[1]
    if len(p) == 4:
        return p
    raise ValueError(f"{op}: padding must be an int, a pair, (top, left, bottom, right) or a mode, got {padding}")


@dataclass(frozen=True)
class ConvGeometry:
    """The sizes of one convolution, resolved: input, kernel, strides, padding, dilation, output."""
    N: int
    C: int
    H: int
    W: int
    K: int
    R: int
    S: int
    sh: int
    sw: int
    pt: int
    pl: int
    pb: int
    pr: int
    dh: int
    dw: int
    groups: int
    OH: int
    OW: int

    @property
    def flops(self) -> float:
        """Multiply-adds x 2 of the convolution."""
        return 2.0 * self.N * self.K * self.OH * self.OW * (self.C // self.groups) * self.R * self.S

    @property
    def depthwise(self) -> bool:
        return self.groups == self.C and self.groups > 1 and self.K % self.C == 0


def geometry(x_shape, w_shape, strides=(1, 1), padding=0, dilation=(1, 1), groups: int = 1) -> ConvGeometry:
    """Resolve and check the sizes of conv2d(x, w) with x (N, C, H, W) and w (K, C/groups, R, S)."""
    if len(x_shape) != 4 or len(w_shape) != 4:
        raise ValueError(f"conv2d: input must be NCHW and weight KCRS (4-D), got {x_shape} and {w_shape}")
    N, C, H, W = x_shape
    K, Cg, R, S = w_shape
    sh, sw = pair(strides, "strides")
    dh, dw = pair(dilation, "dilation")
    if groups < 1 or C % groups or K % groups or Cg != C // groups:
        raise ValueError(f"conv2d: input channels {C}, weight {tuple(w_shape)} and groups={groups} do not "
                         f"match (need C % groups == 0, K % groups == 0, weight dim 1 == C / groups)")
    if min(sh, sw, dh, dw) < 1:
        raise ValueError(f"conv2d: strides and dilation must be >= 1, got {strides} and {dilation}")
    pt, pl, pb, pr = resolve_padding(padding, (H, W), (R, S), (sh, sw), (dh, dw))
    OH = (H + pt + pb - (R - 1) * dh - 1) // sh + 1
    OW = (W + pl + pr - (S - 1) * dw - 1) // sw + 1
    if OH < 1 or OW < 1:
        raise ValueError(f"conv2d: the output is empty ({OH}x{OW}) for input {H}x{W}, kernel {R}x{S}, "
                         f"padding {(pt, pl, pb, pr)}, strides {(sh, sw)}, dilation {(dh, dw)}")
    return ConvGeometry(N, C, H, W, K, R, S, sh, sw, pt, pl, pb, pr, dh, dw, groups, OH, OW)


def pad_chunk(width: int) -> int:
    """Column chunk of a padded row: 16 or 8 when they divide the width, else its smallest divisor in 4..16 (or 0)."""
    for d in (16, 8, *range(4, 17)):
        if width % d == 0:
            return d
    return 0


def pad_nchw(x: te.Tensor, top: int, left: int, bottom: int, right: int, name: str,
             exact: bool = False) -> tuple[te.Tensor, int]:
    """x zero-padded in H and W by at least the given amounts; returns (padded, column of x's column 0).

    The columns are padded by whole chunks (a divisor of W), so whether a chunk is padding does
    not depend on the vector lane and the copy is a plain vector load: no per-lane gather.  With
    `exact`, by exactly the amounts: a narrower row (ResNet-50's 14-wide rows take 16 columns, not
    28), whose copy the code generator makes one masked load per vector where the row fits a few
    vectors (its lanes' clamped columns are consecutive; measured on Emerald Rapids).
    """
    if not (top or left or bottom or right):
        return x, 0
    N, C, H, W = x.shape
    L = 0 if exact else pad_chunk(W)
    if not L:
        return _pad_nchw_clamped(x, top, left, bottom, right, name, exact), left
    lc, nw, rc = -(-left // L), W // L, -(-right // L)

    def f(n, c, h, w):
        q = w // L
        hh = h - top
        inside = te.all(hh >= 0, hh < H, q >= lc, q < lc + nw)
        # clamped indices: the select evaluates both sides, so the load must stay in bounds
        src = x[n, c, te.min_of(te.max_of(hh, 0), H - 1), te.min_of(te.max_of(q - lc, 0), nw - 1) * L + w % L]
        return te.if_then_else(inside, src, te.const(0, x.dtype))
    xp = te.compute((N, C, H + top + bottom, (lc + nw + rc) * L), f, name=name, tag="conv2d.pad",
                    attrs={"chunk": L})
    return xp, lc * L


def _pad_nchw_clamped(x: te.Tensor, top: int, left: int, bottom: int, right: int, name: str,
                      exact: bool) -> te.Tensor:
    N, C, H, W = x.shape

    def f(n, c, h, w):
        inside = te.all(h >= top, h < top + H, w >= left, w < left + W)
        hh = te.min_of(te.max_of(h - top, 0), H - 1)
        ww = te.min_of(te.max_of(w - left, 0), W - 1)
        return te.if_then_else(inside, x[n, c, hh, ww], te.const(0, x.dtype))
    return te.compute((N, C, H + top + bottom, W + left + right), f, name=name, tag="conv2d.pad",
                      attrs={"chunk": 0, "exact": exact})


def subsample_nchw(x: te.Tensor, sh: int, sw: int, rows: int, cols: int, name: str) -> te.Tensor:
    """x[:, :, ::sh, ::sw] as a dense (N, C, rows, cols) tensor, zeros past x's subsampled edge:
    the input of a strided 1x1 conv, which is a stride-1 1x1 conv of it (tagged like a pad stage,
    which it replaces)."""
    N, C, H, W = x.shape
    OH, OW = -(-H // sh), -(-W // sw)

    def f(n, c, h, w):
        if rows <= OH and cols <= OW:
            return x[n, c, h * sh, w * sw]
        # clamped indices: the select evaluates both sides, so the load must stay in bounds
        src = x[n, c, te.min_of(h, OH - 1) * sh, te.min_of(w, OW - 1) * sw]
        return te.if_then_else(te.all(h < OH, w < OW), src, te.const(0, x.dtype))
    return te.compute((N, C, rows, cols), f, name=name, tag="conv2d.pad", attrs={"chunk": 0})


def round_up(n: int, m: int) -> int:
    return -(-n // m) * m


def bias_at(bias: te.Tensor | None, k):
    return None if bias is None else bias[k] if bias.ndim == 1 else bias[tuple([0] * (bias.ndim - 3)) + (k, 0, 0)]


def check_bias(bias: te.Tensor | None, K: int, name: str) -> None:
    if bias is not None and bias.shape not in ((K,), (K, 1, 1), (1, K, 1, 1)):
        raise ValueError(f"{name}: bias must have shape ({K},), got {bias.shape}")


def flops(x_shape, w_shape, strides=(1, 1), padding=0, dilation=(1, 1), groups: int = 1) -> float:
    """Floating-point operations of conv2d(x, w)."""
    return geometry(tuple(x_shape), tuple(w_shape), strides, padding, dilation, groups).flops
