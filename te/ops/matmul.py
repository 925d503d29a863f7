"""Matrix multiply, dense (fully connected) and batched matmul, with epilogues and templates.

Three computes, picked by the shape (`strategy=` overrides; the template's `strategy` knob too):

* `packed` (large M) - AutoTVM's GEMM recipe: B re-laid out as [N/bn, K, bn] (zero-padded) so
  the inner loop reads bn consecutive floats; a bm x bn tile of `acc` lives in vector registers,
  computed at the output's tile loop, so the epilogue (bias, activation, residual...) runs on
  the registers before the single store.  B may also come pre-packed (`dense_packed`);
* `dot` (small M, B given as (N, K) like dense weights) - no packing: both operands are read
  along K, `part[i, j, 0:L]` accumulates L-lane partial sums of a bm x bn tile in registers and
  a second, scalar stage adds up the L lanes (a split-K vector reduction as two computes);
* `rows` (small M, B row-major (K, N)) - no packing: vectors along N; the accumulator row lives
  in registers (M >= 4) or streams through L1 while B is read once, row after row (M < 4).
"""
from __future__ import annotations

import numpy as np

import te
from autotune.space import register_template

from .common import Epilogue, apply_epilogue, default_config, largest_divisor, pick_lanes
from .schedule import anchor, parallel_if_worth

BN_CHOICES = (8, 16, 32, 48, 64)
STRATEGIES = ("packed", "dot", "rows")
DOT_MAX_M = 64          # below this many rows, packing the (N, K) weights costs more than it saves
ROWS_MAX_M = 8          # the same for a row-major B


