"""The LSTM and GRU cells' elementwise parts as fused ops (frontends/lower_rnn.py builds the rest).

A step's gates are the sum of two products: the step's rows of the input projection `xw`
(T * batch, gates * hidden), computed for every step at once, and the hidden state's product by
R, `hr` (batch, gates * hidden), in ONNX's gate order (LSTM: i, o, f, c; GRU: z, r, h).  With
the default activations (sigmoid for the gates, tanh for the cell or candidate) each new state
is one elementwise op reading both at the gates' columns, instead of a slice, an activation and
an arithmetic op per gate:

* LSTM: the new cell state, then the new hidden state (two ops a step);
* GRU with linear_before_reset: the new hidden state from h R^T (+ Rbh in its last third): one;
* GRU without: r * h first (the candidate's product needs it), then the new hidden state from
  that product: two.
"""
from __future__ import annotations

import te

from .common import tagged
from .elementwise import _sigmoid, _tanh
from .injective import schedule_injective

__all__ = ["lstm_cell_state", "lstm_cell_output", "gru_reset_hidden", "gru_cell_output"]

TAG = "lstm_cell"


def _gate(hr: te.Tensor, xw: te.Tensor, row: int, k: int, b, j, H: int):
    """Gate k's pre-activation at (b, j) of the step whose projection rows start at `row`."""
    return hr[b, k * H + j] + xw[row + b, k * H + j]


def _check(hr: te.Tensor, xw: te.Tensor, row: int, state: te.Tensor, name: str, gates: int = 4,
           hr_gates: int | None = None) -> int:
    """The hidden size, after checking the shapes fit one step of a cell with this many gates
    (hr holding hr_gates of them)."""
    batch, H = state.shape
    if (tuple(hr.shape) != (batch, (hr_gates or gates) * H) or xw.shape[1] != gates * H
            or not 0 <= row <= xw.shape[0] - batch):
        raise ValueError(f"{name}: gates {hr.shape}, projection {xw.shape} at row {row} and state {state.shape} "
                         f"do not fit one step of {gates} gates: (batch, gates * hidden), "
                         "(steps * batch, gates * hidden), (batch, hidden)")
    return H


def lstm_cell_state(hr: te.Tensor, xw: te.Tensor, row: int, c: te.Tensor, name: str = "lstm_c") -> te.Tensor:
    """The new cell state f * c + i * tanh(g) (ONNX's LSTM with its default activations)."""
    H = _check(hr, xw, row, c, name)

    def body(b, j):
        i = _sigmoid(_gate(hr, xw, row, 0, b, j, H))
        f = _sigmoid(_gate(hr, xw, row, 2, b, j, H))
        return f * c[b, j] + i * _tanh(_gate(hr, xw, row, 3, b, j, H))
    return te.compute(tuple(c.shape), body, name=name, tag=TAG)


def lstm_cell_output(hr: te.Tensor, xw: te.Tensor, row: int, c_new: te.Tensor, name: str = "lstm_h") -> te.Tensor:
    """The new hidden state o * tanh(c_new)."""
    H = _check(hr, xw, row, c_new, name)
    return te.compute(tuple(c_new.shape), lambda b, j: _sigmoid(_gate(hr, xw, row, 1, b, j, H)) * _tanh(c_new[b, j]),
                      name=name, tag=TAG)


def gru_reset_hidden(hzr: te.Tensor, xw: te.Tensor, row: int, h: te.Tensor, name: str = "gru_rh") -> te.Tensor:
    """r * h, r = sigmoid of the reset gate (hzr: h times R's update and reset rows, (batch, 2 * hidden))."""
    H = _check(hzr, xw, row, h, name, gates=3, hr_gates=2)
    return te.compute(tuple(h.shape), lambda b, j: _sigmoid(_gate(hzr, xw, row, 1, b, j, H)) * h[b, j],
                      name=name, tag=TAG)


def gru_cell_output(hr: te.Tensor, xw: te.Tensor, row: int, h: te.Tensor, hh: te.Tensor | None = None,
                    name: str = "gru_h") -> te.Tensor:
    """The new hidden state cand + z * (h - cand), cand = tanh of the candidate.

    With hh (no linear_before_reset): hr is h R^T's update and reset columns and hh = (r * h) Rh^T,
    so the candidate is xw's last third + hh.  Without: hr is all of h R^T with Rbh added to its
    last third, and the candidate is xw's last third + r * that third."""
    H = _check(hr, xw, row, h, name, gates=3, hr_gates=2 if hh is not None else 3)

    def body(b, j):
        z = _sigmoid(_gate(hr, xw, row, 0, b, j, H))
        if hh is not None:
            pre = xw[row + b, 2 * H + j] + hh[b, j]
        else:
            r = _sigmoid(_gate(hr, xw, row, 1, b, j, H))
            pre = xw[row + b, 2 * H + j] + r * hr[b, 2 * H + j]
        cand = _tanh(pre)
        return cand + z * (h[b, j] - cand)
    return te.compute(tuple(h.shape), body, name=name, tag=TAG)


# vectorised over the hidden units like any elementwise op
tagged(TAG)(schedule_injective)
