"""Quantised operators: the int8 anchors' reference kernels and the elementwise (de)quantisers.

The int8 anchors follow the contract between the kernels and the ONNX importer: a conv or a
matmul over a uint8 activation and an int8 weight computes only the int32 sum of products (the
padding reads 0); zero points, scales, bias and requantisation are elementwise ops the importer
puts after it, which ops.schedule fuses into the anchor's output tile.

    conv2d.int8_reference   ConvWorkload(dtype="uint8")                    x u8 NCHW, w s8 OIHW
    matmul.int8_reference   MatmulWorkload(dtype="uint8")                  A u8 (M, K), B s8 (K, N)
    dense.int8_reference    MatmulWorkload(dtype="uint8", transpose_b=True) A u8 (M, K), W s8 (N, K)

They register at priority 0 without a tuning template: plain computes with int32 accumulation
and a parallel, vectorised schedule, so a quantised model runs end to end on any CPU; the fast
kernels (VNNI, AMX) register at a higher priority and win where they apply.

`quantize` and `dequantize` are ONNX's QuantizeLinear and DequantizeLinear, per tensor or per
axis, with the scale and zero point given as numbers or tensors (constants or computed).
"""
from __future__ import annotations

import numpy as np

import te
from te.target import Target

from .conv2d import _schedule_pad
from .common import largest_divisor, tagged
from .conv_geometry import ConvGeometry, pad_nchw, pair, resolve_padding
from .registry import ConvWorkload, Implementation, MatmulWorkload, register
from .schedule import anchor, parallel_if_worth

# the range of each quantised type, as QuantizeLinear saturates to it
QRANGE = {"uint8": (0, 255), "int8": (-128, 127), "int32": (-2**31, 2**31 - 1)}
ACC = "int32"


# ---------------------------------------------------------------- elementwise

def _param(v, idx: tuple, axis: int | None):
    """A scale or zero point at an element's indices: a number, a one-element tensor, or a
    tensor with one value per index along `axis`."""
    if not isinstance(v, te.Tensor):
        return v
    if axis is None or v.ndim == 0 or (v.ndim == 1 and v.shape[0] == 1):
        return v[(0,) * v.ndim]
    return v[idx[axis]]


def quantize(x: te.Tensor, scale, zero_point, dtype: str = "uint8", axis: int | None = None,
             name: str = "quantize") -> te.Tensor:
    """ONNX QuantizeLinear: saturate(round_half_even(x / scale) + zero_point) as dtype (uint8,
    int8 or int32); scale and zero_point per tensor, or per index along axis."""
    lo, hi = QRANGE[dtype]
    f = x.dtype if te.expr.is_float(x.dtype) else "float32"

    def body(*i):
        v = x[i] if x.dtype == f else x[i].astype(f)
        s = _param(scale, i, axis)
        z = _param(zero_point, i, axis)
        if not isinstance(s, te.Expr) and float(s) == 1.0:     # the int8 epilogue's folded scale
            q = te.round(v)
        else:
            q = te.round(v / (s if isinstance(s, te.Expr) else te.const(float(s), f)))
        if isinstance(z, te.Expr) or float(z) != 0.0:
            q = q + (z.astype(f) if isinstance(z, te.Expr) else te.const(float(z), f))
        q = te.min_of(te.max_of(q, te.const(float(lo), f)), te.const(float(hi), f))
        return q.astype(dtype)
    return te.compute(x.shape, body, name=name, tag="elemwise")


