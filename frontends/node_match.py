"""ONNX Runtime's per-node times beside tilewise's per-kernel times, matched by the ONNX nodes each computes.

    model = node_match.named(onnx.load("squeezenet.onnx"))   # every node named
    lib = frontends.build(frontends.from_onnx(model))
    prof = node_match.OrtProfile(model)                         # a default session, profiling
    prof.run(20)
    timed = [profile.time_steps(lib, feed, repeat=20)]          # (alternate the two in blocks)
    rows = node_match.match(model, prof.units(), node_match.tilewise_units(lib, timed))

Both engines fuse, differently.  ONNX Runtime runs a Conv and its Relu as one node (on AVX-512
an NCHWc Conv named after its output value plus "_nchwc", whose outputs are renamed
"reorder_token_*", with the residual Add and Relu folded in too), folds BatchNormalization into
the Conv and runs a Concat; tilewise fuses an elementwise chain into its anchor, the stem conv
with its Relu and max pool into one kernel, and runs a channel Concat as no kernel (its producers
write into their slices).  So each side's units (ORT nodes, tilewise kernel calls) are first
resolved to the nodes of the original model they compute, by walking back from the values a
unit produces to the values it reads; then units of either side that share a node fall into one
row (union-find), so each row compares the same work: e.g. ORT's Concat + Conv+Relu against
tilewise's one conv kernel, or ORT's Conv+Relu and MaxPool against tilewise's stem kernel.

An ORT unit's outputs are its outputs that are values of the original model, else the value its
"_nchwc" name carries, else its name's node's outputs; it reads its inputs the same way (through
the producer of a renamed value).  ORT's walk also stops at any value a unit of either side
produces: a fused NCHWc Conv that also computes a residual Add and Relu is named after the Conv's
value, and the Add and Relu are then found by the tilewise kernel that computes them.  A unit
that resolves to nothing (ORT's ReorderInput) is a row of its own.
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

PROFILE_SUFFIX = "_kernel_time"     # ONNX Runtime's profile event of a node's kernel: "<node>_kernel_time"
NCHWC_SUFFIX = "_nchwc"             # ONNX Runtime's NCHWc nodes: "<the value it computes>_nchwc"


@dataclass
class Unit:
    """One timed piece of an engine's run: an ORT node or a tilewise kernel call."""
    name: str                        # the ORT node's name, or the tilewise kernel's
    op: str                          # ORT's op type, or the tilewise nodes' ops joined by "+"
    times: list[float]               # seconds, one per run
    outputs: list[str] = field(default_factory=list)   # values of the original model it produces
    inputs: list[str] = field(default_factory=list)    # values of the original model it reads
    direct: list[str] = field(default_factory=list)    # original nodes it names itself
    nodes: set[str] = field(default_factory=set)       # original nodes it computes (resolve())
    quantile: float = 0.5            # which of its times `seconds` is: the median, or lower under load

    @property
    def seconds(self) -> float:
        """Its time per run at `quantile` over the runs (the median by default)."""
        return float(np.quantile(self.times, self.quantile)) if self.times else 0.0


@dataclass
class Row:
    """Units of both engines that compute the same original nodes."""
    nodes: list[str]                 # original nodes, in the model's order
    ops: list[str]                   # their op types
    ort: list[Unit]
    tilewise: list[Unit]

    @property
    def ort_seconds(self) -> float:
        return sum(u.seconds for u in self.ort)

    @property
    def tilewise_seconds(self) -> float:
        return sum(u.seconds for u in self.tilewise)

    @property
    def loss(self) -> float:
        """Seconds tilewise takes over ORT here (negative: tilewise is faster)."""
        return self.tilewise_seconds - self.ort_seconds


def named(model):
    """A copy of an ONNX model whose unnamed nodes are named as frontends.onnx names them ("<op>_<k>"),
    so that both engines report the same names."""
    import onnx
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for k, n in enumerate(m.graph.node):
        if not n.name:
            n.name = f"{n.op_type}_{k}"
    return m


