"""Lowerings and checks of the quantisation operators: QuantizeLinear, DequantizeLinear, and the
internal ops the QDQ pass (qdq.py) adds.

QuantizeLinear and DequantizeLinear are elementwise (te.ops.qnn), so they fuse after the kernel
that produces their input; per tensor or per axis, with constant or computed scales and zero
points.  What ONNX Runtime would refuse, or what tilewise does not run (another element type,
blocked quantisation, a zero scale), is reported at import.
"""
from __future__ import annotations

import numpy as np

from .dtypes import ONNX_DTYPES
from .lowering import _ops, as_batches, checks, lowers, lowers_anchor

QUANT_DTYPES = ("uint8", "int8")
SHIFT_U8 = "tilewise.ToUint8"          # int8 -> uint8 + 128 (an s8 activation read by an int8 anchor)
QADD = "tilewise.QAdd"                 # DequantizeLinear of either input, then Add (QLinearAdd's body)
QCONCAT = "tilewise.QConcat"           # DequantizeLinear of every input, then Concat (QLinearConcat's body)
REQUANTIZE = "tilewise.Requantize"     # DequantizeLinear then QuantizeLinear, per tensor (a Concat's input)
QAVGPOOL = "tilewise.QAveragePool"     # DequantizeLinear, AveragePool, QuantizeLinear (QLinearAveragePool)
QSOFTMAX = "tilewise.QSoftmax"         # DequantizeLinear, Softmax, QuantizeLinear (QLinearSoftmax)
QMATMUL = "tilewise.QLinearMatMul"     # MatMul of two dequantized activations, quantised or float (qdq_matmul.py)


def keeps_quantized(op: str, inputs, consts: dict) -> bool:
    """Is this a DequantizeLinear of a quantised constant (a weight, a bias)?  The importer keeps it
    as a node rather than folding it, so the QDQ pass finds the integer weight behind the float one."""
    if op != "DequantizeLinear" or not inputs or inputs[0] not in consts:
        return False
    c = consts[inputs[0]]
    return c.dtype.name in ("uint8", "int8", "int32") and c.size > 1


def quantization_reason(n, consts: dict) -> str | None:
    """Why a QuantizeLinear/DequantizeLinear's constant scale cannot be used: a value that is not a
    positive finite number (x / 0 has no quantised value)."""
    if n.op not in ("QuantizeLinear", "DequantizeLinear") or len(n.inputs) < 2 or n.inputs[1] not in consts:
        return None
    s = np.asarray(consts[n.inputs[1]], np.float64).reshape(-1)
    bad = s[~(np.isfinite(s) & (s > 0))]
    if not bad.size:
        return None
    return (f"scale '{n.inputs[1]}' holds {bad[0]:g}; a quantisation scale must be a positive finite number "
            "(recalibrate or requantise the model)")


@checks("QuantizeLinear", "DequantizeLinear")
def _check_qdq(node, ins, opset):
    x, scale = ins[0], ins[1]
    zp = ins[2] if len(ins) > 2 else None
    quantize = node.op == "QuantizeLinear"
    if int(node.attrs.get("block_size", 0) or 0):
        return "blocked quantisation (block_size) is not supported; quantise per tensor or per channel"
    if scale.dtype != "float32":
        return f"scale '{node.inputs[1]}' is {scale.dtype}; tilewise takes float32 scales"
    takes = ("float32", "int32") if quantize else QUANT_DTYPES + ("int32",)
    if x.dtype not in takes:
        return f"input '{node.inputs[0]}' is {x.dtype}; {node.op} takes {' or '.join(takes)} here"
    if quantize:
        out = ONNX_DTYPES.get(int(node.attrs.get("output_dtype", 0) or 0)) or (zp.dtype if zp else "uint8")
        if out not in QUANT_DTYPES:
            return f"quantising to {out} is not supported; tilewise quantises to uint8 or int8"
        if zp is not None and zp.dtype != out:
            return (f"zero point '{node.inputs[2]}' is {zp.dtype}, but output_dtype asks for {out}; "
                    "give them one type")
    elif zp is not None and zp.dtype != x.dtype:
        return (f"zero point '{node.inputs[2]}' is {zp.dtype}, but the input '{node.inputs[0]}' is {x.dtype}; "
                "they must have one type")
    one = (lambda i: int(np.prod(i.shape)) == 1)      # per tensor: () and (1,) alike, as ONNX Runtime
    if zp is not None and tuple(zp.shape) != tuple(scale.shape) and not (one(zp) and one(scale)):
        return (f"zero point '{node.inputs[2]}' has shape {zp.shape}, its scale '{node.inputs[1]}' {scale.shape}; "
                "they must have one shape")
    per_tensor = len(scale.shape) == 0 or tuple(scale.shape) == (1,)
    if per_tensor:
        return None
    rank = len(x.shape)
    axis = int(node.attrs.get("axis", 1))
    if not -rank <= axis < rank:
        return f"axis {axis} is outside the {rank}-D input '{node.inputs[0]}'; give an axis in [{-rank}, {rank - 1}]"
    if len(scale.shape) != 1 or scale.shape[0] != x.shape[axis]:
        return (f"scale '{node.inputs[1]}' has shape {scale.shape}; per axis it must be 1-D with one value per "
                f"index of axis {axis} of the input ({x.shape[axis]},)")
    return None


