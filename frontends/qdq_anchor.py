"""One int8 anchor of the QDQ pass (qdq.py): a float Conv/MatMul/Gemm between DequantizeLinear
and QuantizeLinear rewritten into the int8 kernel and its epilogue.

The arithmetic is ONNX Runtime's QLinearConv/QGemm: the int32 sum of products with the zero
points and the int32 bias applied exactly, then one float32 multiplier per output channel,
(sx * sw[k]) / sy, round half to even, the output zero point, saturation.
"""
from __future__ import annotations

import logging

import numpy as np

from te.ops.conv_geometry import geometry

from .dtypes import onnx_elem_type
from .graph import Node, TensorInfo
from .lower_qnn import SHIFT_U8
from .lowering import conv_padding
from .qdq import QParams, dequantize_array

log = logging.getLogger(__name__)

INT32, FLOAT = onnx_elem_type("int32"), onnx_elem_type("float32")


def _along(v: np.ndarray, axis: int, ndim: int) -> np.ndarray:
    """A per-tensor or per-channel array shaped to broadcast along `axis` of an ndim-D tensor."""
    if v.size == 1:
        return v.reshape(())
    shape = [1] * ndim
    shape[axis] = -1
    return v.reshape(shape)


def _position_sums(wz: np.ndarray, x_shape: tuple, attrs: dict) -> np.ndarray:
    """(K, OH, OW): for each output position, the sum of the weights whose taps read inside the
    image (a zero point times it is what the padding would have added at that position)."""
    geo = geometry(x_shape, wz.shape, tuple(attrs.get("strides", [1, 1])), conv_padding(attrs),
                   tuple(attrs.get("dilations", [1, 1])), int(attrs.get("group", 1)))
    rows = np.arange(geo.OH)[None, :] * geo.sh + np.arange(geo.R)[:, None] * geo.dh - geo.pt
    cols = np.arange(geo.OW)[None, :] * geo.sw + np.arange(geo.S)[:, None] * geo.dw - geo.pl
    inside_h, inside_w = (rows >= 0) & (rows < geo.H), (cols >= 0) & (cols < geo.W)
    return np.einsum("krs,rp,sq->kpq", wz.sum(axis=1), inside_h.astype(np.int64), inside_w.astype(np.int64))


def _clip_bounds(p, c: Node) -> tuple[float | None, float | None] | None:
    """A Clip's constant bounds (None where absent), or None when a bound is computed."""
    bounds = []
    for idx, key in ((1, "min"), (2, "max")):
        name = c.inputs[idx] if len(c.inputs) > idx else ""
        if name and name not in p.g.constants:
            return None
        v = p.g.constants[name] if name else c.attrs.get(key)
        bounds.append(None if v is None else float(np.asarray(v).reshape(-1)[0]))
    return bounds[0], bounds[1]


def _output(p, n: Node, sx: float, sw: np.ndarray, plain_bias: bool):
    """How the anchor's result leaves: ("q", activation node or None, Q node), ("int", Cast node)
    for a MatMulInteger/ConvInteger, or ("float", None, None)."""
    c = p.only_consumer(n.outputs[0])
    act = None
    if c is not None and (c.op == "Relu" or c.op == "Clip" and _clip_bounds(p, c) is not None):
        act, c = c, p.only_consumer(c.outputs[0])
    pq = p.qparams(c, quantize=True)
    if pq is not None and pq.fixed:
        return "q", act, c
    if (act is None and c is not None and c.op == "Cast" and int(c.attrs.get("to", 0)) == INT32
            and sx == 1.0 and np.all(sw == 1.0) and plain_bias):
        return "int", None, c
    return "float", None, None


