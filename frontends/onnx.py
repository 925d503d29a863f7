"""ONNX import: a model file (or ModelProto) becomes a Graph with static shapes.

Steps: load the model, check its graph's structure and read its initializers (onnx_model.py:
one-line errors for a bad file, the structural rules of onnx.checker and ONNX Runtime,
external data only from the model's folder); fix the input shapes and bind the inputs given
values (`constants=`); fold every node whose inputs are all constants (the light models
build their weights with ConstantOfShape, and shapes are often computed);
move parameter inputs that must be constants (a Reshape's shape, a Slice's starts...) into
attributes; infer shapes with ONNX's own inference; rewrite nodes with several used outputs
into single-output ones; then check everything at once (onnx_checks.py: operator support,
each lowering's own checks in `lowering.CHECKS`, shapes, dtypes), so that every offending node
is reported before any compilation.

tilewise compiles for static shapes: an input that decides a shape (a Reshape's target, Pad's
pads...) must be known at import.  `shape_inputs(model)` names such inputs, and
`from_onnx(model, constants={name: value})` freezes them, as TVM's `freeze_params` does.
"""
from __future__ import annotations

import functools
import logging
import re

import numpy as np
import onnx
from onnx import numpy_helper, shape_inference

from .canonical import SHAPE_ONLY, canonicalize
from .dtypes import ONNX_DTYPES, onnx_elem_type
from .fold import attrs_of, fold
from .graph import Graph, Node, TensorInfo
from .low_precision import declared_types, widen_constants, widen_model
from .onnx_model import check_graph, load_model, model_dir, read_initializers
from .onnx_checks import ADVICE, attribute_length_problems, check_nodes, refuse, shape_advice, type_name, type_problems
from .onnx_model import ModelError  # noqa: F401  (re-exported, as frontends.onnx's names always were)
from .onnx_checks import SPATIAL_ATTRIBUTES  # noqa: F401  (re-exported)
from .lower_qnn import keeps_quantized
from .qoperators import expand as expand_qoperators
from .qoperators import is_qoperator
from .contrib import expand as expand_contrib
from .contrib import is_contrib
from .batch import batch_inputs, check_max_batch, import_batched

log = logging.getLogger(__name__)

# Inputs that decide shapes: they must be constants and become attributes of the node.
PARAM_INPUTS = {
    "Reshape": {1: "shape"}, "Unsqueeze": {1: "axes"}, "Squeeze": {1: "axes"},
    "Slice": {1: "starts", 2: "ends", 3: "axes", 4: "steps"}, "Pad": {1: "pads", 2: "constant_value", 3: "axes"},
    "Expand": {1: "shape"}, "Tile": {1: "repeats"}, "Split": {1: "split"},
    "Resize": {1: "roi", 2: "scales", 3: "sizes"}, "Upsample": {1: "scales"},
    "ReduceSum": {1: "axes"}, "ReduceMean": {1: "axes"}, "ReduceMax": {1: "axes"},
    "ReduceMin": {1: "axes"}, "ReduceProd": {1: "axes"}, "ReduceL1": {1: "axes"}, "ReduceL2": {1: "axes"},
    "ReduceSumSquare": {1: "axes"}, "ReduceLogSum": {1: "axes"}, "ReduceLogSumExp": {1: "axes"},
    "CumSum": {1: "axis"}, "CumProd": {1: "axis"}, "OneHot": {1: "depth"},
    "ConstantOfShape": {0: "shape"}, "Dropout": {1: "ratio", 2: "training_mode"},
    "Range": {0: "start", 1: "limit", 2: "delta"}, "Trilu": {1: "k"}, "TopK": {1: "k"},
}
# Parameter inputs that inference does not need: left out when they are computed at run time.
INFERENCE_IGNORES = {"Dropout": {1}}


def _dims(vi) -> list:
    t = vi.type.tensor_type
    if not t.HasField("shape"):
        return []
    return [d.dim_value if d.HasField("dim_value") and d.dim_value >= 0 else (d.dim_param or None)
            for d in t.shape.dim]


