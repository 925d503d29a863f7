"""Matrix multiply, dense (fully connected) and batched matmul, with epilogues (the implementations
and templates `matmul` and `dense` in implementations.py).

Four computes, picked by the shape (`strategy=` overrides; each is an implementation of its own
in implementations.py, so tuning times them side by side):

* `packed` (large M) - AutoTVM's GEMM recipe: B re-laid out as [N/bn, K, bn] (zero-padded) so
  the inner loop reads bn consecutive floats; a bm x bn tile of `acc` lives in vector registers,
  computed at the output's tile loop, so the epilogue (bias, activation, residual...) runs on
  the registers before the single store.  B may also come pre-packed (`dense_packed`);
* `dot` (small M, B given as (N, K) like dense weights) - no packing: both operands are read
  along K, `part[i, j, 0:L]` accumulates L-lane partial sums of a bm x bn tile in registers and
  a second, scalar stage adds up the L lanes (a split-K vector reduction as two computes);
* `rows` (small M, B row-major (K, N)) - no packing: vectors along N, a bm x lanes tile of the
  accumulator in registers over the whole K;
* `splitk` (M of 1 or 2, B row-major) - memory bound: each thread streams its own contiguous
  slice of B's rows into a partial result row kept in L1, `part[t, i, :]`, and a second stage
  adds the partial rows up: B is read once, sequentially, by every thread.

The untuned defaults (strategy by shape, register tile, tile order) are in matmul_defaults.py.
"""
from __future__ import annotations

import numpy as np

import te
from te.llvm_types import ELEM_BYTES
from te.prefetch_ahead import PRAGMA
from te.target import Target, parse

from .common import Epilogue, apply_epilogue, largest_divisor, pick_lanes
from .knobs import FallbackConfig
from .matmul_defaults import (PADDED_ROWS, WIDE_PADDED_ROWS, default_bm, default_strategy, default_tile_order,
                              output_sized_reads,
                              row_lanes, tile_order, tile_rows)
from .schedule import anchor, input_stage, parallel_if_worth, register_block

BN_CHOICES = (8, 16, 32, 48, 64)
# The packed strategy's loops over its register tiles: column blocks outside the row tiles, row
# tiles outside, or "panels": one parallel task per column block that packs B's panel itself
# (in its own core's L1/L2, where the default packs all of B first and the cores then read
# panels the other core packed) and runs every row tile over it.
TILE_ORDERS = ("cols_outer", "rows_outer", "panels")
RESIDUAL_LOCALITY = 3   # llvm.prefetch locality 3, prefetcht0: a residual's next tile into the L1 (prefetch_residuals)
STRATEGIES = ("packed", "dot", "rows", "splitk")


