"""Shared fixtures for the tilewise test suite."""
from __future__ import annotations

import numpy as np
import pytest

from te.runtime import CPULacksFeatures

from .tiny_models import tiny_model


@pytest.hookimpl(wrapper=True)
def pytest_pyfunc_call(pyfuncitem):
    """A test that builds code for a CPU feature this machine lacks (AVX-512 or AMX on an AVX2
    CPU) checks what it builds, and its run is skipped where the code would die of SIGILL: the
    JIT refuses to call it (te.jit, CPULacksFeatures); the first machine with the feature runs it."""
    try:
        return (yield)
    except CPULacksFeatures as e:
        pytest.skip(f"this CPU cannot run the code: {e}")


# Tolerances used by the te tests: fp32 elementwise results are within a couple of ulps
# (rtol 1e-5); fp32 reductions of a few dozen terms may be reassociated by split/reorder and
# contracted into FMAs, so they get rtol 1e-4 / atol 1e-5 against a float64 reference.


@pytest.fixture
def rng() -> np.random.Generator:
    """A numpy generator with a fixed seed, fresh for every test."""
    return np.random.default_rng(20240611)


@pytest.fixture
def rand(rng):
    """rand(shape, dtype="float32", low=None, high=None): random test data of any tilewise dtype.

    Floats are uniform in [low, high) (default [-1, 1)); integers are uniform in [low, high)
    (defaults keep small values so sums and products don't overflow); bools are coin flips.
    """
    def make(shape, dtype="float32", low=None, high=None):
        dt = np.dtype(dtype)
        if dt == np.bool_:
            return rng.random(shape) < 0.5
        if dt.kind == "f":
            lo = -1.0 if low is None else low
            hi = 1.0 if high is None else high
            return rng.uniform(lo, hi, size=shape).astype(dt)
        info = np.iinfo(dt)
        lo = (0 if info.min == 0 else -8) if low is None else low
        hi = 9 if high is None else high
        return rng.integers(max(lo, info.min), min(hi, int(info.max) + 1), size=shape, dtype=dt)
    return make


@pytest.fixture
def run():
    """run(schedule, args, inputs) -> outputs: build, allocate outputs (zeros), call, return them.

    `args` are the te tensors in argument order; `inputs` are numpy arrays for the first
    len(inputs) of them; the remaining ones are outputs, allocated from their te shape/dtype.
    A single output is returned as an array, several as a list.
    """
    import te

    def go(s, args, inputs, target=None):
        f = te.build(s, args, target=target)
        outs = [np.zeros(t.shape, dtype=np.dtype(t.dtype)) for t in args[len(inputs):]]
        f(*inputs, *outs)
        return outs[0] if len(outs) == 1 else outs
    return go


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory) -> str:
    """Path of the tiny two-convolution model (tests/tiny_models.py), for the CLI and autotune tests."""
    return tiny_model(tmp_path_factory.mktemp("models") / "tiny.onnx")
