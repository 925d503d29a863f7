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

In the op registry (beside batch_implementations.py's float one) this is `batch_matmul.int8`, a task keyed by
the shapes, the three types and which zero points the kernel compensates; its knobs are the
register tile, the parallel loop (SPLITS) and where the packs and sums run (PACKS).  Where the
target has no 8-bit dot product, `batch_matmul.int8_float` computes ONNX's definition in float.
"""
from __future__ import annotations

import numpy as np

import te
from te import tensorize
from te.target import Target, parse

from .batch_implementations import BatchShapes
from .common import largest_divisor
from .int8_matmul import _pad, define_register_tile
from .knobs import FallbackConfig
from .matmul import batch_matmul
from .qnn import QRANGE, dequantize, quantize
from .registry import BatchMatmulWorkload, register
from .schedule import SCHEDULES, anchor, parallel_if_worth

TAG = "batch_matmul_int8"
PACKED = {4: "int8", 2: "int16"}        # vpmaddwd (G = 2) reads B widened to int16 (int8_implementations.py)
# the parallel loop: every (batch, row block, column block) tile, every (batch, row block) band,
# or whole batches (heads); and where the packs of A and B and their sums run: all first, in
# parallel over the batch, or (with whole batches per task) each batch's in its own task
SPLITS = ("tiles", "rows", "batch")
PACKS = ("first", "in_task")
PRIORITY = {"dot": 20, "float": 0}


def batch_matmul_intrinsic(target: Target) -> str | None:
    """The dot-product intrinsic the kernel uses on target (None: no 8-bit dot product there)."""
    return tensorize.dot_intrinsic(target, target.lanes("int32"))


def kernel_zero_points(a_dtype: str, a_zero: int, b_dtype: str, b_zero: int) -> tuple[int, int]:
    """(za, zb) as the kernel compensates them: A as uint8, B as int8 (the module docstring's shift)."""
    return int(a_zero) + (128 if a_dtype == "int8" else 0), int(b_zero) - (128 if b_dtype == "uint8" else 0)


def define_knobs(cfg, M: int, N: int, K: int, lanes: int, target: Target) -> None:
    """The register tile (int8_matmul.define_register_tile), the parallel split and where the packs run."""
    define_register_tile(cfg, M, N, lanes, target)
    cfg.define_knob("split", list(SPLITS), default="tiles")
    cfg.define_knob("pack", list(PACKS), default="first")
    # a task of a row band or a tile would pack its whole batch again for each band or tile
    cfg.define_constraint("packs per batch", lambda c: c["pack"].val == "first" or c["split"].val == "batch")


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
    define_knobs(cfg, M, N, _pad(K, G), L, target)
    bm = cfg["tile_m"].val
    Mp, Kp, Np = _pad(M, bm), _pad(K, G), _pad(N, L)
    za, zb = kernel_zero_points(A.dtype, a_zero, B.dtype, b_zero)

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


def schedule_batch_matmul_int8_cfg(cfg, s: te.Schedule, out: te.Tensor, final: te.Tensor | None,
                                   target: Target) -> None:
    """A tile_m x tile_n register tile of int32 vectors per (batch, row block, column block), one
    dot-product instruction per row, vector and k group, the epilogue on the registers; cfg's split
    decides the parallel loop (SPLITS) and its pack where the packs and sums run (PACKS)."""
    final = out if final is None else final
    at = out.op.attrs
    L, G = at["lanes"], at["group"]
    define_knobs(cfg, at["M"], at["N"], at["K"], L, target)
    split = cfg["split"].val
    inside = cfg["pack"].val == "in_task" and split == "batch"
    work = float(at["batch"] * at["M"] * at["N"] * at["K"])
    bm, bn = at["tile_m"], at["tile_n"]
    if final is not out:
        s[out].compute_inline()
    b, i, j = s[final].op.axis
    io, jo, ii, ji = s[final].tile(i, j, bm, bn)
    if split == "tiles":
        task = tile = s[final].fuse(b, io, jo)
    else:
        task, tile = (s[final].fuse(b, io) if split == "rows" else b), jo
    jv, jl = s[final].split(ji, factor=L)
    s[final].vectorize(jl)
    parallel_if_worth(s[final], task, work)
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
        if t is None:
            continue
        if inside:              # each batch's packs and sums in the task that reads them
            s[t].compute_at(s[final], task)
        else:
            parallel_if_worth(s[t], s[t].op.axis[0], work)


@anchor(TAG)
def schedule_batch_matmul_int8(s: te.Schedule, out: te.Tensor, final: te.Tensor | None, target: Target) -> None:
    """The untuned schedule (schedule_batch_matmul_int8_cfg with the defaults)."""
    schedule_batch_matmul_int8_cfg(FallbackConfig(), s, out, final, target)


# ---------------------------------------------------------------- registry entries

def qlinear_workload(batch: int, M: int, N: int, K: int, a_dtype: str, b_dtype: str,
                     attrs: dict) -> BatchMatmulWorkload:
    """The registry workload of a QLinearMatMul of A (batch, M, K) and B (batch, K, N) whose attrs
    hold a_scale, a_zero_point, b_scale, b_zero_point and, quantised, y_scale, y_zero_point and
    out_dtype (frontends' tilewise.QLinearMatMul node)."""
    za, zb = kernel_zero_points(a_dtype, attrs["a_zero_point"], b_dtype, attrs["b_zero_point"])
    params = (float(attrs["a_scale"]), int(attrs["a_zero_point"]), float(attrs["b_scale"]),
              int(attrs["b_zero_point"]), attrs.get("y_scale"), int(attrs.get("y_zero_point", 0)))
    return BatchMatmulWorkload(batch, M, N, K, a_dtype, b_dtype, attrs.get("out_dtype") or "float32",
                               ("a" if za else "") + ("b" if zb else "") or "none", params)


def _params(wl: BatchMatmulWorkload) -> tuple:
    """wl's (a_scale, a_zero, b_scale, b_zero, y_scale, y_zero): the layer's, or for a tuning task
    (a workload from its key) ones that give the kernel the same compensation terms."""
    if wl.params:
        return wl.params
    za, zb = int("a" in wl.zero_points), int("b" in wl.zero_points)
    a_zero, b_zero = za - (128 if wl.dtype == "int8" else 0), zb + (128 if wl.b_dtype == "uint8" else 0)
    return 1 / 64, a_zero, 1 / 64, b_zero, 1.0 if wl.out_dtype in ("uint8", "int8") else None, 0


def _int8_args(batch: int, M: int, N: int, K: int, dtype: str = "uint8", b_dtype: str = "int8",
               out_dtype: str = "uint8", zero_points: str = "none") -> tuple:
    return batch, M, N, K, dtype, b_dtype, out_dtype, zero_points


class _QLinear(BatchShapes):
    """What the int8 batched implementations share: the workload of QLinearMatMul's operands."""
    arguments = staticmethod(_int8_args)

    def args(self, wl):
        return (wl.batch, wl.M, wl.N, wl.K, wl.dtype, wl.b_dtype, wl.out_dtype, wl.zero_points)

    def workload(self, args):
        batch, M, N, K, dtype, b_dtype, out_dtype, zero_points = self.arguments(*args)
        return BatchMatmulWorkload(int(batch), int(M), int(N), int(K), dtype, b_dtype, out_dtype, zero_points)

    def applies(self, wl) -> bool:
        """Is wl a QLinearMatMul this module computes (the types and compensation it knows)?"""
        return ({wl.dtype, wl.b_dtype} <= set(QRANGE) and wl.out_dtype in (*QRANGE, "int32", "float32")
                and wl.zero_points in ("none", "a", "b", "ab"))


class Int8BatchMatmul(_QLinear):
    """QLinearMatMul on the target's 8-bit dot product (qlinear_batch_matmul), with its knobs."""
    name, template = "batch_matmul.int8", "batch_matmul_int8"

    def match(self, wl, target):
        return PRIORITY["dot"] if self.applies(wl) and batch_matmul_intrinsic(target) is not None else None

    def space(self, cfg, wl, target):
        intrin = tensorize.get(batch_matmul_intrinsic(target))
        define_knobs(cfg, wl.M, wl.N, _pad(wl.K, intrin.group), intrin.lanes, target)

    def compute(self, inputs, wl, cfg, target, prepacked=False, name=None):
        out = None if wl.out_dtype == "float32" else wl.out_dtype
        return qlinear_batch_matmul(*inputs[:2], *_params(wl), out, cfg=cfg, target=target, name=name or self.template)

    def schedule(self, s, out, final, cfg, target):
        schedule_batch_matmul_int8_cfg(cfg, s, out, final, target)


class Int8BatchMatmulFloat(_QLinear):
    """QLinearMatMul where the target has no 8-bit dot product: DequantizeLinear of both operands,
    the float batched matmul and QuantizeLinear (ONNX's definition of it), default schedules."""
    name = "batch_matmul.int8_float"

    def match(self, wl, target):
        return PRIORITY["float"] if self.applies(wl) else None

    def compute(self, inputs, wl, cfg, target, prepacked=False, name=None):
        name = name or "qlinear_batch_matmul"
        sa, za, sb, zb, sy, zy = _params(wl)
        a, b = dequantize(inputs[0], sa, za, name=f"{name}.dqa"), dequantize(inputs[1], sb, zb, name=f"{name}.dqb")
        if wl.out_dtype == "float32":
            return batch_matmul(a, b, name=name, target=target)
        y = batch_matmul(a, b, name=f"{name}.mm", target=target)
        scale, zero = (1.0, 0) if wl.out_dtype == "int32" else (sy, zy)
        return quantize(y, scale, zero, wl.out_dtype, name=name)

    def schedule(self, s, out, final, cfg, target):
        SCHEDULES[out.op.tag](s, out, final, target)      # the float matmul's untuned schedule


register(Int8BatchMatmul())
register(Int8BatchMatmulFloat())

__all__ = ["qlinear_batch_matmul", "qlinear_workload", "batch_matmul_intrinsic", "kernel_zero_points",
           "schedule_batch_matmul_int8", "schedule_batch_matmul_int8_cfg"]
