"""ops.schedule(outs): the default schedule of any graph of operators, each op using its own."""
from __future__ import annotations

import te

from .common import SCHEDULES


def schedule(outs) -> te.Schedule:
    """A schedule for the given output tensors where every operator uses its default schedule."""
    outs = list(outs) if isinstance(outs, (list, tuple)) else [outs]
    s = te.create_schedule([t.op for t in outs])
    for st in list(s.stages):
        op = st.op
        if isinstance(op, te.ComputeOp) and op.tag in SCHEDULES and st.is_output:
            SCHEDULES[op.tag](s, op.output(0))
    return s
