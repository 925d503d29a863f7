"""Matrix multiply, dense (fully connected) and batched matmul, with epilogues and templates.

The compute has three stages: `packed` (B re-laid out as [N/bn, K, bn], zero-padded, so the
inner loop reads bn consecutive floats), `acc` (the reduction, over the padded width), and
the output (the epilogue applied to acc: bias, activation, residual...).  The schedule keeps
a bm x bn tile of acc in vector registers, computed at the output's tile loop, so the
epilogue runs on registers before the single store: AutoTVM's GEMM recipe.
"""
from __future__ import annotations

import te
from autotune.space import register_template

from .common import Epilogue, apply_epilogue, default_config, largest_divisor, pick_lanes, tagged

BN_CHOICES = (8, 16, 32, 48, 64)


def _pad(n: int, m: int) -> int:
    return -(-n // m) * m


def matmul(A: te.Tensor, B: te.Tensor, bias: te.Tensor | None = None, transpose_a: bool = False,
           transpose_b: bool = False, epilogue: Epilogue | None = None, bn: int | None = None,
           name: str = "matmul") -> te.Tensor:
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
    bn = bn or pick_lanes(N)
    Np = _pad(N, bn)

    def b_at(k, j):
        return B[j, k] if transpose_b else B[k, j]

    def a_at(i, k):
        return A[k, i] if transpose_a else A[i, k]

    packed = te.compute(
        (Np // bn, K, bn),
        lambda jo, k, ji: (b_at(k, jo * bn + ji) if Np == N else
                           te.if_then_else(jo * bn + ji < N, b_at(k, te.min_of(jo * bn + ji, N - 1)), 0.0)),
        name=f"{name}.packed", tag="pack")
    r = te.reduce_axis((0, K), name="k")
    acc = te.compute((M, Np), lambda i, j: te.sum(a_at(i, r) * packed[j // bn, r, j % bn], axis=r),
                     name=f"{name}.acc", tag="acc")

    def out(i, j):
        v = acc[i, j]
        if bias is not None:
            v = v + (bias[j] if bias.ndim == 1 else bias[0, j])
        return apply_epilogue(epilogue, v, (i, j))
    return te.compute((M, N), out, name=name, tag="matmul",
                      attrs={"M": M, "N": N, "K": K, "bn": bn})


def dense(x: te.Tensor, weight: te.Tensor, bias: te.Tensor | None = None,
          epilogue: Epilogue | None = None, name: str = "dense") -> te.Tensor:
    """y = epilogue(x @ weight.T + bias), weight of shape (out_features, in_features) as in ONNX Gemm/TOPI."""
    return matmul(x, weight, bias, transpose_b=True, epilogue=epilogue, name=name)


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
                      name=name, tag="matmul", attrs={"M": M, "N": N, "K": K, "bn": bn, "batch": batch})


def _stages(out: te.Tensor):
    acc = out.op.input_tensors[[t.op.tag for t in out.op.input_tensors].index("acc")] \
        if any(t.op.tag == "acc" for t in out.op.input_tensors) else None
    if acc is None:
        raise ValueError(f"{out.name} is not the output of te.ops.matmul/dense/batch_matmul")
    packed = next(t for t in acc.op.input_tensors if t.op.tag == "pack")
    return acc, packed


def schedule_matmul_cfg(cfg, s: te.Schedule, out: te.Tensor) -> None:
    """Schedule one matmul/dense/batch_matmul output with the knobs of cfg."""
    acc, packed = _stages(out)
    attrs = out.op.attrs
    M, K, bn = attrs["M"], attrs["K"], attrs["bn"]
    cfg.define_split("tile_y", M, num_outputs=2, max_factor=16,
                     default=[-1, largest_divisor(M, 8)])
    cfg.define_split("tile_k", K, num_outputs=2, max_factor=16, default=[-1, largest_divisor(K, 4)])
    cfg.define_knob("order", ["k_outer", "rows_outer"], default="k_outer")
    bm = cfg["tile_y"].size[-1]
    batched = len(out.shape) == 3
    axes = list(s[out].op.axis)
    i, j = axes[-2], axes[-1]
    io, jo, ii, ji = s[out].tile(i, j, bm, bn)
    s[acc].compute_at(s[out], jo)
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
    outer = [axes[0]] if batched else []
    s[out].parallel(s[out].fuse(*outer, io, jo))
    p_axes = s[packed].op.axis
    s[packed].vectorize(p_axes[-1])
    s[packed].parallel(s[packed].fuse(*p_axes[:-2]) if len(p_axes) > 3 else p_axes[0])


@tagged("matmul")
def schedule_matmul(s: te.Schedule, out: te.Tensor) -> None:
    """The untuned schedule of a matmul/dense/batch_matmul output."""
    schedule_matmul_cfg(default_config(), s, out)


@register_template("matmul")
def matmul_template(cfg, M: int, N: int, K: int, dtype: str = "float32"):
    """Tunable C = A @ B with A (M, K), B (K, N)."""
    A = te.placeholder((M, K), dtype, name="A")
    B = te.placeholder((K, N), dtype, name="B")
    cfg.define_knob("bn", list(BN_CHOICES), default=pick_lanes(N))
    C = matmul(A, B, bn=cfg["bn"].val)
    s = te.create_schedule(C.op)
    schedule_matmul_cfg(cfg, s, C)
    return s, [A, B, C]


@register_template("dense")
def dense_template(cfg, M: int, N: int, K: int, dtype: str = "float32"):
    """Tunable y = x @ W.T + b with x (M, K), W (N, K), b (N,)."""
    x = te.placeholder((M, K), dtype, name="x")
    w = te.placeholder((N, K), dtype, name="w")
    b = te.placeholder((N,), dtype, name="b")
    cfg.define_knob("bn", list(BN_CHOICES), default=pick_lanes(N))
    y = matmul(x, w, b, transpose_b=True, bn=cfg["bn"].val, name="dense")
    s = te.create_schedule(y.op)
    schedule_matmul_cfg(cfg, s, y)
    return s, [x, w, b, y]


def flops(M: int, N: int, K: int, batch: int = 1) -> float:
    """Floating-point operations of a (batched) matmul."""
    return 2.0 * batch * M * N * K


__all__ = ["matmul", "dense", "batch_matmul", "schedule_matmul", "schedule_matmul_cfg", "flops"]