def qlinear_avg_pool2d(x: te.Tensor, kernel, stride, padding, x_scale: float, x_zero: int, y_scale: float,
                       y_zero: int, ceil_mode: bool = False, count_include_pad: bool = False,
                       name: str = "qlinear_avg_pool2d") -> te.Tensor:
    """DequantizeLinear -> AveragePool -> QuantizeLinear on uint8 NCHW data, rounded as ONNX Runtime's
    QLinearAveragePool: each tap dequantized to float32, the window summed row by row in input
    order, / count, / y_scale, + y_zero, round half to even, saturate (bit-exact on its x86 kernel)."""
    from .pool import pool_out_size, taps_counted
    (kh, kw), (sh, sw) = pair(kernel, "kernel", "pool2d"), pair(stride, "stride", "pool2d")
    N, C, H, W = x.shape
    pt, pl, pb, pr = resolve_padding(padding, (H, W), (kh, kw), (sh, sw), (1, 1), "pool2d")
    OH, OW = pool_out_size(H, kh, sh, 1, pt, pb, ceil_mode), pool_out_size(W, kw, sw, 1, pl, pr, ceil_mode)
    f32 = "float32"
    neg_scale, zero = te.const(-float(x_scale), f32), te.const(0.0, f32)

    def body(n, c, p, q):
        acc = None
        for i in range(kh):                 # the window's taps in ONNX Runtime's order
            for j in range(kw):
                h, w = p * sh + i - pt, q * sw + j - pl
                # minus the negated tap: no product is fused into the sum (each rounds, then the sum)
                tap = (x[n, c, te.min_of(te.max_of(h, 0), H - 1), te.min_of(te.max_of(w, 0), W - 1)]
                       .astype("int32") - x_zero).astype(f32) * neg_scale
                tap = te.if_then_else(te.all(h >= 0, h < H, w >= 0, w < W), tap, zero)
                acc = zero - tap if acc is None else acc - tap
        cnt = taps_counted(p, sh, 1, kh, pt, pb, H, count_include_pad) * \
            taps_counted(q, sw, 1, kw, pl, pr, W, count_include_pad)
        v = acc / te.max_of(cnt, 1).astype(f32) / te.const(float(y_scale), f32) + te.const(float(y_zero), f32)
        v = te.min_of(te.max_of(te.round(v), te.const(0.0, f32)), te.const(255.0, f32))
        return v.astype("uint8")
    return te.compute((N, C, OH, OW), body, name=name, tag="broadcast")


def dequantize(x: te.Tensor, scale, zero_point=0, axis: int | None = None, dtype: str = "float32",
               name: str = "dequantize") -> te.Tensor:
    """ONNX DequantizeLinear: (x - zero_point) * scale as dtype, the difference taken in int32."""
    def body(*i):
        z = _param(zero_point, i, axis)
        d = x[i].astype(ACC) - (z.astype(ACC) if isinstance(z, te.Expr) else te.const(int(z), ACC))
        s = _param(scale, i, axis)
        return d.astype(dtype) * (s if isinstance(s, te.Expr) else te.const(float(s), dtype))
    return te.compute(x.shape, body, name=name, tag="elemwise")


def requantize_affine(in_scale: float, in_zero: int, in_dtype: str, out_scale: float, out_zero: int,
                      out_dtype: str) -> tuple[float, float] | None:
    """(a, b) such that saturate(round_half_even(v * a + b)) equals QuantizeLinear(DequantizeLinear(v))
    (float32, the divide) for every value v of in_dtype, whether v * a + b is rounded once (a fused
    multiply-add) or twice; None when some v is too close to a rounding boundary to be sure.

    The input has only 256 values, so the check is exhaustive: the float32 chain of the two ONNX
    operators against the exact v * a + b, each widened by the worst float32 rounding error."""
    lo, hi = QRANGE[out_dtype]
    v = np.arange(*(QRANGE[in_dtype][0], QRANGE[in_dtype][1] + 1), dtype=np.int64)
    x = (v - in_zero).astype(np.float32) * np.float32(in_scale)
    want = np.clip(np.rint(x / np.float32(out_scale)) + out_zero, lo, hi)
    a = np.float32(np.float64(in_scale) / np.float64(out_scale))
    b = np.float32(out_zero - in_zero * np.float64(a))
    t = v * np.float64(a) + np.float64(b)                        # exact: 8 x 24 bits, plus b
    err = 4 * 2.0 ** -24 * (np.abs(v * np.float64(a)) + abs(np.float64(b)) + np.abs(t))
    below, above = np.clip(np.rint(t - err), lo, hi), np.clip(np.rint(t + err), lo, hi)
    if not (np.array_equal(below, want) and np.array_equal(above, want)):
        return None
    return float(a), float(b)


def requantize(x: te.Tensor, in_scale: float, in_zero: int, out_scale: float, out_zero: int,
               out_dtype: str = "uint8", name: str = "requantize") -> te.Tensor:
    """QuantizeLinear(DequantizeLinear(x)) between per-tensor parameters, as one multiply-add where
    requantize_affine proves it exact for every input value, else the two operators as written."""
    ab = requantize_affine(in_scale, in_zero, x.dtype, out_scale, out_zero, out_dtype)
    if ab is None:
        return quantize(dequantize(x, in_scale, in_zero, name=f"{name}.dq"), out_scale, out_zero, out_dtype,
                        name=name)
    lo, hi = QRANGE[out_dtype]
    f = "float32"
    a, b = te.const(ab[0], f), te.const(ab[1], f)

    def body(*i):
        q = te.round(x[i].astype(f) * a + b)
        return te.min_of(te.max_of(q, te.const(float(lo), f)), te.const(float(hi), f)).astype(out_dtype)
    return te.compute(x.shape, body, name=name, tag="elemwise")


