"""Dynamic batch: a model whose inputs lead with a symbolic dimension (`["N", 3, 224, 224]`),
built once and run for any batch up to a declared maximum.

    graph = frontends.from_onnx("resnet50_dyn.onnx", max_batch=8)
    lib = frontends.build(graph)
    lib.run(None, {"x": np.zeros((5, 3, 224, 224), np.float32)})

The model is imported at batch 1 and at batch 2 (and at each batch compiled, below). A value
*carries the batch* when its shape is (1, ...) at batch 1 and (2, ...) at batch 2, the rest the
same: its row-major bytes are then one contiguous block per image. Every other value must not
change with the batch, nor any constant or attribute (one that does was computed from the
batch size, e.g. a folded Shape) except a leading 1 that becomes 2 in a node that produces a
batch value (a Reshape's or Expand's target). On top of the shapes, `mixing_reason` refuses the
ops that keep the batch first but combine images: an axis-0 attribute, a Transpose that moves
axis 0, a MatMul whose right operand is a 2-D batch value, broadcasting that aligns the batch
with another axis, a recurrence in layout 0. What passes computes each image from that image
alone, so static plans for a few batches (`batch_sizes`: powers of two and the maximum), run on consecutive
chunks of the images with offsets into the batch-carrying inputs and outputs
(te.export.add_model_entry), are the model at any batch; frontends/batch_plan.py merges them
into one library.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .graph import Graph, Node
from .onnx_model import ModelError

# Why a limit: the library holds a static plan for the maximum batch (a full batch runs as fast
# as a static build of it), whose workspace grows with the batch (ResNet-50: 75 MiB at 8), and the
# C header sizes the inputs and outputs for it. 8 covers the usual serving batches at that cost.
DEFAULT_MAX_BATCH = 8
# Broadcasting ops: a batch value of lower rank than the result would align its batch with an
# inner axis of the others.
BROADCASTING = frozenset({"Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Mean", "Sum", "Where",
                          "Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "And", "Or",
                          "Xor", "PRelu", "Mod", "BitShift", "MatMul", "MatMulInteger", "BatchMatMul"})
RECURRENT = frozenset({"LSTM", "GRU", "RNN"})
# Attributes that name an axis of the node's data input (0 would be the batch); defaults of 0 too.
AXIS_ATTRIBUTES = ("axis", "axes", "batch_axis", "time_axis")
AXIS_DEFAULT_0 = {"Gather": "axis", "GatherElements": "axis", "Split": "axis", "ArgMax": "axis",
                  "ArgMin": "axis", "ScatterElements": "axis", "MeanVarianceNormalization": "axes"}


@dataclass(frozen=True)
class BatchSpec:
    """A graph's symbolic batch: the dimension's name, the declared maximum, the inputs and
    outputs that carry it (their leading dimension, 1 in the graph, is the batch), and the
    batches compiled as static plans (`sizes`, with the graph imported at each in `graphs`): a
    run takes the largest that fits the images left, again and again."""
    dim: str
    max: int
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    sizes: tuple[int, ...] = (1,)
    graphs: dict = field(default_factory=dict, compare=False, repr=False)

    def symbolic(self, name: str, shape) -> list:
        """The shape as users see it: the batch dimension's name first for a batch-carrying value."""
        shape = list(shape)
        return [self.dim] + shape[1:] if name in self.inputs + self.outputs else shape


def check_max_batch(max_batch) -> int:
    """max_batch as a whole number >= 1, or a ValueError naming it."""
    if isinstance(max_batch, bool) or not isinstance(max_batch, (int, np.integer)) or max_batch < 1:
        raise ValueError(f"max_batch={max_batch!r}: give the largest batch the library must run, "
                         f"a whole number >= 1 (e.g. {DEFAULT_MAX_BATCH})")
    return int(max_batch)


