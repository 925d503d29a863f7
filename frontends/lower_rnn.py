"""LSTM, GRU and RNN as a graph of Gemms and elementwise ops, unrolled over the sequence.

canonical.py calls `expand` at import, once every shape is known.  Per direction:

  * the input projection of every step at once: one Gemm of X as (T * batch, input) by W
    (gates, input) with transB, the biases Wb + Rb folded into its bias;
  * then, step by step, one Gemm of the previous hidden state by R (gates, hidden) with
    transB, whose C input is the step's rows of that projection: all gates in one product,
    and R, a constant in an exported model, is packed once at build time by the dense
    kernel's `pack_weight` (the registry's `dense.*` implementations);
  * the gates sliced out of it, their activations, and the state update as elementwise ops;
    an LSTM or GRU with the default activations (and no clip, peepholes or coupled gates)
    instead takes te.ops.rnn's fused ops, which read that product and the step's projection
    rows (the Gemm then has no C): three kernels a step for an LSTM, two or four for a GRU.

A recurrence is a chain of T dependent products, so it does not fit one te kernel without a scan
primitive; as a graph, each step's product is the registry's tuned GEMM and its epilogue fuses.
sequence_lens must be a constant: a batch entry's state stops at its length and its Y rows
beyond it are zero (ONNX Runtime's behaviour); the reverse direction needs equal lengths.
"""
from __future__ import annotations

import numpy as np

from .canonical import _Emit
from .graph import Node, TensorInfo
from .lowering import _ops, _str, checks, lowers

# gates per op, and the activations each uses by default
GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}
DEFAULT_ACTIVATIONS = {"LSTM": ["Sigmoid", "Tanh", "Tanh"], "GRU": ["Sigmoid", "Tanh"], "RNN": ["Tanh"]}
# activation -> the ONNX op computing it and its attributes' defaults (alpha, beta) where it has them;
# Affine and ScaledTanh (RNN-only functions) are a Mul/Add and a Mul/Tanh/Mul
ACTIVATIONS = {"Sigmoid": ("Sigmoid", None, None), "Tanh": ("Tanh", None, None), "Relu": ("Relu", None, None),
               "Softsign": ("Softsign", None, None), "Softplus": ("Softplus", None, None),
               "LeakyRelu": ("LeakyRelu", 0.01, None), "ThresholdedRelu": ("ThresholdedRelu", 1.0, None),
               "Elu": ("Elu", 1.0, None), "HardSigmoid": ("HardSigmoid", 0.2, 0.5),
               "Affine": (None, 1.0, 0.0), "ScaledTanh": (None, 1.0, 1.0)}
# the cells' fused elementwise ops (te.ops.rnn), internal to the expansion
CELL_STATE, CELL_OUTPUT = "tilewise.LSTMCellState", "tilewise.LSTMCellOutput"
GRU_RESET, GRU_OUTPUT = "tilewise.GRUResetHidden", "tilewise.GRUCellOutput"
# input positions: X, W, R, B, sequence_lens, initial_h, initial_c (LSTM), P (LSTM)
X, W, R, B, SEQ, H0, C0, P = range(8)


@lowers(CELL_STATE, CELL_OUTPUT, GRU_RESET, GRU_OUTPUT)
def _cell(node, ins, attrs, opset, out_shapes):
    ops = _ops()
    fn = {CELL_STATE: ops.lstm_cell_state, CELL_OUTPUT: ops.lstm_cell_output, GRU_RESET: ops.gru_reset_hidden,
          GRU_OUTPUT: ops.gru_cell_output}[node.op]
    return [fn(ins[0], ins[1], int(attrs["row"]), *ins[2:], name=node.name)]


def _input(n: Node, k: int) -> str:
    return n.inputs[k] if len(n.inputs) > k else ""