def rewrite_anchor(p, n: Node) -> bool:
    """Rewrite n if its inputs are dequantized (a uint8/int8 activation per tensor, a constant
    int8/uint8 weight); returns whether it did."""
    g = p.g
    x = p.dq_of(n.inputs[0])
    w = p.dq_of(n.inputs[1]) if len(n.inputs) > 1 else None
    if (x is None or w is None or w.value not in g.constants or not x.per_tensor
            or x.dtype not in ("uint8", "int8") or w.dtype not in ("uint8", "int8")
            or x.dtype == "int8" and isinstance(x.zero, str)):
        return False
    wq = g.constants[w.value]
    xs = tuple(g.info(x.value).shape)
    if n.op == "Conv" and len(xs) == 4 and wq.ndim == 4:
        op, axis, attrs = "Conv", 0, dict(n.attrs)
    elif n.op == "MatMul" and wq.ndim == 2 and len(xs) >= 2:
        op, axis, attrs = "MatMul", 1, {}
    elif n.op == "Gemm" and wq.ndim == 2 and len(xs) == 2 and not int(n.attrs.get("transA", 0)):
        dense = bool(n.attrs.get("transB", 0))
        op, axis, attrs = ("Gemm", 0, {"transB": 1}) if dense else ("MatMul", 1, {})
    else:
        return False
    if w.axis is not None and w.axis != axis:
        return False
    nout = wq.shape[axis]
    wz = wq.astype(np.int64) - _along(w.zero, axis, wq.ndim)
    if wz.min() < -128 or wz.max() > 127:
        log.info("%s: weight minus its zero point does not fit int8; it runs in float", n.name)
        return False
    sx = float(x.scale.reshape(-1)[0])
    sw = np.broadcast_to(w.scale.reshape(-1), (nout,)).astype(np.float32)
    alpha = float(n.attrs.get("alpha", 1.0)) if n.op == "Gemm" else 1.0
    beta = float(n.attrs.get("beta", 1.0)) if n.op == "Gemm" else 1.0
    bias = _bias(p, n, nout, np.float32(sx) * sw, alpha, beta)
    if bias is False:
        return False
    bias_q, bias_f = bias
    how, act, q = _output(p, n, sx, sw, bias_q is None and bias_f is None and alpha == 1.0)

    new: list[Node] = []
    conv = op == "Conv"
    out_shape = tuple(g.info(n.outputs[0]).shape)
    M = int(np.prod(xs[:-1]))
    acc_shape = out_shape if conv else (M, nout)
    chan = (nout, 1, 1) if conv else (nout,)
    xin, zx = x.value, x.zero
    if x.dtype == "int8":
        xin, zx = p.node(new, SHIFT_U8, [xin], xs, "uint8", "x_u8"), zx + 128
    if not conv and len(xs) > 2:
        xin = p.node(new, "Reshape", [xin], (M, xs[-1]), "uint8", "a2d", {"shape": np.array([M, xs[-1]])})
    cur = p.node(new, op, [xin, p.const(wz.astype(np.int8), "w_s8")], acc_shape, "int32", "acc", attrs)

    # the zero point of x times the weights it meets, and the int32 bias: one int32 term
    table = (_position_sums(wz, xs, n.attrs) if conv and _padded(n, xs, wq)
             else wz.sum(axis=tuple(d for d in range(wz.ndim) if d != axis)).reshape(chan))
    term = np.zeros(chan, np.int64) if bias_q is None else bias_q.reshape(chan)
    if not isinstance(zx, str):
        term = term - int(zx.reshape(-1)[0]) * table
    if term.any():
        cur = p.node(new, "Add", [cur, p.const(term.astype(np.int32), "zp_bias")], acc_shape, "int32", "zp_bias")
    if isinstance(zx, str):               # computed at run time (DynamicQuantizeLinear)
        zi = p.node(new, "Cast", [zx], g.info(zx).shape, "int32", "zx", {"to": INT32})
        cz = p.node(new, "Mul", [zi, p.const(table.astype(np.int32), "wsum")], table.shape, "int32", "zx_wsum")
        cur = p.node(new, "Sub", [cur, cz], acc_shape, "int32", "zp")

    if how == "int":
        final, dtype = q.outputs[0], "int32"
    else:
        cur = p.node(new, "Cast", [cur], acc_shape, "float32", "f32", {"to": FLOAT})
        final, dtype = (q.outputs[0], g.info(q.outputs[0]).dtype) if how == "q" else (n.outputs[0], "float32")
        cur = _scale(p, new, cur, acc_shape, chan, sx, sw, alpha, bias_f, act, q if how == "q" else None)
    if acc_shape != out_shape:
        p.node(new, "Reshape", [cur], out_shape, dtype, "y", {"shape": np.array(out_shape)}, out=final)
    else:
        last = new[-1]
        del g.infos[last.outputs[0]]
        last.outputs = [final]
        g.infos[final] = TensorInfo(final, acc_shape, dtype)
    p.replace([n] + [m for m in (act, q) if m is not None], new)
    return True


