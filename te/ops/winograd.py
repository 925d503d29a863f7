"""3x3 stride-1 convolutions by Winograd's minimal filtering F(m x m, 3 x 3), in NCHW.

A tile of m x m output pixels is computed from an (m+2) x (m+2) input tile:

    Y = A^T [ (G w G^T) . (B^T d B) ] A

The weight transform U = G w G^T runs once, at build time (`transform_weight_numpy`), and is
stored as alpha x alpha matrices [K, C] packed by `bn` output channels.  Per run:

1. `pack`: the input, channels last, [N, H, W, C] (a transpose of contiguous rows);
2. `input transform` V[e, nu, p, c] = (B^T d_p B)[e, nu] for every tile p (separable: rows, then
   columns; the constant matrices are folded into the code, see below), the padding's zeros a
   select on the tile's rows and columns;
3. alpha^2 independent GEMMs M[e, nu] (P x K) = V[e, nu] (P x C) @ U[e, nu] (C x K), register
   blocked as te.ops.matmul's packed GEMM;
4. `output transform` Y = A^T M_p A per tile, plus the epilogue, stored to NCHW.

With few input channels (`fused_pays`) steps 2 to 4 run together per block of tiles
(`schedule_fused`): V and M are then a few KiB per task instead of whole-map scratch.

F(4x4, 3x3) does 36 multiplies per 16 outputs and channel pair where the direct conv does 144.
The transforms cost per channel, not per channel pair, so the algorithm pays where channels
are many and the map is not tiny.

The transform matrices enter the expressions as `_pick(index, [row expressions])`: a chain of
selects on the (unrolled) transform index whose rows hold only the nonzero coefficients.  Code
generation decides a select whose condition it knows (te.codegen_llvm `_known`), so each
unrolled step emits just its row's sparse sum.
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction as F

import numpy as np

import te
from te.caches import FMAS_IN_FLIGHT
from te.target import Target
from te.tensor import IterVar

from .common import Epilogue, apply_epilogue, largest_divisor
from .schedule import anchor, input_stage, parallel_if_worth, register_block

# Lavin & Gray's matrices for the interpolation points 0, +-1, +-2 (F(4,3)) and 0, +-1 (F(2,3)),
# exact fractions so the weight transform is computed in float64 from exact values.
_MATRICES = {
    2: dict(
        AT=[[1, 1, 1, 0], [0, 1, -1, -1]],
        G=[[1, 0, 0], [F(1, 2), F(1, 2), F(1, 2)], [F(1, 2), F(-1, 2), F(1, 2)], [0, 0, 1]],
        BT=[[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]),
    4: dict(
        AT=[[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]],
        G=[[F(1, 4), 0, 0], [F(-1, 6), F(-1, 6), F(-1, 6)], [F(-1, 6), F(1, 6), F(-1, 6)],
           [F(1, 24), F(1, 12), F(1, 6)], [F(1, 24), F(-1, 12), F(1, 6)], [0, 0, 1]],
        BT=[[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0], [0, -2, -1, 2, 1, 0],
            [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]]),
}
TILE_SIZES = tuple(_MATRICES)


def matrices(m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(A^T, G, B^T) of F(m x m, 3 x 3) as float64 arrays."""
    if m not in _MATRICES:
        raise ValueError(f"winograd: output tile {m} is not supported; use one of {TILE_SIZES}")
    d = _MATRICES[m]
    return tuple(np.array([[float(v) for v in row] for row in d[k]]) for k in ("AT", "G", "BT"))


def applies(g) -> bool:
    """Can this conv (a conv2d.ConvGeometry) run as Winograd F(m, 3): 3x3, stride 1, no dilation, ungrouped."""
    return (g.R, g.S, g.sh, g.sw, g.dh, g.dw, g.groups) == (3, 3, 1, 1, 1, 1, 1)


