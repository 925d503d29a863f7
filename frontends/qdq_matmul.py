"""The QDQ pass's matmul of two activations (qdq.py): DequantizeLinear(a) x DequantizeLinear(b) ->
MatMul (-> QuantizeLinear), QDQ attention's Q.K^T and scores.V, becomes one `tilewise.QLinearMatMul`
node that the int8 batched matmul kernel runs (te/ops/int8_batch_matmul.py).

Both operands stay quantised (uint8 or int8, per tensor, constant zero points); with a
QuantizeLinear after the MatMul the node writes its quantised output, rounded as ONNX Runtime's
QLinearMatMul (one float32 multiplier sa * sb / sy); with a Cast to int32 after it and unit scales
(MatMulInteger's expansion, qoperators.py) the exact int32 sum; else the float32 product of the
dequantized operands, computed in int32.
"""
from __future__ import annotations

from .graph import Node
from .lower_qnn import QMATMUL
from .qdq import plain
from .qdq_anchor import INT32


def rewrite_activation_matmul(p, n: Node) -> bool:
    """Rewrite the MatMul n of two dequantized values (neither a weight the int8 anchor took) into
    tilewise.QLinearMatMul; returns whether it did."""
    g = p.g
    a, b = p.dq_of(n.inputs[0]), p.dq_of(n.inputs[1])
    if not (plain(a) and plain(b)) or any(len(g.info(v).shape) < 2 for v in (a.value, b.value)):
        return False
    attrs = {**a.attrs("a"), **b.attrs("b")}
    q = p.only_consumer(n.outputs[0])
    pq = p.qparams(q, quantize=True)
    old = [n]
    if plain(pq):
        attrs.update(pq.attrs("y"), out_dtype=pq.dtype)
        out = q.outputs[0]
        old.append(q)
    elif (q is not None and q.op == "Cast" and int(q.attrs.get("to", 0)) == INT32
            and attrs["a_scale"] == attrs["b_scale"] == 1.0):
        attrs["out_dtype"] = "int32"
        out = q.outputs[0]
        old.append(q)
    else:
        out = n.outputs[0]
    p.replace(old, [Node(QMATMUL, f"{n.name}.int8", [a.value, b.value], [out], attrs)])
    return True