def _pad(n: int, m: int) -> int:
    return -(-n // m) * m


def default_strategy(M: int, N: int, K: int, transpose_a: bool = False, transpose_b: bool = False,
                     batched: bool = False) -> str:
    """Which compute suits this shape: packed for large M, dot/rows (no packing) for small M."""
    if batched:
        return "packed"
    if transpose_b and not transpose_a and M < DOT_MAX_M:
        return "dot"
    if not transpose_b and M <= ROWS_MAX_M:
        return "rows"
    return "packed"


def matmul(A: te.Tensor, B: te.Tensor, bias: te.Tensor | None = None, transpose_a: bool = False,
           transpose_b: bool = False, epilogue: Epilogue | None = None, bn: int | None = None,
           name: str = "matmul", strategy: str | None = None) -> te.Tensor:
    """C = epilogue(A @ B + bias); A (M, K) or (K, M) if transpose_a, B (K, N) or (N, K) if transpose_b."""
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
    if strategy == "rows" and transpose_b:
        raise ValueError(f"{name}: the rows strategy needs a row-major B (K, N)")

    def a_at(i, k):
        return A[k, i] if transpose_a else A[i, k]

    def b_at(k, j):
        return B[j, k] if transpose_b else B[k, j]

    attrs = {"M": M, "N": N, "K": K, "strategy": strategy, "transpose_b": transpose_b}
    if strategy == "dot":
        acc = _dot_acc(A, B, M, N, K, name)
    elif strategy == "rows":
        r = te.reduce_axis((0, K), name="k")
        acc = te.compute((M, N), lambda i, j: te.sum(a_at(i, r) * B[r, j], axis=r), name=f"{name}.acc",
                         tag="acc")
    else:
        bn = bn or pick_lanes(N)
        attrs["bn"] = bn
        packed = _pack_b(b_at, K, N, bn, B.dtype, name)
        acc = _packed_acc(a_at, packed, M, K, bn, name)

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


def _packed_acc(a_at, packed: te.Tensor, M: int, K: int, bn: int, name: str) -> te.Tensor:
    Np = packed.shape[0] * bn
    r = te.reduce_axis((0, K), name="k")
    return te.compute((M, Np), lambda i, j: te.sum(a_at(i, r) * packed[j // bn, r, j % bn], axis=r),
                      name=f"{name}.acc", tag="acc")


def dot_lanes(K: int) -> int:
    """Lanes of the split-K partial sums: one AVX-512 register when K allows."""
    return 16 if K >= 16 else K


def _dot_acc(x: te.Tensor, w: te.Tensor, M: int, N: int, K: int, name: str) -> te.Tensor:
    """sum_k x[i, k] w[j, k] as L-lane partial sums over the first K - K % L, then a scalar sum with the tail."""
    L = dot_lanes(K)
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


def dense(x: te.Tensor, weight: te.Tensor, bias: te.Tensor | None = None,
          epilogue: Epilogue | None = None, name: str = "dense", strategy: str | None = None) -> te.Tensor:
    """y = epilogue(x @ weight.T + bias), weight of shape (out_features, in_features) as in ONNX Gemm/TOPI."""
    return matmul(x, weight, bias, transpose_b=True, epilogue=epilogue, name=name, strategy=strategy)


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
                 name: str = "dense") -> te.Tensor:
    """dense with weights pre-packed by pack_dense_weight: packed_weight (N/bn, K, bn)."""
    M, K = x.shape
    No, K2, bn = packed_weight.shape
    if K != K2:
        raise ValueError(f"{name}: x {x.shape} does not match packed weights {packed_weight.shape}")
    N = out_features or No * bn
    if bias is not None and bias.shape not in ((N,), (1, N)):
        raise ValueError(f"{name}: bias must have shape ({N},), got {bias.shape}")
    acc = _packed_acc(lambda i, k: x[i, k], packed_weight, M, K, bn, name)

    def out(i, j):
        v = acc[i, j]
        if bias is not None:
            v = v + (bias[j] if bias.ndim == 1 else bias[0, j])
        return apply_epilogue(epilogue, v, (i, j))
    return te.compute((M, N), out, name=name, tag="matmul",
                      attrs={"M": M, "N": N, "K": K, "bn": bn, "strategy": "packed", "transpose_b": True})


def batch_matmul(A: te.Tensor, B: te.Tensor, transpose_b: bool = False,
                 epilogue: Epilogue | None = None, name: str = "batch_matmul") -> te.Tensor:
    """C[b] = epilogue(A[b] @ B[b]); A (batch, M, K), B (batch, K, N) or (batch, N, K); batch may broadcast."""
    if A.ndim != 3 or B.ndim != 3:
        raise ValueError(f"{name}: batch_matmul needs 3-D operands, got {A.shape} and {B.shape}")
    ba, M, K = A.shape
    bb = B.shape[0]
    K2, N = (B.shape[2], B.shape[1]) if transpose_b else B.shape[1:]
    if K != K2 or (ba != bb and 1 not in (ba, bb)):
        raise ValueError(f"{name}: shapes {A.shape} and {B.shape} do not multiply")
    batch = max(ba, bb)
    bn = pick_lanes(N)
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
    acc = te.compute(
        (batch, M, Np),
        lambda b, i, j: te.sum(A[b if ba > 1 else 0, i, r] * packed[b if bb > 1 else 0, j // bn, r, j % bn],
                               axis=r),
        name=f"{name}.acc", tag="acc")
    return te.compute((batch, M, N), lambda b, i, j: apply_epilogue(epilogue, acc[b, i, j], (b, i, j)),
                      name=name, tag="matmul", attrs={"M": M, "N": N, "K": K, "bn": bn, "batch": batch,
                                                      "strategy": "packed", "transpose_b": transpose_b})


# ---------------------------------------------------------------- schedules

def _input(t: te.Tensor, tag: str) -> te.Tensor | None:
    return next((x for x in t.op.input_tensors if getattr(x.op, "tag", None) == tag), None)


def define_knobs(cfg, M: int, N: int, K: int, strategy: str) -> None:
    """Declare the knobs of one strategy (a no-op for knobs already declared)."""
    if strategy == "packed":
        cfg.define_split("tile_y", M, num_outputs=2, max_factor=16, default=[-1, largest_divisor(M, 8)])
        cfg.define_split("tile_k", K, num_outputs=2, max_factor=16, default=[-1, largest_divisor(K, 4)])
        cfg.define_knob("order", ["k_outer", "rows_outer"], default="k_outer")
        cfg.define_knob("tile_order", ["cols_outer", "rows_outer"],
                        default="cols_outer" if N >= M else "rows_outer")
    elif strategy == "dot":
        bm = largest_divisor(M, 4)
        cfg.define_split("dot_tile_y", M, num_outputs=2, max_factor=4, default=[-1, bm])
        cands = sorted({d for d in range(2, 9) if N % d == 0} | {8})
        best = max(cands, key=lambda d: (N % d == 0 and bm * d <= 24, d if d <= 8 else 0))
        cfg.define_split("dot_tile_x", N, num_outputs=2, candidates=[[-1, d] for d in cands],
                         default=[-1, best])
    else:
        lanes = _row_lanes(N)
        regs = -(-lanes // 16)
        cfg.define_split("rows_tile_y", M, num_outputs=2, max_factor=8,
                         default=[-1, largest_divisor(M, max(1, min(8, 24 // regs)))])
        cfg.define_knob("rows_lanes", sorted({lanes, *[d for d in (16, 32, 64) if N % d == 0]}), default=lanes)
        cfg.define_knob("rows_unroll_k", [1, 2, 4, 8], default=4 if M >= 4 else 8)
        cfg.define_knob("rows_acc", ["registers", "stream"], default="registers" if M >= 4 else "stream")


def _row_lanes(N: int) -> int:
    """Vector width along N for the rows strategy: a multiple of 8 that divides N, else a divisor <= 64."""
    for d in (64, 32, 16, 8):
        if N % d == 0:
            return d
    return N if N <= 64 else largest_divisor(N, 64)


def schedule_matmul_cfg(cfg, s: te.Schedule, out: te.Tensor, final: te.Tensor | None = None) -> None:
    """Schedule one matmul/dense/batch_matmul output (and the ops fused after it) with cfg's knobs."""
    attrs = out.op.attrs
    acc = _input(out, "acc")
    if acc is None or "M" not in attrs:
        raise ValueError(f"{out.name} is not the output of te.ops.matmul/dense/batch_matmul")
    final = out if final is None else final
    if final is not out:
        s[out].compute_inline()
    strategy = attrs.get("strategy", "packed")
    define_knobs(cfg, attrs["M"], attrs["N"], attrs["K"], strategy)
    {"packed": _schedule_packed, "dot": _schedule_dot, "rows": _schedule_rows}[strategy](cfg, s, acc, final, attrs)


def _schedule_packed(cfg, s: te.Schedule, acc: te.Tensor, out: te.Tensor, attrs: dict) -> None:
    packed = _input(acc, "pack")
    bn = attrs["bn"]
    bm = cfg["tile_y"].size[-1]
    batched = len(out.shape) == 3
    axes = list(s[out].op.axis)
    i, j = axes[-2], axes[-1]
    io, jo, ii, ji = s[out].tile(i, j, bm, bn)
    if cfg["tile_order"].val == "cols_outer":
        s[out].reorder(jo, io)
        tile = s[out].fuse(*([axes[0]] if batched else []), jo, io)
    else:
        tile = s[out].fuse(*([axes[0]] if batched else []), io, jo)
    s[acc].compute_at(s[out], tile)
    ic, jc = s[acc].op.axis[-2:]
    (kc,) = s[acc].op.reduce_axis
    ko, ki = cfg["tile_k"].apply(s, acc, kc)
    if cfg["order"].val == "k_outer":
        s[acc].reorder(ko, ki, ic, jc)
    else:
        s[acc].reorder(ko, ic, ki, jc)
    s[acc].unroll(ki)
    s[acc].unroll(ic)
    s[acc].vectorize(jc)
    s[out].vectorize(ji)
    work = attrs["M"] * attrs["N"] * attrs["K"] * attrs.get("batch", 1)
    parallel_if_worth(s[out], tile, work)
    if packed is not None and isinstance(packed.op, te.ComputeOp):
        _schedule_pack(s, packed, attrs.get("transpose_b", False), work)


def _schedule_pack(s: te.Schedule, packed: te.Tensor, transpose_b: bool, work: float) -> None:
    """Row-major B: copy bn-wide vectors.  B given as (N, K): read K-vectors, write them transposed."""
    st = s[packed]
    p_axes = list(st.op.axis)
    outer, k, ji = p_axes[:-2], p_axes[-2], p_axes[-1]
    K = packed.shape[-2]
    kb = largest_divisor(K, 16)
    if transpose_b and kb >= 4:
        ko, ki = st.split(k, factor=kb)
        st.reorder(*outer, ko, ji, ki)
        st.unroll(ji)
        st.vectorize(ki)
    else:
        st.vectorize(ji)
    parallel_if_worth(st, st.fuse(*outer) if len(outer) > 1 else outer[0], work)


def _schedule_dot(cfg, s: te.Schedule, acc: te.Tensor, out: te.Tensor, attrs: dict) -> None:
    part = _input(acc, "dot.part")
    bm = cfg["dot_tile_y"].size[-1]
    bn = cfg["dot_tile_x"].size[-1]
    i, j = s[out].op.axis
    io, jo, ii, ji = s[out].tile(i, j, bm, bn)
    tile = s[out].fuse(io, jo)
    parallel_if_worth(s[out], tile, attrs["M"] * attrs["N"] * attrs["K"])
    s[out].unroll(ii)
    s[out].vectorize(ji)
    s[acc].compute_at(s[out], tile)
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
    M, N = attrs["M"], attrs["N"]
    work = M * N * attrs["K"]
    lanes = cfg["rows_lanes"].val
    bm = cfg["rows_tile_y"].size[-1]
    ku = cfg["rows_unroll_k"].val
    i, j = s[out].op.axis
    ai, aj = s[acc].op.axis
    (ak,) = s[acc].op.reduce_axis
    K = attrs["K"]
    ku = largest_divisor(K, ku)
    if cfg["rows_acc"].val == "registers":
        # a bm x lanes tile of acc in registers, over the whole K
        io, jo, ii, ji = s[out].tile(i, j, bm, lanes)
        tile = s[out].fuse(io, jo)
        parallel_if_worth(s[out], tile, work)
        s[out].unroll(ii)
        s[out].vectorize(ji)
        s[acc].compute_at(s[out], tile)
        ako, aki = s[acc].split(ak, factor=ku)
        s[acc].reorder(ako, aki, ai, aj)
        s[acc].unroll(aki)
        s[acc].unroll(ai)
        s[acc].vectorize(aj)
        return
    # stream B once: each thread owns a block of columns; its accumulator rows stay in L1
    nvec = N // lanes if N % lanes == 0 else 0
    parts = largest_divisor(nvec, max(2, te.target.num_threads())) if nvec else 1
    jo, ji = s[out].split(j, nparts=parts)
    s[out].reorder(jo, i, ji)
    parallel_if_worth(s[out], jo, work)
    width = N // parts
    if width <= 64:
        s[out].vectorize(ji)
    elif width % lanes == 0:
        s[out].vectorize(s[out].split(ji, factor=lanes)[1])
    s[acc].compute_at(s[out], jo)
    ako, aki = s[acc].split(ak, factor=ku)
    ajo, aji = s[acc].split(aj, factor=lanes)
    s[acc].reorder(ako, ajo, aki, ai, aji)
    s[acc].unroll(aki)
    s[acc].unroll(ai)
    s[acc].vectorize(aji)


@anchor("matmul")
def schedule_matmul(s: te.Schedule, out: te.Tensor, final: te.Tensor | None = None) -> None:
    """The untuned schedule of a matmul/dense/batch_matmul output."""
    schedule_matmul_cfg(default_config(), s, out, final)


# ---------------------------------------------------------------- templates

def _strategy_knob(cfg, M: int, N: int, K: int, transpose_b: bool) -> str:
    options = ["packed", "dot"] if transpose_b else ["packed", "rows"]
    default = default_strategy(M, N, K, transpose_b=transpose_b)
    cfg.define_knob("strategy", options, default=default)
    for st in options:
        if st == "packed":
            cfg.define_knob("bn", list(BN_CHOICES), default=pick_lanes(N))
        define_knobs(cfg, M, N, K, st)
    return cfg["strategy"].val


@register_template("matmul")
def matmul_template(cfg, M: int, N: int, K: int, dtype: str = "float32"):
    """Tunable C = A @ B with A (M, K), B (K, N)."""
    A = te.placeholder((M, K), dtype, name="A")
    B = te.placeholder((K, N), dtype, name="B")
    strategy = _strategy_knob(cfg, M, N, K, transpose_b=False)
    C = matmul(A, B, bn=cfg["bn"].val, strategy=strategy)
    s = te.create_schedule(C.op)
    schedule_matmul_cfg(cfg, s, C)
    return s, [A, B, C]


@register_template("dense")
def dense_template(cfg, M: int, N: int, K: int, dtype: str = "float32"):
    """Tunable y = x @ W.T + b with x (M, K), W (N, K), b (N,)."""
    x = te.placeholder((M, K), dtype, name="x")
    w = te.placeholder((N, K), dtype, name="w")
    b = te.placeholder((N,), dtype, name="b")
    strategy = _strategy_knob(cfg, M, N, K, transpose_b=True)
    y = matmul(x, w, b, transpose_b=True, bn=cfg["bn"].val, name="dense", strategy=strategy)
    s = te.create_schedule(y.op)
    schedule_matmul_cfg(cfg, s, y)
    return s, [x, w, b, y]


def flops(M: int, N: int, K: int, batch: int = 1) -> float:
    """Floating-point operations of a (batched) matmul."""
    return 2.0 * batch * M * N * K


__all__ = ["matmul", "dense", "dense_packed", "pack_dense_weight", "pack_dense_weight_numpy", "batch_matmul",
           "schedule_matmul", "schedule_matmul_cfg", "default_strategy", "flops"]