def _padded(n: Node, xs: tuple, wq: np.ndarray) -> bool:
    geo = geometry(xs, wq.shape, tuple(n.attrs.get("strides", [1, 1])), conv_padding(n.attrs),
                   tuple(n.attrs.get("dilations", [1, 1])), int(n.attrs.get("group", 1)))
    return bool(geo.pt or geo.pl or geo.pb or geo.pr)


def _bias(p, n: Node, nout: int, sxw: np.ndarray, alpha: float, beta: float):
    """(int32 bias, float bias): an int32 bias of scale sx * sw joins the integer term, any other
    constant bias is added in float; False where the bias is computed at run time."""
    g = p.g
    name = n.inputs[2] if len(n.inputs) > 2 and n.inputs[2] else None
    if name is None:
        return None, None
    pb = p.dq_of(name)
    if (pb is not None and pb.value in g.constants and pb.dtype == "int32" and not isinstance(pb.zero, str)
            and not pb.zero.any() and alpha == 1.0 and beta == 1.0 and g.constants[pb.value].size in (1, nout)
            and np.allclose(np.broadcast_to(pb.scale.reshape(-1), (nout,)), sxw, rtol=1e-5, atol=0)):
        return np.broadcast_to(g.constants[pb.value].reshape(-1), (nout,)).astype(np.int64), None
    if name in g.constants:
        value = g.constants[name]
    elif pb is not None and pb.value in g.constants and not isinstance(pb.zero, str):
        value = dequantize_array(g.constants[pb.value], pb)
    else:
        return False
    if value.size not in (1, nout):
        return False
    return None, (beta * np.broadcast_to(value.reshape(-1), (nout,))).astype(np.float32)


def _scale(p, new: list, cur: str, shape: tuple, chan: tuple, sx: float, sw: np.ndarray, alpha: float,
           bias_f, act: Node | None, q: Node | None) -> str:
    """The float epilogue: the per-channel scale, a float bias, the activation and the output's
    QuantizeLinear (with an integer bias, as ONNX Runtime: one multiplier (sx * sw) / sy)."""
    g = p.g
    scale = (np.float32(sx) * sw).astype(np.float32)
    pq = p.qparams(q, quantize=True) if q is not None else None
    sy = np.float32(pq.scale.reshape(-1)[0]) if pq is not None else np.float32(1)
    folded = pq is not None and bias_f is None          # the output scale joins the multiplier
    m = (scale / sy if folded else scale) * np.float32(alpha)
    m = m.astype(np.float32)
    cur = p.node(new, "Mul", [cur, p.const(m.reshape(chan) if m.size > 1 and len(set(m)) > 1 else m[:1].reshape(()),
                                            "scale")], shape, "float32", "scaled")
    if bias_f is not None:
        cur = p.node(new, "Add", [cur, p.const(bias_f.reshape(chan), "bias")], shape, "float32", "bias")
    if act is not None and act.op == "Relu":
        cur = p.node(new, "Relu", [cur], shape, "float32", "relu")
    elif act is not None:
        lo, hi = _clip_bounds(p, act)
        unit = float(sy) if folded else 1.0
        attrs = {k: np.float32(v / unit) for k, v in (("min", lo), ("max", hi)) if v is not None}
        cur = p.node(new, "Clip", [cur], shape, "float32", "clip", attrs)
    if pq is None:
        return cur
    qdtype = g.info(q.outputs[0]).dtype
    zy = np.asarray(int(pq.zero.reshape(-1)[0]), np.dtype(qdtype))
    s_out = p.const(np.float32(1) if folded else sy, "y_scale")
    return p.node(new, "QuantizeLinear", [cur, s_out, p.const(zy, "y_zero")], shape, qdtype, "q",
                  {"output_dtype": onnx_elem_type(qdtype)})