# ---------------------------------------------------------------- ONNX Runtime
class OrtProfile:
    """A default ONNX Runtime session (`threads`: its intra-op threads, None: ORT's default) that
    records each node's kernel time per run: run() it in blocks (between another engine's), then
    units() once."""

    def __init__(self, model, threads: int | None = None):
        import onnx
        from .profile import onnxruntime_session
        self.model = model
        self._tmp = tempfile.TemporaryDirectory(prefix="tilewise-ortprof-")
        self._optimized = os.path.join(self._tmp.name, "optimized.onnx")
        self.session = onnxruntime_session(model.SerializeToString(), threads=threads,
                                           profile_prefix=os.path.join(self._tmp.name, "ort"),
                                           optimized_path=self._optimized)
        self.optimized = onnx.load(self._optimized)
        self.feed = _random_feed(self.session)
        self.session.run(None, self.feed)            # warm-up: units() leaves the first run out

    def run(self, runs: int) -> None:
        """Run the model `runs` times."""
        for _ in range(runs):
            self.session.run(None, self.feed)

    def units(self) -> list[Unit]:
        """ORT's nodes, each with its kernel time per run (a name several nodes share: their sum)
        and its outputs and inputs as values of the model; ends the profile."""
        with open(self.session.end_profiling()) as f:
            events = json.load(f)
        self._tmp.cleanup()
        runs = sorted((e["ts"], e["ts"] + e["dur"]) for e in events
                      if e.get("cat") == "Session" and e.get("name") == "model_run")[1:]
        per: dict[str, dict[int, float]] = {}        # node name -> run -> seconds
        ops: dict[str, str] = {}
        for e in events:
            if e.get("cat") != "Node" or not e["name"].endswith(PROFILE_SUFFIX):
                continue
            run = next((k for k, (a, b) in enumerate(runs) if a <= e["ts"] <= b), None)
            if run is None:                           # the warm-up run
                continue
            name = e["name"][:-len(PROFILE_SUFFIX)]
            per.setdefault(name, {}).setdefault(run, 0.0)
            per[name][run] += e["dur"] * 1e-6
            ops[name] = e.get("args", {}).get("op_name", "?")
        units = {name: Unit(name, ops[name], list(t.values())) for name, t in per.items()}
        _ort_values(units, self.optimized, self.model)
        return list(units.values())


def _random_feed(sess) -> dict[str, np.ndarray]:
    """Random inputs for an ORT session's inputs (shapes must be static)."""
    from .profile import random_inputs
    kinds = {"tensor(float)": "float32", "tensor(double)": "float64", "tensor(int64)": "int64",
             "tensor(int32)": "int32", "tensor(uint8)": "uint8", "tensor(int8)": "int8", "tensor(bool)": "bool",
             "tensor(float16)": "float16"}
    specs = []
    for i in sess.get_inputs():
        if any(not isinstance(d, int) for d in i.shape):
            raise ValueError(f"node_match: input '{i.name}' has the symbolic shape {i.shape}; "
                             "give the model static input shapes")
        specs.append({"name": i.name, "shape": i.shape, "dtype": kinds.get(i.type, "float32")})
    return random_inputs(specs)


def _ort_values(units: dict[str, Unit], optimized, model) -> None:
    """Each ORT unit's outputs and inputs as values of the original model (module docstring)."""
    produced = {o: n for n in model.graph.node for o in n.output}
    known = set(produced) | {i.name for i in model.graph.input}
    by_name = {n.name: n for n in model.graph.node}
    out_of: dict[str, list[str]] = {}                 # ORT value -> original values it stands for

    def outputs(n) -> list[str]:
        outs = [o for o in n.output if o in produced]
        if not outs and n.name.endswith(NCHWC_SUFFIX) and n.name[:-len(NCHWC_SUFFIX)] in produced:
            outs = [n.name[:-len(NCHWC_SUFFIX)]]
        if not outs and n.name in by_name:
            outs = list(by_name[n.name].output)
        return outs
    for n in optimized.graph.node:                     # in order: producers before readers
        ins = list(dict.fromkeys(v for i in n.input if i for v in out_of.get(i, [i] if i in known else [])))
        outs = outputs(n)
        for o in n.output:                             # a node that resolves to nothing (a reorder)
            out_of[o] = [o] if o in known else (outs or ins)      # passes its input on
        u = units.get(n.name)
        if u is not None:
            u.outputs += [o for o in outs if o not in u.outputs]
            u.inputs += [i for i in ins if i not in u.inputs]
            if n.name in by_name and n.name not in u.direct:
                u.direct.append(n.name)