def _axis(attrs: dict, x) -> int:
    return int(attrs.get("axis", 1)) % max(len(x.shape), 1)


def _zero(v):
    return 0 if v is None else v


@lowers("QuantizeLinear")
def _quantize(node, ins, attrs, opset, out_shapes):
    from te.ops import qnn
    x, scale = ins[0], ins[1]
    zp = ins[2] if len(ins) > 2 else None
    dtype = getattr(zp, "dtype", None) or ONNX_DTYPES.get(int(attrs.get("output_dtype", 0) or 0), "uint8")
    return [qnn.quantize(x, scale, _zero(zp), dtype, _axis(attrs, x), name=node.name)]


@lowers("DequantizeLinear")
def _dequantize(node, ins, attrs, opset, out_shapes):
    from te.ops import qnn
    x, scale = ins[0], ins[1]
    zp = ins[2] if len(ins) > 2 else None
    return [qnn.dequantize(x, scale, _zero(zp), _axis(attrs, x), name=node.name)]


@lowers(SHIFT_U8)
def _to_uint8(node, ins, attrs, opset, out_shapes):
    from te.ops import qnn
    return [qnn.shift_to_uint8(ins[0], name=node.name)]


@lowers(QADD)
def _qadd(node, ins, attrs, opset, out_shapes):
    """a + b in float32, each input dequantized first where attrs give its (scale, zero point): one
    compute, so it fuses after the kernel of either input and reads the other as it is stored.
    With an output scale (qdq._Pass.requantized_add) the sum is quantised too, as QLinearAdd
    rounds it (qladd_terms)."""
    import te
    from te.ops.elementwise import broadcast_at
    shape = tuple(out_shapes[0])
    if "c_scale" in attrs:
        return [_qlinear_add(node, ins, attrs, shape)]

    def value(v, key, i, sign=1.0):
        v = broadcast_at(v, shape, i)
        if f"{key}_scale" not in attrs:
            return v * te.const(sign, "float32") if sign < 0 else v
        z = te.const(int(attrs[f"{key}_zero_point"]), "int32")
        return (v.astype("int32") - z).astype("float32") * te.const(sign * float(attrs[f"{key}_scale"]), "float32")
    # a - (-b): both products rounded, then the sum, as the float operators round them (codegen
    # fuses a * s + c into one FMA, which rounds once: a step apart near a rounding boundary)
    return [te.compute(shape, lambda *i: value(ins[0], "a", i) - value(ins[1], "b", i, -1.0), name=node.name,
                       tag="broadcast")]


def qladd_terms(attrs: dict) -> tuple[float, float, float]:
    """(a multiplier, b multiplier, constant) of QLinearAdd's sum in the output's steps, float32 as
    ONNX Runtime's x86 kernel forms them: a * (sa / sc) + (b * (sb / sc) + (zc - (sa / sc * za +
    sb / sc * zb))), the inner sum of products one fused multiply-add, on the values as ONNX
    Runtime holds them (int8 for a value shift_int8 made uint8)."""
    f32 = np.float32
    ra = f32(f32(attrs["a_scale"]) / f32(attrs["c_scale"]))
    rb = f32(f32(attrs["b_scale"]) / f32(attrs["c_scale"]))
    za, zb, zc = (attrs[f"{k}_zero_point"] - attrs[f"{k}_shift"] for k in "abc")
    # fma(ra, za, rb * zb): exact in float64 (24 x 8 bits, plus a float32), rounded once
    inner = f32(np.float64(ra) * za + np.float64(f32(rb * f32(zb))))
    return float(ra), float(rb), float(f32(f32(zc) - inner))