def batch_inputs(model, shapes: dict, constants: dict) -> dict[str, tuple[str, list]]:
    """{input: (dimension name, its dims)} of the model's inputs whose first dimension only is
    symbolic (and that shapes= / constants= leave open)."""
    from .onnx import _dims
    g = model.graph
    inits = {t.name for t in g.initializer}
    out = {}
    for vi in g.input:
        if vi.name in inits or vi.name in shapes or vi.name in constants:
            continue
        dims = _dims(vi)
        if dims and not isinstance(dims[0], int) and all(isinstance(d, int) for d in dims[1:]):
            out[vi.name] = (dims[0] or "N", dims)
    return out


def import_batched(model, shapes: dict, constants: dict, advice: str, max_batch: int, found: dict) -> Graph:
    """The model imported for one image, with its BatchSpec as graph.batch; a ModelError naming
    the node or value where images would mix or the batch size is computed with."""
    from .onnx import from_onnx
    names = sorted({d for d, _ in found.values()})
    if len(names) > 1:
        raise ModelError(f"inputs {', '.join(found)} lead with different symbolic dimensions "
                         f"({', '.join(names)}); give static shapes with --shape / shapes=")
    at = {b: {**shapes, **{x: [b] + dims[1:] for x, (_, dims) in found.items()}} for b in (1, 2)}
    g1 = from_onnx(model, at[1], constants, advice=advice)
    try:
        g2 = from_onnx(model, at[2], constants, advice=advice)
    except ModelError as e:             # the listing's first problem says where
        first = str(e).split("\n")[1].strip() if "\n" in str(e) else str(e)
        raise ModelError(f"the model does not import at batch 2 ({first}): it cannot run with a dynamic "
                         f"batch; build it for one batch with {_shape_hint(advice, found)}") from None
    carry = batch_values(g1, g2)
    fix = f"it cannot run with a dynamic batch; build it for one batch with {_shape_hint(advice, found)}"
    for what in (_graph_difference(g1, g2, carry), *(mixing_reason(n, g1, carry) for n in g1.nodes)):
        if what:
            raise ModelError(f"{what}: {fix}")
    _share_constants(g2, g1)
    graphs = {1: g1, 2: g2}
    sizes = batch_sizes(max_batch)
    for b in sizes:
        if b not in graphs:
            graphs[b] = from_onnx(model, {**shapes, **{x: [b] + dims[1:] for x, (_, dims) in found.items()}},
                                  constants, advice=advice)
            if [(n.op, n.outputs) for n in graphs[b].nodes] != [(n.op, n.outputs) for n in g1.nodes]:
                raise ModelError(f"the model computes with its batch size (the graph differs at batch 1 "
                                 f"and {b}): {fix}")
            _share_constants(graphs[b], g1)
    g1.batch = BatchSpec(names[0], max_batch, tuple(found), tuple(o.name for o in g1.outputs if o.name in carry),
                         sizes, {b: graphs[b] for b in sizes})
    return g1


def _share_constants(g: Graph, like: Graph) -> None:
    """Hold g's constants that equal like's as like's arrays (one copy of the weights in memory)."""
    for name, c in g.constants.items():
        o = like.constants.get(name)
        if o is not None and o.shape == c.shape and o.dtype == c.dtype and np.array_equal(o, c):
            g.constants[name] = o


def batch_sizes(max_batch: int) -> tuple[int, ...]:
    """The batches compiled as static plans: the powers of two below the maximum and the maximum.
    Each runs exactly as a static build of that batch does; a batch between runs as its binary
    decomposition (5 = 4 + 1), at most log2(max) + 1 chunks."""
    return tuple(sorted({1 << k for k in range(max_batch.bit_length()) if 1 << k < max_batch} | {max_batch}))


def _shape_hint(advice: str, found: dict) -> str:
    x, (_, dims) = next(iter(found.items()))
    example = "x".join(map(str, [1] + dims[1:]))
    return f"--shape {x}={example}" if advice == "cli" else f"shapes={{'{x}': ({example.replace('x', ', ')})}}"


def batch_values(g1: Graph, g2: Graph) -> set[str]:
    """The values that carry the batch: shape (1, ...) at batch 1 and (2, ...) at batch 2."""
    carry = set()
    seconds = {i.name: i for i in g2.inputs} | g2.infos
    for name, info in ({i.name: i for i in g1.inputs} | g1.infos).items():
        other = seconds.get(name)
        s1, s2 = tuple(info.shape), tuple(other.shape) if other is not None else None
        if s1 and s2 and s1[0] == 1 and s2 == (2,) + s1[1:]:
            carry.add(name)
    return carry


