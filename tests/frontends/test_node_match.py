"""ONNX Runtime's nodes matched with tilewise's kernels by the ONNX nodes they compute (frontends/node_match.py)."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import helper, numpy_helper

import frontends
from frontends import node_match, profile

from .onnx_helpers import tiny, vi


def fire_model():
    """SqueezeNet in small: a stem conv + Relu + max pool, a squeeze 1x1, two expands, their channel
    Concat, a conv + Relu after it (one Relu unnamed)."""
    rng = np.random.default_rng(0)

    def w(*shape):
        return numpy_helper.from_array((rng.standard_normal(shape) * 0.3).astype(np.float32), f"w{len(inits)}")
    inits: list = []
    for shape in [(16, 3, 3, 3), (8, 16, 1, 1), (16, 8, 1, 1), (16, 8, 3, 3), (16, 32, 1, 1)]:
        inits.append(w(*shape))
    conv = helper.make_node
    nodes = [conv("Conv", ["x", "w0"], ["c0"], name="stem", kernel_shape=[3, 3], strides=[2, 2]),
             conv("Relu", ["c0"], ["r0"], name="stem_relu"),
             conv("MaxPool", ["r0"], ["p0"], name="pool", kernel_shape=[3, 3], strides=[2, 2]),
             conv("Conv", ["p0", "w1"], ["c1"], name="squeeze", kernel_shape=[1, 1]),
             conv("Relu", ["c1"], ["r1"], name="squeeze_relu"),
             conv("Conv", ["r1", "w2"], ["c2"], name="expand1", kernel_shape=[1, 1]),
             conv("Relu", ["c2"], ["r2"], name="expand1_relu"),
             conv("Conv", ["r1", "w3"], ["c3"], name="expand3", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             conv("Relu", ["c3"], ["r3"]),                               # unnamed
             conv("Concat", ["r2", "r3"], ["cat"], name="concat", axis=1),
             conv("Conv", ["cat", "w4"], ["c4"], name="last", kernel_shape=[1, 1]),
             conv("Relu", ["c4"], ["y"], name="last_relu")]
    return tiny(nodes, [vi("x", [1, 3, 35, 35])], [vi("y", [1, 16, 8, 8])], inits)


@pytest.fixture(scope="module")
def rows():
    """The fire model's rows, both engines on one thread, two runs each (no time is asserted)."""
    model = node_match.named(fire_model())
    lib = frontends.build(frontends.from_onnx(model))
    lib.set_num_threads(1)
    prof = node_match.OrtProfile(model, threads=1)
    prof.run(2)
    timed = [profile.time_steps(lib, profile.random_inputs(lib.plan.inputs), repeat=2)]
    return node_match.match(model, prof.units(), node_match.tilewise_units(lib, timed))


def row_of(rows, node):
    return next(r for r in rows if node in r.nodes)


def test_unnamed_nodes_are_named_as_the_importer_names_them():
    model = node_match.named(fire_model())
    assert [n.name for n in model.graph.node][8] == "Relu_8"
    assert "Relu_8" in {n.name for n in frontends.from_onnx(model).nodes}


def test_every_node_is_in_exactly_one_row_and_every_unit_in_one(rows):
    names = [n for r in rows for n in r.nodes]
    assert sorted(names) == sorted(n.name for n in node_match.named(fire_model()).graph.node)
    assert all(len(u.times) == 2 for r in rows for u in r.ort + r.tilewise)


def test_the_stem_kernel_meets_ort_conv_relu_and_pool(rows):
    stem = row_of(rows, "stem")
    assert stem.nodes == ["stem", "stem_relu", "pool"]
    assert [u.op for u in stem.tilewise] == ["tilewise.ConvMaxPool"]
    assert {u.op for u in stem.ort} == {"Conv", "MaxPool"} or {u.op for u in stem.ort} == {"FusedConv", "MaxPool"}


def test_the_concat_tilewise_writes_in_place_is_ort_work_only(rows):
    cat = row_of(rows, "concat")
    assert cat.nodes == ["concat"] and cat.tilewise == [] and [u.op for u in cat.ort] == ["Concat"]
    for conv, relu in [("expand3", "Relu_8"), ("expand1", "expand1_relu"), ("last", "last_relu")]:
        r = row_of(rows, conv)
        assert r.nodes == [conv, relu] and len(r.tilewise) == 1
        assert len([u for u in r.ort if "Conv" in u.op]) == 1      # (with ORT's reorders, if any)


def test_rows_are_sorted_by_loss(rows):
    losses = [r.loss for r in rows]
    assert losses == sorted(losses, reverse=True)


def test_nchwc_nodes_resolve_through_their_names_and_reorder_tokens():
    """ORT's NCHWc graph renames the values: a conv named after the value it computes ("r_nchwc"),
    and a residual Add + Relu folded into the conv named after its BatchNormalization's value,
    which the tilewise kernel computing the Add and Relu claims."""
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
             helper.make_node("BatchNormalization", ["c", "s", "b", "m", "v"], ["bn"], name="bn"),
             helper.make_node("Add", ["bn", "x"], ["sum"], name="add"),
             helper.make_node("Relu", ["sum"], ["r"], name="relu"),
             helper.make_node("Conv", ["r", "w2"], ["y"], name="next")]
    model = tiny(nodes, [vi("x", [1, 8, 4, 4])], [vi("y", [1, 8, 4, 4])])
    optimized = tiny([helper.make_node("ReorderInput", ["x"], ["t0"], name="ReorderInput"),
                      helper.make_node("Conv", ["t0", "wr", "bias", "t0"], ["t1"], name="bn_nchwc"),
                      helper.make_node("Conv", ["t1", "w2r"], ["t2"], name="y_nchwc"),
                      helper.make_node("ReorderOutput", ["t2"], ["y"], name="ReorderOutput")],
                     [vi("x", [1, 8, 4, 4])], [vi("y", [1, 8, 4, 4])])
    ort = {n: node_match.Unit(n, op, [1e-6]) for n, op in
           [("ReorderInput", "ReorderInput"), ("bn_nchwc", "Conv"), ("y_nchwc", "Conv"),
            ("ReorderOutput", "ReorderOutput")]}
    node_match._ort_values(ort, optimized, model)
    assert ort["bn_nchwc"].outputs == ["bn"] and ort["bn_nchwc"].inputs == ["x"]
    assert ort["y_nchwc"].inputs == ["bn"] and ort["ReorderOutput"].outputs == ["y"]
    tw = [node_match.Unit("k0", "Conv+Add+Relu", [2e-6], outputs=["c", "sum", "r"], inputs=["x", "w"],
                          direct=["conv", "add", "relu"]),
          node_match.Unit("k1", "Conv", [1e-6], outputs=["y"], inputs=["r", "w2"], direct=["next"])]
    rows = node_match.match(model, list(ort.values()), tw)
    first = row_of(rows, "conv")
    assert first.nodes == ["conv", "bn", "add", "relu"]
    assert [u.name for u in first.ort] == ["bn_nchwc"] and [u.name for u in first.tilewise] == ["k0"]
    last = row_of(rows, "next")
    assert last.nodes == ["next"] and {u.name for u in last.ort} == {"y_nchwc", "ReorderOutput"}
    alone = next(r for r in rows if not r.nodes)
    assert [u.name for u in alone.ort] == ["ReorderInput"] and alone.tilewise == []
    assert first.loss == pytest.approx(1e-6)