def _pad(n: int, m: int) -> int:
    return -(-n // m) * m


def matmul(A: te.Tensor, B: te.Tensor, bias: te.Tensor | None = None, transpose_a: bool = False,
           transpose_b: bool = False, epilogue: Epilogue | None = None, bn: int | None = None,
           name: str = "matmul", strategy: str | None = None, bm: int | None = None,
           target: Target | str | None = None) -> te.Tensor:
    """C = epilogue(A @ B + bias); A (M, K) or (K, M) if transpose_a, B (K, N) or (N, K) if transpose_b,
    for `target` (None: this machine)."""
    target = parse(target)
    if A.ndim != 2 or B.ndim != 2:
        raise ValueError(f"{name}: matmul needs 2-D operands, got {A.shape} and {B.shape}")
    M, K = (A.shape[1], A.shape[0]) if transpose_a else A.shape
    K2, N = (B.shape[1], B.shape[0]) if transpose_b else B.shape
    if K != K2:
        raise ValueError(f"{name}: inner dimensions differ: A {A.shape} and B {B.shape} "
                         f"(transpose_a={transpose_a}, transpose_b={transpose_b})")
    if bias is not None and bias.shape not in ((N,), (1, N)):
        raise ValueError(f"{name}: bias must have shape ({N},), got {bias.shape}")
    strategy = strategy or default_strategy(M, N, K, transpose_a, transpose_b)
    if strategy not in STRATEGIES:
        raise ValueError(f"{name}: unknown strategy {strategy!r}; use one of {STRATEGIES}")
    if strategy == "dot" and (transpose_a or not transpose_b):
        raise ValueError(f"{name}: the dot strategy needs A (M, K) and B (N, K) (transpose_b=True)")
    if strategy in ("rows", "splitk") and transpose_b:
        raise ValueError(f"{name}: the {strategy} strategy needs a row-major B (K, N)")

    def a_at(i, k):
        return A[k, i] if transpose_a else A[i, k]

    def b_at(k, j):
        return B[j, k] if transpose_b else B[k, j]

    attrs = {"M": M, "N": N, "K": K, "strategy": strategy, "transpose_b": transpose_b}
    if strategy == "dot":
        acc = _dot_acc(A, B, M, N, K, name, target)
    elif strategy == "rows":
        r = te.reduce_axis((0, K), name="k")
        acc = te.compute((M, N), lambda i, j: te.sum(a_at(i, r) * B[r, j], axis=r), name=f"{name}.acc",
                         tag="acc")
    elif strategy == "splitk":
        acc = _splitk_acc(a_at, B, M, N, K, name, target)
        attrs["parts"] = acc.op.input_tensors[0].shape[0]
    else:
        bn = bn or pick_lanes(N, target)
        bm = bm or default_bm(M, tile_rows(bn, target))
        attrs.update(bn=bn, bm=bm)
        packed = _pack_b(b_at, K, N, bn, B.dtype, name)
        acc = _packed_acc(a_at, packed, M, K, bn, bm, name)

    def out(i, j):
        v = acc[i, j]
        if bias is not None:
            v = v + (bias[j] if bias.ndim == 1 else bias[0, j])
        return apply_epilogue(epilogue, v, (i, j))
    return te.compute((M, N), out, name=name, tag="matmul", attrs=attrs)


def _pack_b(b_at, K: int, N: int, bn: int, dtype: str, name: str) -> te.Tensor:
    Np = _pad(N, bn)
    return te.compute(
        (Np // bn, K, bn),
        lambda jo, k, ji: (b_at(k, jo * bn + ji) if Np == N else
                           te.if_then_else(jo * bn + ji < N, b_at(k, te.min_of(jo * bn + ji, N - 1)),
                                           te.const(0, dtype))),
        name=f"{name}.packed", tag="pack")


def _packed_acc(a_at, packed: te.Tensor, M: int, K: int, bn: int, bm: int, name: str) -> te.Tensor:
    """acc over (M padded to bm, N padded to bn); the padding rows re-read A's last row, never stored."""
    Np = packed.shape[0] * bn
    Mp = _pad(M, bm)
    r = te.reduce_axis((0, K), name="k")

    def f(i, j):
        row = i if Mp == M else te.min_of(i, M - 1)
        return te.sum(a_at(row, r) * packed[j // bn, r, j % bn], axis=r)
    return te.compute((Mp, Np), f, name=f"{name}.acc", tag="acc")


def dot_lanes(K: int, target: Target) -> int:
    """Lanes of the split-K partial sums: one vector register when K allows."""
    lanes = target.lanes()
    return lanes if K >= lanes else K


def _dot_acc(x: te.Tensor, w: te.Tensor, M: int, N: int, K: int, name: str, target: Target) -> te.Tensor:
    """sum_k x[i, k] w[j, k] as L-lane partial sums over the first K - K % L, then a scalar sum with the tail."""
    L = dot_lanes(K, target)
    Km = K - K % L
    ko = te.reduce_axis((0, Km // L), name="ko")
    part = te.compute((M, N, L), lambda i, j, l: te.sum(x[i, ko * L + l] * w[j, ko * L + l], axis=ko),
                      name=f"{name}.part", tag="dot.part")
    kl = te.reduce_axis((0, L), name="kl")
    tail = K - Km

    def total(i, j):
        v = part[i, j, kl]
        if tail:
            kk = te.min_of(kl.var + Km, K - 1)
            v = v + te.if_then_else(kl.var < tail, x[i, kk] * w[j, kk], te.const(0, x.dtype))
        return te.sum(v, axis=kl)
    return te.compute((M, N), total, name=f"{name}.acc", tag="acc")


def splitk_parts(K: int, target: Target) -> int:
    """How many slices of K the splitk strategy streams in parallel: one per thread of the target
    (dividing K)."""
    return largest_divisor(K, max(2, target.threads))


def _splitk_acc(a_at, B: te.Tensor, M: int, N: int, K: int, name: str, target: Target) -> te.Tensor:
    P = splitk_parts(K, target)
    Kp = K // P
    r = te.reduce_axis((0, Kp), name="k")
    part = te.compute((P, M, N), lambda t, i, j: te.sum(a_at(i, t * Kp + r) * B[t * Kp + r, j], axis=r),
                      name=f"{name}.part", tag="splitk.part")
    rt = te.reduce_axis((0, P), name="t")
    return te.compute((M, N), lambda i, j: te.sum(part[rt, i, j], axis=rt), name=f"{name}.acc", tag="acc")


def dense(x: te.Tensor, weight: te.Tensor, bias: te.Tensor | None = None,
          epilogue: Epilogue | None = None, name: str = "dense", strategy: str | None = None,
          target: Target | str | None = None) -> te.Tensor:
    """y = epilogue(x @ weight.T + bias), weight of shape (out_features, in_features) as in ONNX Gemm/TOPI."""
    return matmul(x, weight, bias, transpose_b=True, epilogue=epilogue, name=name, strategy=strategy,
                  target=target)


def pack_dense_weight(weight: te.Tensor, bn: int = 16, name: str = "pack_dense_weight") -> te.Tensor:
    """(N, K) dense weights -> (N/bn, K, bn), zero-padded, the layout dense_packed reads."""
    N, K = weight.shape
    return _pack_b(lambda k, j: weight[j, k], K, N, bn, weight.dtype, name)


def pack_dense_weight_numpy(weight: np.ndarray, bn: int = 16) -> np.ndarray:
    """pack_dense_weight on a numpy constant (what the graph compiler does at build time)."""
    N, K = weight.shape
    Np = _pad(N, bn)
    wp = np.zeros((Np, K), weight.dtype)
    wp[:N] = weight
    return np.ascontiguousarray(wp.reshape(Np // bn, bn, K).transpose(0, 2, 1))


def dense_packed(x: te.Tensor, packed_weight: te.Tensor, out_features: int | None = None,
                 bias: te.Tensor | None = None, epilogue: Epilogue | None = None,
                 name: str = "dense", bm: int | None = None, target: Target | str | None = None) -> te.Tensor:
    """dense with weights pre-packed by pack_dense_weight: packed_weight (N/bn, K, bn); bm rows of
    output per register tile (None: the target's default)."""
    M, K = x.shape
    No, K2, bn = packed_weight.shape
    if K != K2:
        raise ValueError(f"{name}: x {x.shape} does not match packed weights {packed_weight.shape}")
    N = out_features or No * bn
    if bias is not None and bias.shape not in ((N,), (1, N)):
        raise ValueError(f"{name}: bias must have shape ({N},), got {bias.shape}")
    bm = bm or default_bm(M, tile_rows(bn, parse(target)))
    acc = _packed_acc(lambda i, k: x[i, k], packed_weight, M, K, bn, bm, name)

    def out(i, j):
        v = acc[i, j]
        if bias is not None:
            v = v + (bias[j] if bias.ndim == 1 else bias[0, j])
        return apply_epilogue(epilogue, v, (i, j))
    return te.compute((M, N), out, name=name, tag="matmul",
                      attrs={"M": M, "N": N, "K": K, "bn": bn, "bm": bm, "strategy": "packed",
                             "transpose_b": True})


def batch_matmul(A: te.Tensor, B: te.Tensor, transpose_b: bool = False,
                 epilogue: Epilogue | None = None, name: str = "batch_matmul",
                 target: Target | str | None = None, bn: int | None = None, bm: int | None = None) -> te.Tensor:
    """C[b] = epilogue(A[b] @ B[b]); A (batch, M, K), B (batch, K, N) or (batch, N, K); batch may broadcast;
    bn and bm: the packed column block and register tile rows (None: the target's defaults)."""
    if A.ndim != 3 or B.ndim != 3:
        raise ValueError(f"{name}: batch_matmul needs 3-D operands, got {A.shape} and {B.shape}")
    ba, M, K = A.shape
    bb = B.shape[0]
    K2, N = (B.shape[2], B.shape[1]) if transpose_b else B.shape[1:]
    if K != K2 or (ba != bb and 1 not in (ba, bb)):
        raise ValueError(f"{name}: shapes {A.shape} and {B.shape} do not multiply")
    batch = max(ba, bb)
    target = parse(target)
    bn = bn or pick_lanes(N, target)
    Np = _pad(N, bn)

    def b_at(b, k, j):
        b = b if bb > 1 else 0
        return B[b, j, k] if transpose_b else B[b, k, j]

    packed = te.compute(
        (bb, Np // bn, K, bn),
        lambda b, jo, k, ji: (b_at(b, k, jo * bn + ji) if Np == N else
                              te.if_then_else(jo * bn + ji < N,
                                              b_at(b, k, te.min_of(jo * bn + ji, N - 1)), 0.0)),
        name=f"{name}.packed", tag="pack")
    r = te.reduce_axis((0, K), name="k")
    bm = bm or default_bm(M, tile_rows(bn, target))
    Mp = _pad(M, bm)
    acc = te.compute(
        (batch, Mp, Np),
        lambda b, i, j: te.sum(A[b if ba > 1 else 0, i if Mp == M else te.min_of(i, M - 1), r]
                               * packed[b if bb > 1 else 0, j // bn, r, j % bn], axis=r),
        name=f"{name}.acc", tag="acc")
    return te.compute((batch, M, N), lambda b, i, j: apply_epilogue(epilogue, acc[b, i, j], (b, i, j)),
                      name=name, tag="matmul", attrs={"M": M, "N": N, "K": K, "bn": bn, "bm": bm, "batch": batch,
                                                      "strategy": "packed", "transpose_b": transpose_b})


# ---------------------------------------------------------------- schedules

def define_knobs(cfg, M: int, N: int, K: int, strategy: str, target: Target, bn: int | None = None,
                 panels: bool = False, bm: int | None = None, padded_rows: bool = False,
                 packs_b: bool = True, tile_k: int | None = None) -> None:
    """Declare the knobs of one strategy for target (a no-op for knobs already declared); `bn`,
    `bm` and `tile_k`: the default column block, row tile and reduction unroll, if not
    pick_lanes(N), default_bm's and 4 (or the largest divisor of K below);
    `panels`: B may be packed inside the kernel and the tile order "panels" (TILE_ORDERS) applies,
    its default where the default config packs B (`packs_b`) and panels_pay;
    `padded_rows`: row tiles that pad M include WIDE_PADDED_ROWS."""
    acc, lanes = target.acc_vectors, target.lanes()
    if strategy == "packed":
        padded = WIDE_PADDED_ROWS if padded_rows else PADDED_ROWS
        sizes = {d for d in range(1, min(M, 16) + 1) if M % d == 0} | {b for b in padded if b < M}
        bn = bn or pick_lanes(N, target)
        bm = bm or default_bm(M, tile_rows(bn, target))     # for the default bn
        cfg.define_split("tile_y", M, num_outputs=2, candidates=[[-1, b] for b in sorted(sizes | {bm})],
                         default=[-1, bm])
        cfg.define_split("tile_k", K, num_outputs=2, max_factor=16, default=[-1, largest_divisor(K, tile_k or 4)])
        cfg.define_knob("order", ["k_outer", "rows_outer"], default="k_outer")
        cfg.define_knob("tile_order", list(TILE_ORDERS if panels else TILE_ORDERS[:2]),
                        default=default_tile_order(M, N, K, bm, bn, target, packs_b=panels and packs_b))
        # the bm x bn accumulator tile must fit the vector registers, as in the direct conv
        cfg.define_constraint("register tile", lambda c: c["tile_y"].size[-1] * -(-c["bn"].val // lanes) <= acc)
    elif strategy == "dot":
        bm = largest_divisor(M, 4)
        cfg.define_split("dot_tile_y", M, num_outputs=2, max_factor=4, default=[-1, bm])
        cands = sorted({d for d in range(2, 9) if N % d == 0} | {8})
        # bm x d partial-sum vectors, and room for the operand vectors
        best = max(cands, key=lambda d: (N % d == 0 and bm * d <= acc - 4, d if d <= 8 else 0))
        cfg.define_split("dot_tile_x", N, num_outputs=2, candidates=[[-1, d] for d in cands],
                         default=[-1, best])
    elif strategy == "rows":
        row = row_lanes(N)
        regs = -(-row // lanes)
        cfg.define_split("rows_tile_y", M, num_outputs=2, max_factor=8,
                         default=[-1, largest_divisor(M, max(1, min(8, (acc - 4) // regs)))])
        cfg.define_knob("rows_lanes", sorted({row, *[d for d in range(8, 65, 8) if N % d == 0]}), default=row)
        cfg.define_knob("rows_unroll_k", [1, 2, 4, 8], default=4)
    elif strategy == "splitk":
        cfg.define_knob("splitk_lanes", sorted({row_lanes(N), *[d for d in range(8, 65, 8) if N % d == 0]}),
                        default=row_lanes(N))
        cfg.define_knob("splitk_unroll_k", [2, 4, 8, 16], default=8)


def define_bn(cfg, N: int, target: Target, default: int | None = None) -> None:
    """The packed strategy's column block: multiples of a vector, and the default (pick_lanes(N)
    unless given; narrower than a vector when N is: 1, 2 or 4 columns)."""
    default = default or pick_lanes(N, target)
    cfg.define_knob("bn", sorted({*BN_CHOICES, default}), default=default)


def schedule_matmul_cfg(cfg, s: te.Schedule, out: te.Tensor, final: te.Tensor | None, target: Target) -> None:
    """Schedule one matmul/dense/batch_matmul output (and the ops fused after it) with cfg's knobs."""
    attrs = out.op.attrs
    acc = input_stage(out, "acc")
    if acc is None or "M" not in attrs:
        raise ValueError(f"{out.name} is not the output of te.ops.matmul/dense/batch_matmul")
    final = out if final is None else final
    if final is not out:
        s[out].compute_inline()
    strategy = attrs.get("strategy", "packed")
    define_knobs(cfg, attrs["M"], attrs["N"], attrs["K"], strategy, target, attrs.get("bn"), tile_k=attrs.get("tile_k"))
    if strategy == "packed":
        order = tile_order(cfg, s, out, final, target)
        rows = _schedule_packed(cfg, s, acc, final, attrs, order)
        if rows is not None and attrs.get("nchw"):
            prefetch_residuals(s, final, rows, output_sized_reads(s, out, final), attrs, cfg["tile_y"].size[-1], order)
        return
    schedules = {"dot": _schedule_dot, "rows": _schedule_rows, "splitk": _schedule_splitk}
    schedules[strategy](cfg, s, acc, final, attrs)


def _schedule_packed(cfg, s: te.Schedule, acc: te.Tensor, out: te.Tensor, attrs: dict, order: str):
    """The packed strategy's loops; returns the loop over a register tile's rows in the output
    stage (None in the panels order, whose tiles store through the block's accumulator)."""
    packed = input_stage(acc, "pack")
    bn = attrs["bn"]
    bm = cfg["tile_y"].size[-1]
    axes = list(s[out].op.axis)
    if attrs.get("nchw"):         # a 1x1 conv (conv1x1_matmul): rows are channels, columns pixels
        n, i, oh, ow = axes
        j = s[out].fuse(oh, ow)
        axes = [n, i, j]
    batched = len(axes) == 3
    i, j = axes[-2], axes[-1]
    io, jo, ii, ji = s[out].tile(i, j, bm, bn)
    work = attrs["M"] * attrs["N"] * attrs["K"] * attrs.get("batch", 1)
    if order == "panels" and packed is not None and isinstance(packed.op, te.ComputeOp):
        # one parallel task per column block: pack its panel, run every row tile over it into the
        # block's accumulator (M x bn floats, L1 or L2), then the epilogue's pass stores the block
        s[out].reorder(jo, io)
        block = s[out].fuse(*([axes[0]] if batched else []), jo)
        parallel_if_worth(s[out], block, work)
        s[out].vectorize(ji)
        s[packed].compute_at(s[out], block)
        s[packed].vectorize(s[packed].op.axis[-1])
        s[acc].compute_at(s[out], block)
        ico, ici = s[acc].split(s[acc].op.axis[-2], factor=bm)
        _register_tile(cfg, s, acc, [ico], ici)
        return None
    if order != "rows_outer":
        s[out].reorder(jo, io)
        tile = s[out].fuse(*([axes[0]] if batched else []), jo, io)
    else:
        tile = s[out].fuse(*([axes[0]] if batched else []), io, jo)
    s[acc].compute_at(s[out], tile)
    _register_tile(cfg, s, acc, [], s[acc].op.axis[-2])
    s[out].vectorize(ji)
    parallel_if_worth(s[out], tile, work)
    if packed is not None and isinstance(packed.op, te.ComputeOp):
        padded = packed.shape[-3] * packed.shape[-1] != attrs["N"]
        _schedule_pack(s, packed, attrs.get("transpose_b", False), work, padded)
    return ii


def prefetch_residuals(s: te.Schedule, out: te.Tensor, rows, residuals: list, attrs: dict, bm: int,
                       order: str) -> None:
    """A 1x1 conv's output stage prefetches the next register tile's rows of each residual its
    epilogue adds (te/prefetch_ahead.py), one row per iteration of `rows`: bn pixels of a channel
    plane, the next tile's being bn pixels on (rows_outer) or bm planes on (cols_outer).

    In a model a residual was written calls earlier (ResNet-50's block input, three convs back)
    and their traffic has pushed it out of the L2, while the tile order visits it bm channel
    planes at a time, a plane apart, which no hardware prefetcher follows: the epilogue's loads
    then wait for memory after the tile's multiply-adds, bm x bn / lanes demand misses a tile.
    Prefetched one tile ahead, they arrive while the next tile computes (its bm x bn x C / lanes
    FMAs: 768 cycles for ResNet-50's 64 -> 256, against a memory latency of 300-400 cycles on the
    server cores this project meets).  In ResNet-50's order on Emerald Rapids, two threads
    (frontends.step_timing.compare_builds, 9 and 11 rounds): its 64 -> 256 + Sum at 56x56
    1.05-1.07x faster, 128 -> 512 + Sum at 28x28 1.03-1.05x.  The output's own lines prefetched
    for writing measured nothing (0.95-1.04x on the convs it touches)."""
    g = attrs["geometry"]
    plane = ELEM_BYTES[out.dtype] * g.OH * g.OW
    row = ELEM_BYTES[out.dtype] * attrs["bn"]
    ahead = row if order == "rows_outer" else bm * plane
    for r in residuals:
        s[out].pragma(rows, PRAGMA, (r.name, ahead, row, RESIDUAL_LOCALITY, plane))


def _register_tile(cfg, s: te.Schedule, acc: te.Tensor, outer: list, rows) -> None:
    """acc's register tile: the `outer` loops, then its reduction split by tile_k and ordered by
    `order` around the tile's `rows` (unrolled) and one vector of columns."""
    cols = s[acc].op.axis[-1]
    (kc,) = s[acc].op.reduce_axis
    ko, ki = cfg["tile_k"].apply(s, acc, kc)
    s[acc].reorder(*outer, *((ko, ki, rows) if cfg["order"].val == "k_outer" else (ko, rows, ki)), cols)
    s[acc].unroll(ki)
    s[acc].unroll(rows)
    s[acc].vectorize(cols)


def _schedule_pack(s: te.Schedule, packed: te.Tensor, transpose_b: bool, work: float,
                   padded: bool = False) -> None:
    """Row-major B: copy bn-wide vectors.  B given as (N, K): transpose bn x 8 blocks through registers."""
    st = s[packed]
    p_axes = list(st.op.axis)
    outer, k, ji = p_axes[:-2], p_axes[-2], p_axes[-1]
    K = packed.shape[-2]
    src = packed.op.input_tensors[0] if len(packed.op.input_tensors) == 1 else None
    kb = largest_divisor(K, 8)
    if (transpose_b and not padded and kb >= 4 and len(outer) == 1 and src is not None
            and isinstance(src.op, te.PlaceholderOp)):
        # a bn x kb block of B is loaded row by row (vector loads along K) into a local block that
        # LLVM keeps in registers, then stored column by column: the transpose becomes shuffles
        local = s.cache_read(src, "local", [packed])
        ko, ki = st.split(k, factor=kb)
        st.reorder(*outer, ko, ki, ji)
        st.unroll(ki)
        st.vectorize(ji)
        s[local].compute_at(st, ko)
        r, c = s[local].op.axis
        s[local].unroll(r)
        s[local].vectorize(c)
        parallel_if_worth(st, outer[0], work)
        return
    kb = largest_divisor(K, 16)
    if transpose_b and kb >= 4:
        ko, ki = st.split(k, factor=kb)
        st.reorder(*outer, ko, ji, ki)
        st.unroll(ji)
        st.vectorize(ki)
    else:
        st.vectorize(ji)
    parallel_if_worth(st, st.fuse(*outer) if len(outer) > 1 else outer[0], work)


def _output_tile(s: te.Schedule, acc: te.Tensor, out: te.Tensor, bm: int, bn: int, attrs: dict) -> None:
    """Tile the output bm x bn (rows unrolled, columns as vectors), parallel over tiles, acc computed per tile."""
    i, j = s[out].op.axis
    io, jo, ii, ji = s[out].tile(i, j, bm, bn)
    tile = s[out].fuse(io, jo)
    parallel_if_worth(s[out], tile, attrs["M"] * attrs["N"] * attrs["K"])
    s[out].unroll(ii)
    s[out].vectorize(ji)
    s[acc].compute_at(s[out], tile)


def _schedule_dot(cfg, s: te.Schedule, acc: te.Tensor, out: te.Tensor, attrs: dict) -> None:
    part = input_stage(acc, "dot.part")
    bm = cfg["dot_tile_y"].size[-1]
    bn = cfg["dot_tile_x"].size[-1]
    _output_tile(s, acc, out, bm, bn, attrs)
    ai, aj = s[acc].op.axis
    (akl,) = s[acc].op.reduce_axis
    aio, aii = s[acc].split(ai, factor=bm)      # aio has one iteration: the loop part is computed in
    s[acc].unroll(aii)
    s[acc].unroll(aj)
    s[acc].unroll(akl)
    s[part].compute_at(s[acc], aio)
    pi, pj, pl = s[part].op.axis
    (pk,) = s[part].op.reduce_axis
    s[part].reorder(pk, pi, pj, pl)
    s[part].unroll(pi)
    s[part].unroll(pj)
    s[part].vectorize(pl)


def _schedule_rows(cfg, s: te.Schedule, acc: te.Tensor, out: te.Tensor, attrs: dict) -> None:
    """A bm x lanes tile of acc in registers, over the whole K."""
    lanes = cfg["rows_lanes"].val
    bm = cfg["rows_tile_y"].size[-1]
    ku = largest_divisor(attrs["K"], cfg["rows_unroll_k"].val)
    _output_tile(s, acc, out, bm, lanes, attrs)
    register_block(s, acc, ku)


def _schedule_splitk(cfg, s: te.Schedule, acc: te.Tensor, out: te.Tensor, attrs: dict) -> None:
    """Each thread streams its slice of B's rows into its partial row; then the rows are added."""
    part = input_stage(acc, "splitk.part")
    lanes = cfg["splitk_lanes"].val
    pt, pi, pj = s[part].op.axis
    (pk,) = s[part].op.reduce_axis
    ku = largest_divisor(part.op.reduce_axis[0].dom[1], cfg["splitk_unroll_k"].val)
    pko, pki = s[part].split(pk, factor=ku)
    pjo, pji = s[part].split(pj, factor=lanes)
    s[part].reorder(pt, pko, pjo, pki, pi, pji)
    s[part].unroll(pki)
    s[part].unroll(pi)
    s[part].vectorize(pji)
    parallel_if_worth(s[part], pt, attrs["M"] * attrs["N"] * attrs["K"])
    i, j = s[out].op.axis
    jo, ji = s[out].split(j, factor=lanes)
    s[out].vectorize(ji)
    s[acc].compute_at(s[out], jo)
    ai, aj = s[acc].op.axis
    (at,) = s[acc].op.reduce_axis
    s[acc].reorder(ai, at, aj)
    s[acc].vectorize(aj)


@anchor("matmul")
def schedule_matmul(s: te.Schedule, out: te.Tensor, final: te.Tensor | None, target: Target) -> None:
    """The untuned schedule of a matmul/dense/batch_matmul output."""
    schedule_matmul_cfg(FallbackConfig(), s, out, final, target)


def flops(M: int, N: int, K: int, batch: int = 1) -> float:
    """Floating-point operations of a (batched) matmul."""
    return 2.0 * batch * M * N * K


__all__ = ["matmul", "dense", "dense_packed", "pack_dense_weight", "pack_dense_weight_numpy", "batch_matmul",
           "schedule_matmul", "schedule_matmul_cfg", "flops"]