# ---------------------------------------------------------------- tilewise
def tilewise_units(lib, timed: list[list[tuple]]) -> list[Unit]:
    """tilewise's kernel calls of a built model (a GraphLibrary), each with its times from one or
    more results of frontends.profile.time_steps(lib, ...) (joined), and its nodes' outputs and
    inputs as values of the model."""
    from .passes import run_passes
    g = run_passes(lib.graph, None, lib.target)       # the graph the plan's node names refer to
    nodes = {n.name: n for n in g.nodes}
    units = []
    for k, (st, _) in enumerate(timed[0]):
        grp = [nodes[n] for n in st.nodes if n in nodes]
        made = {o for n in grp for o in n.outputs}
        times = [t for one in timed for t in one[k][1].times]
        units.append(Unit(st.kernel, "+".join(n.op for n in grp), times, outputs=sorted(made),
                          inputs=[i for n in grp for i in n.inputs if i and i not in made],
                          direct=list(st.nodes)))
    return units


# ---------------------------------------------------------------- matching
def resolve(model, units: list[Unit], stop: set[str] = frozenset()) -> None:
    """Set each unit's `nodes`: the original nodes named by it (its name, or up to a "." suffix
    tilewise's passes add) and those found walking back from its outputs, up to its inputs, the
    model's inputs and weights, other units' outputs and `stop`."""
    producer = {o: n for n in model.graph.node for o in n.output}
    names = {n.name for n in model.graph.node}
    for u in units:
        others = {o for v in units if v is not u for o in v.outputs} | set(stop)
        ends = set(u.inputs) | (others - set(u.outputs))
        found = {original_node(d, names) for d in u.direct} - {None}
        todo = [o for o in u.outputs if o in producer]
        seen: set[str] = set()
        while todo:
            v = todo.pop()
            if v in seen:
                continue
            seen.add(v)
            n = producer[v]
            found.add(n.name)
            todo += [i for i in n.input if i in producer and i not in ends and i not in seen]
        u.nodes = found


def original_node(name: str, names: set[str]) -> str | None:
    """The original node a (possibly pass-renamed, "<node>.<k>") node name stands for."""
    while name not in names and "." in name:
        name = name.rsplit(".", 1)[0]
    return name if name in names else None


def joined(sets) -> Callable[[str], str]:
    """find(name): one name standing for each group of names the sets join (the names of a set
    are one group; groups that share a name are one)."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x
    for names in sets:
        ns = sorted(names)
        for a in ns[1:]:
            parent[find(a)] = find(ns[0])
    return find


def match(model, ort: list[Unit], tilewise: list[Unit]) -> list[Row]:
    """Rows of units of both engines that share original nodes (resolved here), largest loss first."""
    resolve(model, tilewise)
    resolve(model, ort, stop={o for u in tilewise for o in u.outputs})
    order = {n.name: k for k, n in enumerate(model.graph.node)}
    op_of = {n.name: n.op_type for n in model.graph.node}
    find = joined(u.nodes for u in ort + tilewise)
    rows: dict[str, Row] = {}
    for side, units in (("ort", ort), ("tilewise", tilewise)):
        for u in units:
            key = find(min(u.nodes)) if u.nodes else f"{side}:{u.name}"
            row = rows.setdefault(key, Row([], [], [], []))
            getattr(row, side).append(u)
    for key, row in rows.items():
        covered = sorted({n for u in row.ort + row.tilewise for n in u.nodes}, key=order.get)
        row.nodes, row.ops = covered, [op_of[n] for n in covered]
    return sorted(rows.values(), key=lambda r: -r.loss)