def from_onnx(model, shapes: dict | None = None, constants: dict | None = None, *,
              advice: str = "python", max_batch: int | None = None) -> Graph:
    """Import an ONNX model (path, bytes or ModelProto) into a Graph.

    shapes fixes input shapes by name; constants binds inputs to known values by name (they
    become constants before folding: how a static-shape compiler takes a Reshape's shape or
    Pad's pads that the model leaves as inputs; see `shape_inputs`).  advice: whose words
    the errors use to say how to fix an input shape: "python" (shapes=), "cli" (--shape) or
    "session" (tilewise.InferenceSession's shapes=).  max_batch: inputs whose first dimension
    only is symbolic (a dynamic batch) are compiled once for one image and run for any batch
    up to max_batch (frontends/batch.py; graph.batch says which); None refuses them.
    """
    if advice not in ADVICE:
        raise ValueError(f"from_onnx: advice={advice!r}; give one of {', '.join(ADVICE)}")
    if max_batch is not None:
        found = batch_inputs(load_model(model), dict(shapes or {}), dict(constants or {}))
        if found:
            return import_batched(model, dict(shapes or {}), dict(constants or {}), advice,
                                  check_max_batch(max_batch), found)
    original = load_model(model)
    m = widen_model(original)                  # float16/bfloat16 computed in float32
    opset = next((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), 1)
    g = m.graph
    order = check_graph(m)                     # ModelError for a graph ONNX Runtime refuses
    problems: list[str] = []
    if m is not original:                      # types that widening would hide: x + a float16 weight
        problems += type_problems(original.graph, list(enumerate(original.graph.node)),
                                  declared_types(original.graph), {}, opset)
    if opset > onnx.defs.onnx_opset_version():
        problems.append(f"the model's opset {opset} is newer than the newest this tilewise knows "
                        f"({onnx.defs.onnx_opset_version()}); convert it with onnx.version_converter")
    consts = read_initializers(g, model_dir(model), problems)
    widen_constants(consts, keep={o.name for o in g.output})
    empty: dict[str, np.ndarray] = {}          # zero-size inputs: constants while folding only
    graph = Graph(g.name or "model", opset)
    graph.inputs = _inputs(g, dict(shapes or {}), dict(constants or {}), consts, empty, problems, advice)
    raw = []
    for k in order:
        node = g.node[k]
        if node.domain not in ("", "ai.onnx") and not is_qoperator(node) and not is_contrib(node):
            problems.append(f"node {node.name or k} ({node.domain}.{node.op_type}): custom-domain op is not supported")
        else:
            raw.append((k, node))
    raw = expand_qoperators(raw, consts, opset, problems)      # QLinearConv... as DQ -> op -> Q
    raw = expand_contrib(raw, consts, opset, problems, g)      # FastGelu, Attention... as standard ops
    known = {i.name: i.shape for i in graph.inputs}
    for _ in range(8):                 # fold; learn shapes; fold what the shapes decide; repeat
        raw, changed = _fold_nodes(raw, consts, known, problems, opset)
        if not any(n.op_type in SHAPE_ONLY for _, n in raw):
            break
        # a Shape of an inner value (PyTorch's flatten) folds once inference has shaped it
        learned = _raw_shapes(m, graph, [n for _, n in raw], consts)
        if not changed and learned.items() <= known.items():
            break
        known.update(learned)
    nodes = _params_to_attrs(raw, consts, problems)             # a Reshape's shape... as attributes
    why: dict[str, str] = {}                                    # node name -> why inference failed on it
    infos = _infer(m, graph, nodes, consts, problems, why)      # ONNX's shape inference
    problems += type_problems(g, raw, infos, consts, opset)
    bad = attribute_length_problems(nodes, infos, consts)
    if bad:                             # canonicalisation and the CHECKS index these attributes
        refuse(g, problems + bad, advice)
    needed = {x for n in nodes for x in n.inputs} | {o.name for o in g.output}
    for n in nodes:
        n.outputs = [o if (o in needed or k == 0) else "" for k, o in enumerate(n.outputs)]
    dropped: list[Node] = []                                   # outputs without elements: constants
    nodes = canonicalize(nodes, infos, consts, opset, dropped)   # the forms the lowerings take
    nodes = _fold_constant_nodes(nodes, consts, opset, problems)
    check_nodes(nodes, infos, {k: v for k, v in consts.items() if k not in empty},
                {x for n in nodes for x in n.inputs} | {o.name for o in g.output}, opset, problems, why,
                dropped)
    if problems:
        refuse(g, problems, advice)
    graph.nodes = nodes
    graph.constants = {k: v for k, v in consts.items() if k not in empty}
    graph.infos = infos
    for o in g.output:
        if o.name in consts:
            c = consts[o.name]
            graph.outputs.append(TensorInfo(o.name, tuple(c.shape), ONNX_DTYPES.get(
                onnx_elem_type(c.dtype), "float32")))
        else:
            graph.outputs.append(infos[o.name])
    from .passes import eliminate_dead_nodes
    return eliminate_dead_nodes(graph)