def _qlinear_add(node, ins, attrs: dict, shape: tuple):
    """QLinearAdd of two quantised values (broadcast): round_half_even(fma(a, ra, fma(b, rb, k))),
    saturated, then shifted back to the stored type; codegen makes each a * r + c one llvm.fma."""
    import te
    from te.ops.elementwise import broadcast_at
    from te.ops.qnn import QRANGE
    ra, rb, k = (te.const(v, "float32") for v in qladd_terms(attrs))
    out_dtype, shift = attrs["out_dtype"], attrs["c_shift"]
    lo, hi = QRANGE["int8" if shift else out_dtype]

    def held(v, key, i):        # the value as ONNX Runtime holds it, as float32
        v = broadcast_at(v, shape, i)
        v = v.astype("int32") if isinstance(v, te.Expr) else te.const(int(v), "int32")   # a 1-value constant
        return (v - attrs[f"{key}_shift"] if attrs[f"{key}_shift"] else v).astype("float32")

    def body(*i):
        v = held(ins[0], "a", i) * ra + (held(ins[1], "b", i) * rb + k)
        q = te.min_of(te.max_of(te.round(v), te.const(float(lo), "float32")), te.const(float(hi), "float32"))
        q = q.astype("int32")
        return (q + shift if shift else q).astype(out_dtype)
    return te.compute(shape, body, name=node.name, tag="broadcast")


@lowers(QCONCAT)
def _qconcat(node, ins, attrs, opset, out_shapes):
    """Concat of quantised inputs, each dequantized with its own (scale, zero point) as it is read."""
    from te.ops import qnn
    parts = [qnn.dequantize(x, float(sc), int(z), name=f"{node.name}.{k}")
             for k, (x, sc, z) in enumerate(zip(ins, attrs["scales"], attrs["zero_points"]))]
    return [_ops().concat(parts, axis=attrs["axis"], name=node.name)]


@lowers(REQUANTIZE)
def _requantize(node, ins, attrs, opset, out_shapes):
    """QuantizeLinear(DequantizeLinear(x)), elementwise: it fuses after the kernel that makes x."""
    from te.ops import qnn
    return [qnn.requantize(ins[0], float(attrs["in_scale"]), int(attrs["in_zero_point"]), float(attrs["out_scale"]),
                           int(attrs["out_zero_point"]), attrs["out_dtype"], name=node.name)]


@lowers(QAVGPOOL)
def _qavgpool(node, ins, attrs, opset, out_shapes):
    """A uint8 AveragePool between a DequantizeLinear and a QuantizeLinear, as QLinearAveragePool rounds it."""
    from te.ops import qnn
    from .lower_nn import _pool_args
    k, strides, pads, _, ceil = _pool_args(attrs, ins[0])
    return [qnn.qlinear_avg_pool2d(ins[0], k, strides, pads, attrs["x_scale"], attrs["x_zero_point"],
                                   attrs["y_scale"], attrs["y_zero_point"], ceil,
                                   bool(attrs.get("count_include_pad", 0)), name=node.name)]


@lowers(QSOFTMAX)
def _qsoftmax(node, ins, attrs, opset, out_shapes):
    """A uint8 Softmax between a DequantizeLinear and a QuantizeLinear, as QLinearSoftmax computes it;
    the second input is its exponent table (qnn.softmax_table)."""
    from te.ops import qnn
    return [qnn.qlinear_softmax(ins[0], ins[1], attrs["axis"], attrs["y_scale"], attrs["y_zero_point"],
                                name=node.name)]


@lowers_anchor(QMATMUL)
def _qlinear_matmul(node, ins, attrs, opset, out_shapes, target, choice=None):
    """The batched matmul of two quantised activations (numpy's broadcast of the leading axes) as the
    registry's choice computes it (te/ops/int8_batch_matmul.py: the 8-bit dot-product kernel, or on a
    target without one DequantizeLinear, the float MatMul and QuantizeLinear)."""
    from te.ops import registry
    from te.ops.int8_batch_matmul import qlinear_workload
    a3, b3 = as_batches(*ins, node.name)
    if choice is None:
        wl = qlinear_workload(*a3.shape[:2], b3.shape[2], a3.shape[2], a3.dtype, b3.dtype, attrs)
        choice = registry.Choice(registry.select(wl, target), wl, target)
    y = choice.compute([a3, b3], f"{node.name}.bmm")
    out_shape = tuple(out_shapes[0])
    return [_ops().reshape(y, out_shape, name=node.name) if tuple(y.shape) != out_shape else y]
