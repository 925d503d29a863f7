"""int8 batched matmul of two activations (QDQ attention: Q.K^T, scores.V), QLinearMatMul's arithmetic:

    y[b] = requantise(sum_k (A[b] - za)(B[b] - zb)),  A (batch, M, K), B (batch, K, N), uint8 or int8

on the CPU's dot-product instructions (vpdpbusd with VNNI, vpmaddwd with AVX2), which multiply
uint8 by int8.  The other sign combinations are mapped onto that by a shift of 128, exact in
int32 because the shift moves the zero point with the values:

* A int8: A + 128 as uint8, za + 128 (s8 x s8 and s8 x u8);
* B uint8: B - 128 as int8, zb - 128 (u8 x u8 and s8 x u8).

B is an activation, so the kernel packs it itself, per batch, into the instruction's layout
(N/L, K/G, L, G) (int8_matmul.py), K padded with zeros to a multiple of G; A is copied into
rows padded to the register tile and K padded likewise (zeros: padded k add nothing).  The zero
points are compensated with sums taken at run time, the identity

    sum_k (a - za)(b - zb) = sum_k a*b - zb * rowsum(A) - za * colsum(B) + K * za * zb,

and the epilogue after the int32 sum (the compensation, float32 * (sa * sb / sy), round half to
even, + zy, saturate; or, with no output quantisation, float32 * (sa * sb); or the int32 sum
itself) runs on the register
tile before its one store.
"""
from __future__ import annotations

import numpy as np

import te
from te import tensorize
from te.target import Target, parse

from .common import largest_divisor
from .int8_matmul import _pad, define_vector_knobs
from .knobs import FallbackConfig
from .qnn import QRANGE
from .schedule import anchor, parallel_if_worth

TAG = "batch_matmul_int8"
PACKED = {4: "int8", 2: "int16"}        # vpmaddwd (G = 2) reads B widened to int16 (int8_implementations.py)


def batch_matmul_intrinsic(target: Target) -> str | None:
    """The dot-product intrinsic the kernel uses on target (None: no 8-bit dot product there)."""
    return tensorize.dot_intrinsic(target, target.lanes("int32"))