def _inputs(g, shapes: dict, bound: dict, consts: dict, empty: dict, problems: list,
            advice: str = "python") -> list[TensorInfo]:
    """The graph's inputs with static shapes; inputs bound with constants= (and, while folding,
    zero-size ones) go into consts."""
    inputs = []
    for vi in g.input:
        if vi.name in bound:
            consts[vi.name] = _bound_value(vi, bound.pop(vi.name), problems)
            shapes.pop(vi.name, None)
            continue
        if vi.name in consts:
            continue
        dtype = ONNX_DTYPES.get(vi.type.tensor_type.elem_type)
        given = shapes.pop(vi.name, None)
        dims = _dims(vi) if given is None else _given_shape(given)
        if dims is None:
            problems.append(f"input {vi.name}: shapes= gives {given!r}; give a tuple of whole numbers >= 0")
            continue
        if given is None and any(d.HasField("dim_value") and d.dim_value < 0 for d in vi.type.tensor_type.shape.dim):
            problems.append(f"input {vi.name}: the model declares a negative dimension "
                            f"({[d.dim_value or d.dim_param for d in vi.type.tensor_type.shape.dim]}); give its "
                            f"real shape: {shape_advice(advice, vi.name, _dims(vi))}")
            continue
        if dtype is None:
            problems.append(f"input {vi.name}: {type_name(vi.type)} is not supported "
                            f"(tilewise supports tensors of {', '.join(sorted(set(ONNX_DTYPES.values())))})")
            continue
        if any(not isinstance(d, int) for d in dims):
            batch_only = not isinstance(dims[0], int) and all(isinstance(d, int) for d in dims[1:])
            dynamic = " (or max_batch=8 for any batch up to 8)" if batch_only and advice != "cli" else ""
            problems.append(f"input {vi.name}: dimension(s) {dims} are not static; "
                            f"{shape_advice(advice, vi.name, dims)}{dynamic}")
            continue
        inputs.append(TensorInfo(vi.name, tuple(dims), dtype))
        if 0 in dims:                  # no elements: what reads only it and constants folds
            consts[vi.name] = empty[vi.name] = np.zeros(dims, np.dtype(dtype))
    for what, left in (("shapes", shapes), ("constants", bound)):
        if left:
            problems.append(f"{what}= names unknown inputs: {', '.join(left)} "
                            f"(inputs are: {', '.join(vi.name for vi in g.input)})")
    return inputs


def _given_shape(value) -> list[int] | None:
    """A shape given with shapes= as a list of ints, or None if it is not a sequence of whole numbers >= 0."""
    try:
        dims = list(value)
    except TypeError:
        return None
    ok = all(isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d >= 0 for d in dims)
    return [int(d) for d in dims] if ok else None


def _params_to_attrs(raw: list, consts: dict, problems: list) -> list[Node]:
    """Graph nodes with their parameter inputs (PARAM_INPUTS) moved into attributes."""
    nodes = []
    for k, node in raw:
        attrs = attrs_of(node)
        params = PARAM_INPUTS.get(node.op_type, {})
        inputs = []
        for idx, x in enumerate(node.input):
            if idx not in params:
                inputs.append(x)
            elif x and x not in consts and idx in INFERENCE_IGNORES.get(node.op_type, ()):
                continue
            elif x and x not in consts:
                problems.append(f"node {node.name or k} ({node.op_type}): input '{x}' ({params[idx]}) is "
                                "computed at run time, but tilewise needs it constant to fix shapes "
                                "(bind the model inputs it comes from with constants=)")
            elif x:
                attrs[params[idx]] = consts[x]
        nodes.append(Node(node.op_type, node.name or f"{node.op_type}_{k}", inputs, list(node.output), attrs))
    return nodes


