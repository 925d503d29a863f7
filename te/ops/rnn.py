"""The LSTM cell's elementwise part as two fused ops (frontends/lower_rnn.py builds the rest).

A step's gates are the sum of two products: the step's rows of the input projection `xw`
(T * batch, 4 * hidden), computed for every step at once, and the hidden state's product by R,
`hr` (batch, 4 * hidden), in ONNX's gate order i, o, f, c.  With the default activations
(sigmoid for the gates, tanh for the cell), the new cell state and the new hidden state are
each one elementwise op reading both at the four gates' columns: two kernels per step instead of
a slice, an activation and an arithmetic op per gate.
"""
from __future__ import annotations

import te

from .common import tagged
from .elementwise import _sigmoid, _tanh
from .injective import schedule_injective

__all__ = ["lstm_cell_state", "lstm_cell_output"]

TAG = "lstm_cell"


def _gate(hr: te.Tensor, xw: te.Tensor, row: int, k: int, b, j):
    """Gate k's pre-activation at (b, j) of the step whose projection rows start at `row`."""
    H = hr.shape[1] // 4
    return hr[b, k * H + j] + xw[row + b, k * H + j]


def _check(hr: te.Tensor, xw: te.Tensor, row: int, state: te.Tensor, name: str) -> None:
    batch, G = hr.shape
    if G % 4 or tuple(state.shape) != (batch, G // 4) or xw.shape[1] != G or not 0 <= row <= xw.shape[0] - batch:
        raise ValueError(f"{name}: gates {hr.shape}, projection {xw.shape} at row {row} and state {state.shape} "
                         "do not fit one LSTM step (batch, 4 * hidden), (steps * batch, 4 * hidden), (batch, hidden)")


def lstm_cell_state(hr: te.Tensor, xw: te.Tensor, row: int, c: te.Tensor, name: str = "lstm_c") -> te.Tensor:
    """The new cell state f * c + i * tanh(g) (ONNX's LSTM with its default activations)."""
    _check(hr, xw, row, c, name)

    def body(b, j):
        i = _sigmoid(_gate(hr, xw, row, 0, b, j))
        f = _sigmoid(_gate(hr, xw, row, 2, b, j))
        return f * c[b, j] + i * _tanh(_gate(hr, xw, row, 3, b, j))
    return te.compute(tuple(c.shape), body, name=name, tag=TAG)


def lstm_cell_output(hr: te.Tensor, xw: te.Tensor, row: int, c_new: te.Tensor, name: str = "lstm_h") -> te.Tensor:
    """The new hidden state o * tanh(c_new)."""
    _check(hr, xw, row, c_new, name)
    return te.compute(tuple(c_new.shape), lambda b, j: _sigmoid(_gate(hr, xw, row, 1, b, j)) * _tanh(c_new[b, j]),
                      name=name, tag=TAG)


# vectorised over the hidden units like any elementwise op
tagged(TAG)(schedule_injective)