SOFTMAX_TAG = "qlinear_softmax"
# rows whose serial sums interleave (their additions overlap): rough, (12, 128, 128) on 2 threads,
# 130 us one at a time, 90 us four (8: no better); the float DQ -> Softmax -> Q 57 us
ROWS_AT_ONCE = 4


def softmax_table(x_scale: float, reduce_len: int) -> np.ndarray:
    """ONNX Runtime's QLinearSoftmax table for uint8 input, float32: entry i is exp(x_scale * (i - 255)
    + shift), computed in float64, the shift as large as keeps a row's sum of reduce_len entries
    finite (log(FLT_MAX / reduce_len) - 5, the log in float32 as there; the quotients below hardly
    depend on it, but their roundings do)."""
    s = float(np.float32(x_scale))
    big = np.float32(np.finfo(np.float32).max) / np.float32(reduce_len)
    shift = max(0.0, float(np.log(big)) - 5) / s
    return np.exp((np.arange(256, dtype=np.float64) - 255 + shift) * s).astype(np.float32)


def qlinear_softmax(x: te.Tensor, table: te.Tensor, axis: int, y_scale: float, y_zero: int,
                    name: str = "qlinear_softmax") -> te.Tensor:
    """DequantizeLinear -> Softmax -> QuantizeLinear on uint8 values per tensor, as ONNX Runtime's
    QLinearSoftmax computes it (it runs that fused op): e = table[x + 255 - max(x)] (softmax_table),
    the row's e summed in order in float32, y = min(round_half_even(e * floor(1 / y_scale) / sum)
    + y_zero, 255), that quotient in float64 (as 1.32's machine code computes it): ONNX Runtime's
    codes.  floor(1 / y_scale) is 254 for the quantiser's 1/255 (float32 1/255 is a little more
    than 1/255): not QuantizeLinear's divide, a step lower near 1."""
    ax = axis % x.ndim
    n = x.shape[ax]
    rows = x.shape[:ax] + x.shape[ax + 1:]
    mult = te.const(float(np.floor(np.float32(1) / np.float32(y_scale))), "float64")

    def at(r: tuple, j) -> tuple:
        return r[:ax] + (j,) + r[ax:]

    def e(i: tuple) -> te.Expr:
        r = i[:ax] + i[ax + 1:]
        return table[(x[i].astype(ACC) + (255 - mx[r]),)]

    k = te.reduce_axis(n, "k")
    mx = te.compute(rows, lambda *r: te.max(x[at(r, k)].astype(ACC), axis=k), name=f"{name}.max",
                    tag="reduce")
    j = te.reduce_axis(n, "j")
    # a plain reduction: one accumulator per row, the terms in order (ONNX Runtime's sum)
    ssum = te.compute(rows, lambda *r: te.sum(e(at(r, j)), axis=j), name=f"{name}.sum", tag="reduce")

    def body(*i):
        q = e(i).astype("float64") * mult / ssum[i[:ax] + i[ax + 1:]].astype("float64")
        v = te.round(q) + te.const(float(y_zero), "float64")
        return te.min_of(v, te.const(255.0, "float64")).astype("uint8")
    return te.compute(x.shape, body, name=name, tag=SOFTMAX_TAG, attrs={"axis": ax})


