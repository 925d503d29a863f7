"""The QDQ pass: DequantizeLinear -> Conv/MatMul/Gemm -> QuantizeLinear becomes an int8 anchor and
an elementwise epilogue (docs/architecture.md, "int8").

The int8 kernels compute only the int32 sum of products of a uint8 activation and an int8
weight (te/ops/qnn.py).  Everything else is folded here, at build time, into constants and the
elementwise ops that ops.schedule fuses after the anchor:

    acc = Conv(x_u8, w_s8)                               the int8 anchor (padding reads 0)
    acc + (bias_q - zx * sum(w))                         zero point and int32 bias, one constant
    float(.) * (sx * sw[k] / sy)                         per-channel requantisation, as ONNX Runtime
    QuantizeLinear(., 1, zy)                             round half to even, saturate

* int8 activations become uint8 (x + 128, zero point + 128): a QuantizeLinear to int8 whose
  value reaches only DequantizeLinear (directly or through MaxPool, Reshape, Flatten...) is
  rewritten to quantise to uint8 (its readers' zero points shifted too); elsewhere a
  `tilewise.ToUint8` node shifts the value;
* a weight zero point is subtracted at build time where w - zw fits int8 (else the conv stays
  float: its DequantizeLinear is folded into a float weight);
* a padded conv whose activation zero point is not 0 gets the exact compensation per output
  position (the kernel pads with 0, ONNX pads the real value 0, that is zx);
* an anchor whose output is not quantised again ends in float: float(.) * sx * sw[k] + bias;
  a MatMulInteger/ConvInteger (a Cast to int32 after the float op) ends in int32;
* MaxPool, Reshape, Flatten, Concat... between a DequantizeLinear and a QuantizeLinear of the
  same scale and zero point run on the quantised values; a Concat of inputs of other scales
  requantises them to its output's (`tilewise.Requantize`, one multiply-add where that is proven
  exact for all 256 values, fused into the kernel that makes each input), or, with no
  QuantizeLinear after it, reads them quantised (`tilewise.QConcat`); an Add (or two-input Sum) of dequantized values
  reads them quantised (`tilewise.QAdd`), so it fuses after either input's kernel, and with a
  uint8 QuantizeLinear after it also writes them quantised, rounded as ONNX Runtime's QLinearAdd
  rounds (two fused multiply-adds, no divide).
* a MatMul of two dequantized activations (QDQ attention) is `tilewise.QLinearMatMul`, the int8
  batched matmul with the zero points compensated at run time (qdq_matmul.py);
* a uint8 AveragePool between a DequantizeLinear and a QuantizeLinear (per tensor) is
  `tilewise.QAveragePool`, rounded as ONNX Runtime's QLinearAveragePool (its window order);
* a uint8 Softmax between a DequantizeLinear and a QuantizeLinear (per tensor) is
  `tilewise.QSoftmax`, computed as ONNX Runtime's QLinearSoftmax (an exponent table, the output
  scaled by floor(1 / y_scale), not divided by y_scale: a step apart from the float softmax).

What no int8 anchor reads stays as it was and runs in float (DequantizeLinear is elementwise);
a DequantizeLinear of a constant left over is folded into a float constant.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from .dtypes import onnx_elem_type
from .graph import Graph, Node, TensorInfo
from .lower_qnn import QADD, QAVGPOOL, QCONCAT, QSOFTMAX, REQUANTIZE

log = logging.getLogger(__name__)

# ops that move or pick quantised values without changing them: run on the integers
PASS_THROUGH = {"MaxPool", "Reshape", "Flatten", "Concat", "Squeeze", "Unsqueeze", "Transpose", "Slice"}


@dataclass
class QParams:
    """A DequantizeLinear's operands: quantised value, scale and zero point (constants as arrays,
    a computed zero point by name), the axis of a per-channel scale."""
    value: str
    dtype: str
    scale: np.ndarray
    zero: np.ndarray | str
    axis: int | None

    @property
    def per_tensor(self) -> bool:
        return self.scale.size == 1 and (isinstance(self.zero, str) or self.zero.size == 1)

    @property
    def fixed(self) -> bool:
        """Per tensor with a constant zero point: one scale and one zero point, as the attributes
        of a QLinear op (and of tilewise's integer nodes) give them."""
        return self.per_tensor and not isinstance(self.zero, str)

    @property
    def scalars(self) -> tuple[float, int]:
        """(scale, zero point) of a `fixed` QParams."""
        return float(self.scale.reshape(-1)[0]), int(self.zero.reshape(-1)[0])

    def attrs(self, prefix: str) -> dict:
        """{prefix_scale, prefix_zero_point}: a `fixed` QParams as a node's attributes."""
        scale, zero = self.scalars
        return {f"{prefix}_scale": scale, f"{prefix}_zero_point": zero}

    def same(self, other: "QParams") -> bool:
        return self.fixed and other.fixed and self.dtype == other.dtype and self.scalars == other.scalars


def plain(p: QParams | None, dtypes: tuple[str, ...] = ("uint8", "int8")) -> bool:
    """p is `fixed` over 8-bit integers of `dtypes`: a value tilewise's integer nodes take."""
    return p is not None and p.fixed and p.dtype in dtypes


class _Pass:
    def __init__(self, g: Graph):
        self.g = g
        self.outputs = {o.name for o in g.outputs}
        self.count = 0
        self.shifted: set[str] = set()      # int8 values shift_int8 made uint8 (+ 128)

    # ---- reading the graph

    def refresh(self) -> None:
        self.prod, self.cons = self.g.producers(), self.g.consumers()

    def only_consumer(self, v: str) -> Node | None:
        users = self.cons.get(v, [])
        return users[0] if len(users) == 1 and v not in self.outputs else None

    def qparams(self, n: Node | None, quantize: bool = False) -> QParams | None:
        """The operands of a DequantizeLinear (or, with `quantize`, a QuantizeLinear) node whose scale
        is constant; None for anything else."""
        if n is None or n.op != ("QuantizeLinear" if quantize else "DequantizeLinear"):
            return None
        c = self.g.constants
        if len(n.inputs) < 2 or n.inputs[1] not in c:
            return None
        scale = np.asarray(c[n.inputs[1]], np.float32)
        dtype = self.g.info(n.outputs[0] if quantize else n.inputs[0]).dtype
        z = n.inputs[2] if len(n.inputs) > 2 and n.inputs[2] else None
        zero = np.zeros(scale.shape, np.int64) if z is None else c[z].astype(np.int64) if z in c else z
        if isinstance(zero, str) and int(np.prod(self.g.info(zero).shape)) != 1:
            return None
        rank = len(self.g.info(n.inputs[0]).shape)
        axis = int(n.attrs.get("axis", 1)) % max(rank, 1) if scale.size > 1 else None
        return QParams(n.inputs[0], dtype, scale, zero, axis)

    def dq_of(self, v: str) -> QParams | None:
        return self.qparams(self.prod.get(v))

    def uint8_around(self, n: Node) -> tuple[QParams, Node, QParams] | None:
        """(the DequantizeLinear's operands of n's input, the QuantizeLinear that alone reads n, its
        operands) where both are uint8 with one scale and a constant zero point and neither value is
        one shift_int8 made uint8: DQ -> n -> Q as ONNX Runtime's uint8 QLinear kernels take it."""
        p, q = self.dq_of(n.inputs[0]), self.only_consumer(n.outputs[0])
        pq = self.qparams(q, quantize=True)
        if not (plain(p, ("uint8",)) and plain(pq, ("uint8",))) or {p.value, q.outputs[0]} & self.shifted:
            return None
        return p, q, pq

    # ---- writing the graph

    def const(self, value: np.ndarray, tag: str) -> str:
        self.count += 1
        name = f"qdq{self.count}/{tag}"
        self.g.constants[name] = np.asarray(value)
        return name

    def node(self, new: list, op: str, inputs: list[str], shape: tuple, dtype: str, tag: str,
             attrs: dict | None = None, out: str | None = None) -> str:
        self.count += 1
        out = out or f"qdq{self.count}/{tag}"
        self.g.infos[out] = TensorInfo(out, tuple(int(s) for s in shape), dtype)
        new.append(Node(op, f"qdq{self.count}.{tag}", inputs, [out], attrs or {}))
        return out

    def replace(self, old: list[Node], new: list[Node]) -> None:
        """new in place of old[0] (old's other nodes removed); dead inputs go with the dead-node pass."""
        self.g.replace(old, new)
        self.refresh()

    # ---- 0. int8 activations to uint8

    def shift_int8(self) -> None:
        """QuantizeLinear to int8 whose value reaches only DequantizeLinear (directly or through
        MaxPool, Reshape, Flatten...: they commute with the shift): quantise to uint8 (+ 128)."""
        self.refresh()
        for q in [n for n in self.g.nodes if n.op == "QuantizeLinear"]:
            p = self.qparams(q, quantize=True)
            if not plain(p, ("int8",)):
                continue
            reach = self._int8_reach(q.outputs[0])
            if reach is None:
                continue
            values, readers = reach
            self.shifted.update(values)
            q.inputs = [q.inputs[0], q.inputs[1], self.const(np.uint8(p.scalars[1] + 128), "zp_u8")]
            q.attrs["output_dtype"] = onnx_elem_type("uint8")
            for v in values:
                info = self.g.info(v)
                self.g.infos[v] = TensorInfo(info.name, info.shape, "uint8")
            for u in readers:
                z = self.qparams(u).scalars[1]
                u.inputs = [u.inputs[0], u.inputs[1], self.const(np.uint8(z + 128), "zp_u8")]

    def _int8_reach(self, v: str) -> tuple[list[str], list[Node]] | None:
        """(the values an int8 value flows to through shift-commuting ops, the DequantizeLinear nodes
        that read them), or None if it reaches anything else (an output, another op)."""
        values, readers, todo = [], [], [v]
        while todo:
            v = todo.pop()
            users = self.cons.get(v, [])
            if v in self.outputs or not users:
                return None
            values.append(v)
            for u in users:
                p = self.qparams(u)
                if p is not None and p.fixed and u.inputs[0] == v:
                    readers.append(u)
                elif u.op in PASS_THROUGH - {"Concat"} and u.inputs[0] == v and len([o for o in u.outputs if o]) == 1:
                    todo.append(u.outputs[0])
                else:
                    return None
        return values, readers

    # ---- 1. the int8 anchors

    def anchors(self) -> None:
        from .qdq_anchor import rewrite_anchor
        from .qdq_matmul import rewrite_activation_matmul
        for n in [n for n in self.g.nodes if n.op in ("Conv", "MatMul", "Gemm")]:
            self.refresh()
            if not rewrite_anchor(self, n) and n.op == "MatMul":
                self.refresh()
                rewrite_activation_matmul(self, n)

    # ---- 2. ops on quantised values

    def pass_through(self) -> None:
        """DQ -> MaxPool/Reshape/... -> Q of one scale and zero point: the op on the integers."""
        self.refresh()
        for n in list(self.g.nodes):
            if n.op not in PASS_THROUGH or len([o for o in n.outputs if o]) != 1:
                continue
            data = n.inputs if n.op == "Concat" else n.inputs[:1]
            ps = [self.dq_of(x) for x in data]
            q = self.only_consumer(n.outputs[0])
            pq = self.qparams(q, quantize=True)
            if n.op == "Concat" and self.requantized_concat(n, q, ps, pq):
                continue
            if pq is None or any(p is None or not p.same(pq) for p in ps):
                if n.op == "Concat" and all(plain(p) for p in ps):
                    self.replace([n], [Node(QCONCAT, n.name, [p.value for p in ps], list(n.outputs), {
                        "axis": int(n.attrs.get("axis", 1)), "scales": [p.scalars[0] for p in ps],
                        "zero_points": [p.scalars[1] for p in ps]})])
                continue
            m = Node(n.op, f"{n.name}.int", [p.value for p in ps] + n.inputs[len(data):], [q.outputs[0]],
                     dict(n.attrs))
            self.replace([n, q], [m])

    def quantized_avg_pools(self) -> None:
        """DQ -> 2-D AveragePool -> Q of uint8 values per tensor: ONNX Runtime runs it as
        QLinearAveragePool, so tilewise.QAveragePool computes and rounds it as that kernel does (the
        float pool sums the window in another order: a step apart near a rounding boundary)."""
        self.refresh()
        for n in list(self.g.nodes):
            if n.op != "AveragePool" or len(n.attrs.get("kernel_shape", ())) != 2:
                continue
            if any(d != 1 for d in n.attrs.get("dilations", [1, 1])) or \
                    (n.attrs.get("ceil_mode", 0) and n.attrs.get("count_include_pad", 0)):
                continue            # QLinearAveragePool has no dilations; ceil_mode's padded count differs
            around = self.uint8_around(n)
            if around is None:
                continue
            p, q, pq = around
            attrs = dict(n.attrs, **p.attrs("x"), **pq.attrs("y"))
            self.replace([n, q], [Node(QAVGPOOL, f"{n.name}.int", [p.value], [q.outputs[0]], attrs)])

    def quantized_softmaxes(self) -> None:
        """DQ -> Softmax -> Q of uint8 values per tensor: ONNX Runtime runs it as QLinearSoftmax, whose
        table and rounding tilewise.QSoftmax reproduces (te.ops.qnn.qlinear_softmax)."""
        from te.ops.qnn import softmax_table
        self.refresh()
        for n in list(self.g.nodes):
            if n.op != "Softmax":
                continue
            around = self.uint8_around(n)
            if around is None:
                continue
            p, q, pq = around
            shape = self.g.info(n.inputs[0]).shape
            axis = int(n.attrs.get("axis", -1 if self.g.opset >= 13 else 1)) % len(shape)
            if self.g.opset < 13 and axis != len(shape) - 1:
                continue            # before opset 13 Softmax flattens the axes from `axis` on
            table = self.const(softmax_table(p.scalars[0], shape[axis]), "softmax_table")
            attrs = {"axis": axis, **pq.attrs("y")}
            self.replace([n, q], [Node(QSOFTMAX, f"{n.name}.int", [p.value, table], [q.outputs[0]], attrs)])

    def requantized_concat(self, n: Node, q: Node | None, ps: list[QParams | None], pq: QParams | None) -> bool:
        """DQ -> Concat -> Q where the inputs' scales or zero points differ from the output's: each
        such input requantised (`tilewise.Requantize`, fused after the kernel that makes it), then
        the Concat on the integers, whose parts the kernels write into their slices."""
        if not plain(pq) or not all(plain(p) for p in ps) or all(p.same(pq) for p in ps):
            return False
        new, parts = [], []
        for p in ps:
            if p.same(pq):
                parts.append(p.value)
                continue
            attrs = {**p.attrs("in"), **pq.attrs("out"), "out_dtype": pq.dtype}
            parts.append(self.node(new, REQUANTIZE, [p.value], self.g.info(p.value).shape, pq.dtype, "requant", attrs))
        new.append(Node("Concat", f"{n.name}.int", parts + n.inputs[len(ps):], [q.outputs[0]], dict(n.attrs)))
        self.replace([n, q], new)
        return True

    def quantized_adds(self) -> None:
        """Add (or a Sum of two: older ResNets' residual) of dequantized values: tilewise.QAdd
        reads them quantised; with a QuantizeLinear after it (requantized_add) it writes them too."""
        self.refresh()
        for n in list(self.g.nodes):
            if n.op not in ("Add", "Sum") or len(n.inputs) != 2:
                continue
            attrs, ins, ps = {}, [], []
            for key, x in zip("ab", n.inputs):
                p = self.dq_of(x)
                if plain(p):
                    attrs.update(p.attrs(key))
                    ins.append(p.value)
                    ps.append(p)
                else:
                    ins.append(x)
            if not attrs:
                continue
            if len(ps) == 2 and self.requantized_add(n, ins, attrs, ps):
                continue
            if any(x in self.g.constants for x in ins):
                continue
            self.replace([n], [Node(QADD, n.name, ins, list(n.outputs), attrs)])

    def requantized_add(self, n: Node, ins: list[str], attrs: dict, ps: list[QParams]) -> bool:
        """DQ -> Add -> QuantizeLinear of uint8 values (one of them may be a constant, a bias): ONNX Runtime
        runs it as QLinearAdd, so tilewise.QAdd computes and rounds it as QLinearAdd does
        (lower_qnn._qadd).  Under a broadcast QLinearAdd walks rows of the output's last axis; where
        the first input is one value per row (its last axis 1) that value takes the second operand's
        place in the sum (a different rounding), so the inputs are swapped.

        int8 values keep the float sum and QuantizeLinear's divide: ONNX Runtime 1.32 fuses an int8
        DQ -> Add -> Q in some graphs only (not where the sum is dequantized again, as in a QDQ
        model), and runs the float ops, dividing, elsewhere.  lower_qnn._qlinear_add takes int8
        values too (`*_shift`: the int8 values shift_int8 made uint8 + 128, read back as int8)."""
        q = self.only_consumer(n.outputs[0])
        pq = self.qparams(q, quantize=True)
        if not plain(pq):
            return False
        last = [(tuple(self.g.info(x).shape) or (1,))[-1] for x in ins]
        if last[0] == 1 and last[1] > 1:
            ins, ps = ins[::-1], ps[::-1]
            attrs = {f"{'ab'[1 - 'ab'.index(k[0])]}{k[1:]}": v for k, v in attrs.items()}
        shifts = {key: 128 if v in self.shifted else 0 for key, v in zip("abc", [p.value for p in ps] + [q.outputs[0]])}
        types = {"int8" if shifts[key] else p.dtype for key, p in zip("abc", ps + [pq])}
        if types != {"uint8"}:
            return False
        attrs.update({**pq.attrs("c"), "out_dtype": pq.dtype}, **{f"{k}_shift": v for k, v in shifts.items()})
        self.replace([n, q], [Node(QADD, n.name, ins, [q.outputs[0]], attrs)])
        return True

    # ---- 3. what is left

    def fold_constant_dequantize(self) -> None:
        """A DequantizeLinear of a constant that no int8 anchor took: a float constant."""
        self.refresh()
        for n in list(self.g.nodes):
            p = self.qparams(n)
            if p is None or p.value not in self.g.constants or isinstance(p.zero, str):
                continue
            self.g.constants[n.outputs[0]] = dequantize_array(self.g.constants[p.value], p)
            self.g.nodes.remove(n)


def dequantize_array(x: np.ndarray, p: QParams) -> np.ndarray:
    """(x - zero) * scale in float32, per tensor or along p.axis, as DequantizeLinear."""
    shape = [1] * x.ndim
    if p.axis is not None:
        shape[p.axis] = -1
    s, z = p.scale.reshape(shape if p.scale.size > 1 else ()), p.zero.reshape(shape if p.zero.size > 1 else ())
    return ((x.astype(np.int64) - z).astype(np.float32) * s).astype(np.float32)


def quantize_int8(g: Graph) -> Graph:
    """The int8 rewrite of a quantised graph (the module docstring); a float graph is unchanged."""
    if not any(n.op in ("QuantizeLinear", "DequantizeLinear") for n in g.nodes):
        return g
    from .passes import eliminate_dead_nodes
    g = g.copy()
    p = _Pass(g)
    p.shift_int8()
    p.pass_through()
    p.quantized_avg_pools()
    p.quantized_softmaxes()
    p.anchors()
    p.quantized_adds()
    g = eliminate_dead_nodes(g)
    p = _Pass(g)
    p.fold_constant_dequantize()
    ints = sum(1 for n in g.nodes if n.op in ("Conv", "MatMul", "Gemm") and g.info(n.outputs[0]).dtype == "int32")
    log.info("quantize_int8: %d int8 anchor(s)", ints)
    return eliminate_dead_nodes(g)
