"""What the ONNX importer refuses, and how it says so: every problem at once, in the caller's words.

frontends/onnx.py imports a model; this module judges what it imported.  The checks run on
the folded, shape-inferred nodes and collect every problem before anything is compiled, so
that one ModelError lists every offending node and tensor (a user fixing a model one error
per run would need as many runs as it has problems): ONNX Runtime's type rules
(`type_problems`), the per-axis attributes of convolutions and poolings
(`attribute_length_problems`), and each node's support, lowering CHECKS, zero-size tensors,
unresolved shapes and constant indices (`check_nodes`).  `refuse` raises the ModelError that
lists them, with the fix in the caller's words (`ADVICE`: Python, the command line or
tilewise.InferenceSession).
"""
from __future__ import annotations

import math

import onnx

from .dtypes import ONNX_DTYPES, onnx_elem_type
from .graph import Node, TensorInfo
from .lower_qnn import quantization_reason
from .onnx_model import ModelError

# Ops whose attributes give one value per spatial axis of their input (pads: a start and an end
# per axis); ONNX Runtime refuses any other length, and the lowerings index them.
SPATIAL_ATTRIBUTES = {
    op: {"kernel_shape": 1, "strides": 1, "dilations": 1, "pads": 2, "output_padding": 1}
    for op in ("Conv", "ConvTranspose", "ConvInteger", "QLinearConv", "DeformConv",
               "MaxPool", "AveragePool", "LpPool", "MaxUnpool")}


# How the errors say to fix an input's shape, in the words of the caller: Python or the command line.
ADVICE = {
    "python": {"shape": "pass shapes={{'{name}': {dims}}} to from_onnx",
               "todo": "give static input shapes with shapes= and bind shape inputs with constants="},
    "cli": {"shape": "give it with --shape {name}={x_dims}",
            "todo": "give static input shapes with --shape NAME=DIMS"},
    "session": {"shape": "pass shapes={{'{name}': {dims}}} to tilewise.InferenceSession",
                "todo": "give static input shapes with InferenceSession(..., shapes=)"},
}


def shape_advice(advice: str, name: str, dims: list) -> str:
    """How to fix input `name`'s shape, with its declared dims (symbolic ones as 1) as the example."""
    example = [d if isinstance(d, int) and d >= 0 else 1 for d in dims]
    return ADVICE[advice]["shape"].format(name=name, dims=tuple(example),
                                          x_dims="x".join(map(str, example)) or "DIMS")


def refuse(g, problems: list[str], advice: str = "python") -> None:
    """Raise the ModelError that lists every problem found (the first 50)."""
    problems = list(dict.fromkeys(problems))     # a type problem may be found before and after widening
    head = f"cannot import {g.name or 'the model'}: {len(problems)} problem(s):"
    raise ModelError("\n  ".join([head] + problems[:50] + (["..."] if len(problems) > 50 else []))
                     + "\nWhat to do: fix or replace the listed nodes and tensors; "
                     + ADVICE[advice]["todo"] + ".")


def type_name(tp) -> str:
    """'element type FLOAT16' for tensors; the kind of value (sequence, optional...) otherwise."""
    kind = tp.WhichOneof("value")
    if kind != "tensor_type":
        kind = kind.replace("_type", "") if kind else "untyped"
        return f"{'an' if kind[0] in 'aeiou' else 'a'} {kind} value"
    et = tp.tensor_type.elem_type
    try:
        return f"element type {onnx.TensorProto.DataType.Name(et)}"
    except ValueError:
        return f"element type {et}"


def type_problems(g, raw: list, infos: dict, consts: dict, opset: int) -> list[str]:
    """What ONNX Runtime's type check refuses: a node whose inputs bound to one type parameter
    of its schema (T of Add's A and B) differ, a graph output declared with another element
    type than the one computed."""
    def dtype(x: str) -> str | None:
        return consts[x].dtype.name if x in consts else infos[x].dtype if x in infos else None

    problems = []
    for k, node in raw:
        try:
            schema = onnx.defs.get_schema(node.op_type, opset, "")
        except Exception:
            continue                    # check_graph has reported it
        params = {c.type_param_str for c in schema.type_constraints}
        bound: dict[str, str] = {}
        for idx, x in enumerate(node.input):
            formal = schema.inputs[min(idx, len(schema.inputs) - 1)] if schema.inputs else None
            if not x or formal is None or formal.type_str not in params or dtype(x) is None:
                continue
            first = bound.setdefault(formal.type_str, x)
            if dtype(first) != dtype(x):
                problems.append(f"node {node.name or k} ({node.op_type}): inputs '{first}' ({dtype(first)}) and "
                                f"'{x}' ({dtype(x)}) must have one element type ({formal.type_str} in its schema)")
                break
    for o in g.output:
        declared = o.type.tensor_type.elem_type if o.type.HasField("tensor_type") else 0
        if declared and dtype(o.name) and onnx_elem_type(dtype(o.name)) != declared:
            problems.append(f"output '{o.name}': the model declares {type_name(o.type)}, but it is computed "
                            f"as {dtype(o.name)}")
    return problems


def attribute_length_problems(nodes: list[Node], infos: dict, consts: dict) -> list[str]:
    """A Conv's or a pooling's per-axis attribute (SPATIAL_ATTRIBUTES) whose length is not its
    data's number of spatial axes (twice that for pads), as ONNX Runtime refuses it."""
    problems = []
    for n in nodes:
        per_axis = SPATIAL_ATTRIBUTES.get(n.op)
        x = n.inputs[0] if per_axis and n.inputs else ""
        rank = consts[x].ndim if x in consts else len(infos[x].shape) if x in infos else None
        if rank is None or rank < 3:
            continue                    # inference or the op's check reports the data's rank
        for key, times in per_axis.items():
            if key in n.attrs and len(n.attrs[key]) != times * (rank - 2):
                problems.append(f"node {n.name} ({n.op}): attribute {key} has {len(n.attrs[key])} value(s), "
                                f"but its {rank - 2}-D data '{x}' needs {times * (rank - 2)}")
    return problems


