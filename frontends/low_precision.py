"""float16 and bfloat16 models computed in float32, converted at the edges.

A model whose tensors are float16 or bfloat16 (a `float16` export, a bf16 checkpoint) is
rewritten before import into the same model in float32 with conversions where its values
meet the outside:

  * each 16-bit input x gets a Cast to float32 that every reader of x reads instead;
  * each 16-bit output y is computed in float32 and cast to its type last;
  * a Cast to a 16-bit type inside the graph becomes that Cast and a Cast back to float32, so
    its rounding is kept and what follows computes in float32;
  * 16-bit constants (initializers, Constant and ConstantOfShape values) become float32 and
    attributes that choose a 16-bit type for a result (EyeLike's dtype) choose float32.

The library then takes and returns the model's own types, and its kernels compute in fp32:
the conversions are loads and stores of te's float16/bfloat16 dtypes (F16C, AVX512-FP16 and
AVX512-BF16 instructions where the target has them).  ONNX Runtime computes most fp16 nodes on
the CPU in float32 as well, rounding between nodes; so results agree within fp16's precision.
CastLike to a 16-bit tensor of the graph casts to float32 (the target is float32 now).
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .dtypes import LOW_PRECISION, ONNX_TO_NUMPY
from .graph import TensorInfo

FLOAT = onnx.TensorProto.FLOAT


def _elem(vi) -> int:
    return vi.type.tensor_type.elem_type if vi.type.HasField("tensor_type") else 0


def uses_low_precision(g) -> bool:
    """Whether any input, output, initializer, value_info or attribute of graph g is a 16-bit float."""
    if any(_elem(v) in LOW_PRECISION for v in (*g.input, *g.output, *g.value_info)):
        return True
    if any(t.data_type in LOW_PRECISION for t in g.initializer):
        return True
    return any(_low_attribute(a) for n in g.node for a in n.attribute)


def _low_attribute(a) -> bool:
    if a.type == onnx.AttributeProto.TENSOR:
        return a.t.data_type in LOW_PRECISION
    return a.name in ("to", "dtype") and a.type == onnx.AttributeProto.INT and a.i in LOW_PRECISION


def widen_model(m: onnx.ModelProto) -> onnx.ModelProto:
    """m computed in float32 with its 16-bit inputs, outputs and Casts converted (above); m itself
    when it has no 16-bit tensors.  Initializers are widened by widen_constants after reading."""
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
    low_out = {o.name: _elem(o) for o in g.output if _elem(o) in LOW_PRECISION}
    produced = {x for n in g.node for x in n.output}
    final_casts = {n.output[0] for n in g.node if n.op_type == "Cast" and n.output
                   and low_out.get(n.output[0]) == _attr(n, "to")}
    rename: dict[str, str] = {}
    first: list = []
    for vi in g.input:
        if vi.name not in inits and _elem(vi) in LOW_PRECISION:
            rename[vi.name] = fresh(f"{vi.name}.fp32")
            first.append(helper.make_node("Cast", [vi.name], [rename[vi.name]], to=FLOAT,
                                          name=fresh(f"{vi.name}.to_fp32")))
    last = []
    for name, elem in low_out.items():
        if name in produced and name not in final_casts:
            rename[name] = fresh(f"{name}.fp32")
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
        if n.op_type == "Cast" and to in LOW_PRECISION and n.output[0] not in final_casts:
            # keep the cast's rounding, then go on in float32
            narrow = fresh(f"{n.output[0]}.{LOW_PRECISION[to]}")
            n2.output[0] = narrow
            nodes += [n2, helper.make_node("Cast", [narrow], [rename.get(n.output[0], n.output[0])], to=FLOAT,
                                           name=fresh(f"{n2.name or narrow}.to_fp32"))]
            continue
        nodes.append(n2)
    del g.node[:]
    g.node.extend(first + nodes + last)
    for vi in g.value_info:
        if _elem(vi) in LOW_PRECISION:
            vi.type.tensor_type.elem_type = FLOAT
    return out


def widen_constants(consts: dict[str, np.ndarray], keep: set[str]) -> None:
    """The 16-bit float constants in consts as float32 (in place), but for those in keep (graph
    outputs, which keep the model's type)."""
    for name, v in consts.items():
        if name not in keep and v.dtype.name in LOW_PRECISION.values():
            consts[name] = v.astype(np.float32)


def declared_types(g) -> dict[str, TensorInfo]:
    """The inputs and initializers of graph g whose element types numpy knows, by name (no shapes):
    what the type check of the model as given reads, before widening makes them float32."""
    typed = [(v.name, v.type.tensor_type.elem_type) for v in g.input] + [(t.name, t.data_type) for t in g.initializer]
    return {name: TensorInfo(name, (), ONNX_TO_NUMPY[et].name) for name, et in typed if et in ONNX_TO_NUMPY}


def _attr(n, name: str):
    return next((helper.get_attribute_value(a) for a in n.attribute if a.name == name), None)


def _widen_attribute(a) -> None:
    """A tensor attribute of a 16-bit type as float32; a result type chosen 16-bit as float32."""
    if a.type == onnx.AttributeProto.TENSOR and a.t.data_type in LOW_PRECISION:
        a.t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(a.t).astype(np.float32), a.t.name))
    elif a.name == "dtype" and a.type == onnx.AttributeProto.INT and a.i in LOW_PRECISION:
        a.i = FLOAT