def _activations(n: Node) -> list[tuple[str, float | None, float | None]] | str:
    """The node's activation functions for both directions with their (alpha, beta), or the
    reason they are not supported."""
    names = [_str(a, "") for a in n.attrs.get("activations", [])] or DEFAULT_ACTIVATIONS[n.op] * 2
    per = len(DEFAULT_ACTIVATIONS[n.op])
    if len(names) == per:
        names = names * 2
    alphas = [float(a) for a in n.attrs.get("activation_alpha", [])]
    betas = [float(b) for b in n.attrs.get("activation_beta", [])]
    out = []
    for k, name in enumerate(names):
        match = next((a for a in ACTIVATIONS if a.lower() == name.lower()), None)
        if match is None:
            return f"activation {name!r} is not supported; use one of {', '.join(ACTIVATIONS)}"
        _, alpha, beta = ACTIVATIONS[match]
        # the lists give a value to each activation in order (ONNX Runtime's reading)
        alpha = alphas[k] if alpha is not None and k < len(alphas) else alpha
        beta = betas[k] if beta is not None and k < len(betas) else beta
        out.append((match, alpha, beta))
    return out


def check_rnn(node: Node, ins: list[TensorInfo | None], opset: int, consts: dict | None = None) -> str | None:
    """Why the recurrent node cannot be expanded (None when it can)."""
    x = ins[X]
    if x.dtype not in ("float32", "float64"):
        return f"{node.op} is supported on float32 and float64, not {x.dtype}"
    if len(x.shape) != 3:
        return f"input X has shape {x.shape}; it must be 3-D (sequence, batch, input) or with layout=1 (batch, ...)"
    direction = _str(node.attrs.get("direction"), "forward")
    if direction not in ("forward", "reverse", "bidirectional"):
        return f"direction {direction!r} is not one of forward, reverse, bidirectional"
    if "hidden_size" not in node.attrs:
        return "hidden_size is missing; give it as the attribute (R's last dimension)"
    acts = _activations(node)
    if isinstance(acts, str):
        return acts
    if int(node.attrs.get("layout", 0)) not in (0, 1):
        return f"layout {node.attrs.get('layout')} is not 0 (sequence first) or 1 (batch first)"
    seq = ins[SEQ] if len(ins) > SEQ else None
    if seq is not None:
        if consts is not None and node.inputs[SEQ] not in consts:
            return "sequence_lens computed at run time is not supported; give it as a constant (an initializer)"
        if consts is not None:
            lens = np.asarray(consts[node.inputs[SEQ]]).reshape(-1)
            T = x.shape[1] if int(node.attrs.get("layout", 0)) else x.shape[0]
            if lens.size and (lens.min() < 1 or lens.max() > T):
                return f"sequence_lens {lens.tolist()} must lie in [1, {T}], the sequence's length"
            if direction != "forward" and len(set(lens.tolist())) > 1:
                return (f"sequence_lens {lens.tolist()} differ between batch entries, supported for direction "
                        "forward only; give equal lengths or run the reverse direction on reversed input")
    return None


@checks("LSTM", "GRU", "RNN")
def _check_left(node: Node, ins: list, opset: int) -> str:
    """Why a recurrent node was left unexpanded: every one that reaches the importer's check was."""
    return node.attrs.get(REFUSED) or check_rnn(node, ins, opset) or "the shapes of its inputs are not known"


REFUSED = "tilewise.refused"            # the attribute expand leaves on a node it does not expand


def expand(n: Node, infos: dict, consts: dict) -> list[Node]:
    """The nodes computing n (LSTM, GRU or RNN), or [n] itself, marked with the reason, when
    check_rnn refuses it (the importer's check then reports why)."""
    ins = [(TensorInfo(x, tuple(consts[x].shape), str(consts[x].dtype)) if x in consts else infos.get(x))
           if x else None for x in n.inputs]
    if ins[X] is None or any(x and x not in consts and x not in infos for x in n.inputs):
        return [n]
    why = check_rnn(n, ins, 0, consts)
    if why:
        n.attrs[REFUSED] = why
        return [n]
    return _Unroll(n, ins, infos, consts).nodes()


