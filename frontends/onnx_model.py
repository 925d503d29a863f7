"""Reading an ONNX model safely: the file, the structure of its graph, its initializers.

`load_model` turns a bad file into a one-line ModelError.  `check_graph` applies the rules
that onnx.checker (full check) and ONNX Runtime apply to a graph: each node fits its
operator's schema, unique input and initializer names, one definition per value, every input defined, every output produced,
no cycle; it returns an order of the nodes in which each runs after its producers (ONNX
Runtime accepts unsorted nodes and sorts them, so tilewise does too).  `read_initializers`
reads external data from the model's folder, and only from files inside it.
"""
from __future__ import annotations

import heapq
import os

import numpy as np
import onnx
from onnx import numpy_helper


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


def _label(node, k: int) -> str:
    """How errors name a node: its name (or its position) and its op."""
    return f"node {node.name or k} ({node.op_type})"


def check_graph(m: onnx.ModelProto) -> list[int]:
    """The positions of m's nodes in an order that runs every node after the producers of its
    inputs (ONNX Runtime sorts them too); a ModelError listing every structural problem that
    onnx.checker and ONNX Runtime refuse: a node that does not fit its operator's schema, a
    name declared or written twice, an input nothing defines, a cycle, a graph output nothing
    produces."""
    g = m.graph
    if not 0 <= m.ir_version <= onnx.IR_VERSION:        # ONNX Runtime refuses a newer IR version too
        raise ModelError(f"invalid graph {g.name or 'model'}: the model's IR version {m.ir_version} is not one "
                         f"this tilewise reads (1 to {onnx.IR_VERSION}); save it with an IR version in that range")
    problems = _schema_problems(m)
    defined: dict[str, str] = {}               # value -> what defines it
    for what, names in (("input", [vi.name for vi in g.input]), ("initializer", [t.name for t in g.initializer])):
        seen: set[str] = set()
        for name in names:
            if name in seen:
                problems.append(f"{what} '{name}' is declared twice; give each {what} its own name")
            seen.add(name)
            defined.setdefault(name, f"{what} '{name}'")   # an initializer may be an input's default
    producer: dict[str, int] = {}
    for k, node in enumerate(g.node):
        for o in node.output:
            if o and o in defined:
                problems.append(f"{_label(node, k)}: writes '{o}', which {defined[o]} already defines "
                                "(every value must have exactly one definition)")
            elif o:
                defined[o], producer[o] = _label(node, k), k
    for k, node in enumerate(g.node):
        for x in node.input:
            if x and x not in defined:
                problems.append(f"{_label(node, k)}: input '{x}' is not a graph input, an initializer "
                                "or any node's output")
    for o in g.output:
        if o.name not in defined:
            problems.append(f"output '{o.name}': no node produces it and it is not a graph input or "
                            "initializer; remove it from the graph outputs or add its producer")
    if not problems:
        order, cycle = _topological(g, producer)
        if cycle:
            problems.append(_cycle_message(g, cycle))
    if problems:
        raise ModelError("\n  ".join([f"invalid graph {g.name or 'model'}: {len(problems)} problem(s):"]
                                     + problems[:50] + (["..."] if len(problems) > 50 else [])))
    return order


def _schema_problems(m: onnx.ModelProto) -> list[str]:
    """onnx.checker's verdict on each default-domain node: its inputs' count, a required input
    left empty, unknown attributes, attributes of the wrong type, an op the opset lacks."""
    opsets = {o.domain: o.version for o in m.opset_import}
    if opsets.get("", opsets.get("ai.onnx", 1)) > onnx.defs.onnx_opset_version():
        return []                       # from_onnx reports the opset itself
    ctx = onnx.checker.C.CheckerContext()
    ctx.ir_version, ctx.opset_imports = m.ir_version, opsets
    problems = []
    for k, node in enumerate(m.graph.node):
        if node.domain not in ("", "ai.onnx"):
            continue                    # from_onnx refuses custom domains
        try:
            onnx.checker.check_node(node, ctx)
        except Exception as e:
            problems.append(f"{_label(node, k)}: {str(e).strip().splitlines()[0]}")
    return problems


