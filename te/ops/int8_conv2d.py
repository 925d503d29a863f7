"""int8 convolutions, the anchor of a quantised conv: x uint8 NCHW, w int8 OIHW, y int32 = the
sum of products (padding reads 0), by the CPU's dot-product instructions (te/tensorize.py),
with an epilogue (zero points, scales and requantisation).

Vectors run along the output pixels: the kernel packs its input so that G consecutive input
channels of a pixel sit side by side (`vpdpbusd` G = 4, `vpmaddwd` G = 2) and a vector of L
pixels is one load, while the weight's G channels for one output channel are broadcast.  For
`vpmaddwd` both are widened to int16 once, the weight when it is packed and the input in the
kernel's pack, so that the inner loop is vpmaddwd + vpaddd alone (te/tensorize_dot.py):

* 1x1 GEMM (1x1, unpadded, any stride): xp[n, C/G, P, G] over the flattened output map
  P = OH*OW (the input pixels a stride picks) padded to whole vectors; weight (K, C) as it is
  (C padded to G);
* direct (any kernel, stride, dilation, padding, one group): xp[n, C/G, Hp, sw, Wq, G], the
  zero-padded input split by column phase, so that for a tap s the pixels ow of a vector read
  xp[..., (s*dw) % sw, ow + (s*dw) // sw, :], consecutive whatever the stride; weight packed
  (K, C/G, R, S, G) at build time.

The accumulator tile (tile_k output channels x tile_oh rows x tile_ow pixels) lives in vector
registers; the epilogue runs on it before the one NCHW store.

On AMX the 1x1 GEMM (`conv1x1_amx`) takes the weight as 16 x 64 row tiles (int8) and the same
packed input (C/4 x P x 4, uint8; from 128 output channels in blocks of 16 pixels, so that each
tile of it is 1 KiB in a row) as the columns: `tdpbsud` accumulates a block of output
channels x pixels, which is NCHW order already.  Other convs (`conv2d_amx`)
do the same tap by tap: the tap's weight tiles by the packed input at the tap's offset, over
the input channels and the taps without leaving the tiles.  Maps narrower than a vector
(7x7) waste the padded lanes: channel vectors would suit them better (later work).
"""
from __future__ import annotations

import numpy as np

import te
from te.runtime import aligned_copy
from te.target import Target

from .common import Epilogue, apply_epilogue
from .conv_geometry import ConvGeometry
from .schedule import anchor, input_stage, parallel_if_worth

TAG = "conv2d_int8"