class _Unroll:
    """The expansion of one recurrent node (module docstring)."""

    def __init__(self, n: Node, ins: list, infos: dict, consts: dict):
        self.n, self.e, self.consts = n, _Emit(n, infos, consts), consts
        self.op, self.dtype = n.op, ins[X].dtype
        self.layout = int(n.attrs.get("layout", 0))
        self.hidden = int(n.attrs["hidden_size"])
        xs = ins[X].shape
        self.T, self.batch, self.input = (xs[1], xs[0], xs[2]) if self.layout else xs
        direction = _str(n.attrs.get("direction"), "forward")
        self.dirs = ["forward", "reverse"] if direction == "bidirectional" else [direction]
        self.acts = _activations(n)
        self.clip = float(n.attrs["clip"]) if "clip" in n.attrs else None
        seq = _input(n, SEQ)
        self.lens = np.asarray(consts[seq]).reshape(-1).astype(np.int64) if seq else None

    # ---- small emitters
    def node(self, op: str, inputs: list[str], shape: tuple, attrs: dict | None = None, out: str | None = None,
             dtype: str | None = None) -> str:
        return self.e.node(op, inputs, shape, dtype or self.dtype, attrs, out)

    def const(self, tag: str, v: np.ndarray) -> str:
        name = f"{self.n.name}.{tag}"
        self.consts[name] = v
        return name

    def part(self, x: str, d: int, lo: int, hi: int) -> str:
        """x[d, lo:hi] (x of shape (directions, rows, ...)) as (hi - lo, ...)."""
        if x in self.consts:
            return self.const(f"{x}.{d}.{lo}", np.ascontiguousarray(self.consts[x][d, lo:hi]))
        shape = self.e.infos[x].shape
        s = self.node("Slice", [x], (1, hi - lo) + shape[2:],
                      {"starts": np.array([d, lo]), "ends": np.array([d + 1, hi]), "axes": np.array([0, 1])})
        return self.e.reshape(s, (hi - lo,) + tuple(shape[2:]))

    def rows(self, x: str, lo: int, hi: int, axis: int, shape: tuple) -> str:
        return self.node("Slice", [x], shape, {"starts": np.array([lo]), "ends": np.array([hi]),
                                               "axes": np.array([axis])})

    def activation(self, k: int, x: str, shape: tuple) -> str:
        name, alpha, beta = self.acts[k]
        op = ACTIVATIONS[name][0]
        if name == "Affine":             # alpha * x + beta
            y = self.node("Mul", [x, self.const(f"a{k}.{x}", np.array(alpha, self.dtype))], shape)
            return self.node("Add", [y, self.const(f"b{k}.{x}", np.array(beta, self.dtype))], shape)
        if name == "ScaledTanh":         # alpha * tanh(beta * x)
            y = self.node("Mul", [x, self.const(f"b{k}.{x}", np.array(beta, self.dtype))], shape)
            y = self.node("Tanh", [y], shape)
            return self.node("Mul", [y, self.const(f"a{k}.{x}", np.array(alpha, self.dtype))], shape)
        attrs = {key: v for key, v in (("alpha", alpha), ("beta", beta)) if v is not None}
        return self.node(op, [x], shape, attrs)

    def gate(self, k: int, x: str, shape: tuple) -> str:
        if self.clip is not None:
            x = self.node("Clip", [x], shape, {"min": -self.clip, "max": self.clip})
        return self.activation(k, x, shape)

    # ---- the expansion
    def nodes(self) -> list[Node]:
        n, e = self.n, self.e
        x = _input(n, X)
        if self.layout:
            x = self.node("Transpose", [x], (self.T, self.batch, self.input), {"perm": [1, 0, 2]})
        x2 = e.reshape(x, (self.T * self.batch, self.input))
        ys, hs, cs = [], [], []
        for d, direction in enumerate(self.dirs):
            y, h, c = self.direction(d, direction, x2)
            ys.append(y)
            hs.append(e.reshape(h, (1, self.batch, self.hidden)))
            if c:
                cs.append(e.reshape(c, (1, self.batch, self.hidden)))
        D, Bt, H, T = len(self.dirs), self.batch, self.hidden, self.T
        outs = list(n.outputs) + [""] * (3 - len(n.outputs))
        if outs[0]:
            y = ys[0] if D == 1 else self.node("Concat", ys, (T, D, Bt, H), {"axis": 1})
            if self.layout:
                self.node("Transpose", [y], (Bt, T, D, H), {"perm": [2, 0, 1, 3]}, out=outs[0])
            else:
                self.node("Identity", [y], (T, D, Bt, H), out=outs[0])
        for out, states in ((outs[1], hs), (outs[2], cs)):
            if out:
                s = states[0] if D == 1 else self.node("Concat", states, (D, Bt, H), {"axis": 0})
                if self.layout:
                    self.node("Transpose", [s], (Bt, D, H), {"perm": [1, 0, 2]}, out=out)
                else:
                    self.node("Identity", [s], (D, Bt, H), out=out)
        return e.nodes

    def initial(self, k: int, d: int) -> str:
        """initial_h or initial_c of direction d as (batch, hidden); zeros when absent."""
        name = _input(self.n, k)
        if not name:
            return self.const(f"zero{k}.{d}", np.zeros((self.batch, self.hidden), self.dtype))
        if self.layout:              # (batch, directions, hidden): bring the directions first
            name = self.node("Transpose", [name], (len(self.dirs), self.batch, self.hidden), {"perm": [1, 0, 2]}) \
                if name not in self.consts else self.const(f"{name}.t", self.consts[name].transpose(1, 0, 2))
        return self.part(name, d, 0, self.batch)

    def bias(self, d: int, gates: int) -> tuple[str, str | None]:
        """(the input projection's bias (gates * hidden,), GRU's recurrent candidate bias Rbh
        (hidden,) when linear_before_reset keeps it inside the reset gate's product, else None)."""
        H, GH = self.hidden, gates * self.hidden
        b = _input(self.n, B)
        lbr = self.op == "GRU" and int(self.n.attrs.get("linear_before_reset", 0))
        if not b:
            return self.const(f"bias.{d}", np.zeros(GH, self.dtype)), None
        if b in self.consts:
            wb, rb = self.consts[b][d, :GH], self.consts[b][d, GH:]
            keep = np.ones(GH, self.dtype)
            if lbr:
                keep[2 * H:] = 0
            rbh = self.const(f"rbh.{d}", rb[2 * H:].copy()) if lbr else None
            return self.const(f"bias.{d}", (wb + rb * keep).astype(self.dtype)), rbh
        wb, rb = self.part(b, d, 0, GH), self.part(b, d, GH, 2 * GH)
        if lbr:
            keep = np.ones(GH, self.dtype)
            keep[2 * H:] = 0
            rbh = self.node("Slice", [rb], (H,), {"starts": np.array([2 * H]), "ends": np.array([GH]),
                                                  "axes": np.array([0])})
            rb = self.node("Mul", [rb, self.const(f"keep.{d}", keep)], (GH,))
            return self.node("Add", [wb, rb], (GH,)), rbh
        return self.node("Add", [wb, rb], (GH,)), None

    def direction(self, d: int, direction: str, x2: str) -> tuple[str, str, str | None]:
        """(Y of this direction as (T, 1, batch, hidden), its last hidden state, its last cell
        state (LSTM) or None)."""
        n, T, Bt, H = self.n, self.T, self.batch, self.hidden
        G = GATES[self.op]
        GH = G * H
        bias, rbh = self.bias(d, G)
        w = self.part(_input(n, W), d, 0, GH)
        xw = self.node("Gemm", [x2, w, bias], (T * Bt, GH), {"transB": 1})
        r = _input(n, R)
        h = self.initial(H0, d)
        c = self.initial(C0, d) if self.op == "LSTM" else None
        acts = len(DEFAULT_ACTIVATIONS[self.op]) * d            # this direction's activations
        steps = range(T) if direction == "forward" else range(T - 1, -1, -1)
        ys: dict[int, str] = {}
        fused = self.fused_cell(acts)
        for t in steps:
            xt = None if fused else self.rows(xw, t * Bt, (t + 1) * Bt, 0, (Bt, GH))
            if fused and self.op == "LSTM":
                h_new, c_new = self.lstm_fused_step(d, xw, t, h, c, r)
            elif fused:
                h_new, c_new = self.gru_fused_step(d, xw, t, h, r, rbh), None
            elif self.op == "LSTM":
                h_new, c_new = self.lstm_step(d, acts, xt, h, c, r)
            elif self.op == "GRU":
                h_new, c_new = self.gru_step(d, acts, xt, h, r, rbh), None
            else:
                pre = self.node("Gemm", [h, self.part(r, d, 0, H), xt], (Bt, H), {"transB": 1})
                h_new, c_new = self.gate(acts, pre, (Bt, H)), None
            ys[t] = h_new
            if self.lens is not None and self.lens.min() < T:
                # past its length an entry keeps its state and its Y rows are zero
                live = (t < self.lens).reshape(Bt, 1)
                ys[t] = self.node("Mul", [h_new, self.const(f"livef.{d}.{t}", live.astype(self.dtype))], (Bt, H))
                alive = self.const(f"live.{d}.{t}", live)
                h_new = self.node("Where", [alive, h_new, h], (Bt, H))
                c_new = self.node("Where", [alive, c_new, c], (Bt, H)) if c_new else None
            h, c = h_new, c_new
        y = self.node("Concat", [self.e.reshape(ys[t], (1, 1, Bt, H)) for t in range(T)], (T, 1, Bt, H),
                      {"axis": 0}) if T > 1 else self.e.reshape(ys[0], (1, 1, Bt, H))
        return y, h, c

    def fused_cell(self, acts: int) -> bool:
        """Does the step take te.ops.rnn's fused cell (an LSTM or GRU with the default activations;
        no clip, peepholes or coupled gates)?"""
        default = DEFAULT_ACTIVATIONS[self.op]
        return (self.op in ("LSTM", "GRU") and [a[0] for a in self.acts[acts:acts + len(default)]] == default
                and self.clip is None and not _input(self.n, P) and not int(self.n.attrs.get("input_forget", 0)))

    def gru_fused_step(self, d: int, xw: str, t: int, h: str, r: str, rbh: str | None) -> str:
        """One GRU step: with linear_before_reset one Gemm (all of R, Rbh in its last third's bias)
        and the fused output; without, the update/reset product, r * h, the candidate's product
        and the fused output."""
        Bt, H = self.batch, self.hidden
        row = {"row": t * Bt}
        if rbh is not None:
            if rbh in self.consts:
                bias = self.const(f"rbh3.{d}", np.concatenate([np.zeros(2 * H, self.dtype), self.consts[rbh]]))
            else:
                zeros = self.const(f"zero2h.{d}", np.zeros(2 * H, self.dtype))
                bias = self.node("Concat", [zeros, rbh], (3 * H,), {"axis": 0})
            hr = self.node("Gemm", [h, self.part(r, d, 0, 3 * H), bias], (Bt, 3 * H), {"transB": 1})
            return self.node(GRU_OUTPUT, [hr, xw, h], (Bt, H), row)
        hzr = self.node("Gemm", [h, self.part(r, d, 0, 2 * H)], (Bt, 2 * H), {"transB": 1})
        rh = self.node(GRU_RESET, [hzr, xw, h], (Bt, H), row)
        hh = self.node("Gemm", [rh, self.part(r, d, 2 * H, 3 * H)], (Bt, H), {"transB": 1})
        return self.node(GRU_OUTPUT, [hzr, xw, h, hh], (Bt, H), row)

    def lstm_fused_step(self, d: int, xw: str, t: int, h: str, c: str, r: str) -> tuple[str, str]:
        """One LSTM step as three kernels: h R^T, then the new cell and hidden states, each one
        elementwise op reading that product and the step's projection rows (te.ops.rnn)."""
        Bt, H = self.batch, self.hidden
        hr = self.node("Gemm", [h, self.part(r, d, 0, 4 * H)], (Bt, 4 * H), {"transB": 1})
        c_new = self.node(CELL_STATE, [hr, xw, c], (Bt, H), {"row": t * Bt})
        return self.node(CELL_OUTPUT, [hr, xw, c_new], (Bt, H), {"row": t * Bt}), c_new

    def lstm_step(self, d: int, acts: int, xt: str, h: str, c: str, r: str) -> tuple[str, str]:
        """One LSTM step: gates i, o, f, c in one product, then the cell and hidden states."""
        Bt, H = self.batch, self.hidden
        sh = (Bt, H)
        gates = self.node("Gemm", [h, self.part(r, d, 0, 4 * H), xt], (Bt, 4 * H), {"transB": 1})
        i, o, f, g = (self.rows(gates, k * H, (k + 1) * H, 1, sh) for k in range(4))
        p = _input(self.n, P)
        if p:                            # peepholes P = [p_i, p_o, p_f]
            pi, po, pf = (self.part(p, d, k * H, (k + 1) * H) for k in range(3))
            i = self.node("Add", [i, self.node("Mul", [pi, c], sh)], sh)
            f = self.node("Add", [f, self.node("Mul", [pf, c], sh)], sh)
        i = self.gate(acts, i, sh)
        if int(self.n.attrs.get("input_forget", 0)):      # coupled: f = 1 - i
            f = self.node("Sub", [self.const(f"one.{d}", np.array(1, self.dtype)), i], sh)
        else:
            f = self.gate(acts, f, sh)
        c_new = self.node("Add", [self.node("Mul", [f, c], sh),
                                  self.node("Mul", [i, self.gate(acts + 1, g, sh)], sh)], sh)
        if p:
            o = self.node("Add", [o, self.node("Mul", [po, c_new], sh)], sh)
        o = self.gate(acts, o, sh)
        return self.node("Mul", [o, self.activation(acts + 2, c_new, sh)], sh), c_new

    def gru_step(self, d: int, acts: int, xt: str, h: str, r: str, rbh: str | None) -> str:
        """One GRU step: update and reset gates in one product, then the candidate and the state."""
        Bt, H = self.batch, self.hidden
        sh = (Bt, H)
        xzr = self.rows(xt, 0, 2 * H, 1, (Bt, 2 * H))
        xh = self.rows(xt, 2 * H, 3 * H, 1, sh)
        zr = self.node("Gemm", [h, self.part(r, d, 0, 2 * H), xzr], (Bt, 2 * H), {"transB": 1})
        z = self.gate(acts, self.rows(zr, 0, H, 1, sh), sh)
        rg = self.gate(acts, self.rows(zr, H, 2 * H, 1, sh), sh)
        rh = self.part(r, d, 2 * H, 3 * H)
        if rbh is not None:              # linear_before_reset: r * (h Rh^T + Rbh)
            hr = self.node("Gemm", [h, rh, rbh], sh, {"transB": 1})
            pre = self.node("Add", [xh, self.node("Mul", [rg, hr], sh)], sh)
        else:                            # (r * h) Rh^T, the biases already in xh
            pre = self.node("Gemm", [self.node("Mul", [rg, h], sh), rh, xh], sh, {"transB": 1})
        cand = self.gate(acts + 1, pre, sh)
        # h' = (1 - z) * cand + z * h = cand + z * (h - cand)
        return self.node("Add", [cand, self.node("Mul", [z, self.node("Sub", [h, cand], sh)], sh)], sh)
