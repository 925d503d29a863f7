"""float16, bfloat16, float8, float4, int4 and int2 models computed in a wide type, converted at
the edges.

A model whose tensors are of a NARROW type (frontends/dtypes.py: a `float16` export, a bf16
checkpoint, float8 or int4 weights) is rewritten before import into the same model computed
in the wide type (float32; int8 for int4/int2, uint8 for uint4/uint2) with conversions where
its values meet the outside:

  * each narrow input x gets a Cast to the wide type that every reader of x reads instead;
  * each narrow output y is computed wide and cast to its type last (a CastLike to it too,
    with its saturate and round_mode);
  * a Cast to a narrow type inside the graph becomes that Cast and a Cast back, so its
    rounding is kept and what follows computes wide;
  * narrow constants (initializers, Constant and ConstantOfShape values) become wide and
    attributes that choose a narrow type for a result (EyeLike's dtype) choose the wide one;
  * QuantizeLinear/DequantizeLinear of float8, float4, int4, int2 and 16-bit integers become
    Casts and arithmetic first (quantization_as_casts).

The library then takes and returns the model's own types, and its kernels compute wide: the
16-bit conversions are loads and stores of te's float16/bfloat16 dtypes (F16C, AVX512-FP16 and
AVX512-BF16 instructions where the target has them), the others te.ops.lowbit's conversions of
te's byte-coded dtypes.  ONNX Runtime computes most fp16 nodes on the CPU in float32 as well,
rounding between nodes; so results agree within fp16's precision.  CastLike to a narrow tensor
inside the graph casts to the wide type (the target is wide now).
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .dtypes import NARROW, ONNX_TO_NUMPY
from .graph import TensorInfo

FLOAT = onnx.TensorProto.FLOAT
# numpy name of a NARROW type -> the numpy dtype it is computed in
WIDE_DTYPES = {ONNX_TO_NUMPY[k].name: ONNX_TO_NUMPY[w] for k, w in NARROW.items()}


def _elem(vi) -> int:
    return vi.type.tensor_type.elem_type if vi.type.HasField("tensor_type") else 0


def uses_low_precision(g) -> bool:
    """Whether any input, output, initializer, value_info or attribute of graph g is a 16-bit float."""
    if any(_elem(v) in NARROW for v in (*g.input, *g.output, *g.value_info)):
        return True
    if any(t.data_type in NARROW for t in g.initializer):
        return True
    return any(_low_attribute(a) for n in g.node for a in n.attribute)


def _low_attribute(a) -> bool:
    if a.type == onnx.AttributeProto.TENSOR:
        return a.t.data_type in NARROW
    return a.name in ("to", "dtype") and a.type == onnx.AttributeProto.INT and a.i in NARROW


def widen_model(m: onnx.ModelProto) -> onnx.ModelProto:
    """m computed in float32 with its 16-bit inputs, outputs and Casts converted (above); m itself
    when it has no 16-bit tensors.  Initializers are widened by widen_constants after reading."""
    m = quantization_as_casts(m)
    if not uses_low_precision(m.graph):
        return m
    out = onnx.ModelProto()
    out.CopyFrom(m)
    g = out.graph
    taken = {x for n in g.node for x in (*n.input, *n.output, n.name)}
    taken |= {v.name for v in (*g.input, *g.output)} | {t.name for t in g.initializer}

    def fresh(base: str) -> str:
        name, k = base, 1
        while name in taken:
            k += 1
            name = f"{base}{k}"
        taken.add(name)
        return name

    inits = {t.name for t in g.initializer}
    low_out = {o.name: _elem(o) for o in g.output if _elem(o) in NARROW}
    for n in g.node:
        if n.op_type == "CastLike" and n.output and n.output[0] in low_out:
            # to the output's type: a final Cast, with float8's saturate and round_mode
            keep = [a for a in n.attribute if a.name in ("saturate", "round_mode")]
            n.op_type = "Cast"
            del n.input[1:]
            del n.attribute[:]
            n.attribute.extend([helper.make_attribute("to", low_out[n.output[0]]), *keep])
    produced = {x for n in g.node for x in n.output}
    final_casts = {n.output[0] for n in g.node if n.op_type == "Cast" and n.output
                   and low_out.get(n.output[0]) == _attr(n, "to")}
    rename: dict[str, str] = {}
    first: list = []
    for vi in g.input:
        if vi.name not in inits and _elem(vi) in NARROW:
            rename[vi.name] = fresh(f"{vi.name}.wide")
            first.append(helper.make_node("Cast", [vi.name], [rename[vi.name]], to=NARROW[_elem(vi)],
                                          name=fresh(f"{vi.name}.to_fp32")))
    last = []
    for name, elem in low_out.items():
        if name in produced and name not in final_casts:
            rename[name] = fresh(f"{name}.wide")
            last.append(helper.make_node("Cast", [rename[name]], [name], to=elem, name=fresh(f"{name}.to_low")))
    nodes = []
    for n in g.node:
        n2 = onnx.NodeProto()
        n2.CopyFrom(n)
        n2.input[:] = [rename.get(x, x) for x in n.input]
        n2.output[:] = [rename.get(x, x) for x in n.output]
        for a in n2.attribute:
            _widen_attribute(a)
        to = _attr(n, "to")
        if n.op_type == "Cast" and to in NARROW and n.output[0] not in final_casts:
            # keep the cast's rounding, then go on in the wide type
            narrow = fresh(f"{n.output[0]}.{ONNX_TO_NUMPY[to].name}")
            n2.output[0] = narrow
            nodes += [n2, helper.make_node("Cast", [narrow], [rename.get(n.output[0], n.output[0])], to=NARROW[to],
                                           name=fresh(f"{n2.name or narrow}.to_fp32"))]
            continue
        nodes.append(n2)
    del g.node[:]
    g.node.extend(first + nodes + last)
    for vi in g.value_info:
        if _elem(vi) in NARROW:
            vi.type.tensor_type.elem_type = NARROW[_elem(vi)]
    return out


def widen_constants(consts: dict[str, np.ndarray], keep: set[str]) -> None:
    """The constants of a NARROW type in consts in their wide type (in place), but for those in
    keep (graph outputs, which keep the model's type)."""
    for name, v in consts.items():
        if name not in keep and v.dtype.name in WIDE_DTYPES:
            consts[name] = v.astype(WIDE_DTYPES[v.dtype.name])


def declared_types(g) -> dict[str, TensorInfo]:
    """The inputs and initializers of graph g whose element types numpy knows, by name (no shapes):
    what the type check of the model as given reads, before widening makes them float32."""
    typed = [(v.name, v.type.tensor_type.elem_type) for v in g.input] + [(t.name, t.data_type) for t in g.initializer]
    return {name: TensorInfo(name, (), ONNX_TO_NUMPY[et].name) for name, et in typed if et in ONNX_TO_NUMPY}


def _attr(n, name: str):
    return next((helper.get_attribute_value(a) for a in n.attribute if a.name == name), None)


def _widen_attribute(a) -> None:
    """A tensor attribute of a 16-bit type as float32; a result type chosen 16-bit as float32."""
    if a.type == onnx.AttributeProto.TENSOR and a.t.data_type in NARROW:
        a.t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(a.t).astype(ONNX_TO_NUMPY[NARROW[a.t.data_type]]),
                                             a.t.name))
    elif a.name == "dtype" and a.type == onnx.AttributeProto.INT and a.i in NARROW:
        a.i = NARROW[a.i]


