"""LSTM, GRU and RNN through the importer (unrolled into Gemms, lower_rnn.py), against ONNX Runtime."""
import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import frontends
from frontends import ModelError
from frontends.profile import onnxruntime_session

from .onnx_helpers import tiny, vi

GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}


def _model(op, T, batch, inp, hidden, direction="forward", layout=0, seq=None, states=False, peep=False,
           outputs=("Y", "Y_h"), rng=None, **attrs):
    """A model of one recurrent node with constant weights (as an exported model has them)."""
    D = 2 if direction == "bidirectional" else 1
    G = GATES[op]
    inits = [numpy_helper.from_array(rng.uniform(-0.5, 0.5, (D, G * hidden, inp)).astype(np.float32), "W"),
             numpy_helper.from_array(rng.uniform(-0.5, 0.5, (D, G * hidden, hidden)).astype(np.float32), "R"),
             numpy_helper.from_array(rng.uniform(-0.5, 0.5, (D, 2 * G * hidden)).astype(np.float32), "B")]
    names = ["X", "W", "R", "B", "", "", "", ""]
    x_shape = [batch, T, inp] if layout else [T, batch, inp]
    state_shape = [batch, D, hidden] if layout else [D, batch, hidden]
    inputs = [vi("X", x_shape)]
    if seq is not None:
        inits.append(numpy_helper.from_array(np.array(seq, np.int32), "seq"))
        names[4] = "seq"
    if states:
        names[5] = "h0"
        inputs.append(vi("h0", state_shape))
        if op == "LSTM":
            names[6] = "c0"
            inputs.append(vi("c0", state_shape))
    if peep:
        inits.append(numpy_helper.from_array(rng.uniform(-0.5, 0.5, (D, 3 * hidden)).astype(np.float32), "P"))
        names[7] = "P"
    while not names[-1]:
        names.pop()
    outs = ["Y", "Y_h", "Y_c"][:3 if op == "LSTM" else 2]
    node = helper.make_node(op, names, [o if o in outputs else "" for o in outs], hidden_size=hidden,
                            direction=direction, layout=layout, name="rnn", **attrs)
    y_shape = [batch, T, D, hidden] if layout else [T, D, batch, hidden]
    shapes = {"Y": y_shape, "Y_h": state_shape, "Y_c": state_shape}
    return tiny([node], inputs, [vi(o, shapes[o]) for o in outs if o in outputs], inits, opset=14)


def _check(m, feed, rtol=1e-4, atol=1e-5):
    """Build m and compare with ONNX Runtime (with onnx's reference for layout 1, which ONNX
    Runtime's CPU kernels refuse)."""
    g = frontends.from_onnx(m)
    got = frontends.build(g).run(**feed)
    if any(a.name == "layout" and a.i for a in m.graph.node[0].attribute):
        from onnx.reference import ReferenceEvaluator
        want = ReferenceEvaluator(m).run(None, feed)
    else:
        want = onnxruntime_session(m, threads=1).run(None, feed)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)
    return g


def test_lstm_bidirectional_with_states_and_peepholes_matches_onnxruntime(rng):
    m = _model("LSTM", 5, 3, 4, 6, "bidirectional", states=True, peep=True, outputs=("Y", "Y_h", "Y_c"), rng=rng)
    feed = {"X": rng.standard_normal((5, 3, 4)).astype(np.float32),
            "h0": rng.standard_normal((2, 3, 6)).astype(np.float32),
            "c0": rng.standard_normal((2, 3, 6)).astype(np.float32)}
    g = _check(m, feed)
    # all four gates in one product per step, whose weight is a constant the dense kernel packs
    steps = [n for n in g.nodes if n.op == "Gemm" and n.inputs[0] != "rnn.reshape0"]
    assert len(steps) == 2 * 5 and all(n.inputs[1] in g.constants for n in steps)
    assert {g.constants[n.inputs[1]].shape for n in steps} == {(24, 6)}