def shape_inputs(model) -> list[str]:
    """The graph inputs whose values the importer needs: they feed a parameter input (a
    Reshape's shape, Pad's pads, Dropout's ratio...) other than through Shape/Size.  Bind
    them with from_onnx(constants=); a Dropout ratio left unbound is ignored (inference)."""
    g = load_model(model).graph
    inits = {t.name for t in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    todo = [x for n in g.node for idx, x in enumerate(n.input)
            if x and idx in PARAM_INPUTS.get(n.op_type, {})]
    seen: set[str] = set()
    while todo:
        x = todo.pop()
        if x in seen:
            continue
        seen.add(x)
        p = producer.get(x)
        if p is not None and p.op_type not in SHAPE_ONLY:
            todo.extend(i for i in p.input if i)
    return [vi.name for vi in g.input if vi.name in seen and vi.name not in inits]


def _bound_value(vi, value, problems: list) -> np.ndarray:
    """A value given with constants=, as an array of the input's declared element type."""
    if isinstance(value, onnx.TensorProto):
        value = numpy_helper.to_array(value)
    arr = np.asarray(value)
    dtype = ONNX_DTYPES.get(vi.type.tensor_type.elem_type)
    if dtype is None:
        problems.append(f"input {vi.name}: {type_name(vi.type)} is not supported")
        return arr
    dims = _dims(vi)
    if vi.type.tensor_type.HasField("shape") and (len(dims) != arr.ndim or any(
            isinstance(d, int) and d != n for d, n in zip(dims, arr.shape))):
        problems.append(f"input {vi.name}: the value given with constants= has shape {arr.shape}, "
                        f"the model declares {dims}")
    return arr.astype(dtype)


def _fold_constant_nodes(nodes: list[Node], consts: dict, opset: int, problems: list) -> list[Node]:
    """Fold the nodes whose inputs became constant while canonicalising (after a CastLike of a
    constant, say); ops with parameter attributes were folded before canonicalisation."""
    out = []
    for n in nodes:
        present = [x for x in n.inputs if x]
        if not present or n.op in PARAM_INPUTS or not all(x in consts for x in present) \
                or keeps_quantized(n.op, n.inputs, consts):
            out.append(n)
            continue
        try:
            res = fold(n.op, [consts.get(x) if x else None for x in n.inputs], n.attrs, opset, len(n.outputs))
        except Exception as e:
            problems.append(f"node {n.name} ({n.op}): cannot evaluate it on its constant inputs: {e}")
            continue
        if res is None:
            out.append(n)
            continue
        for name, v in zip(n.outputs, res):
            if name:
                consts[name] = v
    return out


def _fold_nodes(raw: list, consts: dict, known: dict, problems: list, opset: int) -> tuple[list, bool]:
    """Evaluate nodes whose inputs are constants (and Shape/Size of values of known shape)."""
    out, changed = [], False
    for k, node in raw:
        attrs = attrs_of(node)
        present = [x for x in node.input if x]
        outs = None
        try:
            if keeps_quantized(node.op_type, node.input, consts):
                pass
            elif (present and all(x in consts for x in present)) or (not present and node.op_type == "Constant"):
                outs = fold(node.op_type, [consts.get(x) if x else None for x in node.input], attrs,
                            opset, len(node.output))
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
    m2 = _inference_model(m, graph, nodes, consts, {x for n in nodes for x in n.input}, "partial")
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


@functools.lru_cache(maxsize=None)
def _schema_attributes(op: str, opset: int) -> frozenset:
    """The attribute names of an op at an opset (a parameter that is an attribute there stays one)."""
    try:
        return frozenset(onnx.defs.get_schema(op, opset, "").attributes)
    except Exception:
        return frozenset()


def _infer(m, graph: Graph, nodes: list[Node], consts: dict, problems: list,
           why: dict) -> dict[str, TensorInfo]:
    """Run ONNX shape inference on the folded graph; returns value name -> TensorInfo, and puts
    in `why` the error strict inference reports for each node it rejects."""
    from onnx import helper
    onodes, param_inits = [], []          # parameter attributes back as initializers
    m_opset = graph.opset
    for n in nodes:
        attrs = {}
        params = PARAM_INPUTS.get(n.op, {})
        extra_inputs: dict[int, str] = {}
        attr_names = _schema_attributes(n.op, m_opset)
        for k, v in n.attrs.items():
            if k in params.values() and k not in attr_names:
                idx = next(i for i, name in params.items() if name == k)
                cname = f"__param_{n.name}_{k}"
                param_inits.append(numpy_helper.from_array(np.asarray(v), cname))
                extra_inputs[idx] = cname
            else:
                attrs[k] = v
        inputs = list(n.inputs)
        for idx in sorted(extra_inputs):
            while len(inputs) < idx:
                inputs.append("")
            inputs.insert(idx, extra_inputs[idx])
        try:
            onodes.append(helper.make_node(n.op, inputs, n.outputs, name=n.name, **attrs))
        except ValueError as e:        # an attribute onnx cannot type, e.g. an empty list
            problems.append(f"node {n.name} ({n.op}): {str(e).splitlines()[0]}")
            return {}
    used = {x for n in nodes for x in n.inputs} | {o.name for o in m.graph.output}
    m2 = _inference_model(m, graph, onodes, {k: v for k, v in consts.items() if v.dtype != object}, used,
                          "folded", param_inits)
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
                problems.append(f"value {vi.name}: {type_name(vi.type)} is not supported")
            continue
        out[vi.name] = TensorInfo(vi.name, tuple(dims), dt)
    if any(o and o not in out for n in onodes for o in n.output):
        why.update(_inference_errors(m2))
    producer = {o: n.name for n in onodes for o in n.output}
    for o in m.graph.output:        # what inference cannot type (a function op's output): as declared
        dims, dt = _dims(o), ONNX_DTYPES.get(o.type.tensor_type.elem_type)
        static = o.type.tensor_type.HasField("shape") and all(isinstance(d, int) for d in dims)
        if o.name not in out and dt and static and producer.get(o.name) not in why:
            out[o.name] = TensorInfo(o.name, tuple(dims), dt)     # not for a node inference refuses
        elif o.name in out and o.type.tensor_type.HasField("shape") and not _fits(dims, out[o.name].shape):
            # ONNX Runtime's rule: the shape computed from the inputs wins over the declared one
            log.warning("output '%s': the model declares shape %s, but it is computed as %s; using the "
                        "computed shape (fix the model's declaration to silence this)", o.name, dims,
                        list(out[o.name].shape))
    return out


def _inference_model(m, graph: Graph, nodes: list, consts: dict, used: set, name: str,
                     params: list = ()) -> onnx.ModelProto:
    """`nodes` (NodeProtos) as a model for ONNX's shape inference: the graph's inputs at their
    static shapes; of the constants in `used`, small ones as initializers (their values can
    decide shapes: a Reshape's target) and large ones as typed inputs (only their shapes matter,
    and copying weights costs); `params` more initializers; the outputs undeclared."""
    from onnx import helper
    used = used - {i.name for i in graph.inputs}
    inits = [numpy_helper.from_array(v, k) for k, v in consts.items() if k in used and v.size <= 4096]
    big = [helper.make_tensor_value_info(k, onnx_elem_type(v.dtype), list(v.shape)) for k, v in consts.items()
           if k in used and v.size > 4096]
    ins = [helper.make_tensor_value_info(i.name, onnx_elem_type(i.dtype), list(i.shape)) for i in graph.inputs]
    g2 = helper.make_graph(nodes, name, ins + big, _undeclared(m.graph.output), inits + list(params))
    return helper.make_model(g2, opset_imports=list(m.opset_import), ir_version=max(m.ir_version, 7))


def _undeclared(outputs) -> list:
    """The graph outputs without their declared element types and shapes: inference computes
    them from the inputs, and the declarations are checked against what it computes."""
    outs = []
    for o in outputs:
        o2 = onnx.ValueInfoProto()
        o2.CopyFrom(o)
        if o2.type.HasField("tensor_type"):
            o2.type.tensor_type.elem_type = 0
            o2.type.tensor_type.ClearField("shape")
        outs.append(o2)
    return outs


def _fits(declared: list, shape: tuple) -> bool:
    """Whether a declared shape (ints, names and None) admits a static shape."""
    return len(declared) == len(shape) and all(not isinstance(d, int) or d == n for d, n in zip(declared, shape))


def _inference_errors(m) -> dict[str, str]:
    """Node name -> the error ONNX's strict shape inference reports for it."""
    try:
        shape_inference.infer_shapes(m, strict_mode=True, data_prop=True)
        return {}
    except Exception as e:
        found = re.findall(r"\(op_type:\w+, node name: ([^)]*)\): (?:\[\w+\] )?([^\n]*)", str(e))
        return {name: msg.strip() for name, msg in found}