def _graph_difference(g1: Graph, g2: Graph, carry: set[str]) -> str | None:
    """How the graphs at batch 1 and 2 differ beyond the batch values' leading dimension."""
    if [(n.op, n.outputs) for n in g1.nodes] != [(n.op, n.outputs) for n in g2.nodes]:
        return "the model computes with its batch size (the graph differs at batch 1 and 2)"
    for name in sorted(set(g1.constants) | set(g2.constants)):
        a, b = g1.constants.get(name), g2.constants.get(name)
        if a is None or b is None or a.shape != b.shape or not np.array_equal(a, b):
            return f"constant {name} is computed from the batch size"
    for n1, n2 in zip(g1.nodes, g2.nodes):
        for k in set(n1.attrs) | set(n2.attrs):
            a, b = n1.attrs.get(k), n2.attrs.get(k)
            if not _same(a, b) and not (n1.outputs[0] in carry and _leading_batch(a, b)):
                return f"node {n1.name} ({n1.op}): attribute {k} is computed from the batch size ({a} at batch 1)"
        for o in n1.outputs:
            if o and o not in carry and g1.infos[o].shape != g2.infos[o].shape:
                return (f"node {n1.name} ({n1.op}): output {o} has shape {list(g1.infos[o].shape)} at batch 1 "
                        f"and {list(g2.infos[o].shape)} at batch 2, so the batch is not its first dimension")
    return None


def _same(a, b) -> bool:
    try:
        return bool(np.array_equal(np.asarray(a), np.asarray(b))) if a is not None and b is not None else a is b
    except (TypeError, ValueError):
        return a == b


def _leading_batch(a, b) -> bool:
    """A target shape whose first entry is the batch: 1 at batch 1, 2 at batch 2, the rest equal."""
    try:
        a, b = np.asarray(a).reshape(-1), np.asarray(b).reshape(-1)
    except (TypeError, ValueError):
        return False
    return a.size == b.size > 0 and a[0] == 1 and b[0] == 2 and np.array_equal(a[1:], b[1:])


def mixing_reason(n: Node, g: Graph, carry: set[str]) -> str | None:
    """Why node n would combine different images of a batch value, or None."""
    ins = [i for i in n.inputs if i in carry]
    if not ins:
        return None
    where = f"node {n.name} ({n.op})"
    rank = len(g.info(n.inputs[0]).shape) if n.inputs and n.inputs[0] else 0
    attrs = dict(n.attrs)
    if n.op in AXIS_DEFAULT_0:
        attrs.setdefault(AXIS_DEFAULT_0[n.op], 0 if AXIS_DEFAULT_0[n.op] == "axis" else [0, 2, 3])
    for key in AXIS_ATTRIBUTES:
        if key in attrs and attrs[key] is not None:
            axes = np.asarray(attrs[key]).reshape(-1).tolist()
            if any(int(a) % max(rank, 1) == 0 for a in axes):
                return f"{where} works along axis 0, the batch ({key}={attrs[key]})"
    if n.op == "Transpose" and list(attrs.get("perm", [0]))[0] != 0:
        return f"{where} moves the batch axis (perm={list(attrs['perm'])})"
    if n.op in RECURRENT and int(attrs.get("layout", 0)) == 0:
        return f"{where} in layout 0 reads axis 0 as time, so images would feed one recurrence"
    if n.op == "Gemm" and (n.inputs[0] in carry and attrs.get("transA") or
                           any(i in carry for i in n.inputs[1:2])):
        return f"{where} multiplies across the batch axis"
    out_rank = len(g.info(n.outputs[0]).shape)
    if n.op in BROADCASTING:
        for i in ins:
            r = len(g.info(i).shape)
            if r != out_rank or (n.op.startswith(("MatMul", "BatchMatMul")) and i != n.inputs[0] and r < 3):
                return f"{where} would align the batch of {i} (rank {r}) with another axis"
    return None