def qlinear_batch_matmul(A: te.Tensor, B: te.Tensor, a_scale: float, a_zero: int, b_scale: float, b_zero: int,
                         y_scale: float | None = None, y_zero: int = 0, out_dtype: str | None = None,
                         cfg=None, target: Target | str | None = None,
                         name: str = "qlinear_batch_matmul") -> te.Tensor:
    """QLinearMatMul of A (batch, M, K) and B (batch, K, N) (uint8 or int8, per-tensor parameters):
    quantised to out_dtype (uint8/int8) with y_scale and y_zero; with out_dtype "int32" the exact
    sum_k (A - za)(B - zb) (MatMulInteger); with None the float32 DequantizeLinear(A) @
    DequantizeLinear(B) computed in int32 (the module docstring)."""
    target = parse(target)
    if A.ndim != 3 or B.ndim != 3 or A.shape[0] != B.shape[0] or A.shape[2] != B.shape[1]:
        raise ValueError(f"{name}: the int8 batch matmul takes A (batch, M, K) and B (batch, K, N), "
                         f"got {A.shape} and {B.shape}; broadcast and reshape them first")
    if A.dtype not in ("uint8", "int8") or B.dtype not in ("uint8", "int8"):
        raise ValueError(f"{name}: the int8 batch matmul takes uint8 or int8 operands, not {A.dtype} and {B.dtype}")
    if out_dtype not in (None, "int32") and (out_dtype not in ("uint8", "int8") or y_scale is None):
        raise ValueError(f"{name}: quantise the output to uint8 or int8 with a y_scale, not {out_dtype}")
    intrin = batch_matmul_intrinsic(target)
    if intrin is None:
        raise ValueError(f"{name}: target {target} has no 8-bit dot product (AVX2 or AVX-512); "
                         "run the matmul in float")
    L, G = tensorize.get(intrin).lanes, tensorize.get(intrin).group
    batch, M, K = A.shape
    N = B.shape[2]
    cfg = cfg or FallbackConfig()
    define_vector_knobs(cfg, M, N, _pad(K, G), L, target)
    bm = cfg["tile_m"].val
    Mp, Kp, Np = _pad(M, bm), _pad(K, G), _pad(N, L)
    za = int(a_zero) + (128 if A.dtype == "int8" else 0)
    zb = int(b_zero) - (128 if B.dtype == "uint8" else 0)

    def a_u8(b, i, k):              # A as uint8 (+ 128 for int8), rows and k padded with 0
        v = A[b, te.min_of(i, M - 1), te.min_of(k, K - 1)]
        v = v if A.dtype == "uint8" else (v.astype("int32") + 128).astype("uint8")
        return v if (Mp, Kp) == (M, K) else te.if_then_else(te.all(i < M, k < K), v, te.const(0, "uint8"))
    Ap = te.compute((batch, Mp, Kp), a_u8, name=f"{name}.a", tag="pack_a")

    def b_s8(b, jo, kq, jl, g):     # B as int8 (- 128 for uint8) in (N/L, K/G, L, G), padded with 0
        j, k = jo * L + jl, kq * G + g
        v = B[b, te.min_of(k, K - 1), te.min_of(j, N - 1)]
        v = v if B.dtype == "int8" else (v.astype("int32") - 128).astype("int8")
        v = v if PACKED[G] == "int8" else v.astype(PACKED[G])
        return v if (Np, Kp) == (N, K) else te.if_then_else(te.all(j < N, k < K), v, te.const(0, PACKED[G]))
    Bp = te.compute((batch, Np // L, Kp // G, L, G), b_s8, name=f"{name}.packed", tag="pack")

    k = te.reduce_axis((0, Kp), name="k")
    acc = te.compute((batch, Mp, Np), lambda b, i, j: te.sum(
        Ap[b, i, k].astype("int32") * Bp[b, j // L, k // G, j % L, k % G].astype("int32"), axis=k),
        name=f"{name}.acc", tag="acc")
    terms = []                      # the zero-point compensation, each term only where it is not 0
    if zb:
        kr = te.reduce_axis((0, Kp), name="kr")
        rows = te.compute((batch, Mp), lambda b, i: te.sum(Ap[b, i, kr].astype("int32"), axis=kr),
                          name=f"{name}.rowsum", tag="rowsum")
        terms.append(lambda b, i, j: rows[b, i] * te.const(-zb, "int32"))
    if za:
        kc = te.reduce_axis((0, Kp), name="kc")
        cols = te.compute((batch, Np), lambda b, j: te.sum(
            Bp[b, j // L, kc // G, j % L, kc % G].astype("int32"), axis=kc), name=f"{name}.colsum", tag="colsum")
        terms.append(lambda b, i, j: cols[b, j] * te.const(-za, "int32"))
    f32 = "float32"
    # in float32 as ONNX Runtime forms QLinearMatMul's multiplier
    scale = np.float32(a_scale) * np.float32(b_scale)
    scale = float(scale if out_dtype in (None, "int32") else scale / np.float32(y_scale))

    def out(b, i, j):
        v = acc[b, i, j]
        for t in terms:
            v = v + t(b, i, j)
        if za * zb:
            v = v + te.const(K * za * zb, "int32")
        if out_dtype == "int32":
            return v
        f = v.astype(f32) * te.const(scale, f32)
        if out_dtype is None:
            return f
        lo, hi = QRANGE[out_dtype]
        q = te.round(f) + te.const(float(y_zero), f32)
        return te.min_of(te.max_of(q, te.const(float(lo), f32)), te.const(float(hi), f32)).astype(out_dtype)
    return te.compute((batch, M, N), out, name=name, tag=TAG, attrs={
        "M": M, "N": N, "K": Kp, "batch": batch, "lanes": L, "group": G, "intrin": intrin,
        "tile_m": bm, "tile_n": cfg["tile_n"].val, "unroll_k": cfg["unroll_k"].val})


def _input(t: te.Tensor, tag: str) -> te.Tensor | None:
    """The stage with this tag among t's inputs and theirs (the packs, the sums)."""
    seen, todo = set(), [t]
    while todo:
        x = todo.pop()
        for u in x.op.input_tensors:
            if id(u.op) in seen:
                continue
            seen.add(id(u.op))
            if getattr(u.op, "tag", None) == tag:
                return u
            todo.append(u)
    return None


@anchor(TAG)
def schedule_batch_matmul_int8(s: te.Schedule, out: te.Tensor, final: te.Tensor | None, target: Target) -> None:
    """A tile_m x tile_n register tile of int32 vectors per (batch, row block, column block), those
    run in parallel; one dot-product instruction per row, vector and k group, the epilogue on the
    registers; the packs and sums in parallel over the batch."""
    final = out if final is None else final
    at = out.op.attrs
    L, G = at["lanes"], at["group"]
    work = float(at["batch"] * at["M"] * at["N"] * at["K"])
    bm, bn = at["tile_m"], at["tile_n"]
    if final is not out:
        s[out].compute_inline()
    b, i, j = s[final].op.axis
    io, jo, ii, ji = s[final].tile(i, j, bm, bn)
    tile = s[final].fuse(b, io, jo)
    jv, jl = s[final].split(ji, factor=L)
    s[final].vectorize(jl)
    parallel_if_worth(s[final], tile, work)
    acc = _input(out, "acc")
    s[acc].compute_at(s[final], tile)
    ab, ic, jc = s[acc].op.axis
    (k,) = s[acc].op.reduce_axis
    jav, jal = s[acc].split(jc, factor=L)
    ko, kg = s[acc].split(k, factor=G)
    ku = largest_divisor(at["K"] // G, at["unroll_k"])
    koo, koi = s[acc].split(ko, factor=ku)
    s[acc].reorder(ab, koo, koi, ic, jav, jal, kg)
    for ax in (koi, ic, jav):
        s[acc].unroll(ax)
    s[acc].tensorize(jal, at["intrin"])
    for tag in ("pack_a", "pack", "rowsum", "colsum"):
        t = _input(out, tag)
        if t is not None:
            parallel_if_worth(s[t], s[t].op.axis[0], work)


__all__ = ["qlinear_batch_matmul", "batch_matmul_intrinsic", "schedule_batch_matmul_int8"]
