"""The plan of a dynamic-batch model: one static plan per compiled batch (BatchSpec.sizes),
merged into one set of kernels, one weights blob and one workspace.

Each batch's plan is the plan a static build of that batch makes (compile.plan_model), so a run
of exactly that batch is as fast as the static build. Their kernels are renamed `b{size}_...`;
their weights go into one blob, a packed weight that two plans share (the same bytes) stored
once; the workspace is the largest plan's, since the chunks of a run go one after another.
"""
from __future__ import annotations

import hashlib

from te.export import MEMCPY
from te.target import Target

from .graph import Graph


def plan_batched(graph: Graph, target: Target, opset: int, history=None, layout: str | None = None):
    """(plan, a graph holding the merged weights, their offsets) of a graph with a dynamic batch."""
    from .compile import ModelPlan, _align, _size, io_spec, plan_model
    b = graph.batch
    consts = Graph(graph.name, graph.opset)
    param_off: dict[str, int] = {}
    by_bytes: dict[tuple, str] = {}            # (digest, shape, dtype) -> the merged constant's name
    total, ws_bytes = 0, 0
    variants, funcs, records = [], [], {}
    for size in b.sizes:
        static = b.graphs[size].copy()
        static.batch = None                    # this batch's plan is a static build's
        mp, g, off = plan_model(static, target, opset, history, layout)
        remap: dict[int, int] = {}
        for name, o in off.items():
            c = g.constants[name]
            key = (hashlib.sha256(c.tobytes()).hexdigest(), c.shape, str(c.dtype))
            if key not in by_bytes:
                by_bytes[key] = merged = f"b{size}:{name}"
                consts.constants[merged] = c
                param_off[merged] = total
                total = _align(total + c.nbytes)
            remap[o] = param_off[by_bytes[key]]
        for f in mp.funcs:
            f.name = f"b{size}_{f.name}"
        for st in mp.steps:
            if st.kernel != MEMCPY:
                st.kernel = f"b{size}_{st.kernel}"
            st.args = [(sp, remap[v]) if sp == "param" else (sp, v) for sp, v in st.args]
        variants.append((size, mp.steps))
        funcs += mp.funcs
        records.update({id(r): r for r in mp.records})
        ws_bytes = max(ws_bytes, mp.workspace_bytes)
    one = b.graphs[1]
    plan = ModelPlan(inputs=[io_spec(i, b) for i in one.inputs], outputs=[io_spec(o, b) for o in one.outputs],
                     steps=[st for _, steps in variants for st in steps], param_bytes=total,
                     workspace_bytes=ws_bytes, funcs=funcs, records=list(records.values()),
                     batch={"dim": b.dim, "max": b.max, "sizes": list(b.sizes)},
                     io_strides=[_size(t.shape, t.dtype) if t.name in b.inputs + b.outputs else 0
                                 for t in one.inputs + one.outputs],
                     variants=variants)
    return plan, consts, param_off
