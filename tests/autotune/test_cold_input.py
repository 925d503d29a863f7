"""The tuner's runner reads a kernel's input activations from rotating copies, as a model's kernel
meets its input: written by the producer's threads, not left in its own cores' caches."""
from __future__ import annotations

import numpy as np

from autotune import measure, measure_jobs
from autotune.call_timing import ColdWeights, padded_array
from te.target import parse

VM = parse("llvm -mcpu=sapphirerapids")


def _arrays():
    """A conv's arguments: input (256 KiB), weight (256 KiB), bias (1 KiB), output (written)."""
    shapes = [(1, 64, 32, 32), (64, 64, 4, 4), (256,), (1, 64, 32, 32)]
    arrays = [padded_array(s, np.float32) for s in shapes]
    for k, a in enumerate(arrays[:3]):
        a[...] = np.random.default_rng(k).standard_normal(a.shape)
    specs = [(s, "float32", k == 3, None) for k, s in enumerate(shapes)]
    return arrays, specs


def test_the_input_is_read_from_copies_in_turn_and_the_bias_as_it_is():
    arrays, specs = _arrays()
    cold = measure_jobs._cold_calls(measure.MeasureOption(), arrays, specs, 1, 0, VM)
    calls = [cold.args(k) for k in range(40)]
    inputs = [c[0] for c in calls]
    assert len(set(inputs)) > 1 and inputs[0] == arrays[0].ctypes.data      # the array itself first
    assert len(set(c[1] for c in calls)) > 1                                # the weight too, as before
    assert {c[2] for c in calls} == {arrays[2].ctypes.data} and {c[3] for c in calls} == {arrays[3].ctypes.data}
    copies = measure_jobs._input_copies(arrays[0], VM)
    assert sum(c.nbytes for c in copies) >= 4 * VM.caches.l2 * max(1, VM.threads)     # out of the L2s
    assert all(np.array_equal(c, arrays[0]) for c in copies)                 # the same values: the answer holds
    assert measure_jobs._input_copies(arrays[0], VM) is copies                     # kept for the next candidate


def test_a_warm_input_when_asked():
    arrays, specs = _arrays()
    cold = measure_jobs._cold_calls(measure.MeasureOption(cold_input=False, cold_weights=False), arrays, specs, 1, 0, VM)
    assert all(cold.args(k) == [a.ctypes.data for a in arrays] for k in range(5))


def test_inputs_and_weight_rotate_each_over_their_own_copies():
    w, x = [np.zeros(4) for _ in range(3)], [np.zeros(8) for _ in range(2)]
    cold = ColdWeights([w[0].ctypes.data, x[0].ctypes.data, 7], 0, w, {1: x})
    assert [cold.args(k)[:2] for k in range(3)] == [[w[k].ctypes.data, x[k % 2].ctypes.data] for k in range(3)]
    assert all(cold.args(k)[2] == 7 for k in range(6))
