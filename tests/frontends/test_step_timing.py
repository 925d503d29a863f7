"""Per-step timing of a model (frontends/step_timing.py time_steps): the replay is the model's run."""
from __future__ import annotations

import numpy as np
import pytest

import frontends
from frontends import step_timing, zoo
from te.export import MEMCPY


@pytest.fixture(scope="module")
def block():
    """A small MobileNetV2 block, built in process."""
    return frontends.build(frontends.onnx.from_onnx(zoo.mobilenet_block(channels=8, expand=2, size=14)))


@pytest.mark.parametrize("threads,order", [(1, "model"), (2, "model"), (2, "after_previous"), (2, "alone"),
                                           (2, "weights_cold"), (1, "input_cold")])
def test_the_steps_replayed_give_the_models_outputs(block, threads, order):
    block.set_num_threads(threads)
    x = np.random.default_rng(0).standard_normal(block.plan.inputs[0]["shape"]).astype(np.float32)
    feed = {block.input_names[0]: x}
    outs = [np.full(o["shape"], np.nan, np.float32) for o in block.plan.outputs]
    rows = step_timing.time_steps(block, feed, repeat=3, outputs=outs, order=order)
    assert [st.kernel for st, _ in rows] == [st.kernel for st in block.plan.steps if st.kernel != MEMCPY]
    assert all(len(lat.times) == 3 and lat.min > 0 for _, lat in rows)
    for got, want in zip(outs, block.run(**feed)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_non_contiguous_output_arrays_are_refused(block):
    feed = {block.input_names[0]: np.zeros(block.plan.inputs[0]["shape"], np.float32)}
    shape = block.plan.outputs[0]["shape"]
    strided = np.zeros(list(shape[:-1]) + [shape[-1] * 2], np.float32)[..., ::2]
    with pytest.raises(ValueError, match="C-contiguous"):
        step_timing.time_steps(block, feed, repeat=1, outputs=[strided])


def test_an_unknown_order_is_refused(block):
    feed = {block.input_names[0]: np.zeros(block.plan.inputs[0]["shape"], np.float32)}
    with pytest.raises(ValueError, match="after_previous"):
        step_timing.time_steps(block, feed, repeat=1, order="random")


def test_each_call_is_timed_by_the_clock_given(block):
    """A clock that advances one unit per reading: every call takes exactly one unit."""
    feed = {block.input_names[0]: np.zeros(block.plan.inputs[0]["shape"], np.float32)}
    ticks = iter(range(10**6))
    rows = step_timing.time_steps(block, feed, repeat=2, clock=lambda: float(next(ticks)))
    assert rows and all(lat.times == [1.0, 1.0] for _, lat in rows)
