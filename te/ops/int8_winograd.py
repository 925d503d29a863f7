"""int8 3x3 stride-1 convs by Winograd F(2x2, 3x3) in integers, on vpmaddwd (no VNNI: AVX2,
AVX-512BW): exact, as the direct int8 conv is, with 2.25x fewer multiplies.

    Y = A^T [ U . V ] A / 4,   U = (2G) w (2G)^T,   V = B^T d B

The F(2x2, 3x3) matrices B^T and A^T hold only 0 and +-1 and 2G only small integers, so every
step is integer arithmetic:

* U, from the int8 weight at build time: |U| <= 3 * 3 * 128 = 1152, an int16;
* V, from the uint8 input in the kernel: each of its two passes adds or subtracts two values,
  |V| <= 4 * 255 = 1020, an int16;
* M = sum over the channels of U * V, int32 by vpmaddwd (exact on int16 factors,
  te/tensorize_dot.py), |M| <= 1152 * 1020 * C; A^T M A is a sum of M's with +-1 coefficients,
  right modulo 2^32 whatever its partial sums do, and it is 4 * y with y the conv's result,
  |4 y| <= 4 * 255 * 128 * 9 * C (the same bound): while that is below 2^31, C up to 1827
  (`fits`), nothing wraps and the division by 4 gives y exactly.

F(4x4, 3x3) (fp32's choice) has no such integer form: its G has sixths and twenty-fourths, so
its products carry a common factor of 576 that int32 holds only for about 12 channels.

Where the direct int8 conv does 9 vpmaddwd pair products per output and channel pair, this
does 4 (16 per 2x2 tile); the transforms cost per channel, as in fp32's Winograd
(te/ops/winograd.py, whose channels-last layout, transform helpers and output schedule this
reuses).  The 16 GEMMs M[e, nu] (P x K) = V[e, nu] (P x C) @ U[e, nu] (C x K) run as the int8
matmul does: a register tile of bm tiles x bn output channels, U packed (K/L, C/2, L, 2) per
(e, nu) as the vector, V's channel pair broadcast.
"""
from __future__ import annotations

import numpy as np

import te
from te.target import Target

from .common import Epilogue, apply_epilogue
from .schedule import anchor, input_stage, parallel_if_worth
from .winograd import _combo, _pick, applies, schedule_input, schedule_output

TAG = "conv2d_winograd_int8"
BT = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]
AT = [[1, 1, 1, 0], [0, 1, -1, -1]]
G2 = [[2, 0, 0], [1, 1, 1], [1, -1, 1], [0, 0, 2]]        # 2G: F(2, 3)'s G has halves
ALPHA = 4


