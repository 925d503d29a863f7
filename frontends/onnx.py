"""ONNX import: a model file (or ModelProto) becomes a Graph with static shapes.

Steps: load (a non-ONNX or truncated file is a one-line error); fix the input shapes; fold
every node whose inputs are all constants (the light models build their weights with
ConstantOfShape, and shapes are often computed); move parameter inputs that must be
constants (a Reshape's shape, a Slice's starts...) into attributes; infer shapes with ONNX's
own inference; then check everything at once, so that an unsupported op, a shape that cannot
be resolved or an unsupported dtype is reported for every offending node before any
compilation.
"""
from __future__ import annotations

import os

import numpy as np
import onnx
from onnx import numpy_helper, shape_inference

from .fold import attrs_of, fold
from .graph import Graph, Node, TensorInfo

ONNX_DTYPES = {1: "float32", 2: "uint8", 3: "int8", 5: "int16", 6: "int32", 7: "int64", 9: "bool",
               11: "float64", 4: "uint16", 12: "uint32", 13: "uint64"}

# Inputs that decide shapes: they must be constants and become attributes of the node.
PARAM_INPUTS = {
    "Reshape": {1: "shape"}, "Unsqueeze": {1: "axes"}, "Squeeze": {1: "axes"},
    "Slice": {1: "starts", 2: "ends", 3: "axes", 4: "steps"}, "Pad": {1: "pads", 2: "constant_value", 3: "axes"},
"Expand": {1: "shape"}, "Tile": {1: "repeats"}, "Split": {1: "split"},
    "Resize": {1: "roi", 2: "scales", 3: "sizes"}, "Upsample": {1: "scales"},
    "ReduceSum": {1: "axes"}, "ReduceMean": {1: "axes"}, "ReduceMax": {1: "axes"},
    "ReduceMin": {1: "axes"}, "ReduceProd": {1: "axes"}, "ReduceL2": {1: "axes"},
    "ConstantOfShape": {0: "shape"}, "Dropout": {2: "training_mode"},
}


class ModelError(ValueError):
    """The model cannot be imported; the message lists every offending node and what to do."""


def load_model(model) -> onnx.ModelProto:
    """A ModelProto from a path, bytes or a ModelProto, with one-line errors for bad files."""
    if isinstance(model, onnx.ModelProto):
        return model
    if isinstance(model, (bytes, bytearray)):
        data, where = bytes(model), "the given bytes"
    else:
        path = os.fspath(model)
        if not os.path.exists(path):
            raise ModelError(f"{path}: no such file")
        if os.path.isdir(path):
            raise ModelError(f"{path}: is a folder, not an ONNX model file")
        with open(path, "rb") as f:
            data = f.read()
        where = path
    try:
        m = onnx.load_from_string(data)
    except Exception:
        raise ModelError(f"{where}: not a readable ONNX model (truncated, or another format)") from None
    if not m.graph.node and not m.graph.output:
        raise ModelError(f"{where}: not an ONNX model (no graph inside)")
    return m


def _dims(vi) -> list:
    t = vi.type.tensor_type
    if not t.HasField("shape"):
        return []
    return [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else (d.dim_param or None)
            for d in t.shape.dim]


