"""TVM's names where TVM users type them: te.lower(..., simple_mode=True), f.time_evaluator."""
from __future__ import annotations

import numpy as np
import pytest

import te


def _add():
    A = te.placeholder((64,), name="A")
    B = te.placeholder((64,), name="B")
    C = te.compute((64,), lambda i: A[i] + B[i], name="C")
    s = te.create_schedule(C.op)
    xo, xi = s[C].split(C.op.axis[0], factor=16)
    s[C].vectorize(xi)
    return s, [A, B, C]


def test_lower_simple_mode_prints_the_loop_nest():
    s, args = _add()
    text = str(te.lower(s, args, simple_mode=True))
    assert "for " in text and "C[" in text
    assert text == str(te.lower(s, args))


def test_time_evaluator_as_tvm_calls_it(rand):
    s, args = _add()
    f = te.build(s, args, name="add")
    a, b, c = rand(64), rand(64), np.zeros(64, np.float32)
    timer = f.time_evaluator(f.entry_name, None, number=3, repeat=2)
    res = timer(a, b, c)
    assert len(res.results) == 2 and res.mean > 0
    assert res.mean == pytest.approx(sum(res.results) / 2)
    np.testing.assert_allclose(c, a + b, rtol=1e-6)          # the timed calls ran the kernel
    assert len(f.time_evaluator(number=1, repeat=1, min_repeat_ms=1)(a, b, c).results) == 1
    with pytest.raises(ValueError, match="expected shape"):
        timer(a[:8], b, c)
    with pytest.raises(ValueError, match="must be at least 1"):
        f.time_evaluator(number=0)
    with pytest.raises(ValueError, match="this kernel is 'add', not 'mm'"):
        f.time_evaluator("mm")
