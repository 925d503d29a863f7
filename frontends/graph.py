"""Graph IR: nodes with an op, attributes, named inputs/outputs; static shapes; constants as numpy arrays."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class TensorInfo:
    """A value of the graph: name, static shape, dtype (a tilewise dtype string)."""
    name: str
    shape: tuple[int, ...]
    dtype: str


@dataclass
class Node:
    """One operation: ONNX-style op name, attributes, and the names of its inputs and outputs."""
    op: str
    name: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict = field(default_factory=dict)

    def __str__(self) -> str:
        attrs = ", ".join(f"{k}={_short(v)}" for k, v in sorted(self.attrs.items()))
        return f"{', '.join(self.outputs)} = {self.op}({', '.join(self.inputs)}){'  {' + attrs + '}' if attrs else ''}"


def _short(v) -> str:
    s = repr(v)
    return s if len(s) < 40 else s[:37] + "..."


class Graph:
    """A model: inputs, outputs, nodes in topological order, constants, and the info of every value."""

    def __init__(self, name: str = "graph", opset: int = 13):
        self.name = name
        self.opset = opset                      # the model's default-domain opset
        self.inputs: list[TensorInfo] = []
        self.outputs: list[TensorInfo] = []
        self.nodes: list[Node] = []
        self.constants: dict[str, np.ndarray] = {}
        self.infos: dict[str, TensorInfo] = {}
        self.batch = None                       # a frontends.batch.BatchSpec: a dynamic batch

    def info(self, name: str) -> TensorInfo:
        """Shape and dtype of a value."""
        if name in self.constants:
            c = self.constants[name]
            return TensorInfo(name, tuple(c.shape), str(c.dtype) if c.dtype != np.bool_ else "bool")
        return self.infos[name]

    def producers(self) -> dict[str, Node]:
        """Value name -> the node that produces it."""
        return {o: n for n in self.nodes for o in n.outputs}

    def consumers(self) -> dict[str, list[Node]]:
        """Value name -> the nodes that read it."""
        out: dict[str, list[Node]] = {}
        for n in self.nodes:
            for i in n.inputs:
                if i:
                    out.setdefault(i, []).append(n)
        return out

    def sole_readers(self) -> Callable[[str], Node | None]:
        """reader(value): the one node that reads `value`, as its first input, where `value` is
        no graph output (a pass may then fuse or swap the pair); else None.  The readers are the
        nodes as they are now: a pass takes it once, before it rewrites."""
        cons, outputs = self.consumers(), {o.name for o in self.outputs}

        def reader(value: str) -> Node | None:
            users = cons.get(value, [])
            return users[0] if len(users) == 1 and value not in outputs and users[0].inputs[0] == value else None
        return reader

    def replace(self, old: list[Node], new: list[Node], at: Node | None = None) -> None:
        """The nodes `new` where `at` (by default old[0]) stood, every node of `old` removed: a
        fusion puts its node where the last node it replaces stood, a swap where the first did
        (their inputs are computed before either)."""
        k = self.nodes.index(old[0] if at is None else at)
        drop = {id(n) for n in old}
        before = sum(1 for n in self.nodes[:k] if id(n) not in drop)
        keep = [n for n in self.nodes if id(n) not in drop]
        self.nodes = keep[:before] + list(new) + keep[before:]

    def copy(self) -> "Graph":
        """A copy that passes can rewrite (constants shared, never mutated in place)."""
        g = Graph(self.name, self.opset)
        g.inputs, g.outputs = list(self.inputs), list(self.outputs)
        g.nodes = [Node(n.op, n.name, list(n.inputs), list(n.outputs), dict(n.attrs)) for n in self.nodes]
        g.constants = dict(self.constants)
        g.infos = dict(self.infos)
        g.batch = self.batch
        return g

    def stats(self) -> dict[str, int]:
        """Node count per op."""
        out: dict[str, int] = {}
        for n in self.nodes:
            out[n.op] = out.get(n.op, 0) + 1
        return out

    def __str__(self) -> str:
        lines = [f"graph {self.name}("
                 + ", ".join(f"{i.name}: {i.dtype}{list(i.shape)}" for i in self.inputs) + ")"]
        for n in self.nodes:
            shapes = ", ".join(f"{list(self.info(o).shape)}" for o in n.outputs if o in self.infos)
            lines.append(f"  {n}    # {shapes}")
        lines.append("  return " + ", ".join(o.name for o in self.outputs))
        n_params = sum(c.size for c in self.constants.values())
        lines.append(f"  # {len(self.nodes)} nodes, {len(self.constants)} constants ({n_params:,} values)")
        return "\n".join(lines)