@tagged(SOFTMAX_TAG)
def schedule_qlinear_softmax(s: te.Schedule, out: te.Tensor, target: Target) -> te.Schedule:
    """Rows in parallel, ROWS_AT_ONCE of them per step: their max and sum computed in that step (each
    sum a serial loop, its order the result's, the rows' loops interleaved so the additions overlap),
    the output vectorized along the row."""
    from .injective import inline_injective, parallel_outer, vectorize_inner
    from .reduction import _data_leaves
    st = s[out]
    inline_injective(s, out)
    ax = out.op.attrs["axis"]
    ssum = next(t for t in out.op.input_tensors if t.name == f"{out.name}.sum")
    mx = next(t for t in ssum.op.input_tensors if t.name == f"{out.name}.max")
    data = list(out.op.axis)
    others = data[:ax] + data[ax + 1:]
    if others:
        st.reorder(*others, data[ax])
        shape = [out.shape[d] for d in range(out.ndim) if d != ax]
        step = ROWS_AT_ONCE if shape[-1] % ROWS_AT_ONCE == 0 else 1
        ro, ri = st.split(others[-1], factor=step)
        st.reorder(*others[:-1], ro, ri, data[ax])
        parallel_outer(st, others[:-1] + [ro], shape[:-1] + [shape[-1] // step], int(np.prod(out.shape)), target)
        block = _data_leaves(st)[-3]         # the loop over blocks of rows (fused with outer axes)
        for t in (mx, ssum):
            ts = s[t]
            ts.reorder(*t.op.axis[:-1], *t.op.reduce_axis, t.op.axis[-1])
            ts.compute_at(st, block)
            ts.unroll(t.op.axis[-1])
    vectorize_inner(st, data[ax], out.shape[ax], target, "float32")
    return s


def shift_to_uint8(x: te.Tensor, name: str = "to_uint8") -> te.Tensor:
    """An int8 tensor as uint8 plus 128 (its zero point moves by 128 too)."""
    return te.compute(x.shape, lambda *i: (x[i].astype(ACC) + 128).astype("uint8"), name=name, tag="elemwise")


# ---------------------------------------------------------------- the int8 anchors

def _product(x: te.Expr, w: te.Expr) -> te.Expr:
    """int32(x) * int32(w): the plain widening product (an int16 product, which would fit, vectorizes
    worse here)."""
    return x.astype(ACC) * w.astype(ACC)


def conv2d_int8_nchw(x: te.Tensor, w: te.Tensor, g: ConvGeometry, name: str = "conv2d_int8") -> te.Tensor:
    """y[n, k, p, q] = sum over (c, r, s) of int32(x) * int32(w), x uint8 NCHW padded with 0, w int8 OIHW."""
    if x.dtype != "uint8" or w.dtype != "int8":
        raise ValueError(f"{name}: the int8 conv takes a uint8 input and an int8 weight, not {x.dtype} and "
                         f"{w.dtype}; shift int8 activations by 128 first (qnn.shift_to_uint8)")
    xp, col0 = pad_nchw(x, g.pt, g.pl, g.pb, g.pr, name=f"{name}.pad")
    Cg, Kg = g.C // g.groups, g.K // g.groups
    c = te.reduce_axis((0, Cg), name="c")
    r = te.reduce_axis((0, g.R), name="r")
    s = te.reduce_axis((0, g.S), name="s")
    off = col0 - g.pl

    def body(n, k, p, q):
        cin = c if g.groups == 1 else k // Kg * Cg + c
        xv = xp[n, cin, p * g.sh + r * g.dh, q * g.sw + s * g.dw + off]
        return te.sum(_product(xv, w[k, c, r, s]), axis=[c, r, s])
    return te.compute((g.N, g.K, g.OH, g.OW), body, name=name, tag="conv2d_int8", attrs={"geometry": g})


def matmul_int8(a: te.Tensor, b: te.Tensor, transpose_b: bool = False, name: str = "matmul_int8") -> te.Tensor:
    """C (M, N) int32 = A @ B, A uint8 (M, K), B int8 (K, N), or (N, K) with transpose_b."""
    if a.dtype != "uint8" or b.dtype != "int8":
        raise ValueError(f"{name}: the int8 matmul takes a uint8 A and an int8 B, not {a.dtype} and {b.dtype}")
    M, K = a.shape
    N = b.shape[0] if transpose_b else b.shape[1]
    k = te.reduce_axis((0, K), name="k")

    def body(i, j):
        bv = b[j, k] if transpose_b else b[k, j]
        return te.sum(_product(a[i, k], bv), axis=k)
    return te.compute((M, N), body, name=name, tag="matmul_int8", attrs={"transpose_b": transpose_b})


def _lanes(n: int, target: Target) -> int:
    lanes = target.lanes("int32")
    return lanes if n >= lanes else max(1, 1 << (max(n, 1) - 1).bit_length())


@anchor("conv2d_int8")
def schedule_conv2d_int8(s: te.Schedule, out: te.Tensor, final: te.Tensor | None, target: Target) -> None:
    """The reference schedule of an int8 conv (and the elementwise ops fused after it): a vector of
    output columns for a block of output channels (each input vector read once for the block),
    the blocks of every image row run in parallel."""
    final = out if final is None else final
    g: ConvGeometry = out.op.attrs["geometry"]
    kb = largest_divisor(g.K // g.groups, 8)
    lanes = next((v for v in (16, 8) if g.OW % v == 0), _lanes(g.OW, target))
    n, k, p, q = s[final].op.axis
    ko, ki = s[final].split(k, factor=kb)
    qo, qi = s[final].split(q, factor=lanes)
    s[final].reorder(n, ko, p, qo, ki, qi)
    outer = s[final].fuse(n, ko, p)
    parallel_if_worth(s[final], outer, g.flops / 2)
    if final is out:
        s[out].reorder(outer, qo, *s[out].op.reduce_axis, ki, qi)
    else:
        s[out].compute_at(s[final], qo)
        _, ak, _, aq = s[out].op.axis
        s[out].reorder(*s[out].op.reduce_axis, ak, aq)
        s[out].unroll(ak)
        s[out].vectorize(aq)
    s[final].unroll(ki)
    s[final].vectorize(qi)
    xp = next((t for t in out.op.input_tensors if getattr(t.op, "tag", None) == "conv2d.pad"), None)
    if xp is not None:
        _schedule_pad(s, xp, g.flops / 2)


@anchor("matmul_int8")
def schedule_matmul_int8(s: te.Schedule, out: te.Tensor, final: te.Tensor | None, target: Target) -> None:
    """The reference schedule of an int8 matmul or dense (and the elementwise ops fused after it): a
    vector of output columns for a block of rows (each B vector read once for the block)."""
    final = out if final is None else final
    M, N = out.shape
    mb = largest_divisor(M, 4)
    lanes = next((v for v in (16, 8) if N % v == 0), _lanes(N, target))
    i, j = s[final].op.axis
    io, ii = s[final].split(i, factor=mb)
    jo, ji = s[final].split(j, factor=lanes)
    s[final].reorder(io, jo, ii, ji)
    outer = s[final].fuse(io, jo)
    parallel_if_worth(s[final], outer, float(M * N * out.op.reduce_axis[0].dom[1]))
    if final is out:
        s[out].reorder(outer, *s[out].op.reduce_axis, ii, ji)
    else:
        s[out].compute_at(s[final], outer)
        ai, aj = s[out].op.axis
        s[out].reorder(*s[out].op.reduce_axis, ai, aj)
        s[out].unroll(ai)
        s[out].vectorize(aj)
    s[final].unroll(ii)
    s[final].vectorize(ji)


# ---------------------------------------------------------------- registry entries

class Int8ReferenceConv(Implementation):
    """Every uint8 x int8 conv (any groups, strides, dilation, padding), plainly."""
    name, op = "conv2d.int8_reference", "conv2d"

    def match(self, wl, target):
        return 0 if wl.dtype == "uint8" and wl.layout == "NCHW" else None

    def weight_shape(self, wl: ConvWorkload) -> tuple:
        return wl.w_shape

    def placeholders(self, wl, cfg, target, prepacked):
        return [te.placeholder(wl.x_shape, "uint8", name="x"), te.placeholder(wl.w_shape, "int8", name="w")]

    def compute(self, inputs, wl, cfg, target, prepacked=False, name=None):
        return conv2d_int8_nchw(inputs[0], inputs[1], wl.geometry, name=name or "conv2d_int8")

    def schedule(self, s, out, final, cfg, target):
        schedule_conv2d_int8(s, out, final, target)


class Int8ReferenceMatmul(Implementation):
    """Every uint8 x int8 matmul, B (K, N)."""
    name, op = "matmul.int8_reference", "matmul"
    transpose_b = False

    def match(self, wl, target):
        return 0 if wl.dtype == "uint8" and wl.transpose_b == self.transpose_b else None

    def weight_shape(self, wl: MatmulWorkload) -> tuple:
        return (wl.N, wl.K) if self.transpose_b else (wl.K, wl.N)

    def placeholders(self, wl, cfg, target, prepacked):
        return [te.placeholder((wl.M, wl.K), "uint8", name="A"),
                te.placeholder(self.weight_shape(wl), "int8", name="B")]

    def compute(self, inputs, wl, cfg, target, prepacked=False, name=None):
        return matmul_int8(inputs[0], inputs[1], self.transpose_b, name=name or "matmul_int8")

    def schedule(self, s, out, final, cfg, target):
        schedule_matmul_int8(s, out, final, target)


class Int8ReferenceDense(Int8ReferenceMatmul):
    """Every uint8 x int8 dense layer, W (N, K)."""
    name = "dense.int8_reference"
    transpose_b = True


for _impl in (Int8ReferenceConv(), Int8ReferenceMatmul(), Int8ReferenceDense()):
    register(_impl)

__all__ = ["quantize", "dequantize", "requantize", "requantize_affine", "shift_to_uint8", "conv2d_int8_nchw", "matmul_int8", "QRANGE"]

from . import int8_batch_matmul  # noqa: E402,F401  (registers its anchor schedule)