def _topological(g, producer: dict[str, int]) -> tuple[list[int], list[int]]:
    """Kahn's order (file order among ready nodes) and, if the nodes are not acyclic, one cycle."""
    deps = [{producer[x] for x in node.input if x in producer} for node in g.node]
    users: dict[int, list[int]] = {}
    for k, ds in enumerate(deps):
        for d in ds:
            users.setdefault(d, []).append(k)
    waiting = [len(ds) for ds in deps]
    ready = [k for k, w in enumerate(waiting) if w == 0]        # a heap: the earliest ready node first
    order: list[int] = []
    while ready:
        k = heapq.heappop(ready)
        order.append(k)
        for u in users.get(k, []):
            waiting[u] -= 1
            if waiting[u] == 0:
                heapq.heappush(ready, u)
    if len(order) == len(deps):
        return order, []
    stuck = {k for k, w in enumerate(waiting) if w > 0}
    path, k = [], min(stuck)              # walk back through stuck producers until one repeats
    while k not in path:
        path.append(k)
        k = min(d for d in deps[k] if d in stuck)
    return order, path[path.index(k):][::-1]


def _cycle_message(g, cycle: list[int]) -> str:
    """'node a (Relu) reads its own output' or the nodes of the cycle, each reading the next one's output."""
    if len(cycle) == 1:
        node = g.node[cycle[0]]
        x = next(x for x in node.input if x in node.output)
        return (f"{_label(node, cycle[0])}: reads its own output '{x}' (a cycle); a node's inputs "
                "must come from earlier nodes")
    steps = []
    for a, b in zip(cycle, cycle[1:] + cycle[:1]):
        x = next(x for x in g.node[b].input if x in g.node[a].output)
        steps.append(f"{_label(g.node[b], b)} reads '{x}' from {_label(g.node[a], a)}")
    return "the graph has a cycle: " + "; ".join(steps) + "; a node's inputs must come from earlier nodes"


def model_dir(model) -> str | None:
    """The folder external data is read from: the model file's (None for bytes or a ModelProto)."""
    if isinstance(model, (onnx.ModelProto, bytes, bytearray)):
        return None
    return os.path.dirname(os.path.abspath(os.fspath(model)))


def read_initializers(g, base_dir: str | None, problems: list) -> dict[str, np.ndarray]:
    """The initializers' values; external data is read from the model's folder, and only from
    files inside it (onnx.checker's rule), so a model cannot pull in files from elsewhere."""
    out = {}
    for t in g.initializer:
        try:
            if onnx.external_data_helper.uses_external_data(t):
                _check_external_location(t, base_dir)
            out[t.name] = numpy_helper.to_array(t, base_dir or "")
        except ModelError as e:
            problems.append(str(e))
        except Exception as e:
            problems.append(f"initializer '{t.name}': its data cannot be read as its declared shape "
                            f"{list(t.dims)}: {str(e).splitlines()[0] if str(e) else type(e).__name__}")
    return out


def _check_external_location(t, base_dir: str | None) -> None:
    """ModelError unless t's external data file is a relative path inside base_dir."""
    loc = next((e.value for e in t.external_data if e.key == "location"), "")
    where = f"initializer '{t.name}': external data '{loc}'"
    if base_dir is None:
        raise ModelError(f"{where}: the model was given in memory; pass the model's file path so its "
                         "data files are found next to it")
    path = os.path.realpath(os.path.join(base_dir, loc))
    if os.path.isabs(loc) or ".." in loc.replace("\\", "/").split("/") or \
            os.path.commonpath([path, os.path.realpath(base_dir)]) != os.path.realpath(base_dir):
        raise ModelError(f"{where} is outside the model's folder {base_dir}; an external data location "
                         "must be a relative path to a file inside it")
    if not os.path.isfile(path):
        raise ModelError(f"{where}: no such file in the model's folder {base_dir}")
