"""build_run: one te.ops output scheduled by ops.schedule, built and run (the elementwise tests)."""
from __future__ import annotations

import numpy as np

import te
from te import ops


def build_run(out, inputs: list, arrays: list):
    """Schedule out with ops.schedule, build it and run it on arrays; returns the output."""
    s = ops.schedule([out])
    f = te.build(s, inputs + [out])
    res = np.zeros(out.shape, dtype=np.dtype(out.dtype))
    f(*arrays, res)
    return res