def transform_weight_numpy(w: np.ndarray, m: int, bn: int) -> np.ndarray:
    """OIHW 3x3 weights -> U = G w G^T laid out [alpha, alpha, K/bn, C, bn] (K zero-padded)."""
    _, G, _ = matrices(m)
    K, C, R, S = w.shape
    if (R, S) != (3, 3):
        raise ValueError(f"winograd: the weight must be 3x3, got {R}x{S}")
    u = np.einsum("ar,kcrs,bs->abkc", G, w.astype(np.float64), G)
    Kp = -(-K // bn) * bn
    up = np.zeros(u.shape[:2] + (Kp, C))
    up[:, :, :K] = u
    a = m + 2
    return np.ascontiguousarray(up.reshape(a, a, Kp // bn, bn, C).transpose(0, 1, 2, 4, 3)).astype(w.dtype)


def in_kernel(func) -> bool:
    """Does a lowered kernel compute a Winograd conv (its channels-last padded input is a buffer)?"""
    from te.stmt import Allocate, walk_stmt
    names = [b.name for b in func.args] + [s.buffer.name for s in walk_stmt(func.body) if isinstance(s, Allocate)]
    return any(n.endswith(".wpad") for n in names)


def default_bn(g, target: Target) -> int:
    """Output channels per GEMM register tile: two vectors where the channels come in pairs of them."""
    lanes = target.lanes()
    return 2 * lanes if g.K % (2 * lanes) == 0 else lanes


def tiles(g, m: int) -> int:
    """The m x m output tiles of conv g: the rows of its GEMMs."""
    return g.N * -(-g.OH // m) * -(-g.OW // m)


TILE_ROWS = (2, 4, 6, 7, 8, 12, 14)      # the tile_bm knob's options: tiles (GEMM rows) per register tile


def default_bm(bn: int, target: Target, C: int = 0, K: int = 0, P: int = 0) -> int:
    """Tiles (GEMM rows) per register tile: the most whose accumulators fit the target's registers
    (14 x 2 vectors with AVX-512's 28 accumulators, 6 x 2 with AVX2's 12), among the TILE_ROWS
    that pad the P tiles (when known) at most an eighth more than the least-padding one.

    A register tile's step over one input channel loads bm broadcasts of V and `vectors`
    vectors of U for bm x vectors FMAs, and every row tile re-reads its block of U (C x bn
    floats).  The GEMMs run their channel blocks outside the row tiles (schedule_gemm), so a
    block comes from memory (a model's weights, conv_algorithm.py) for the first row tile and
    from L1 for the others; more rows mean fewer loads per FMA (14 x 2: 16 loads per 28 FMAs,
    6 x 2: 8 per 12) and fewer passes over U (4 instead of 9 on ResNet-50's 49 tiles of 14x14
    and 28x28 maps).  The padding bounds it: 16 tiles (F(4x4) on 14x14) take 8 rows, not 14
    (28 rows computed), and 49 tiles (F(2x2) on 14x14, F(4x4) on 28x28: 7 x 7) take 7, not 14
    (56 rows: every stage, transforms included, runs over the padded rows): 7 x 2 accumulators
    are still 14 independent FMA chains, more than two FMA units of 4-cycle latency need, and 9
    loads per 14 FMAs stay within two load ports on any AVX-512 core.  Measured in ResNet-50's
    order (bench/conv_in_model.py, one thread's CPU time, loaded machine, rough), 7 rows against
    14: 256 -> 256 at 14x14 (F(2x2)) 1.04-1.08x on its 5 calls, 128 -> 128 at 28x28 (F(4x4))
    1.11-1.14x on its 3.  Measured in ResNet-50's order on Emerald Rapids (bench/conv_in_model.py,
    one thread's CPU time, a loaded machine, rough), 14 rows against 6: 256 -> 256 at 14x14
    (F(2x2)) 1.09-1.14x on each of its 5 calls, 128 -> 128 at 28x28 (F(4x4)) 1.06-1.10x on its
    3; with default_tile_k's 8 as well 1.17-1.26x and 1.11-1.15x, alone with warm weights 1.07x
    and 1.05x; the tuner's records for the 14x14 convs had chosen 14 rows and 8 too.  `C` and `K` are accepted for the callers' sake: the rule no longer
    depends on where U comes from.

    First, a tile must hold FMAS_IN_FLIGHT accumulators (8: two FMA ports of 4-cycle latency)
    where the registers allow it: the padding bound alone took 2 rows x 2 vectors for the 9
    tiles of F(4x4) on a 12x12 map (10 rows computed, not 12), 4 independent FMA chains that
    keep the ports half idle.  Measured on Zen 3 (AVX2, two threads, bench/conv_weak.py's timing,
    weights cold), 6 rows against 2 on F(4x4) at 12x12 maps: AlexNet's 256 -> 384 1.26x, ZFNet's
    256 -> 512 1.24x and 512 -> 512 1.25x (4 rows: 1.18-1.19x); the tuner's records had chosen
    4 or 6 rows there too.  The latency and the ports are those of every x86 core this project meets."""
    vectors = -(-bn // target.lanes())
    fits = [r for r in TILE_ROWS if r * vectors <= target.acc_vectors] or [min(TILE_ROWS)]
    fits = [r for r in fits if r * vectors >= FMAS_IN_FLIGHT] or fits
    if P:
        least = min(-(-P // r) * r for r in fits)
        fits = [r for r in fits if -(-P // r) * r * 8 <= least * 9]
    return max(fits)


@dataclass(frozen=True)
class WinogradWeight:
    """A weight transformed and packed by transform_weight_numpy; `shape` is the logical OIHW shape."""
    tensor: te.Tensor
    shape: tuple[int, int, int, int]
    m: int

    @property
    def bn(self) -> int:
        return int(self.tensor.shape[-1])

    @property
    def dtype(self) -> str:
        return self.tensor.dtype


def _combo(coeffs, get):
    """sum_k coeffs[k] * get(k) over the nonzero coefficients (no multiply for +-1)."""
    total = None
    for k, c in enumerate(coeffs):
        if c == 0:
            continue
        v = get(k)
        if c == -1:
            total = -v if total is None else total - v
            continue
        term = v if c == 1 else v * te.const(float(c), v.dtype)
        total = term if total is None else total + term
    return total


def _bt4_rows(d, k):
    """B^T d of F(4x4)'s rows, factored so that rows share their sums (d1 + d2, d4 - d2, ...):
    14 adds and multiply-adds for the 6 rows where each row's own sparse sum takes 22.
    `k(c, like)` makes the constant c (a te.const, or a float for numpy).

    Fewer operations on any core (the transforms are a quarter of an F(4x4) conv's time alone).
    LLVM does not reassociate floating-point sums (no fast-math), so it cannot find the shared
    sums in the sparse form; spelled out, its common-subexpression elimination merges them.
    Measured against the sparse sums (one thread's CPU time, loaded machine, rough): the input transform's arithmetic 252 -> 216 instructions per tile and channel
    vector, fewer spills (183 -> 166); in ResNet-50's order 64 -> 64 at 56x56 1.05x and
    128 -> 128 at 28x28 1.03x (its three calls together)."""
    s12, d12, s34, d43, d42, d31 = d[1] + d[2], d[1] - d[2], d[3] + d[4], d[4] - d[3], d[4] - d[2], d[3] - d[1]
    return [(d[4] - d[2] * k(5, d[2])) + d[0] * k(4, d[0]), s34 - s12 * k(4, s12), d43 + d12 * k(4, d12),
            d42 + d31 * k(2, d31), d42 - d31 * k(2, d31), (d[5] - d[3] * k(5, d[3])) + d[1] * k(4, d[1])]


def _at4_rows(t, k):
    """A^T t of F(4x4)'s rows, factored the same way (t1 + t2, t3 - t4, ...)."""
    s12, d12, s34, d34 = t[1] + t[2], t[1] - t[2], t[3] + t[4], t[3] - t[4]
    return [t[0] + s12 + s34, d12 + d34 * k(2, d34), s12 + s34 * k(4, s34), d12 + d34 * k(8, d34) + t[5]]


_FACTORED = {("BT", 4): _bt4_rows, ("AT", 4): _at4_rows}


def _te_const(c, like):
    return te.const(float(c), like.dtype)


def _rows(name: str, m: int, get, n: int):
    """The rows of F(m)'s matrix `name` ("AT" or "BT") applied to get(0 .. n-1): factored where
    _FACTORED has them, else each row's sparse sum (_combo).  The unrolled steps each emit one
    row; LLVM's common-subexpression elimination shares the sums between them (the same
    operations on the same values: no reassociation, so no fast-math needed)."""
    f = _FACTORED.get((name, m))
    if f is not None:
        return f([get(j) for j in range(n)], _te_const)
    mat = dict(zip(("AT", "G", "BT"), matrices(m)))[name]
    return [_combo(row, get) for row in mat]


def _pick(index, exprs):
    """exprs[index] as a chain of selects (folded by code generation when index is known)."""
    if isinstance(index, IterVar):
        index = index.var
    out = exprs[-1]
    for k in range(len(exprs) - 2, -1, -1):
        out = te.if_then_else(index == k, exprs[k], out)
    return out


def conv2d_winograd(x: te.Tensor, w: WinogradWeight | te.Tensor, g, bias: te.Tensor | None = None,
                    epilogue: Epilogue | None = None, m: int = 4, bn: int = 16, bm: int = 8,
                    name: str = "conv2d") -> te.Tensor:
    """The conv of geometry g (applies(g) must hold) by F(m x m, 3 x 3); `w` pre-transformed, or
    OIHW (then transformed inside the kernel, for tests)."""
    from .conv_geometry import bias_at, check_bias
    if not applies(g):
        raise ValueError(f"{name}: winograd needs a 3x3 stride-1 ungrouped conv without dilation")
    check_bias(bias, g.K, name)
    alpha = m + 2
    N, C, H, W, K = g.N, g.C, g.H, g.W, g.K
    TH, TW = -(-g.OH // m), -(-g.OW // m)
    P = N * TH * TW
    Pp = -(-P // bm) * bm
    Kp = -(-K // bn) * bn
    dtype = x.dtype
    if isinstance(w, WinogradWeight):
        if (w.m, w.bn) != (m, bn):
            raise ValueError(f"{name}: the weight is transformed for F({w.m}) by {w.bn} channels, "
                             f"the kernel wants F({m}) by {bn}")
        U = w.tensor
    else:
        U = _transform_weight(w, m, bn, Kp, name)

    # 1. the input channels last (no padding: a transpose of contiguous rows): tiles read whole
    # channel vectors; the padding is the row transform's select
    xq = te.compute((N, H, W, C), lambda n, h, w_, c: x[n, c, h, w_], name=f"{name}.wpad", tag="winograd.pad")

    def padded(n, h, w_, c):
        hh, ww = h - g.pt, w_ - g.pl
        inside = te.all(hh >= 0, hh < H, ww >= 0, ww < W)
        src = xq[n, te.min_of(te.max_of(hh, 0), H - 1), te.min_of(te.max_of(ww, 0), W - 1), c]
        return te.if_then_else(inside, src, te.const(0, dtype))

    # 2. input transform, rows then columns
    def tile_of(p):
        p = te.min_of(p, P - 1)
        return p // (TH * TW), (p // TW) % TH, p % TW

    def rows_f(a, nu, p, c):
        n, th, tw = tile_of(p)
        return _pick(nu, _rows("BT", m, lambda b: padded(n, th * m + a, tw * m + b, c), alpha))
    d1 = te.compute((alpha, alpha, Pp, C), rows_f, name=f"{name}.din", tag="winograd.din")
    V = te.compute((alpha, alpha, Pp, C),
                   lambda e, nu, p, c: _pick(e, _rows("BT", m, lambda a: d1[a, nu, p, c], alpha)),
                   name=f"{name}.v", tag="winograd.v")

    # 3. alpha^2 GEMMs
    rc = te.reduce_axis((0, C), name="rc")
    acc = te.compute((alpha, alpha, Pp, Kp),
                     lambda e, nu, p, k: te.sum(V[e, nu, p, rc] * U[e, nu, k // bn, rc, k % bn], axis=rc),
                     name=f"{name}.acc", tag="winograd.acc")
    M = te.compute((alpha, alpha, Pp, Kp), lambda e, nu, p, k: acc[e, nu, p, k], name=f"{name}.m",
                   tag="winograd.m")

    # 4. output transform, rows then columns, and the epilogue
    def o1_f(i, nu, p, k):
        return _pick(i, _rows("AT", m, lambda e: M[e, nu, p, k], alpha))
    o1 = te.compute((m, alpha, Pp, Kp), o1_f, name=f"{name}.o1", tag="winograd.o1")

    def out_f(n, k, h, w_):
        p = (n * TH + h // m) * TW + w_ // m
        v = _pick(w_ % m, _rows("AT", m, lambda nu: o1[h % m, nu, p, k], alpha))
        if bias is not None:
            v = v + bias_at(bias, k)
        return apply_epilogue(epilogue, v, (n, k, h, w_))
    return te.compute((N, K, g.OH, g.OW), out_f, name=name, tag="conv2d_winograd",
                      attrs={"geometry": g, "m": m, "bn": bn, "bm": bm, "flops": g.flops})


def _transform_weight(w: te.Tensor, m: int, bn: int, Kp: int, name: str) -> te.Tensor:
    """U = G w G^T inside the kernel (tests and one-off builds; models transform at build time)."""
    _, G, _ = matrices(m)
    K, C = w.shape[:2]
    alpha = m + 2
    r = te.reduce_axis((0, 3), name="r")
    s = te.reduce_axis((0, 3), name="s")

    def gw(e, k, c, s_):          # G w, along the rows
        return te.sum(_pick(e, [_pick(r, [te.const(float(G[e_][j]), w.dtype) for j in range(3)])
                                for e_ in range(alpha)]) * w[te.min_of(k, K - 1), c, r, s_], axis=r)
    t = te.compute((alpha, Kp, C, 3), gw, name=f"{name}.gw")

    def ggt(e, nu, ko, c, ki):
        # channels past K (padding) transform a copy of the last one: computed, never stored
        return te.sum(t[e, ko * bn + ki, c, s] * _pick(nu, [_pick(s, [te.const(float(G[n_][j]), w.dtype)
                                                                       for j in range(3)])
                                                             for n_ in range(alpha)]), axis=s)
    return te.compute((alpha, alpha, Kp // bn, C, bn), ggt, name=f"{name}.u")


@anchor("conv2d_winograd")
def schedule_winograd_default(s: te.Schedule, out: te.Tensor, final: te.Tensor | None, target: Target) -> None:
    """The untuned schedule of a conv2d_winograd output."""
    schedule_winograd(s, out, final, target)


def default_tile_k(C: int, fused: bool = True) -> int:
    """Input channels per unrolled GEMM step: 4 where the GEMMs run fused with the output
    transform (schedule_fused, few channels), 16 where they run on their own (schedule_gemm).

    An unrolled step of 8 channels issues the 16 U vectors (1 KiB, contiguous) and 8 x bm
    broadcasts of V of its 8 x bm x vectors FMAs together, twice as far ahead of their use as a
    step of 4, and halves the loop's overhead.  Measured in ResNet-50's order (Emerald Rapids,
    bench/conv_in_model.py, one thread's CPU time, a loaded machine, rough), 8 against 4 with 6
    rows: 256 -> 256 at 14x14 (F(2x2)) 1.07-1.12x, 128 -> 128 at 28x28 (F(4x4)) 1.08-1.10x; with
    default_bm's 14 rows 1.07-1.10x and 1.03-1.05x more.  The fused GEMMs (C <= 64) keep 4:
    8 ran as fast there (64 -> 64 at 56x56, in the model's order: 1.00-1.02x).  With 7 rows
    (default_bm, 49 tiles) 16 against 8, in ResNet-50's order (same conditions, two runs, the
    builds' order swapped): 256 -> 256 at 14x14 1.07x and 1.07x, 128 -> 128 at 28x28 1.04x and
    1.03x (each shape's calls together); 1.03-1.04x alone with warm weights.  A step of 16 is
    224 FMAs and 32 U vectors (2 KiB, one contiguous run the L1 streamer follows) of straight
    code: its size, not the registers (the accumulators stay bm x vectors), is what grows, a
    few KiB against every x86 core's 32 KiB L1i."""
    return largest_divisor(C, 4 if fused else 16)


def runs_fused(g, m: int, bn: int, target: Target) -> bool:
    """Does the untuned schedule run the GEMMs fused with the output transform (schedule_fused)?"""
    return fused_pays(g) and fused_row_tiles(g, m, bn, target) > 0


def schedule_winograd(s: te.Schedule, out: te.Tensor, final: te.Tensor | None, target: Target,
                      tile_k: int | None = None, fused: bool | None = None) -> None:
    """Schedule conv2d_winograd's output (and the elementwise ops fused after it): the GEMMs and the
    output transform per block of tiles (schedule_fused) where `fused` (None: fused_pays), else
    each stage over the whole map."""
    final = out if final is None else final
    attrs = out.op.attrs
    g, m, bn, bm = attrs["geometry"], attrs["m"], attrs["bn"], attrs["bm"]
    o1 = input_stage(out, "winograd.o1")
    M = input_stage(o1, "winograd.m")
    acc = input_stage(M, "winograd.acc")
    V = input_stage(acc, "winograd.v")
    work = g.flops / 4
    if final is not out:
        s[out].compute_inline()
    row_tiles = fused_row_tiles(g, m, bn, target)
    if (fused_pays(g) if fused is None else fused) and row_tiles:
        task = schedule_fused(s, final, o1, M, acc, m, bn, row_tiles, tile_k or default_tile_k(g.C), work,
                              target.lanes())
        schedule_input(s, V, work, target.lanes(), at=(final, task), rows=True)
        return
    schedule_output(s, final, o1, m, work, target.lanes(), target.threads)
    schedule_gemm(s, M, acc, bm, bn, tile_k or default_tile_k(g.C, fused=False), work)
    schedule_input(s, V, work, target.lanes(), rows=True)


# Input channels up to which the GEMMs and the output transform run fused (schedule_fused)
FUSED_MAX_CHANNELS = 64


def fused_pays(g) -> bool:
    """Do the GEMMs and the output transform run per block of tiles (schedule_fused)?  Where the
    conv has few input channels.  Run one after the other, the GEMMs write M (alpha^2 values per
    tile and output channel) and the output stage reads it back, half of it from the other core's
    L2 (the GEMMs split by transform position, the output by tiles); per multiply-add that round
    trip costs 4 bytes / C (a GEMM does C multiply-adds per value of M).  Fused, M stays in the
    registers and L1 of the core that made it, but each thread re-reads all of U (C x K x alpha^2
    floats) once per row of tiles, which stays in its L2 only while C is small.  Measured on
    Emerald Rapids, 2 threads (rough, a busy machine): alone 15-25% faster at C = 16-64, even or
    a little slower at C = 128-256 with the channel blocks split first; in the models, every
    SqueezeNet 3x3 conv faster (its 8 calls ~1.12 -> ~0.83 ms) and ResNet-50 not slower.  Why it
    carries to other CPUs: the round trip is 4 / C bytes per multiply-add on any core, against an
    L2 that feeds 32-64 bytes a cycle to 2 FMA units (Zen 4/5, Ice Lake, Emerald Rapids alike) and
    a cross-core line costing several L2 hits; U at C <= 64 is at most 1 MiB for K <= 256 (F(2x2))
    and 0.6 MiB for 64 -> 64 (F(4x4)), within the L2 of Ice Lake (1.25 MiB) and Emerald Rapids
    (2 MiB), at the size of Zen 4's (1 MiB, its L3 close behind)."""
    return g.C <= FUSED_MAX_CHANNELS


def fused_row_tiles(g, m: int, bn: int, target: Target) -> int:
    """Tiles per GEMM register tile when the GEMMs run per block of a row of tiles (schedule_fused):
    the largest divisor of the tiles per row, at most 8, that fits the registers; 0 if under 4."""
    tw = -(-g.OW // m)
    vectors = -(-bn // target.lanes())
    fits = [d for d in range(1, 9) if tw % d == 0 and d * vectors <= target.acc_vectors]
    return max(fits) if fits and max(fits) >= 4 else 0


def schedule_fused(s, final, o1, M, acc, m: int, bn: int, bt: int, tile_k: int, work: float, lanes: int):
    """All three stages per task, a block of `bt` tiles of one row of tiles: its transformed input
    V (bt x alpha^2 x C floats: 63 KiB for 7 tiles of F(4x4) at C = 64, a stack buffer in L1/L2),
    then per block of `bn` output channels its alpha^2 products M (bt x bn each, in registers,
    then a few KiB of scratch that stays in L1) and at once the output pixels from them.  The
    threads split the tasks (rows of tiles first): V and M never leave the core that computed
    them, and each thread writes whole rows of the output, as the 1x1 convs after it read them
    (schedule.rows_split_pays).  The price: each task reads all of U from L2 (at most 1 MiB with
    <= 64 input channels, `fused_pays`).  Returns the task loop (where V is computed).

    V per task instead of over the whole map (a parallel stage of its own before): the whole V is
    2.25x the input (1.8 MB for 64 -> 64 at 56x56, F(4x4)), written to a model's workspace from
    memory and read back; per task it stays in the core's caches.  Measured on Emerald Rapids,
    one thread's CPU time, rough (a loaded machine): alone 1.10x on 64 -> 64 at 56x56, SqueezeNet's
    shapes 0.97-1.02x (noise); in ResNet-50's order (its three 64 -> 64 at 56x56) 1.12-1.16x, and
    the first stage's 14 kernels 3.5% faster together.  The caches it relies on (an L1 of 32-48
    KiB, an L2 of 1-2 MiB per core) are those of every AVX-512/AVX2 core tilewise targets.  V per
    row of tiles (all channel blocks of the row after it, a heap block of 126 KiB) measured the
    same; splitting the channel blocks first (each thread half of U) ran slower in SqueezeNet and
    ResNet-50 (rough)."""
    n, k, h, w_ = s[final].op.axis
    th, i = s[final].split(h, factor=m)
    tw, j = s[final].split(w_, factor=m)
    two, twi = s[final].split(tw, factor=bt)
    kb, kin = s[final].split(k, factor=bn)
    kv, ki = s[final].split(kin, factor=lanes)
    s[final].reorder(n, th, two, kb, twi, kv, i, j, ki)
    task = s[final].fuse(n, th, two)
    parallel_if_worth(s[final], task, work)
    s[final].unroll(i)
    s[final].unroll(j)
    s[final].vectorize(ki)
    s[M].compute_at(s[final], kb)
    e, nu, p, kk = s[M].op.axis
    s[acc].compute_at(s[M], nu)
    register_block(s, acc, tile_k)
    s[M].unroll(p)
    s[M].vectorize(kk)
    s[o1].compute_at(s[final], kv)
    oi, onu, op_, ok = s[o1].op.axis
    s[o1].unroll(oi)
    s[o1].unroll(onu)
    s[o1].vectorize(ok)
    return task


def schedule_output(s, final, o1, m: int, work: float, lanes: int, threads: int = 1) -> None:
    """Per tile and one vector of output channels: o1 (A^T M) in registers, then Y and the epilogue.
    The threads split the rows of tiles (whole rows: contiguous output) when those share out
    evenly, else the tiles: a 27x27 map in 4x4 tiles has 7 rows of tiles, 4 and 3 for two
    threads, but 49 tiles, 25 and 24."""
    n, k, h, w_ = s[final].op.axis
    rows = n.dom[1] * -(-h.dom[1] // m)
    th, i = s[final].split(h, factor=m)
    tw, j = s[final].split(w_, factor=m)
    ko, ki = s[final].split(k, factor=lanes)
    s[final].reorder(n, th, tw, ko, i, j, ki)
    s[final].unroll(i)
    s[final].unroll(j)
    s[final].vectorize(ki)
    even = rows % threads == 0 or rows >= 8 * threads
    parallel_if_worth(s[final], s[final].fuse(n, th) if even else s[final].fuse(n, th, tw), work)
    s[o1].compute_at(s[final], ko)
    oi, onu, op_, ok = s[o1].op.axis
    s[o1].unroll(oi)
    s[o1].unroll(onu)
    s[o1].vectorize(ok)


def schedule_gemm(s, M, acc, bm: int, bn: int, tile_k: int, work: float) -> None:
    """The alpha^2 GEMMs: bm tiles x bn channels accumulated in registers, the channel blocks
    outside the row tiles.

    In a model each position's U[e, nu] (C x K floats: 256 KiB for 256 -> 256) comes from memory
    (conv_algorithm.py), and each of its blocks (C x bn floats) is read once per row tile.  With
    the row tiles outermost, the first row tile reads the whole U[e, nu] from memory at one
    64-byte vector per bm FMAs (21 bytes a cycle with 6 rows at two FMAs a cycle), well above
    what one core's misses fetch (conv_algorithm.COLD_BYTES_PER_CYCLE: 8), and the other row
    tiles re-read it from L2 with the bus idle.  With the channel blocks outermost a block (32
    KiB with 256 channels and two-vector blocks, 16 KiB with 128) is read from memory by its
    first row tile and from L1 by the others, so the stream spreads over the whole GEMM (the L2
    streamer and te/prefetch.py fetch ahead within it); the price is re-reading the transformed
    input V[e, nu] (P x C floats, 55 KiB at 14x14 with F(2x2)) from L2 once per block: 4 / bn
    bytes per multiply-add, 4 bytes a cycle, within every core's L2 rate.  Either way the
    parallel loop's static shares split the positions first, so each thread reads the same half
    of U.  Measured in ResNet-50's order (bench/conv_in_model.py, one thread's CPU time, a
    loaded machine, rough): 256 -> 256 at 14x14 (F(2x2)) 1.02-1.06x on each of its 5 calls,
    128 -> 128 at 28x28 (F(4x4)) 1.01-1.08x; alone with warm weights 1.02x."""
    e, nu, p, kk = s[M].op.axis
    po, ko, pi, ki = s[M].tile(p, kk, bm, bn)
    s[M].reorder(ko, po)
    tile = s[M].fuse(e, nu, ko, po)
    s[acc].compute_at(s[M], tile)
    register_block(s, acc, tile_k)
    s[M].unroll(pi)
    s[M].vectorize(ki)
    parallel_if_worth(s[M], tile, work)


def schedule_input(s, V, work: float, lanes: int, at=None, rows: bool = False) -> None:
    """Per tile and one vector of channels: the row transform in registers, then V; the pack before.
    `at` (stage, axis): V computed there (the tiles of a task, schedule_fused), else over the whole
    map in parallel.  `rows`: the pack reads plain NCHW rows (schedule_pack)."""
    d1 = input_stage(V, "winograd.din")
    xq = input_stage(d1, "winograd.pad")
    e, nu, p, c = s[V].op.axis
    co, ci = s[V].split(c, factor=lanes)
    s[V].reorder(p, co, e, nu, ci)
    s[V].unroll(e)
    s[V].unroll(nu)
    s[V].vectorize(ci)
    if at is None:
        parallel_if_worth(s[V], p, work)
    else:
        s[V].compute_at(s[at[0]], at[1])
    s[d1].compute_at(s[V], co)
    a, dnu, dp, dc = s[d1].op.axis
    s[d1].unroll(a)
    s[d1].unroll(dnu)
    s[d1].vectorize(dc)
    schedule_pack(s, xq, work, lanes, rows)


def schedule_pack(s, xq, work: float, lanes: int, rows: bool) -> None:
    """The channels-last input, per row: a vector of channels at a time (gathered from as many
    planes), or where it reads plain NCHW rows (`rows`: fp32's, unpadded) up to `lanes` columns
    unrolled (a divisor of the row: no guard), which code generation loads as contiguous runs of
    the columns and transposes in registers (te/codegen_rows.py, transposed loads).

    Unpadded, the zeros of the padding are the row transform's select instead (a compare and a
    blend per input vector).  Measured against the padded, gathered pack (one thread, a loaded
    machine, rough): the pack alone 112 -> 30 us on 64 x 56x56, 57 -> 17 on 128 x 28x28, 29 -> 10
    on 256 x 14x14; the whole conv alone 1.14x on 64 -> 64 at 56x56 and SqueezeNet's 16 -> 64 at
    55x55, 1.04x on 128 -> 128 at 28x28, 1.01x on 256 -> 256 at 14x14; in ResNet-50's order
    (CPU time) 1.04x on each of its three Winograd shapes (all calls together).  A gather of 16
    lanes costs about as much as 16 loads on every x86 core (Zen 4's and Intel's alike), a
    transpose a few shuffles a vector."""
    n, hh, ww, c = s[xq].op.axis
    co, ci = s[xq].split(c, factor=lanes)
    if rows:
        wo, wi = s[xq].split(ww, factor=largest_divisor(int(ww.dom[1]), lanes))
        s[xq].reorder(n, hh, co, wo, wi, ci)
        s[xq].unroll(wi)
    else:
        s[xq].reorder(n, hh, co, ww, ci)
    s[xq].vectorize(ci)
    parallel_if_worth(s[xq], s[xq].fuse(n, hh), work)



