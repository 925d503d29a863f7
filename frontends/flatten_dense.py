"""Dense layers of a batched activation as 2-D matmuls: MatMul(x (..., K), W (K, N)) — every linear
layer of a transformer exported from PyTorch, x (batch, seq, hidden) — becomes the matmul of x's
rows flattened, Reshape(x) (M, K) -> MatMul -> its elementwise chain (bias, GELU, residual Add) at
(M, N) -> Reshape back to (..., N).

Why a graph pass: the anchor's schedule fuses only the ops of its own output's shape
(te.ops.schedule._joins_tile), so a 2-D product reshaped to 3-D would run its bias and activation as
a second pass over memory; at (M, N) they fuse as a 2-D dense layer's do.  The kernel is then the
2-D matmul's tuning task (frontends.tasks.workload_of, M = batch x seq), whose records it shares
with the 2-D dense layer of that size.  A Reshape is a view, no kernel (compile.view_source), also
when its result is a graph output (the matmul's kernel writes the caller's array: compile.output_view).
The QDQ pass flattens its int8 anchors itself (qdq_anchor.rewrite_anchor) and runs before this one.
"""
from __future__ import annotations

import math

import numpy as np

from .graph import Graph, Node, TensorInfo

# elementwise ops whose result does not depend on the rank of their operands: the chain that
# moves to (M, N) (BatchNormalization and the per-axis quantisation ops name an axis)
_RANK_FREE = frozenset({
    "Relu", "LeakyRelu", "PRelu", "Clip", "Sigmoid", "Tanh", "Gelu", "HardSigmoid", "HardSwish", "Elu",
    "Softplus", "Add", "Sub", "Mul", "Div", "Pow", "Sqrt", "Exp", "Log", "Erf", "Neg", "Abs", "Reciprocal",
    "Sum", "Max", "Min", "Mean", "Where", "Cast", "Selu", "Celu", "Softsign", "Mish", "Swish"})


def flatten_dense(g: Graph) -> Graph:
    """Each MatMul of an activation of rank >= 3 by a 2-D B as the 2-D MatMul of its rows, with the
    elementwise chain after it at (M, N) (module docstring); other graphs unchanged."""
    g = g.copy()
    for n in [n for n in g.nodes if _is_batched_dense(g, n)]:
        _flatten(g, n)
    return g


def _is_batched_dense(g: Graph, n: Node) -> bool:
    return (n.op == "MatMul" and len(n.inputs) == 2 and len(g.info(n.inputs[0]).shape) >= 3
            and len(g.info(n.inputs[1]).shape) == 2)


class _Flattening:
    """One MatMul's rewrite: the (M, N) twin of each value of its chain, and the views it adds."""

    def __init__(self, g: Graph, n: Node):
        self.g = g
        self.shape = tuple(g.info(n.outputs[0]).shape)          # (..., N), the chain's shape
        self.flat_shape = (math.prod(self.shape[:-1]), self.shape[-1])
        self.twin: dict[str, str] = {}                          # a value at self.shape -> its (M, N) twin
        self.views: list[Node] = []                             # Reshape nodes to insert before the next node

    def view(self, v: str, shape: tuple) -> str:
        """v reshaped to `shape`: a new constant for a constant, else a Reshape node (a view)."""
        out = f"{v}::{'x'.join(map(str, shape))}"
        c = self.g.constants.get(v)
        if out in self.g.constants or out in self.g.infos:
            return out
        if c is not None:
            self.g.constants[out] = c.reshape(shape)
        else:
            self.g.infos[out] = TensorInfo(out, shape, self.g.info(v).dtype)
            self.views.append(Node("Reshape", out, [v], [out], {"shape": np.array(shape, np.int64)}))
        return out

    def form(self, v: str) -> tuple | None:
        """The shape v takes at (M, N): () where it stays as it is (absent, a twin, a scalar or a
        row), a row (N,) or (1,), (M, N) or (M, 1); None where it broadcasts along some leading
        axes only (no 2-D form)."""
        if not v or v in self.twin:
            return ()
        s = tuple(self.g.info(v).shape)
        if len(s) > len(self.shape):
            return None
        padded = (1,) * (len(self.shape) - len(s)) + s
        if all(d == 1 for d in padded[:-1]):
            return () if len(s) <= 1 else s[-1:]
        return (self.flat_shape[0], s[-1]) if padded[:-1] == self.shape[:-1] else None

    def rewrite(self, m: Node) -> bool:
        """Move m to (M, N) if it is an elementwise op of the chain's shape reading a value of the
        chain, each other operand with a 2-D form; returns whether it did."""
        outs = [o for o in m.outputs if o]
        if (m.op not in _RANK_FREE or len(outs) != 1 or tuple(self.g.info(outs[0]).shape) != self.shape
                or not any(i in self.twin for i in m.inputs)):
            return False
        forms = [self.form(i) for i in m.inputs]
        if any(f is None for f in forms):
            return False
        m.inputs = [self.twin.get(i, i) if not f else self.view(i, f) for i, f in zip(m.inputs, forms)]
        self.rename(m)
        return True

    def rename(self, m: Node) -> None:
        """m writes the (M, N) twin of its output."""
        out = m.outputs[0]
        twin = f"{out}::2d"
        self.g.infos[twin] = TensorInfo(twin, self.flat_shape, self.g.info(out).dtype)
        self.twin[out] = twin
        m.outputs[0] = twin


def _flatten(g: Graph, n: Node) -> None:
    """Rewrite MatMul n and the nodes after it that move to (M, N), in g (a copy the pass owns)."""
    f = _Flattening(g, n)
    x = n.inputs[0]
    n.inputs[0] = f.view(x, (f.flat_shape[0], g.info(x).shape[-1]))
    f.rename(n)
    at = g.nodes.index(n)
    nodes = g.nodes[:at] + f.views + [n]
    for m in g.nodes[at + 1:]:
        f.views = []
        if f.rewrite(m):
            nodes += f.views
        nodes.append(m)
    # each value of the chain that a node left at (..., N) or the caller reads: its view back
    read = {i for m in nodes for i in m.inputs} | {o.name for o in g.outputs}
    back = {v: t for v, t in f.twin.items() if v in read}
    g.nodes = []
    for m in nodes:
        g.nodes.append(m)
        v = next((v for v, t in back.items() if t == m.outputs[0]), None) if m.outputs else None
        if v is not None:
            g.nodes.append(Node("Reshape", f"{m.name}.unflat", [back[v]], [v],
                                {"shape": np.array(f.shape, np.int64)}))