# QuantizeLinear/DequantizeLinear of these types become Casts and arithmetic (quantization_as_casts);
# uint8, int8 and int32 stay the QDQ pass's (qdq.py)
CAST_QUANTIZED = {4: "uint16", 5: "int16", **{k: np.dtype(v).name for k, v in ONNX_TO_NUMPY.items() if k >= 17}}
INT_RANGES = {2: (0, 255), 3: (-128, 127), 4: (0, 65535), 5: (-32768, 32767), 21: (0, 15), 22: (-8, 7),
              25: (0, 3), 26: (-2, 1)}
FLOAT8 = (17, 18, 19, 20)


def quantization_as_casts(m: onnx.ModelProto) -> onnx.ModelProto:
    """m with each QuantizeLinear/DequantizeLinear of a CAST_QUANTIZED type (float8, float4, int4,
    int2, 16-bit integers) rewritten as onnx's reference computes it, per tensor or per axis:
    DequantizeLinear as (Cast(x) - Cast(zero point)) * scale; QuantizeLinear to an integer type as
    Cast(min(max(round(x / scale) + zero point, lo), hi)), to float8 as a Cast(x / scale) (with
    its saturate; float8 ignores the zero point) and to float4 as Cast(x / scale + zero point).
    Blocked quantisation (any of these types, uint8 and int8 too) gathers each element's block's
    scale and zero point."""
    g = m.graph
    if not any(n.op_type in ("QuantizeLinear", "DequantizeLinear") and n.domain in ("", "ai.onnx") for n in g.node):
        return m
    try:
        typed = onnx.shape_inference.infer_shapes(m).graph
    except Exception:               # the importer reports what inference cannot do
        typed = g
    info = {v.name: v.type.tensor_type for v in (*typed.input, *typed.value_info, *typed.output)
            if v.type.HasField("tensor_type")}
    elem = {**{k: t.elem_type for k, t in info.items()}, **{t.name: t.data_type for t in g.initializer}}
    dims = {**{k: [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
                for k, t in info.items() if t.HasField("shape")}, **{t.name: list(t.dims) for t in g.initializer}}
    todo = [k for k, n in enumerate(g.node) if n.domain in ("", "ai.onnx") and _cast_quantized(n, elem)]
    if not todo:
        return m
    out = onnx.ModelProto()
    out.CopyFrom(m)
    g = out.graph
    nodes = []
    for k, n in enumerate(m.graph.node):
        nodes += _qdq_as_casts(n, g, elem, dims, k) if k in todo else [n]
    del g.node[:]
    g.node.extend(nodes)
    return out


def _cast_quantized(n, elem: dict) -> int | None:
    """The element type n quantises to or from, when n is to be rewritten: a CAST_QUANTIZED type,
    or uint8/int8 in blocks (which the QDQ pass does not take); else None."""
    if n.op_type not in ("QuantizeLinear", "DequantizeLinear"):
        return None
    if n.op_type == "DequantizeLinear":
        t = elem.get(n.input[0])
    elif len(n.input) > 2 and n.input[2]:
        t = elem.get(n.input[2])
    else:
        t = _attr(n, "output_dtype") or onnx.TensorProto.UINT8
    return t if t in CAST_QUANTIZED or (_attr(n, "block_size") and t in (2, 3)) else None


def _qdq_as_casts(n, g, elem: dict, dims: dict, k: int) -> list:
    """The nodes computing QuantizeLinear/DequantizeLinear n (quantization_as_casts)."""
    base = f"{n.name or n.op_type}.{k}"
    made: list = []

    def node(op, inputs, out=None, **attrs):
        name = out or f"{base}.{op.lower()}{len(made)}"
        made.append(helper.make_node(op, inputs, [name], name=f"{base}.{len(made)}", **attrs))
        return name

    def const(tag, v):
        name = f"{base}.{tag}"
        g.initializer.append(numpy_helper.from_array(np.asarray(v), name))
        return name

    x, scale = n.input[0], n.input[1]
    zp = n.input[2] if len(n.input) > 2 and n.input[2] else None
    ftype = elem.get(scale, FLOAT)
    r, axis, block = len(dims.get(x) or []), _attr(n, "axis"), _attr(n, "block_size")
    axis = (1 if axis is None else axis) % max(r, 1)
    if block and r and dims[x][axis]:
        # in blocks: element i of the axis reads the scale (and zero point) of block i // block_size
        take = const("blocks", np.arange(dims[x][axis], dtype=np.int64) // block)
        scale = node("Gather", [scale, take], axis=axis)
        zp = node("Gather", [zp, take], axis=axis) if zp else None
    elif len(dims.get(scale) or ()) == 1 and r > 1:     # per axis: the scale (and zero point) along it
        shape = const("axis_shape", np.array([-1 if d == axis else 1 for d in range(r)], np.int64))
        scale = node("Reshape", [scale, shape])
        zp = node("Reshape", [zp, shape]) if zp else None
    zf = node("Cast", [zp], to=ftype) if zp else None
    if n.op_type == "DequantizeLinear":
        v = node("Cast", [x], to=ftype)
        v = node("Sub", [v, zf]) if zf else v
        node("Mul", [v, scale], out=n.output[0])
        return made
    t = _cast_quantized(n, elem)
    v = node("Div", [x, scale])
    if t in INT_RANGES:
        lo, hi = INT_RANGES[t]
        v = node("Round", [v])
        v = node("Add", [v, node("Cast", [zf], to=elem.get(x, FLOAT))]) if zf else v
        dt = ONNX_TO_NUMPY.get(elem.get(x, FLOAT), np.dtype(np.float32))
        v = node("Min", [node("Max", [v, const("lo", np.array(lo, dt))]), const("hi", np.array(hi, dt))])
        node("Cast", [v], out=n.output[0], to=t)
    elif t in FLOAT8:
        node("Cast", [v], out=n.output[0], to=t, saturate=int(_attr(n, "saturate") if _attr(n, "saturate")
                                                              is not None else 1))
    else:                            # float4: no infinity to overflow to
        v = node("Add", [v, node("Cast", [zf], to=elem.get(x, FLOAT))]) if zf else v
        node("Cast", [v], out=n.output[0], to=t)
    return made