def _pad(n: int, m: int) -> int:
    return -(-n // m) * m


def is_gemm(g: ConvGeometry) -> bool:
    """1x1, unpadded, not depthwise: the conv is the GEMM W (K, C) @ X (C, OH*OW) per image (a stride
    only picks which pixels the packed input holds), or with groups one GEMM per group, output
    channel k reading its group's channels of the packed input (each group padded to G)."""
    return ((g.R, g.S) == (1, 1) and (g.pt, g.pl, g.pb, g.pr) == (0, 0, 0, 0)
            and (g.groups == 1 or not g.depthwise))


def group_channels(g: ConvGeometry, group: int) -> tuple[int, int]:
    """(input channels per conv group, the same padded to whole instruction groups G)."""
    Cg = g.C // g.groups
    return Cg, _pad(Cg, group)


def packed_weight_shape(g: ConvGeometry, group: int) -> tuple:
    """The weight as pack_weight_numpy lays it out."""
    Cp = group_channels(g, group)[1]
    return (g.K, Cp) if is_gemm(g) else (g.K, Cp // group, g.R, g.S, group)


def pack_weight_numpy(w: np.ndarray, g: ConvGeometry, group: int, dtype: str = "int8") -> np.ndarray:
    """OIHW int8 -> (K, C/groups) for the 1x1 GEMM, else (K, C/G, R, S, G), of dtype (int8, or int16
    for vpmaddwd); C/groups padded with zeros."""
    Cg, Cp = group_channels(g, group)
    wp = np.zeros((g.K, Cp, g.R, g.S), dtype)
    wp[:, :Cg] = w
    if is_gemm(g):
        return np.ascontiguousarray(wp[:, :, 0, 0])
    return np.ascontiguousarray(wp.reshape(g.K, Cp // group, group, g.R, g.S).transpose(0, 1, 3, 4, 2))


def pack_weight(w: te.Tensor, g: ConvGeometry, group: int, name: str, dtype: str = "int8") -> te.Tensor:
    """pack_weight_numpy as a stage of the kernel (for a weight that is not a constant)."""
    shape = packed_weight_shape(g, group)

    def f(*idx):
        k, rest = idx[0], idx[1:]
        if is_gemm(g):
            c, r, s = rest[0], 0, 0
        else:
            cq, r, s, gi = rest
            c = cq * group + gi
        Cg = group_channels(g, group)[0]
        v = w[k, te.min_of(c, Cg - 1), r, s].astype(dtype)
        return v if Cg % group == 0 else te.if_then_else(c < Cg, v, te.const(0, dtype))
    return te.compute(shape, f, name=f"{name}.wpacked", tag="pack")


def _as(v, dtype: str):
    return v if dtype == "uint8" else v.astype(dtype)


def input_width(g: ConvGeometry, owp: int) -> int:
    """Columns per phase of the direct conv's packed input, for owp output columns."""
    return owp + ((g.S - 1) * g.dw) // g.sw


def pack_input(x: te.Tensor, g: ConvGeometry, group: int, owp: int, name: str, channels: int = 0,
               rows: int = 0, dtype: str = "uint8", pixel_tiles: int = 0) -> te.Tensor:
    """The uint8 input with G channels side by side, zero-padded (see the module docstring), to
    `channels` channels (0: to whole groups) and, for a direct conv, the input rows of `rows`
    output rows (0: OH); its values as dtype (uint8, or int16 for vpmaddwd).  With pixel_tiles T
    (the 1x1 GEMM on AMX) the pixels come in blocks of T, [n, P/T, C/G, T, G], so that an AMX
    tile (16 channel groups of T = 16 pixels) is 1 KiB in a row, not 16 rows a plane apart."""
    Cp = channels or _pad(g.C, group)
    Cq = Cp // group
    zero = te.const(0, dtype)
    if is_gemm(g) and g.groups > 1:
        return _pack_input_grouped(x, g, group, owp, name, dtype)
    if is_gemm(g):
        P = g.OH * g.OW
        Pp = _pad(P, owp)

        # the padding pixels (p >= P) only feed output columns that are never stored: they read
        # the last pixel again (in bounds), with no zeroing; padding channels must read 0
        def f(n, cq, p, gi):
            c = cq * group + gi
            pc = te.min_of(p, P - 1) if Pp != P else p
            v = _as(x[n, te.min_of(c, g.C - 1), pc // g.OW * g.sh, pc % g.OW * g.sw], dtype)
            return te.if_then_else(c < g.C, v, zero) if Cp != g.C else v
        if pixel_tiles:
            T = pixel_tiles
            return te.compute((g.N, Pp // T, Cq, T, group), lambda n, pb, cq, pi, gi: f(n, cq, pb * T + pi, gi),
                              name=f"{name}.xtiles", tag="pack_tiles")
        return te.compute((g.N, Cq, Pp, group), f, name=f"{name}.xpacked", tag="pack")
    Hp = ((rows or g.OH) - 1) * g.sh + (g.R - 1) * g.dh + 1
    Wq = input_width(g, owp)

    def f(n, cq, h, phase, wq, gi):
        c = cq * group + gi
        ih, iw = h - g.pt, wq * g.sw + phase - g.pl
        inside = te.all(ih >= 0, ih < g.H, iw >= 0, iw < g.W, *([c < g.C] if Cp != g.C else []))
        v = x[n, te.min_of(c, g.C - 1), te.max_of(te.min_of(ih, g.H - 1), 0), te.max_of(te.min_of(iw, g.W - 1), 0)]
        return te.if_then_else(inside, _as(v, dtype), zero)
    return te.compute((g.N, Cq, Hp, g.sw, Wq, group), f, name=f"{name}.xpacked", tag="pack")


def _pack_input_grouped(x: te.Tensor, g: ConvGeometry, group: int, owp: int, name: str, dtype: str) -> te.Tensor:
    """The grouped 1x1 GEMM's packed input: each conv group's channels padded to whole
    instruction groups, [n, groups * Cgp / G, P, G]; padding pixels read the last pixel again."""
    Cg, Cgp = group_channels(g, group)
    P = g.OH * g.OW
    Pp = _pad(P, owp)
    zero = te.const(0, dtype)

    def f(n, cq, p, gi):
        cp = cq * group + gi
        cl = cp % Cgp
        pc = te.min_of(p, P - 1) if Pp != P else p
        v = _as(x[n, cp // Cgp * Cg + te.min_of(cl, Cg - 1), pc // g.OW * g.sh, pc % g.OW * g.sw], dtype)
        return te.if_then_else(cl < Cg, v, zero) if Cgp != Cg else v
    return te.compute((g.N, g.groups * Cgp // group, Pp, group), f, name=f"{name}.xpacked", tag="pack")


def conv2d_int8(x: te.Tensor, wp: te.Tensor, g: ConvGeometry, group: int, owp: int,
                epilogue: Epilogue | None = None, name: str = "conv2d_int8", attrs: dict | None = None) -> te.Tensor:
    """epilogue(int32 conv): x uint8 NCHW, wp the int8 weight packed by pack_weight(_numpy) (int16
    for vpmaddwd: the input is then packed as int16 too); owp: output columns (or pixels, for the
    1x1 GEMM) padded to whole tiles."""
    if x.dtype != "uint8" or wp.dtype not in ("int8", "int16"):
        raise ValueError(f"{name}: int8 conv2d takes x uint8 and w int8 (packed as int8 or int16), "
                         f"got {x.dtype} and {wp.dtype}")
    xp = pack_input(x, g, group, owp, name, dtype="int16" if wp.dtype == "int16" else "uint8")
    Cp = group_channels(g, group)[1] if is_gemm(g) else _pad(g.C, group)
    c = te.reduce_axis((0, Cp), name="c")
    i32 = "int32"
    Kg = g.K // g.groups

    def first(k):       # the packed input's first channel group of output channel k's conv group
        return k // Kg * (Cp // group) if g.groups > 1 else 0
    if is_gemm(g):
        acc = te.compute((g.N, g.K, xp.shape[2]), lambda n, k, p: te.sum(
            xp[n, first(k) + c // group, p, c % group].astype(i32) * wp[k, c].astype(i32), axis=c),
            name=f"{name}.acc", tag="acc")

        def out(n, k, oh, ow):
            return apply_epilogue(epilogue, acc[n, k, oh * g.OW + ow], (n, k, oh, ow))
    else:
        r = te.reduce_axis((0, g.R), name="r")
        s = te.reduce_axis((0, g.S), name="s")
        acc = te.compute((g.N, g.K, g.OH, owp), lambda n, k, oh, ow: te.sum(
            xp[n, c // group, oh * g.sh + r * g.dh, (s * g.dw) % g.sw, ow + (s * g.dw) // g.sw, c % group].astype(i32)
            * wp[k, c // group, r, s, c % group].astype(i32), axis=[c, r, s]), name=f"{name}.acc", tag="acc")

        def out(n, k, oh, ow):
            return apply_epilogue(epilogue, acc[n, k, oh, ow], (n, k, oh, ow))
    return te.compute((g.N, g.K, g.OH, g.OW), out, name=name, tag=TAG,
                      attrs={"gemm": is_gemm(g), "group": group, "flops": g.flops, "geometry": g,
                             **(attrs or {})})


# ---------------------------------------------------------------- the 1x1 GEMM on AMX

AMX_T, AMX_K = 16, 64


def amx_weight_shape(g: ConvGeometry) -> tuple:
    """The 1x1 weight as AMX row tiles: (K/16, C/64, 16, 64), K padded with zero rows."""
    return (_pad(g.K, AMX_T) // AMX_T, g.C // AMX_K, AMX_T, AMX_K)


def pack_weight_amx_numpy(w: np.ndarray, g: ConvGeometry) -> np.ndarray:
    """OIHW int8 (1x1, C by 64) -> whole 16 x 64 tiles of W (K, C), each 1 KiB in a row."""
    Kp = _pad(g.K, AMX_T)
    wp = np.zeros((Kp, g.C), np.int8)
    wp[:g.K] = w[:, :, 0, 0]
    return aligned_copy(wp.reshape(Kp // AMX_T, AMX_T, g.C // AMX_K, AMX_K).transpose(0, 2, 1, 3))


def conv1x1_amx(x: te.Tensor, wt: te.Tensor, g: ConvGeometry, bn: int, epilogue: Epilogue | None = None,
                name: str = "conv2d_int8", attrs: dict | None = None) -> te.Tensor:
    """A 1x1 conv on AMX as acc[n, k, p] = W (K, C) @ X (C, P): the weight tiles (wt, from
    pack_weight_amx_numpy) are the int8 rows, the input packed C/4 x P x 4 the uint8 columns
    (tdpbsud), so C's rows are output channels and its columns pixels, as NCHW wants.  Where
    amx_input_tiles says so the input is packed in blocks of 16 pixels ([n, P/16, C/4, 16, 4]),
    so that each tile of it is 1 KiB in a row rather than 16 rows a channel plane apart."""
    input_tiles = amx_input_tiles(g)
    xt = pack_input(x, g, 4, bn, name, pixel_tiles=AMX_T if input_tiles else 0)
    Kt = wt.shape[0] * AMX_T
    c = te.reduce_axis((0, g.C), name="c")

    def x_at(n, c, p):
        return xt[n, p // AMX_T, c // 4, p % AMX_T, c % 4] if input_tiles else xt[n, c // 4, p, c % 4]
    P = xt.shape[1] * AMX_T if input_tiles else xt.shape[2]
    acc = te.compute((g.N, Kt, P), lambda n, k, p: te.sum(
        wt[k // AMX_T, c // AMX_K, k % AMX_T, c % AMX_K].astype("int32") * x_at(n, c, p).astype("int32"),
        axis=c), name=f"{name}.acc", tag="acc")
    return te.compute((g.N, g.K, g.OH, g.OW), lambda n, k, oh, ow: apply_epilogue(
        epilogue, acc[n, k, oh * g.OW + ow], (n, k, oh, ow)), name=name, tag=TAG,
        attrs={"gemm": True, "group": 4, "flops": g.flops, "geometry": g, "amx": True, **(attrs or {})})


def define_amx_knobs(cfg, g: ConvGeometry) -> None:
    """tile_k (output channels) and tile_p (pixels): one or two tiles each."""
    cfg.define_knob("tile_k", [16, 32], default=32 if g.K % 32 == 0 else 16)
    cfg.define_knob("tile_p", [16, 32], default=32)


def amx_input_tiles(g: ConvGeometry) -> bool:
    """Does the 1x1 conv on AMX pack its input in 16-pixel tiles (conv1x1_amx)?  Where at least
    128 output channels read each packed byte: measured on ResNet-50's 1x1 convs (one thread,
    alternating) 1.03-1.25x faster from 512 -> 128 at 28x28 to 512 -> 2048 at 7x7, but 0.9x at
    256 -> 64 at 56x56, whose pack (a quarter of its time) then writes 64 bytes a 4 KiB stride
    apart.  A rule rather than a knob, so that the tuning records of the template still fit."""
    return g.K >= 128


def schedule_conv1x1_amx(cfg, s: te.Schedule, out: te.Tensor, final: te.Tensor | None, target: Target) -> None:
    """Blocks of tile_k channels x tile_p pixels in parallel, each accumulated in AMX tiles."""
    from .int8_matmul import amx_block
    final = final or out
    acc = input_stage(out, "acc")
    bk, bp = cfg["tile_k"].val, cfg["tile_p"].val
    if final is not out:
        s[out].compute_inline()
    n, k, oh, ow = s[final].op.axis
    p = s[final].fuse(oh, ow)
    ko, ki = s[final].split(k, factor=bk)
    po, pi = s[final].split(p, factor=bp)
    s[final].reorder(n, po, ko, ki, pi)
    tile = s[final].fuse(n, po, ko)
    _, lane = s[final].split(pi, factor=AMX_T)
    s[final].vectorize(lane)
    parallel_if_worth(s[final], tile, out.op.attrs["flops"] / 2)
    s[acc].compute_at(s[final], tile)
    amx_block(s, acc, out.op.attrs["flops"] / 2)
    xt = input_stage(acc, "pack_tiles")
    if xt is not None:
        # a vector per 16 pixels x 4 channels (te/codegen_vector.py's byte interleave); channel
        # groups outside the pixel blocks, so that the input's planes are read in order
        n, pb, cq, pi, gi = s[xt].op.axis
        s[xt].reorder(n, cq, pb, pi, gi)
        s[xt].vectorize(s[xt].fuse(pi, gi))
        parallel_if_worth(s[xt], s[xt].fuse(n, cq), out.op.attrs["flops"] / 16)
    for t in acc.op.input_tensors:
        if getattr(t.op, "tag", None) == "pack":
            _schedule_pack(s, t, out.op.attrs["flops"], target)


# ---------------------------------------------------------------- the direct conv on AMX

def amx_column_taps(g: ConvGeometry) -> tuple[int, int]:
    """(taps per column phase, phases) of the AMX direct conv: column tap s = q * sw + phase, so
    the packed input (split by column phase, pack_input) is read at (phase, ow + q), affine in
    both; taps past S (when sw does not divide it) are zero weights."""
    return -(-g.S // g.sw), g.sw


def amx_direct_weight_shape(g: ConvGeometry) -> tuple:
    """The weight as AMX row tiles per tap: (K/16, C'/64, R, S', 16, 64), K padded with zero rows,
    C' = C padded to whole tiles with zero channels, S' = the column taps rounded up to whole
    phases (amx_column_taps)."""
    q, phases = amx_column_taps(g)
    return (_pad(g.K, AMX_T) // AMX_T, _pad(g.C, AMX_K) // AMX_K, g.R, q * phases, AMX_T, AMX_K)


def pack_weight_amx_direct_numpy(w: np.ndarray, g: ConvGeometry) -> np.ndarray:
    """OIHW int8 -> 16 x 64 tiles of each tap's W (K, C), each 1 KiB in a row."""
    Kp, Cp, (q, phases) = _pad(g.K, AMX_T), _pad(g.C, AMX_K), amx_column_taps(g)
    wp = np.zeros((Kp, Cp, g.R, q * phases), np.int8)
    wp[:g.K, :g.C, :, :g.S] = w
    return aligned_copy(wp.reshape(Kp // AMX_T, AMX_T, Cp // AMX_K, AMX_K, g.R, q * phases)
                        .transpose(0, 2, 4, 5, 1, 3))


def pack_weight_amx(w: te.Tensor, g: ConvGeometry, name: str) -> te.Tensor:
    """pack_weight_amx_numpy (a 1x1 GEMM) or pack_weight_amx_direct_numpy as a stage of the kernel,
    for a weight that is not a constant (a template built on its own, as the tuner's space does)."""
    gemm = is_gemm(g)
    shape = amx_weight_shape(g) if gemm else amx_direct_weight_shape(g)

    def f(*idx):
        kb, cb, k16, c64 = (idx[0], idx[1], idx[-2], idx[-1])
        r, s = (0, 0) if gemm else idx[2:4]
        k, c = kb * AMX_T + k16, cb * AMX_K + c64
        v = w[te.min_of(k, g.K - 1), te.min_of(c, g.C - 1), r, s if gemm else te.min_of(s, g.S - 1)]
        conds = ([k < g.K] if shape[0] * AMX_T != g.K else []) + ([c < g.C] if shape[1] * AMX_K != g.C else []) \
            + ([s < g.S] if not gemm and shape[3] != g.S else [])
        return te.if_then_else(te.all(*conds), v, te.const(0, "int8")) if conds else v
    return te.compute(shape, f, name=f"{name}.wtiles", tag="pack_w")


def conv2d_amx(x: te.Tensor, wt: te.Tensor, g: ConvGeometry, bw: int, bh: int = 1, epilogue: Epilogue | None = None,
               name: str = "conv2d_int8", attrs: dict | None = None) -> te.Tensor:
    """A conv on AMX (column dilation 1 where the column stride is not): for every tap (r, s) and
    block of 64 input channels, the tap's weight tiles (int8 rows) times the packed input at the
    tap's offset (uint8 columns, 16 pixels of a row), accumulated in tiles of output channels x
    pixels (tdpbsud).  A column stride reads the input split by column phase (amx_column_taps).
    bh: output rows per block (OH padded to them: the padding rows read zeros, are never stored)."""
    owp, Cp, OHp = _pad(g.OW, bw), _pad(g.C, AMX_K), _pad(g.OH, bh)
    xp = pack_input(x, g, 4, owp, name, channels=Cp, rows=OHp)
    Kt = wt.shape[0] * AMX_T
    taps, phases = amx_column_taps(g)
    c = te.reduce_axis((0, Cp), name="c")
    r = te.reduce_axis((0, g.R), name="r")
    q = te.reduce_axis((0, taps), name="q")
    ph = te.reduce_axis((0, phases), name="ph")
    # with sw = 1 the phase is 0 and q the tap: the column offset is q * dw
    col_step = g.dw if phases == 1 else 1
    acc = te.compute((g.N, Kt, OHp, owp), lambda n, k, oh, ow: te.sum(
        wt[k // AMX_T, c // AMX_K, r, q * phases + ph, k % AMX_T, c % AMX_K].astype("int32")
        * xp[n, c // 4, oh * g.sh + r * g.dh, ph, ow + q * col_step, c % 4].astype("int32"), axis=[c, r, q, ph]),
        name=f"{name}.acc", tag="acc")
    return te.compute((g.N, g.K, g.OH, g.OW), lambda n, k, oh, ow: apply_epilogue(
        epilogue, acc[n, k, oh, ow], (n, k, oh, ow)), name=name, tag=TAG,
        attrs={"gemm": False, "group": 4, "flops": g.flops, "geometry": g, "amx": True, **(attrs or {})})


def define_amx_direct_knobs(cfg, g: ConvGeometry) -> None:
    """tile_k (output channels), tile_ow (pixels of a row) and tile_oh (rows): up to two tiles of
    channels by two of pixels."""
    cfg.define_knob("tile_k", [16, 32], default=32 if g.K % 32 == 0 else 16)
    cfg.define_knob("tile_ow", [16, 32], default=32 if g.OW > 16 else 16)
    # a row narrower than a tile: two rows per block, so each weight tile loaded serves two
    # pixel tiles (7x7 maps: the weight loads, not the products, bound the single-row block)
    cfg.define_knob("tile_oh", [1, 2], default=2 if g.OW <= 16 and g.OH > 1 else 1)
    cfg.define_constraint("two pixel tiles", lambda c: c["tile_ow"].val * c["tile_oh"].val <= 2 * AMX_T)


def schedule_conv2d_amx(cfg, s: te.Schedule, out: te.Tensor, final: te.Tensor | None, target: Target) -> None:
    """Blocks of tile_k channels x tile_ow pixels of one row in parallel, each accumulated in AMX
    tiles over the input channels and the taps; a block of weight tiles serves a whole map."""
    final = final or out
    acc = input_stage(out, "acc")
    bk, bw, bh = cfg["tile_k"].val, cfg["tile_ow"].val, cfg["tile_oh"].val
    if final is not out:
        s[out].compute_inline()
    n, k, oh, ow = s[final].op.axis
    ko, ki = s[final].split(k, factor=bk)
    owo, owi = s[final].split(ow, factor=bw)
    oho, ohi = s[final].split(oh, factor=bh)
    s[final].reorder(n, ko, oho, owo, ki, ohi, owi)
    tile = s[final].fuse(n, ko, oho, owo)
    _, lane = s[final].split(owi, factor=AMX_T)
    s[final].vectorize(lane)
    parallel_if_worth(s[final], tile, out.op.attrs["flops"] / 2)
    s[acc].compute_at(s[final], tile)
    an, ak, aoh, aow = s[acc].op.axis
    c, r, q, ph = s[acc].op.reduce_axis
    kb, k16 = s[acc].split(ak, factor=AMX_T)
    cb, c64 = s[acc].split(c, factor=AMX_K)
    cq, c4 = s[acc].split(c64, factor=4)
    if bh > 1:      # the block's rows are its second tile of pixels (a row is one tile: bw = 16)
        s[acc].reorder(an, kb, k16, aoh, aow, cb, r, q, ph, cq, c4)
    else:
        wb, w16 = s[acc].split(aow, factor=AMX_T)
        s[acc].reorder(an, aoh, kb, k16, wb, w16, cb, r, q, ph, cq, c4)
    s[acc].tensorize(kb, "amx")
    for t in acc.op.input_tensors:
        if getattr(t.op, "tag", None) == "pack":
            _schedule_pack(s, t, out.op.attrs["flops"], target)


# ---------------------------------------------------------------- knobs and schedule

def define_knobs(cfg, g: ConvGeometry, lanes: int, group: int, target: Target) -> None:
    """tile_k (output channels), tile_oh (rows, direct only), tile_ow (pixels: whole vectors)."""
    acc = target.acc_vectors
    pixels = g.OH * g.OW if is_gemm(g) else g.OW
    vecs = -(-pixels // lanes)
    ows = [lanes * v for v in range(1, min(4, vecs) + 1)]
    # a direct conv of one channel group (an image's 3 channels: the stem) reduces over its taps
    # alone; one pixel vector by many output channels ran it about 3x faster than the widest
    # pixel tile (7x7/2 and 3x3/2 stems, 1 thread)
    stem = not is_gemm(g) and _pad(g.C, group) == group
    # vpmaddwd with 16 vector registers (AVX2): one pixel vector by up to 8 output channels, per
    # channel pair one vector load (folded into vpmaddwd) and 8 broadcasts (loads only), and 8
    # accumulators that LLVM keeps in registers beside vpmaddwd's products (on ten SqueezeNet /
    # ResNet-50 shapes the fastest or within 5% of it, 1.1-1.4x the widest pixel tile, which
    # spills); VNNI accumulates in place and keeps the wide tile
    narrow = group == 2 and target.vector_registers <= 16
    bw = lanes if stem or narrow else ows[-1]
    cfg.define_knob("tile_ow", ows, default=bw)
    ohs = [1] if is_gemm(g) else [d for d in (1, 2, 4) if g.OH % d == 0]
    cfg.define_knob("tile_oh", ohs, default=1)
    # a tile of output channels stays in one conv group (they read one slice of the packed input)
    ks = [d for d in (1, 2, 4, 6, 8, 12, 16) if g.K // g.groups % d == 0]
    fit = [d for d in ks if d * (bw // lanes) <= (min(acc, 8) if narrow else acc)]
    cfg.define_knob("tile_k", ks, default=max(fit or [1]))
    cfg.define_constraint("register tile", lambda c: c["tile_k"].val * c["tile_oh"].val * c["tile_ow"].val // lanes
                          <= acc)


def padded_columns(g: ConvGeometry, cfg) -> int:
    """The output columns (pixels for the 1x1 GEMM) the kernel computes: whole tiles."""
    return _pad(g.OH * g.OW if is_gemm(g) else g.OW, cfg["tile_ow"].val)


def schedule_conv2d_int8(cfg, s: te.Schedule, out: te.Tensor, final: te.Tensor | None, target: Target,
                         intrin: str, lanes: int) -> None:
    """Output tiles in parallel, the accumulator tile in registers around `intrin`."""
    final = final or out
    acc = input_stage(out, "acc")
    attrs = out.op.attrs
    G = attrs["group"]
    bk, bh, bw = cfg["tile_k"].val, cfg["tile_oh"].val, cfg["tile_ow"].val
    if final is not out:
        s[out].compute_inline()
    n, k, oh, ow = s[final].op.axis
    ko, ki = s[final].split(k, factor=bk)
    if attrs["gemm"]:
        p = s[final].fuse(oh, ow)
        po, pi = s[final].split(p, factor=bw)
        s[final].reorder(n, ko, po, ki, pi)
        tile = s[final].fuse(n, ko, po)
        inner = pi
    else:
        oho, ohi = s[final].split(oh, factor=bh)
        owo, owi = s[final].split(ow, factor=bw)
        s[final].reorder(n, ko, oho, owo, ki, ohi, owi)
        tile = s[final].fuse(n, ko, oho, owo)
        inner = owi
    _, lane = s[final].split(inner, factor=lanes)
    s[final].vectorize(lane)
    parallel_if_worth(s[final], tile, attrs["flops"] / 2)
    s[acc].compute_at(s[final], tile)
    register_tile(s, acc, G, lanes, intrin)
    for t in acc.op.input_tensors:
        if getattr(t.op, "tag", None) == "pack":
            _schedule_pack(s, t, attrs["flops"], target)


def register_tile(s: te.Schedule, acc: te.Tensor, group: int, lanes: int, intrin: str) -> None:
    """acc's tile (computed at an output tile) in registers: the reduction by instruction groups
    outside, the tile's rows and pixel vectors unrolled, `intrin` on each vector."""
    a_axes = list(s[acc].op.axis)
    red = list(s[acc].op.reduce_axis)
    cq, cg = s[acc].split(red[0], factor=group)
    pv, pl = s[acc].split(a_axes[-1], factor=lanes)
    rows = a_axes[1:-1]                                    # k (and oh)
    s[acc].reorder(a_axes[0], cq, *red[1:], *rows, pv, pl, cg)
    for ax in [*rows, pv, *red[2:]]:                       # the tile, and the filter columns
        s[acc].unroll(ax)
    s[acc].tensorize(pl, intrin)


def _schedule_pack(s: te.Schedule, t: te.Tensor, flops: float, target: Target) -> None:
    """The packed input by blocks of channel groups in parallel.  The 1x1 GEMM's pack writes whole
    vectors: lane l of a vector reads channel l % G of pixel l // G, which the code generator
    loads as G vectors of pixels and one byte interleave (te/codegen_vector.py)."""
    st = s[t]
    axes = list(st.op.axis)
    width = t.shape[2] * t.shape[3] if len(axes) == 4 else 1     # the 1x1 GEMM's pack: (n, C/G, P, G)
    lanes = next((v for v in (target.lanes(t.dtype), 32, 16) if width % v == 0), 0)
    if lanes:
        _, lane = st.split(st.fuse(axes[2], axes[3]), factor=lanes)
        st.vectorize(lane)
    else:
        st.unroll(axes[-1])
    # the direct conv's rows too: a stem's input is one channel group
    parallel_if_worth(st, st.fuse(*axes[:3 if len(axes) == 6 else 2]), flops / 16)


@anchor(TAG)
def schedule_conv2d_int8_default(s: te.Schedule, out: te.Tensor, final: te.Tensor | None, target: Target) -> None:
    """The untuned schedule of an int8 conv (its intrinsic recorded in the op's attrs)."""
    from te import tensorize
    from .knobs import FallbackConfig
    if out.op.attrs.get("amx"):
        cfg, g = FallbackConfig(), out.op.attrs["geometry"]
        if out.op.attrs["gemm"]:
            define_amx_knobs(cfg, g)
            schedule_conv1x1_amx(cfg, s, out, final, target)
        else:
            define_amx_direct_knobs(cfg, g)
            schedule_conv2d_amx(cfg, s, out, final, target)
        return
    intrin = out.op.attrs["intrin"]
    lanes = tensorize.get(intrin).lanes
    cfg = FallbackConfig()
    define_knobs(cfg, out.op.attrs["geometry"], lanes, out.op.attrs["group"], target)
    schedule_conv2d_int8(cfg, s, out, final, target, intrin, lanes)


__all__ = ["conv2d_int8", "pack_weight", "pack_weight_numpy", "pack_weight_amx", "packed_weight_shape", "pack_input",
           "define_knobs", "schedule_conv2d_int8", "register_tile", "is_gemm", "padded_columns"]