def test_lstm_with_default_activations_takes_the_fused_cell(rng):
    m = _model("LSTM", 6, 3, 5, 8, "bidirectional", states=True, outputs=("Y", "Y_h", "Y_c"), rng=rng)
    feed = {"X": rng.standard_normal((6, 3, 5)).astype(np.float32),
            "h0": rng.standard_normal((2, 3, 8)).astype(np.float32),
            "c0": rng.standard_normal((2, 3, 8)).astype(np.float32)}
    g = _check(m, feed)
    ops = [n.op for n in g.nodes]
    assert ops.count("tilewise.LSTMCellState") == ops.count("tilewise.LSTMCellOutput") == 2 * 6
    assert "Sigmoid" not in ops and ops.count("Slice") == 4      # only h0 and c0 split by direction


def test_lstm_fused_cell_with_unequal_sequence_lengths_matches_onnxruntime(rng):
    m = _model("LSTM", 4, 3, 2, 4, seq=[2, 4, 3], outputs=("Y", "Y_h", "Y_c"), rng=rng)
    _check(m, {"X": rng.standard_normal((4, 3, 2)).astype(np.float32)})


@pytest.mark.parametrize("lbr,layout", [(0, 1), (1, 0)])
def test_gru_reverse_matches_onnxruntime(rng, lbr, layout):
    m = _model("GRU", 4, 2, 3, 5, "reverse", layout=layout, states=True, rng=rng, linear_before_reset=lbr)
    x, h0 = rng.standard_normal((4, 2, 3)).astype(np.float32), rng.standard_normal((1, 2, 5)).astype(np.float32)
    g = _check(m, {"X": x.transpose(1, 0, 2), "h0": h0.transpose(1, 0, 2)} if layout else {"X": x, "h0": h0})
    assert [n.op for n in g.nodes].count("tilewise.GRUCellOutput") == 4          # the fused cell


def test_gru_with_biases_given_at_run_time_matches_onnxruntime(rng):
    m = _model("GRU", 3, 2, 3, 4, "bidirectional", rng=rng, linear_before_reset=1)
    b = numpy_helper.to_array(m.graph.initializer[2])
    del m.graph.initializer[2]
    m.graph.input.append(vi("B", list(b.shape)))
    _check(m, {"X": rng.standard_normal((3, 2, 3)).astype(np.float32), "B": b})


def test_rnn_with_unequal_sequence_lengths_matches_onnxruntime(rng):
    m = _model("RNN", 5, 3, 4, 4, seq=[5, 2, 3], rng=rng, activations=["Relu"], clip=0.8)
    _check(m, {"X": rng.standard_normal((5, 3, 4)).astype(np.float32)})


def test_lstm_with_unequal_sequence_lengths_and_custom_activations_matches_onnxruntime(rng):
    m = _model("LSTM", 4, 3, 2, 3, seq=[4, 1, 3], outputs=("Y", "Y_h", "Y_c"), rng=rng,
               activations=["HardSigmoid", "LeakyRelu", "Tanh"], activation_alpha=[0.3, 0.05],
               activation_beta=[0.4], input_forget=1)
    _check(m, {"X": rng.standard_normal((4, 3, 2)).astype(np.float32)})


def test_refuses_sequence_lengths_computed_at_run_time(rng):
    m = _model("GRU", 3, 2, 2, 2, rng=rng)
    m.graph.node[0].input.append("seq")
    m.graph.input.append(vi("seq", [2], TensorProto.INT32))
    with pytest.raises(ModelError, match="sequence_lens computed at run time is not supported; give it as a constant"):
        frontends.from_onnx(m)


def test_refuses_unequal_lengths_in_reverse_and_unknown_activations(rng):
    with pytest.raises(ModelError, match=r"sequence_lens \[3, 1\] differ between batch entries"):
        frontends.from_onnx(_model("RNN", 3, 2, 2, 2, "reverse", seq=[3, 1], rng=rng))
    with pytest.raises(ModelError, match="activation 'Gelu' is not supported; use one of Sigmoid"):
        frontends.from_onnx(_model("RNN", 3, 2, 2, 2, rng=rng, activations=["Gelu"]))