def from_onnx(model, shapes: dict | None = None) -> Graph:
    """Import an ONNX model (path, bytes or ModelProto) into a Graph; shapes fixes input shapes by name."""
    m = load_model(model)
    from .lowering import SUPPORTED
    shapes = dict(shapes or {})
    opset = next((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), 1)
    g = m.graph
    consts: dict[str, np.ndarray] = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    problems: list[str] = []
    graph = Graph(g.name or "model", opset)

    for vi in g.input:
        if vi.name in consts:
            continue
        dtype = ONNX_DTYPES.get(vi.type.tensor_type.elem_type)
        dims = list(shapes.pop(vi.name)) if vi.name in shapes else _dims(vi)
        if dtype is None:
            problems.append(f"input {vi.name}: element type {vi.type.tensor_type.elem_type} is not supported "
                            f"(tilewise supports {', '.join(sorted(set(ONNX_DTYPES.values())))})")
            continue
        if any(not isinstance(d, int) for d in dims):
            problems.append(f"input {vi.name}: dimension(s) {dims} are not static; pass "
                            f"shapes={{'{vi.name}': (...)}} to from_onnx")
            continue
        graph.inputs.append(TensorInfo(vi.name, tuple(dims), dtype))
    if shapes:
        problems.append(f"shapes= names unknown inputs: {', '.join(shapes)} "
                        f"(inputs are: {', '.join(i.name for i in graph.inputs)})")

    raw = []
    for k, node in enumerate(g.node):
        if node.domain not in ("", "ai.onnx"):
            problems.append(f"node {node.name or k} ({node.domain}.{node.op_type}): custom-domain op is not supported")
        else:
            raw.append((k, node))
    known = {i.name: i.shape for i in graph.inputs}
    for _ in range(8):                 # fold; learn shapes; fold what the shapes decide; repeat
        raw, changed = _fold_nodes(raw, consts, known, problems)
        if not changed or not any(n.op_type in ("Shape", "Size") for _, n in raw):
            break
        known.update(_raw_shapes(m, graph, [n for _, n in raw], consts))

    kept = []
    for k, node in raw:
        attrs = attrs_of(node)
        params = PARAM_INPUTS.get(node.op_type, {})
        inputs = []
        for idx, x in enumerate(node.input):
            if idx in params:
                if not x:
                    continue
                if x not in consts:
                    problems.append(f"node {node.name or k} ({node.op_type}): input '{x}' ({params[idx]}) is "
                                    "computed at run time, but tilewise needs it constant to fix shapes")
                    continue
                attrs[params[idx]] = consts[x]
            else:
                inputs.append(x)
        kept.append(Node(node.op_type, node.name or f"{node.op_type}_{k}", inputs, list(node.output), attrs))

    # shape inference on the folded model
    infos = _infer(m, graph, kept, consts, problems)
    needed = {x for n in kept for x in n.inputs} | {o.name for o in g.output}
    for n in kept:
        n.outputs = [o if (o in needed or k == 0) else "" for k, o in enumerate(n.outputs)]
        if n.op not in SUPPORTED:
            problems.append(f"node {n.name} ({n.op}): operator not supported by tilewise")
        for o in n.outputs:
            if o and o in needed and o not in infos and o not in consts:
                problems.append(f"node {n.name} ({n.op}): the shape of output '{o}' cannot be resolved "
                                "statically; pass concrete input shapes with shapes=")
    if problems:
        head = f"cannot import {g.name or 'the model'}: {len(problems)} problem(s):"
        raise ModelError("\n  ".join([head] + problems[:50] + (["..."] if len(problems) > 50 else []))
                         + "\nWhat to do: give static input shapes, or replace the listed operators.")
    graph.nodes = kept
    graph.constants = {k: v for k, v in consts.items()}
    graph.infos = infos
    for o in g.output:
        if o.name in consts:
            c = consts[o.name]
            graph.outputs.append(TensorInfo(o.name, tuple(c.shape), ONNX_DTYPES.get(
                _np_to_onnx(c.dtype), "float32")))
        else:
            graph.outputs.append(infos[o.name])
    from .passes import eliminate_dead_nodes
    return eliminate_dead_nodes(graph)


def _fold_nodes(raw: list, consts: dict, known: dict, problems: list) -> tuple[list, bool]:
    """Evaluate nodes whose inputs are constants (and Shape/Size of values of known shape)."""
    out, changed = [], False
    for k, node in raw:
        attrs = attrs_of(node)
        present = [x for x in node.input if x]
        outs = None
        try:
            if (present and all(x in consts for x in present)) or (not present and node.op_type == "Constant"):
                outs = fold(node.op_type, [consts.get(x) if x else None for x in node.input], attrs)
            elif node.op_type in ("Shape", "Size") and present and present[0] in known:
                shape = np.zeros(known[present[0]], np.int8)
                outs = fold(node.op_type, [shape], attrs)
        except Exception as e:
            problems.append(f"node {node.name or k} ({node.op_type}): cannot evaluate it on its constant "
                            f"inputs: {e}")
            continue
        if outs is None:
            out.append((k, node))
            continue
        changed = True
        for name, v in zip(node.output, outs):
            consts[name] = v
    return out, changed


