"""Direct convs whose threads each pad their own copy of the input (direct_defaults.padded_by_thread,
conv2d._tasks): where the rule says so, the copy inside each thread's share, every schedule path
against numpy, on more shares than this machine's threads too, and in a model from its workspace."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import autotune
import te
from te import ops
from te.ops import registry
from te.ops.conv_geometry import geometry
from te.ops.direct_defaults import EXACT_PAD_WIDTH, padded_by_thread
from te.ops.registry import ConvWorkload
from te.stmt import hoist_scratch
from te.target import host

from .conv_reference import conv_ref, parallel_tasks

DIRECT = registry.IMPLEMENTATIONS["conv2d.direct"]


def threads(n: int):
    return dataclasses.replace(host(), threads=n)


def test_the_rule():
    g = geometry((1, 512, 14, 14), (512, 512, 3, 3), (2, 2), 1)         # ResNet-50's stride-2 3x3 at 14x14
    assert padded_by_thread(g, 16, threads(2)) and padded_by_thread(g, 16, threads(4))
    assert not padded_by_thread(g, 16, threads(1))                      # one thread: one copy
    assert not padded_by_thread(g, EXACT_PAD_WIDTH + 1, threads(2))     # wide rows: copied by chunks
    grouped = geometry((1, 384, 13, 13), (256, 192, 3, 3), (1, 1), 1, groups=2)
    assert not padded_by_thread(grouped, 15, threads(2))               # the shared copy is split by group
    assert not padded_by_thread(geometry((1, 64, 14, 14), (64, 64, 3, 3), (1, 1), 0), 14, threads(2))


def build(wl: ConvWorkload, knobs: dict, target, prepacked: bool = True):
    task = autotune.create_task(DIRECT.template, DIRECT.args(wl), target)
    cfg = task.config_space.default_with(knobs)
    x, w = DIRECT.placeholders(wl, cfg, target, prepacked)
    b = te.placeholder((wl.w_shape[0],), name="b")
    y = ops.relu(DIRECT.compute([x, w, b], wl, cfg, target, prepacked))
    s = ops.schedule([y], target, anchor_schedule=lambda s, out, final: DIRECT.schedule(s, out, final, cfg, target))
    return te.lower(s, [x, w, b, y], "conv"), cfg


def check(wl: ConvWorkload, knobs: dict, target, rng, prepacked: bool = True):
    """Build the conv (scratch hoisted as a model's build does), run it, compare with numpy;
    returns its loop IR."""
    func, cfg = build(wl, knobs, target, prepacked)
    f = te.build(hoist_scratch(func, 64 * 1024), target=target)
    xa = rng.standard_normal(wl.x_shape).astype(np.float32)
    wa = rng.standard_normal(wl.w_shape).astype(np.float32)
    ba = rng.standard_normal(wl.w_shape[0]).astype(np.float32)
    out = np.zeros(func.args[3].shape, np.float32)
    scratch = [np.full(b.shape, np.nan, np.float32) for b in f.func.args[4:]]
    f(xa, DIRECT.pack_weight(wa, wl, cfg, target) if prepacked else wa, ba, out, *scratch)
    ref = conv_ref(xa, wa, wl.strides, wl.padding) + ba[None, :, None, None]
    np.testing.assert_allclose(out, np.maximum(ref, 0), rtol=2e-4, atol=2e-3)
    return str(func)


S2_512 = ConvWorkload((1, 64, 14, 14), (64, 64, 3, 3), (2, 2), (1, 1, 1, 1))
PATHS = {
    "chunks_outer": {"out_order": "chunks_outer", "tile_oc": 16, "tile_oh": [-1, 1], "tile_ow": [-1, 7],
                     "tile_ic": [-1, 8]},
    "oc_block": {"out_order": "oc_outer", "pack_at": "oc_block", "tile_oc": 16, "tile_oh": [-1, 1],
                 "tile_ow": [-1, 7]},
    "oc_outer": {"out_order": "oc_outer", "pack_at": "root", "tile_oc": 16, "tile_oh": [-1, 1], "tile_ow": [-1, 7]},
    "rows_outer": {"out_order": "rows_outer", "pack_at": "root", "tile_oc": 16, "tile_oh": [-1, 1],
                   "tile_ow": [-1, 7]},
}


@pytest.mark.parametrize("shares", [2, 3])
@pytest.mark.parametrize("path", list(PATHS))
def test_every_path_pads_per_thread_and_matches_numpy(path, shares, rng):
    """Three shares on this machine's two threads: one thread runs two shares, each on its slice."""
    nest = check(S2_512, PATHS[path], threads(shares), rng)
    head = nest[:nest.index("conv2d.acc")]
    assert "# parallel" in head and "allocate conv2d.pad" in head.split("# parallel", 1)[1], nest
    tasks = (64 // 16) * (1 if path in ("oc_block", "chunks_outer") else 7)     # blocks (x row tiles)
    assert parallel_tasks(nest) == shares * -(-tasks // shares)      # the last share's extra ones guarded


@pytest.mark.parametrize("wl", [
    ConvWorkload((1, 32, 7, 7), (64, 32, 3, 3), (1, 1), (1, 1, 1, 1)),          # stride 1 at 7x7
    ConvWorkload((1, 16, 28, 28), (32, 16, 3, 3), (2, 2), (1, 1, 1, 1)),        # stride 2 at 28x28
    ConvWorkload((1, 8, 13, 13), (32, 8, 5, 5), (1, 1), (2, 1, 0, 2)),          # 5x5, uneven padding
])
@pytest.mark.parametrize("prepacked", [False, True])
def test_untuned_convs_match_numpy(wl, prepacked, rng):
    nest = check(wl, {}, threads(2), rng, prepacked)
    assert "conv2d.pad" in nest


def test_an_avx2_build_pads_per_thread_and_matches_numpy(rng):
    """AVX2 (8 lanes, its masked moves: no AVX-512 masks) runs here too: the copy per thread of
    a 16-wide padded row, against numpy."""
    from te.target import parse
    avx2 = dataclasses.replace(parse("llvm -mcpu=haswell"), threads=2)
    nest = check(S2_512, {}, avx2, rng)
    head = nest[:nest.index("conv2d.acc")]
    assert "allocate conv2d.pad" in head.split("# parallel", 1)[1], nest


def test_one_thread_keeps_one_copy_at_the_root(rng):
    nest = check(S2_512, PATHS["chunks_outer"], threads(1), rng)
    assert nest.index("allocate conv2d.pad") < nest.index("produce conv2d.acc")
    assert "# parallel" not in nest[:nest.index("produce conv2d.pad")]


def test_a_copy_past_half_the_l2_stays_shared(rng):
    """A thread's copy must fit half its L2: with a 64 KiB L2 the 64 x 15 x 15 copy (56 KiB) does not."""
    target = dataclasses.replace(threads(2), caches=dataclasses.replace(host().caches, l2=64 * 1024))
    nest = check(S2_512, PATHS["chunks_outer"], target, rng)
    assert nest.index("allocate conv2d.pad") < nest.index("# parallel")


def strided_block() -> "onnx.ModelProto":
    """Conv 3x3 stride 2 (256 -> 256 at 14x14) + Relu, then a 5x5 stride-1 conv at 7x7: two direct
    convs (a 3x3 one at 7x7 is Winograd on AVX2) that pad per thread on two threads, copies past
    the stack's 64 KiB."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(0)
    w1, w2 = (numpy_helper.from_array(rng.standard_normal((256, 256, k, k)).astype(np.float32) / (16 * k), n)
              for n, k in (("w1", 3), ("w2", 5)))
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], strides=[2, 2], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Conv", ["r1", "w2"], ["y"], pads=[2, 2, 2, 2])]
    graph = helper.make_graph(nodes, "strided", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 256, 14, 14])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 256, 7, 7])], [w1, w2])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_a_model_takes_the_per_thread_copies_from_its_workspace():
    """In a model build the per-thread copies are slices of one workspace buffer (no kernel
    allocates), and the model's output matches ONNX Runtime's."""
    from frontends import build as build_model, from_onnx
    from frontends.profile import onnxruntime_session
    from te.stmt import Allocate, walk_stmt
    model = strided_block()
    lib = build_model(from_onnx(model), target=threads(2))
    pads = [b for f in lib.plan.funcs for b in f.args if b.name.endswith(".pad")]
    assert len(pads) == 2 and all(len(b.shape) == 1 for b in pads), pads     # one slice per thread
    assert not any(isinstance(x, Allocate) and x.buffer.name.endswith(".pad")
                   for f in lib.plan.funcs for x in walk_stmt(f.body))
    x = np.random.default_rng(1).standard_normal((1, 256, 14, 14)).astype(np.float32)
    out = lib.run(x=x)
    want = onnxruntime_session(model).run(None, {"x": x})
    np.testing.assert_allclose(out[0], want[0], rtol=1e-4, atol=1e-4 * np.abs(want[0]).max())
