"""A kernel writes its output over an input it reads only at the element it writes and that
nothing reads after it (frontends/in_place.py): the rule on tensor expressions, the plan's choice,
and Sum convs built in place by every implementation and knob that decides how the output is
written, against numpy."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import autotune
import frontends
import te
from frontends.in_place import aliases, overwritable
from frontends.tasks import extract_tasks


def ph(shape, dtype="float32", name="p"):
    return te.placeholder(shape, dtype, name=name)


# ---------------------------------------------------------------- the rule on tensor expressions

def test_an_epilogue_may_overwrite_the_residual_but_not_the_conv_input():
    x, w, r = ph((8, 10), name="x"), ph((8, 8), name="w"), ph((8, 10), name="r")
    k = te.reduce_axis((0, 8), "k")
    mm = te.compute((8, 10), lambda i, j: te.sum(w[i, k] * x[k, j], axis=k), name="mm")
    add = te.compute((8, 10), lambda i, j: mm[i, j] + r[i, j], name="add")
    out = te.compute((8, 10), lambda i, j: te.max(add[i, j], te.const(0.0, "float32")), name="relu")
    assert overwritable(out, [x, w, r]) == [2]


def test_no_overwrite_where_the_input_is_read_at_another_element_or_broadcast():
    r, b = ph((4, 6), name="r"), ph((6,), name="b")
    shifted = te.compute((4, 6), lambda i, j: r[i, (j + 1) % 6] + r[i, j], name="shift")
    assert overwritable(shifted, [r]) == []
    transposed_shape = ph((6, 6), name="s")
    transposed = te.compute((6, 6), lambda i, j: transposed_shape[j, i], name="t")
    assert overwritable(transposed, [transposed_shape]) == []
    bcast = te.compute((4, 6), lambda i, j: r[i, j] * b[j], name="bc")
    assert overwritable(bcast, [r, b]) == [0]          # b differs in shape
    wider = te.compute((4, 6), lambda i, j: te.cast("float64", r[i, j]), name="wide")
    assert overwritable(wider, [r]) == []              # another dtype: another size


def test_no_overwrite_where_an_intermediate_of_the_input_feeds_a_reduction():
    r = ph((4, 6), name="r")
    scaled = te.compute((4, 6), lambda i, j: r[i, j] * 2.0, name="scaled")
    k = te.reduce_axis((0, 6), "k")
    rowsum = te.compute((4,), lambda i: te.sum(scaled[i, k], axis=k), name="rowsum")
    out = te.compute((4, 6), lambda i, j: scaled[i, j] - rowsum[i], name="out")
    assert overwritable(out, [r]) == []                # scaled is read by the reduction too
    assert overwritable(rowsum, [r]) == []             # a reduction's own output: never


# ---------------------------------------------------------------- the plan's choice

def test_aliases_take_an_input_only_at_its_last_reader_and_resolve_chains():
    values = [["x", "a"], ["a", "b"], ["b", "a", "c"], ["c", "d"], ["d", "c", "e"]]
    cands = {"b": ["a"], "c": ["b", "a"], "e": ["c"], "d": ["c"]}
    got = aliases(values, cands, private={"x"})
    # b may not take a (read by call 2); c takes b (its last reader); e takes c, so c's bytes
    assert got == {"c": "b", "e": "b"}
    assert aliases(values, cands, private={"x", "b", "c"}) == {}


# ---------------------------------------------------------------- Sum convs built in place

def block(rng, C: int, K: int, R: int, H: int):
    """input -> 1x1 conv (C -> K, relu: the residual r) -> 1x1 conv (K -> K, relu) -> conv R x R
    (K -> K, the Sum conv) + r -> relu -> 1x1 conv (K -> 8): the Sum conv's output and its
    residual are both intermediates, and r is read last by the Sum conv."""
    def weight(k, c, r):
        return (rng.standard_normal((k, c, r, r)) / np.sqrt(c * r * r)).astype(np.float32)
    w1, w2, w3, w4 = weight(K, C, 1), weight(K, K, 1), weight(K, K, R), weight(8, K, 1)
    b3 = rng.standard_normal(K).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"]), helper.make_node("Relu", ["c1"], ["r"]),
             helper.make_node("Conv", ["r", "w2"], ["c2"]), helper.make_node("Relu", ["c2"], ["t"]),
             helper.make_node("Conv", ["t", "w3", "b3"], ["c3"], pads=[R // 2] * 4),
             helper.make_node("Add", ["c3", "r"], ["s"]), helper.make_node("Relu", ["s"], ["y"]),
             helper.make_node("Conv", ["y", "w4"], ["out"])]
    inits = [numpy_helper.from_array(a, n) for a, n in ((w1, "w1"), (w2, "w2"), (w3, "w3"), (b3, "b3"), (w4, "w4"))]
    g = helper.make_graph(nodes, "block", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, C, H, H])],
                          [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 8, H, H])], inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])

    def conv(a, w):
        k = w.shape[-1]
        p = np.pad(a, ((0, 0), (k // 2, k // 2), (k // 2, k // 2)))
        win = np.lib.stride_tricks.sliding_window_view(p, (k, k), axis=(1, 2))      # c, H, W, k, k
        return np.einsum("kcrs,cijrs->kij", w.astype(np.float64), win)

    def ref(x):
        r = np.maximum(conv(x[0].astype(np.float64), w1), 0)
        t = np.maximum(conv(r, w2), 0)
        y = np.maximum(conv(t, w3) + b3[:, None, None] + r, 0)
        return conv(y, w4)[None]
    return model, ref


def sum_conv_step(lib):
    """The call whose output is written over one of its inputs."""
    steps = [st for st in lib.plan.steps if len({a for a in st.args if a[0] == "ws"})
             < len([a for a in st.args if a[0] == "ws"])]
    assert len(steps) == 1, [st.kernel for st in lib.plan.steps]
    return steps[0]


# knobs that decide how a conv writes its output, per template (the others only tile the work)
VARIANTS = {
    "conv2d_1x1_gemm": [{}, {"pack_input": True}, {"pack_input": False}, {"tile_order": "rows_outer"},
                        {"tile_order": "panels", "pack_input": True}, {"order": "rows_outer"}],
    "conv2d_nchw": [{}, *({"out_order": o} for o in ("oc_outer", "rows_outer", "chunks_outer", "split_c")),
                    {"store": "vec_oc"}, {"pack_at": "root"}, {"pack_at": "oc_block"}],
}


HASWELL = "llvm -mcpu=haswell"     # AVX2: 8-lane vectors, other tails and masks; runs on any AVX2 host


@pytest.mark.parametrize("target", [None, HASWELL])
@pytest.mark.parametrize("C, K, R, H", [(16, 32, 1, 14), (16, 32, 3, 14), (8, 64, 1, 7), (16, 48, 1, 13),
                                        (8, 24, 3, 10)])
def test_sum_convs_written_over_their_residual_match_numpy(C, K, R, H, target, rng):
    if target is not None and "avx2" not in te.target.host().feature_set:
        pytest.skip("this CPU lacks AVX2")
    target = te.target.parse(target)
    model, ref = block(rng, C, K, R, H)
    graph = frontends.from_onnx(model)
    x = rng.standard_normal((1, C, H, H)).astype(np.float32)
    want = ref(x)
    lib = frontends.build(graph, target)
    sum_conv_step(lib)
    np.testing.assert_allclose(lib.run(x=x)[0], want, rtol=1e-4, atol=1e-4)
    # each implementation of the Sum conv, and the knobs that shape its output stage
    sum_tasks = [t for t in extract_tasks(graph, target) if getattr(t.workload, "w_shape", None) == (K, K, R, R)]
    assert sum_tasks
    built = 0
    for mt in sum_tasks:
        space = mt.task.config_space
        for knobs in VARIANTS.get(mt.task.name, [{}]):
            if any(k not in space.space_map for k in knobs):
                continue
            try:
                cfg = space.default_with(knobs)
            except Exception:           # a value this shape's space lacks
                continue
            rec = autotune.Record(mt.task.workload_key, cfg.to_json(), [1e-6], isa=mt.task.target.isa,
                                  cpu=mt.task.target.cpu)
            lib = frontends.build(graph, target, logs=[rec])
            assert [r.workload for r in lib.records] == [mt.task.workload_key]
            sum_conv_step(lib)
            np.testing.assert_allclose(lib.run(x=x)[0], want, rtol=1e-4, atol=1e-4,
                                       err_msg=f"{mt.task.name} {knobs}")
            built += 1
    assert built >= 3


def test_a_residual_read_after_the_sum_is_not_overwritten(rng):
    """x -> r; y = relu(conv(r) + r); out = y + r: r is still read after the Sum conv."""
    w = (rng.standard_normal((16, 16, 1, 1)) / 4).astype(np.float32)
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Conv", ["r", "w"], ["c"]),
             helper.make_node("Add", ["c", "r"], ["s"]), helper.make_node("Relu", ["s"], ["y"]),
             helper.make_node("Add", ["y", "r"], ["out"])]
    g = helper.make_graph(nodes, "late", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16, 7, 7])],
                          [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 16, 7, 7])],
                          [numpy_helper.from_array(w, "w")])
    lib = frontends.build(frontends.from_onnx(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])))
    x = rng.standard_normal((1, 16, 7, 7)).astype(np.float32)
    r = np.maximum(x, 0).astype(np.float64)
    y = np.maximum(np.einsum("kc,chw->khw", w[:, :, 0, 0], r[0])[None] + r, 0)
    np.testing.assert_allclose(lib.run(x=x)[0], y + r, rtol=1e-4, atol=1e-4)
    conv = next(st for st in lib.plan.steps if "conv" in st.kernel)
    ws = [a for a in conv.args if a[0] == "ws"]
    assert len(set(ws)) == len(ws), "the Sum conv's output must not take r's bytes: r is read after it"


def test_the_kernel_report_times_a_sum_conv_in_place_as_the_model_runs_it(rng):
    from frontends import profile
    model, _ = block(rng, 16, 32, 1, 14)
    graph = frontends.from_onnx(model)
    lib = frontends.build(graph)
    step = sum_conv_step(lib)
    kernels = profile.profile_kernels(graph, repeat=1, min_time=0.0)
    assert all(k.latency is not None and not k.error for k in kernels)
    assert [k.name for k in kernels if k.in_place] == [step.kernel]


def test_in_place_args_follow_most_calls_of_a_kernel():
    from types import SimpleNamespace as NS

    from frontends.profile import in_place_args
    specs = [NS(written=False, shape=(4,), dtype="float32"), NS(written=False, shape=(4,), dtype="float32"),
             NS(written=True, shape=(4,), dtype="float32")]
    over = NS(args=[("ws", 0), ("ws", 64), ("ws", 64)])         # the output over input 1
    apart = NS(args=[("ws", 0), ("ws", 64), ("ws", 128)])
    assert in_place_args([over, over, apart], specs) == {2: 1}
    assert in_place_args([over, apart], specs) == {}             # half the calls: not most
    other = [specs[0], NS(written=False, shape=(2, 2), dtype="float32"), specs[2]]
    assert in_place_args([over], other) == {}                    # another shape is not the output's bytes