def _raw_shapes(m, graph: Graph, nodes: list, consts: dict) -> dict:
    """Static shapes ONNX's inference finds for the values of not-yet-canonical nodes."""
    from onnx import helper
    used = {x for n in nodes for x in n.input}
    inits = [numpy_helper.from_array(v, k) for k, v in consts.items() if k in used and v.size <= 4096]
    big = [helper.make_tensor_value_info(k, _np_to_onnx(v.dtype), list(v.shape)) for k, v in consts.items()
           if k in used and v.size > 4096]
    ins = [helper.make_tensor_value_info(i.name, _np_to_onnx(np.dtype(i.dtype)), list(i.shape))
           for i in graph.inputs]
    g2 = helper.make_graph(nodes, "partial", ins + big, list(m.graph.output), inits)
    m2 = helper.make_model(g2, opset_imports=list(m.opset_import), ir_version=max(m.ir_version, 7))
    try:
        inferred = shape_inference.infer_shapes(m2, strict_mode=False, data_prop=True)
    except Exception:
        return {}
    out = {}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.output):
        dims = _dims(vi)
        if vi.type.tensor_type.HasField("shape") and all(isinstance(d, int) for d in dims):
            out[vi.name] = tuple(dims)
    return out


def _np_to_onnx(dt) -> int:
    return onnx.helper.np_dtype_to_tensor_dtype(np.dtype(dt))


def _infer(m, graph: Graph, nodes: list[Node], consts: dict, problems: list) -> dict[str, TensorInfo]:
    """Run ONNX shape inference on the folded graph; returns value name -> TensorInfo."""
    from onnx import helper
    used = {x for n in nodes for x in n.inputs} | {o.name for o in m.graph.output}
    # small constants as initializers (their values can decide shapes); large ones as typed inputs
    inits = [numpy_helper.from_array(v, k) for k, v in consts.items()
             if k in used and v.dtype != object and v.size <= 4096]
    big = [helper.make_tensor_value_info(k, _np_to_onnx(v.dtype), list(v.shape)) for k, v in consts.items()
           if k in used and v.dtype != object and v.size > 4096]
    onodes = []
    for n in nodes:
        attrs = {}
        params = PARAM_INPUTS.get(n.op, {})
        extra_inputs: dict[int, str] = {}
        for k, v in n.attrs.items():
            if k in params.values():
                idx = next(i for i, name in params.items() if name == k)
                cname = f"__param_{n.name}_{k}"
                inits.append(numpy_helper.from_array(np.asarray(v), cname))
                extra_inputs[idx] = cname
            else:
                attrs[k] = v
        inputs = list(n.inputs)
        for idx in sorted(extra_inputs):
            while len(inputs) < idx:
                inputs.append("")
            inputs.insert(idx, extra_inputs[idx])
        onodes.append(helper.make_node(n.op, inputs, n.outputs, name=n.name, **attrs))
    ins = [helper.make_tensor_value_info(i.name, _np_to_onnx(np.dtype(i.dtype if i.dtype != "bool" else "bool")),
                                         list(i.shape)) for i in graph.inputs]
    outs = [o for o in m.graph.output]
    g2 = helper.make_graph(onodes, "folded", ins + big, outs, inits)
    m2 = helper.make_model(g2, opset_imports=list(m.opset_import), ir_version=max(m.ir_version, 7))
    try:
        inferred = shape_inference.infer_shapes(m2, strict_mode=False, data_prop=True)
    except Exception as e:
        problems.append(f"ONNX shape inference failed: {str(e).splitlines()[0]}")
        return {}
    out: dict[str, TensorInfo] = {}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.output) + list(inferred.graph.input):
        dims = _dims(vi)
        dt = ONNX_DTYPES.get(vi.type.tensor_type.elem_type)
        if dt is None or not vi.type.tensor_type.HasField("shape") or any(not isinstance(d, int) for d in dims):
            if dt is None and vi.type.tensor_type.elem_type:
                problems.append(f"value {vi.name}: element type {vi.type.tensor_type.elem_type} is not supported")
            continue
        out[vi.name] = TensorInfo(vi.name, tuple(dims), dt)
    return out
