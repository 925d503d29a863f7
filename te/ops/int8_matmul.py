"""int8 matmul / dense: A uint8 (M, K) times B int8 (K, N) or W int8 (N, K) into int32, by the CPU's
dot-product instructions (te/tensorize.py), with an epilogue (an int8 anchor computes
the int32 sum of products only; zero points, scales and requantisation are the epilogue).

The weight is packed `(N/L, K/G, L, G)`: for each block of L columns, G consecutive k of a
column side by side, which is the layout vpdpbusd (G = 4) and vpmaddwd (G = 2) read as one
vector and AMX's tdpbusd reads as a tile row (L = 16, G = 4); for vpmaddwd its values are
widened to int16 when packed, so the inner loop loads them as they are (te/tensorize_dot.py).
Two schedules:

* vector (`vpdpbusd`, `pmaddwd`): a bm x bn tile of the int32 accumulator in vector registers,
  rows unrolled, bn/L vectors per row, one instruction per row and vector per G k; the epilogue
  runs on the registers before the one store;
* AMX: a bm x bn block (16 or 32 each) of the accumulator in up to four tiles over the whole K,
  stored to a block in L1 that the epilogue reads; A's tiles loaded where A lies when it is a
  buffer of whole tiles, else from a copy of A in whole 16 x 64 tiles (rows and K padded with
  zeros) made once per call; B's panels in column chunks that fit L2 (define_amx_knobs says
  why these sizes).
"""
from __future__ import annotations

import numpy as np

import te
from te.caches import FILL
from te.runtime import aligned_copy
from te.target import Target
from te.tensor import PlaceholderOp

from .common import Epilogue, apply_epilogue, largest_divisor
from .schedule import anchor, input_stage, parallel_if_worth

TAG = "matmul_int8"
AMX_LANES, AMX_K = 16, 64           # a tile's columns of C, and its k per tdpbusd
CHUNKS = (0, 128, 256, 512)         # the chunk knob: rows or columns of the inner tile loop per pass (0: all)