def _pad(n: int, m: int) -> int:
    return -(-n // m) * m


def fits(g) -> bool:
    """A 3x3 stride-1 conv of one group whose result times 4 fits int32 (see the module docstring)."""
    return applies(g) and g.C * 9 * 255 * 128 < 2 ** 29


def weight_shape(g, lanes: int) -> tuple:
    """U as transform_weight_numpy lays it out: (4, 4, K/L, C'/2, L, 2), K padded to L and C to even."""
    return (ALPHA, ALPHA, _pad(g.K, lanes) // lanes, _pad(g.C, 2) // 2, lanes, 2)


def transform_weight_numpy(w: np.ndarray, g, lanes: int) -> np.ndarray:
    """OIHW int8 -> U = (2G) w (2G)^T as int16, packed (weight_shape), padding zeros."""
    u = np.einsum("ar,kcrs,bs->abkc", np.array(G2), w.astype(np.int64), np.array(G2))
    _, _, Ko, Cq, L, _ = weight_shape(g, lanes)
    up = np.zeros((ALPHA, ALPHA, Ko * L, Cq * 2), np.int16)
    up[:, :, :g.K, :g.C] = u
    return np.ascontiguousarray(up.reshape(ALPHA, ALPHA, Ko, L, Cq, 2).transpose(0, 1, 2, 4, 3, 5))


def transform_weight(w: te.Tensor, g, lanes: int, name: str) -> te.Tensor:
    """transform_weight_numpy as a stage of the kernel (a weight that is not a constant)."""
    def f(e, nu, ko, cq, kl, ci):
        k, c = ko * lanes + kl, cq * 2 + ci

        def u(a: int, b: int):
            terms = [w[te.min_of(k, g.K - 1), te.min_of(c, g.C - 1), r, s].astype("int16") * G2[a][r] * G2[b][s]
                     for r in range(3) for s in range(3) if G2[a][r] * G2[b][s]]
            return sum(terms[1:], terms[0])
        v = _pick(e, [_pick(nu, [u(a, b) for b in range(ALPHA)]) for a in range(ALPHA)])
        return te.if_then_else(te.all(k < g.K, c < g.C), v, te.const(0, "int16"))
    return te.compute(weight_shape(g, lanes), f, name=f"{name}.u", tag="pack")


def conv2d_winograd_int8(x: te.Tensor, U: te.Tensor, g, bm: int, epilogue: Epilogue | None = None,
                         name: str = "conv2d_int8", attrs: dict | None = None) -> te.Tensor:
    """epilogue(int32 conv) of x uint8 NCHW by F(2x2, 3x3); U the int16 weight transform_weight(_numpy)
    gives; bm: tiles per register tile (the tiles padded to them)."""
    if not fits(g):
        raise ValueError(f"{name}: int8 Winograd takes 3x3 stride-1 convs of one group with at most "
                         f"1827 input channels, got {g}")
    _, _, Ko, Cq, L, _ = U.shape
    N, C, H, W, K = g.N, g.C, g.H, g.W, g.K
    TH, TW = -(-g.OH // 2), -(-g.OW // 2)
    P, Cp, Kp = N * TH * TW, Cq * 2, Ko * L
    Pp = _pad(P, bm)
    zero = te.const(0, "int16")

    # 1. the zero-padded input, channels last (channels padded to pairs), widened to int16
    def pack_f(n, h, w_, c):
        hh, ww = h - g.pt, w_ - g.pl
        inside = te.all(hh >= 0, hh < H, ww >= 0, ww < W, *([c < C] if Cp != C else []))
        src = x[n, te.min_of(c, C - 1), te.min_of(te.max_of(hh, 0), H - 1), te.min_of(te.max_of(ww, 0), W - 1)]
        return te.if_then_else(inside, src.astype("int16"), zero)
    xq = te.compute((N, TH * 2 + 2, TW * 2 + 2, Cp), pack_f, name=f"{name}.wpad", tag="winograd.pad")

    # 2. V = B^T d B, rows then columns (padding tiles re-read the last tile, never stored)
    def rows_f(a, nu, p, c):
        p = te.min_of(p, P - 1)
        n, th, tw = p // (TH * TW), (p // TW) % TH, p % TW
        return _pick(nu, [_combo(BT[v], lambda b: xq[n, th * 2 + a, tw * 2 + b, c]) for v in range(ALPHA)])
    d1 = te.compute((ALPHA, ALPHA, Pp, Cp), rows_f, name=f"{name}.din", tag="winograd.din")
    V = te.compute((ALPHA, ALPHA, Pp, Cp),
                   lambda e, nu, p, c: _pick(e, [_combo(BT[v], lambda a: d1[a, nu, p, c]) for v in range(ALPHA)]),
                   name=f"{name}.v", tag="winograd.v")

    # 3. 16 GEMMs on vpmaddwd
    rc = te.reduce_axis((0, Cp), name="rc")
    acc = te.compute((ALPHA, ALPHA, Pp, Kp), lambda e, nu, p, k: te.sum(
        V[e, nu, p, rc].astype("int32") * U[e, nu, k // L, rc // 2, k % L, rc % 2].astype("int32"), axis=rc),
        name=f"{name}.acc", tag="acc")
    M = te.compute((ALPHA, ALPHA, Pp, Kp), lambda e, nu, p, k: acc[e, nu, p, k], name=f"{name}.m", tag="winograd.m")

    # 4. Y = A^T M A / 4 (exact: see the module docstring), then the epilogue
    o1 = te.compute((2, ALPHA, Pp, Kp), lambda i, nu, p, k: _pick(i, [_combo(AT[r], lambda e: M[e, nu, p, k])
                                                                      for r in range(2)]),
                    name=f"{name}.o1", tag="winograd.o1")

    def out_f(n, k, h, w_):
        p = (n * TH + h // 2) * TW + w_ // 2
        v = _pick(w_ % 2, [_combo(AT[r], lambda nu: o1[h % 2, nu, p, k]) for r in range(2)])
        return apply_epilogue(epilogue, v // 4, (n, k, h, w_))
    return te.compute((N, K, g.OH, g.OW), out_f, name=name, tag=TAG,
                      attrs={"geometry": g, "bm": bm, "lanes": L, "flops": g.flops, **(attrs or {})})


# ---------------------------------------------------------------- knobs and schedule

def define_knobs(cfg, g, lanes: int, target: Target) -> None:
    """tile_p (tiles: GEMM rows) and tile_k (output channels: whole vectors) of the register tile."""
    Kp = _pad(g.K, lanes)
    bns = [lanes * v for v in (1, 2, 3, 4) if Kp % (lanes * v) == 0]
    acc = target.acc_vectors
    # the widest row of channel vectors, then as many tiles as the accumulators allow: each
    # broadcast V pair serves bn / L products (4 x 3 on AVX2's 12: 5-10% over 2 x 6 on
    # ResNet-50's and SqueezeNet's 3x3 shapes)
    bn = bns[-1]
    ps = [2, 3, 4, 6, 8, 12]
    cfg.define_knob("tile_k", bns, default=bn)
    cfg.define_knob("tile_p", ps, default=max([r for r in ps if r * bn // lanes <= acc] or [2]))
    cfg.define_constraint("register tile", lambda c: c["tile_p"].val * c["tile_k"].val // lanes <= acc)


def schedule(cfg, s: te.Schedule, out: te.Tensor, final: te.Tensor | None, target: Target, intrin: str) -> None:
    """The transforms as fp32's Winograd schedules them; the GEMMs as a register tile around `intrin`."""
    final = out if final is None else final
    attrs = out.op.attrs
    L, bm, bn = attrs["lanes"], cfg["tile_p"].val, cfg["tile_k"].val
    work = attrs["flops"] / 4
    o1 = input_stage(out, "winograd.o1")
    M = input_stage(o1, "winograd.m")
    acc = input_stage(M, "acc")
    V = input_stage(acc, "winograd.v")
    if final is not out:
        s[out].compute_inline()
    schedule_output(s, final, o1, 2, work, target.lanes("int32"))
    e, nu, p, k = s[M].op.axis
    po, ko, pi, ki = s[M].tile(p, k, bm, bn)
    tile = s[M].fuse(e, nu, po, ko)
    s[M].unroll(pi)
    s[M].vectorize(ki)
    parallel_if_worth(s[M], tile, work)
    s[acc].compute_at(s[M], tile)
    ae, anu, ap, ak = s[acc].op.axis
    (rc,) = s[acc].op.reduce_axis
    jv, jl = s[acc].split(ak, factor=L)
    co, cg = s[acc].split(rc, factor=2)
    s[acc].reorder(ae, anu, co, ap, jv, jl, cg)
    s[acc].unroll(ap)
    s[acc].unroll(jv)
    s[acc].tensorize(jl, intrin)
    schedule_input(s, V, work, target.lanes("int16"))
    u = input_stage(acc, "pack")
    if u is not None:               # the weight transformed in the kernel
        parallel_if_worth(s[u], s[u].op.axis[2], work)


@anchor(TAG)
def schedule_default(s: te.Schedule, out: te.Tensor, final: te.Tensor | None, target: Target) -> None:
    """The untuned schedule of an int8 Winograd conv (its intrinsic recorded in the op's attrs)."""
    from .knobs import FallbackConfig
    cfg = FallbackConfig()
    define_knobs(cfg, out.op.attrs["geometry"], out.op.attrs["lanes"], target)
    schedule(cfg, s, out, final, target, out.op.attrs["intrin"])


__all__ = ["conv2d_winograd_int8", "define_knobs", "fits", "schedule", "transform_weight",
           "transform_weight_numpy", "weight_shape"]