def check_nodes(nodes: list[Node], infos: dict, consts: dict, needed: set, opset: int, problems: list,
                why: dict, dropped: list[Node]) -> None:
    """Every reason a node cannot be compiled: an unsupported op, its lowering's CHECKS, a
    zero-size tensor, a second output, a shape that is not static (with the reason ONNX's
    inference gave for the node, in `why`).  The nodes whose outputs have no elements (`dropped`,
    now constants) get their lowering's CHECKS only: ONNX Runtime refuses them too."""
    from .lowering import CHECKS, SUPPORTED

    def info(name: str) -> TensorInfo | None:
        if name in consts:
            c = consts[name]
            return TensorInfo(name, tuple(c.shape), ONNX_DTYPES.get(onnx_elem_type(c.dtype), str(c.dtype)))
        return infos.get(name)

    supported = set(ONNX_DTYPES.values())
    for name in sorted(needed & consts.keys()):
        if consts[name].dtype.name not in supported:
            kind = "string" if consts[name].dtype.kind in "OSU" else consts[name].dtype.name
            problems.append(f"constant '{name}': element type {kind} is not supported "
                            f"(tilewise supports tensors of {', '.join(sorted(supported))})")
    for n in dropped:
        check = CHECKS.get(n.op)
        ins = [info(x) if x else None for x in n.inputs]
        reason = check(n, ins, opset) if check and all(info(x) for x in n.inputs if x) else None
        if reason:
            problems.append(f"node {n.name} ({n.op}): {reason}")
    for n in nodes:
        if n.op not in SUPPORTED:
            problems.append(f"node {n.name} ({n.op}): operator not supported by tilewise")
            continue
        ins = [info(x) if x else None for x in n.inputs]
        if any(i is not None and 0 in i.shape for i in ins + [infos.get(o) for o in n.outputs if o]):
            problems.append(f"node {n.name} ({n.op}): tensors with a zero-size dimension are not supported")
            continue
        check = CHECKS.get(n.op)
        reason = check(n, ins, opset) if check and all(info(x) for x in n.inputs if x) else None
        reason = (reason or _constant_index_reason(n, ins, consts) or quantization_reason(n, consts)
                  or _reshape_reason(n, ins, infos))
        if not reason and sum(1 for o in n.outputs if o) > 1:
            reason = "only its first output is supported"
        if reason:                      # it explains an output inference could not shape, too
            problems.append(f"node {n.name} ({n.op}): {reason}")
            continue
        if problems and any(x and info(x) is None for x in n.inputs):
            continue                    # an input a problem above left unshaped: that problem explains it
        for o in n.outputs:
            said = why.get(n.name) or why.get(n.name.rsplit(".", 1)[0])    # canonical parts: n.0, n.1
            if o and o in needed and o not in infos and o not in consts and said:
                problems.append(f"node {n.name} ({n.op}): invalid for its inputs "
                                f"{[i.shape if i else None for i in ins]}: {said}")
                break
            if o and o in needed and o not in infos and o not in consts and all(
                    info(x) for x in n.inputs if x):
                problems.append(f"node {n.name} ({n.op}): ONNX shape inference gives output '{o}' no shape "
                                f"from inputs of shapes {[i.shape if i else None for i in ins]}; check its "
                                "attributes and parameter inputs against the ONNX operator's spec")
            elif o and o in needed and o not in infos and o not in consts:
                problems.append(f"node {n.name} ({n.op}): the shape of output '{o}' cannot be resolved "
                                "statically; pass concrete input shapes with shapes=")


def _reshape_reason(n: Node, ins: list, infos: dict) -> str | None:
    """Why a shape op's output cannot hold its input's elements (ONNX's shape inference gives a
    Reshape its target shape without counting them: a batch-1 target such as [1, 2048] taking a
    batch of 2), or None."""
    out = infos.get(n.outputs[0]) if n.outputs and n.outputs[0] else None
    if n.op not in ("Reshape", "Flatten", "Squeeze", "Unsqueeze") or not ins or ins[0] is None or out is None:
        return None
    have, want = math.prod(ins[0].shape), math.prod(out.shape)
    if have == want:
        return None
    return (f"its input {ins[0].shape} has {have} elements, its output {out.shape} {want}: the target shape "
            f"must hold the same elements (a shape written for another batch? give the input shapes it was "
            f"written for)")


def _constant_index_reason(n: Node, ins: list, consts: dict) -> str | None:
    """Why a Gather's constant indices cannot be used: one outside the data's axis, which ONNX
    Runtime refuses (the kernel clamps the indices it only sees at run time)."""
    if n.op not in ("Gather", "GatherElements") or len(n.inputs) < 2 or n.inputs[1] not in consts \
            or ins[0] is None or not ins[0].shape:
        return None
    axis = int(n.attrs.get("axis", 0))
    extent = ins[0].shape[axis % len(ins[0].shape)]
    idx = consts[n.inputs[1]]
    bad = idx[(idx < -extent) | (idx >= extent)]
    if not bad.size:
        return None
    return (f"index {bad.flat[0]} in '{n.inputs[1]}' is outside [-{extent}, {extent - 1}], the range of axis "
            f"{axis} of '{n.inputs[0]}'")