def _pad(n: int, m: int) -> int:
    return -(-n // m) * m


def packed_shape(N: int, K: int, lanes: int, group: int, k_multiple: int = 0) -> tuple[int, int, int, int]:
    """The shape pack_weight_numpy gives: (N/lanes, K/group, lanes, group), N padded with zero
    columns (and K with zero rows to a multiple of k_multiple, if given)."""
    Kp = _pad(K, k_multiple) if k_multiple else K
    return (_pad(N, lanes) // lanes, Kp // group, lanes, group)


def pack_weight_numpy(w: np.ndarray, lanes: int, group: int, transpose_b: bool, dtype: str = "int8",
                      k_multiple: int = 0) -> np.ndarray:
    """B (K, N) int8, or W (N, K) with transpose_b, packed as (N/lanes, K/group, lanes, group) of
    dtype (int8, or int16 for vpmaddwd), 64-byte aligned (each tile or vector row one cache line);
    with k_multiple (AMX: 64) K is padded with zero rows to a multiple of it."""
    b = w.T if transpose_b else w
    K, N = b.shape
    if K % group and not k_multiple:
        raise ValueError(f"int8 weight of shape {w.shape}: K = {K} is not a multiple of {group}")
    Np, Kp = _pad(N, lanes), packed_shape(N, K, lanes, group, k_multiple)[1] * group
    bp = np.zeros((Kp, Np), dtype)
    bp[:K, :N] = b
    return aligned_copy(bp.reshape(Kp // group, group, Np // lanes, lanes).transpose(2, 0, 3, 1))


def pack_weight(B: te.Tensor, lanes: int, group: int, transpose_b: bool, name: str,
                dtype: str = "int8", k_multiple: int = 0) -> te.Tensor:
    """pack_weight_numpy as a stage of the kernel (for a weight that is not a constant)."""
    K, N = (B.shape[1], B.shape[0]) if transpose_b else B.shape
    No, Kg, _, _ = packed_shape(N, K, lanes, group, k_multiple)

    def f(jo, kq, jl, g):
        j, k = jo * lanes + jl, kq * group + g
        jc, kc = te.min_of(j, N - 1), (k if Kg * group == K else te.min_of(k, K - 1))
        v = B[jc, kc] if transpose_b else B[kc, jc]
        v = v if dtype == "int8" else v.astype(dtype)
        inside = ([j < N] if No * lanes != N else []) + ([k < K] if Kg * group != K else [])
        return te.if_then_else(te.all(*inside), v, te.const(0, dtype)) if inside else v
    return te.compute((No, Kg, lanes, group), f, name=f"{name}.packed", tag="pack")


def matmul_int8(A: te.Tensor, Bp: te.Tensor, N: int, epilogue: Epilogue | None = None, bm: int = 1,
                name: str = "matmul_int8", attrs: dict | None = None, tile_a: bool = False) -> te.Tensor:
    """epilogue(int32 A @ B): A uint8 (M, K), Bp the int8 weight packed (N/L, K/G, L, G) (as int8,
    or as int16 for vpmaddwd); with `tile_a` (AMX, where amx_tiles_in_place says no) A is first
    copied into whole 16 x 64 tiles, rows and K padded with zeros."""
    M, K = A.shape
    if A.dtype != "uint8" or Bp.dtype not in ("int8", "int16"):
        raise ValueError(f"{name}: int8 matmul takes A uint8 and B int8 (packed as int8 or int16), "
                         f"got {A.dtype} and {Bp.dtype}")
    acc = acc_int8(lambda i, k: A[i, k], M, K, Bp, bm, name, tile_a)
    L, G = Bp.shape[2:]
    return te.compute((M, N), lambda i, j: apply_epilogue(epilogue, acc[i, j], (i, j)), name=name, tag=TAG,
                      attrs={"M": M, "N": N, "K": K, "lanes": L, "group": G, **(attrs or {})})


def amx_tiles_in_place(A: te.Tensor) -> bool:
    """Can the AMX kernel load A's tiles where A lies (16 rows of 64 bytes at A's row stride)
    rather than from a copy of A in whole tiles?  Where A is an argument (a buffer, not a stage
    to inline) of whole tiles: M by 16 and K by 64, so that no tile reads past A's end.  The
    copy costs a pass over A per call (10-15% of a 1024^3 GEMM); loaded in place, a tile row is
    one cache line when A is 64-byte aligned, as a model's buffers are (a JIT caller's array
    may need te.runtime.aligned_copy)."""
    M, K = A.shape
    return isinstance(A.op, PlaceholderOp) and M % AMX_LANES == 0 and K % AMX_K == 0


def acc_int8(a_at, M: int, K: int, Bp: te.Tensor, bm: int, name: str, tile_a: bool) -> te.Tensor:
    """acc[i, j] = sum_k int32(a_at(i, k)) * int32(B[k, j]) over M padded to bm rows (and to
    whole tiles with tile_a: padding rows and k read as 0, K padded to whole tiles as the
    weight is), B packed (N/L, K/G, L, G)."""
    No, Kg, L, G = Bp.shape
    Kp = _pad(K, AMX_K) if tile_a else K
    if Kg * G != Kp:
        raise ValueError(f"{name}: the GEMM's K = {K} does not match the packed weight {Bp.shape} (K = {Kg * G})")
    k = te.reduce_axis((0, Kp), name="k")
    if tile_a:
        T, KT = AMX_LANES, AMX_K
        Mp = _pad(M, T)

        def tile(io, ko, ii, kk):
            i, kx = io * T + ii, ko * KT + kk
            v = a_at(te.min_of(i, M - 1) if Mp != M else i, te.min_of(kx, K - 1) if Kp != K else kx)
            inside = ([i < M] if Mp != M else []) + ([kx < K] if Kp != K else [])
            return te.if_then_else(te.all(*inside), v, te.const(0, "uint8")) if inside else v
        At = te.compute((Mp // T, Kp // KT, T, KT), tile, name=f"{name}.atiles", tag="pack_a")

        def a_read(i, kx):
            return At[i // T, kx // KT, i % T, kx % KT]
    else:
        Mp = _pad(M, bm)

        def a_read(i, kx):      # padding rows re-read the last row, and are never stored
            return a_at(i if Mp == M else te.min_of(i, M - 1), kx)

    def acc_f(i, j):
        return te.sum(a_read(i, k).astype("int32") * Bp[j // L, k // G, j % L, k % G].astype("int32"), axis=k)
    return te.compute((Mp, No * L), acc_f, name=f"{name}.acc", tag="acc")


# ---------------------------------------------------------------- knobs and schedules

def column_blocks(N: int, lanes: int, most: int) -> list[int]:
    """Column blocks of whole vectors that divide N (padded to lanes), up to `most` columns."""
    Np = _pad(N, lanes)
    return [b for b in range(lanes, most + 1, lanes) if Np % b == 0] or [lanes]


def define_vector_knobs(cfg, M: int, N: int, K: int, lanes: int, target: Target) -> None:
    """tile_n (columns: whole vectors), tile_m (rows), unroll_k and order of the vector schedule."""
    define_register_tile(cfg, M, N, lanes, target)
    define_order(cfg, M, N, "rows_outer", 0)


def define_register_tile(cfg, M: int, N: int, lanes: int, target: Target) -> None:
    """tile_n (columns: whole vectors), tile_m (rows) and unroll_k of an int32 register tile."""
    acc = target.acc_vectors
    bns = column_blocks(N, lanes, 4 * lanes)
    bn = max(bns)
    # rows of the register tile: as many as the accumulators allow with 4 registers to spare
    # (6 x 4 vectors with AVX-512); a divisor of M one short of that beats padding M
    rows = max(1, min(8, (acc - 4) // (bn // lanes)))
    bm = largest_divisor(M, rows)
    bm = bm if bm >= rows - 1 or bm == M else rows
    cfg.define_knob("tile_n", bns, default=bn)
    cfg.define_knob("tile_m", sorted({1, 2, 4, 6, 8, bm} & set(range(1, max(M, 1) + 1)) | {min(bm, M)}),
                    default=min(bm, M))
    cfg.define_knob("unroll_k", [1, 2, 4], default=1)
    cfg.define_constraint("register tile", lambda c: c["tile_m"].val * c["tile_n"].val // lanes <= acc)


def define_amx_knobs(cfg, M: int, N: int, K: int, target: Target) -> None:
    """tile_m and tile_n (16 or 32: one or two tiles each way), order and chunk of the AMX schedule.

    The block: 2 x 2 tiles of C (32 x 32) where M and N allow, so that each tile step loads two A
    and two B tiles (1 KiB each) for four tdpbusd, the most reuse eight tiles give (four C tiles
    and two of each operand; a 2 x 3 block would leave one operand tile and reload it).  The
    order: rows outside, the row block's A tiles (32 x K bytes) read again for every column block
    while the packed B panels (K x 32 bytes each) stream past in order.  Neither operand stays in
    L1 once K passes ~512 (32 KiB each); splitting K into L1-sized chunks instead costs a load and
    a store of the C tiles per chunk and was no faster (a hand-written loop of this nest on
    Emerald Rapids: 4.2 TOP/s at K 1024 whole, 4.2 at chunks of 512, 3.7 at 256), so the tile
    steps run over the whole K from L2.  What must stay in L2 is B, read once per row block:
    `chunk` columns of it per pass over the rows, all of them while K x N fits the target's L2
    (te.caches.FILL of it), else the widest chunk that does and divides N (a 16 MiB weight at
    512 x 4096 x 4096: 1.5x faster with 256-column chunks than with the whole of B re-read from
    L3 per row block)."""
    Mp = _pad(M, AMX_LANES)             # A's tiles are padded with zero rows
    cfg.define_knob("tile_m", [b for b in (16, 32) if Mp % b == 0], default=32 if Mp % 32 == 0 else 16)
    bns = [b for b in (16, 32) if _pad(N, 16) % b == 0]
    cfg.define_knob("tile_n", bns, default=max(bns))
    Np, Kp, budget = _pad(N, AMX_LANES), _pad(K, AMX_K), FILL * target.caches.l2
    # a chunk of whole column blocks (a partial last chunk would guard the tile loops)
    whole = [c for c in CHUNKS[1:] if Np % c == 0]
    chunk = 0 if Np * Kp <= budget else max((c for c in whole if c * Kp <= budget), default=min(whole, default=0))
    define_order(cfg, M, N, "rows_outer", chunk)
    cfg.define_constraint("whole chunks", lambda c: _whole_chunks(c, M, N))


def _whole_chunks(c, M: int, N: int) -> bool:
    """Does the chunk split the inner tile loop (_output_tile) without a partial last chunk?  The
    AMX block is tensorized, and a guard around it would leave it unmatched."""
    rows_outer = c["order"].val == "rows_outer"
    block = c["tile_n"].val if rows_outer else c["tile_m"].val
    extent, step = -(-(N if rows_outer else M) // block), c["chunk"].val // block
    return not 1 <= step < extent or extent % step == 0


def define_order(cfg, M: int, N: int, order: str | None = None, chunk: int = 256) -> None:
    """order: which tile loop is outside; chunk: rows (or columns) of the inner one per chunk (0: all)."""
    cfg.define_knob("order", ["cols_outer", "rows_outer"],
                    default=order or ("cols_outer" if N >= M else "rows_outer"))
    cfg.define_knob("chunk", list(CHUNKS), default=chunk)


def _output_tile(cfg, s: te.Schedule, out: te.Tensor, final: te.Tensor, acc: te.Tensor, lanes: int):
    """final tiled tile_m x tile_n, the tiles fused into one parallel loop, acc computed per tile."""
    attrs = out.op.attrs
    bm, bn = cfg["tile_m"].val, cfg["tile_n"].val
    if final is not out:
        s[out].compute_inline()
    i, j = s[final].op.axis
    io, jo, ii, ji = s[final].tile(i, j, bm, bn)
    # the tile loops: along the inner dimension in chunks of `chunk` rows (cols_outer) or columns,
    # so that the operand it walks stays in L2 while the other one streams past it
    outer, inner = (jo, io) if cfg["order"].val == "cols_outer" else (io, jo)
    step = cfg["chunk"].val // (bm if outer is jo else bn)
    extent = -(-attrs["M"] // bm) if outer is jo else -(-attrs["N"] // bn)
    if 1 <= step < extent:
        co, ci = s[final].split(inner, factor=step)
        s[final].reorder(co, outer, ci)
        tile = s[final].fuse(co, outer, ci)
    else:
        s[final].reorder(outer, inner)
        tile = s[final].fuse(outer, inner)
    jv, jl = s[final].split(ji, factor=lanes)
    s[final].vectorize(jl)
    parallel_if_worth(s[final], tile, attrs["M"] * attrs["N"] * attrs["K"])
    s[acc].compute_at(s[final], tile)
    return bm, bn


def _schedule_pack(s: te.Schedule, out: te.Tensor, acc: te.Tensor) -> None:
    packed = input_stage(acc, "pack")
    if packed is not None:
        st = s[packed]
        jo, kq, jl, g = st.op.axis
        st.unroll(g)
        parallel_if_worth(st, jo, out.op.attrs["M"] * out.op.attrs["N"] * out.op.attrs["K"])


def schedule_vector(cfg, s: te.Schedule, out: te.Tensor, final: te.Tensor | None, target: Target,
                    intrin: str) -> None:
    """The register-tile schedule with `intrin` (vpdpbusd / pmaddwd) at its core."""
    acc = input_stage(out, "acc")
    attrs = out.op.attrs
    L, G = attrs["lanes"], attrs["group"]
    define_vector_knobs(cfg, attrs["M"], attrs["N"], attrs["K"], L, target)
    _output_tile(cfg, s, out, final or out, acc, L)
    ic, jc = s[acc].op.axis
    (k,) = s[acc].op.reduce_axis
    jv, jl = s[acc].split(jc, factor=L)
    ko, kg = s[acc].split(k, factor=G)
    ku = largest_divisor(attrs["K"] // G, cfg["unroll_k"].val)
    koo, koi = s[acc].split(ko, factor=ku)
    s[acc].reorder(koo, koi, ic, jv, jl, kg)
    for ax in (koi, ic, jv):
        s[acc].unroll(ax)
    s[acc].tensorize(jl, intrin)
    _schedule_pack(s, out, acc)


def schedule_amx(cfg, s: te.Schedule, out: te.Tensor, final: te.Tensor | None, target: Target) -> None:
    """The AMX schedule: a tile_m x tile_n block of C in tiles over the whole K (te/amx.py)."""
    acc = input_stage(out, "acc")
    attrs = out.op.attrs
    define_amx_knobs(cfg, attrs["M"], attrs["N"], attrs["K"], target)
    _output_tile(cfg, s, out, final or out, acc, AMX_LANES)
    amx_block(s, acc, attrs["M"] * attrs["N"] * attrs["K"])
    _schedule_pack(s, out, acc)


def amx_block(s: te.Schedule, acc: te.Tensor, work: float) -> None:
    """acc's block (computed at an output tile) as AMX tiles over the whole K, and the copy of A
    into tiles (acc_int8's tile_a)."""
    ic, jc = s[acc].op.axis[-2:]
    (k,) = s[acc].op.reduce_axis
    ib, i16 = s[acc].split(ic, factor=AMX_LANES)
    jb, j16 = s[acc].split(jc, factor=AMX_LANES)
    ko, k64 = s[acc].split(k, factor=AMX_K)
    kq, k4 = s[acc].split(k64, factor=4)
    s[acc].reorder(ib, i16, jb, j16, ko, kq, k4)
    s[acc].tensorize(ib, "amx")
    tiles = input_stage(acc, "pack_a")
    if tiles is not None:               # a copy: 64-byte vectors, in parallel over row blocks
        io, kt, ii, kk = s[tiles].op.axis
        s[tiles].vectorize(kk)
        parallel_if_worth(s[tiles], io, work)


@anchor(TAG)
def schedule_matmul_int8(s: te.Schedule, out: te.Tensor, final: te.Tensor | None, target: Target) -> None:
    """The untuned schedule of an int8 matmul: AMX where its packing and the target allow, else
    the vector dot product of the target."""
    from .knobs import FallbackConfig
    attrs = out.op.attrs
    if attrs.get("amx"):
        schedule_amx(FallbackConfig(), s, out, final, target)
    else:
        schedule_vector(FallbackConfig(), s, out, final, target, attrs["intrin"])


__all__ = ["matmul_int8", "acc_int8", "amx_block", "amx_tiles_in_place", "pack_weight", "pack_weight_numpy",
           "packed_shape", "schedule_vector", "schedule_amx", "schedule_matmul_int8"]
