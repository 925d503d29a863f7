"""A float64 numpy convolution, the reference of the conv tests; and the parallel tasks of a
lowered conv."""
from __future__ import annotations

import re

import numpy as np


def conv_ref(x, w, strides=(1, 1), pads=(0, 0, 0, 0), dilation=(1, 1), groups=1):
    """conv2d in float64 numpy; pads are (top, left, bottom, right)."""
    N, C, H, W = x.shape
    K, Cg, R, S = w.shape
    pt, pl, pb, pr = pads
    sh, sw = strides
    dh, dw = dilation
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    OH = (H + pt + pb - (R - 1) * dh - 1) // sh + 1
    OW = (W + pl + pr - (S - 1) * dw - 1) // sw + 1
    out = np.zeros((N, K, OH, OW))
    Kg = K // groups
    for g in range(groups):
        for r in range(R):
            for s in range(S):
                patch = xp[:, g * Cg:(g + 1) * Cg, r * dh:r * dh + (OH - 1) * sh + 1:sh,
                           s * dw:s * dw + (OW - 1) * sw + 1:sw]
                out[:, g * Kg:(g + 1) * Kg] += np.einsum("nchw,kc->nkhw", patch,
                                                         w[g * Kg:(g + 1) * Kg, :, r, s].astype(np.float64))
    return out.astype(np.float32)


def parallel_tasks(body: str) -> int:
    """The parallel tasks of a lowered conv (its loop IR printed): the parallel loop's iterations,
    times those of the loop of tasks inside each thread's share where the loop is split by
    thread (te.ops.conv2d._tasks: a share per thread, each padding its own input first)."""
    m = re.search(r"for (\S+)\.outer in range\((\d+)\):  # parallel\n.*?for \1\.inner in range\((\d+)\)", body,
                  re.S)
    if m:
        return int(m.group(2)) * int(m.group(3))
    return int(re.search(r"in range\((\d+)\):  # parallel", body).group(1))
