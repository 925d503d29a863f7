"""Candidates are timed as the model runs them: the group's fused epilogue, cold weights."""
import numpy as np
import pytest
from onnx import helper, numpy_helper

import autotune
import frontends
from autotune.epilogue import check_epilogue
from autotune.measure_jobs import _weight_copies
from frontends.tasks import epilogue_of, extract_tasks
from te.target import host

from ..frontends.onnx_helpers import tiny, vi


def _conv_add_relu():
    """Conv(bias) -> Add(residual input) -> Relu, and a 1x1 Conv -> Clip(0, 6) after it."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((16, 8, 3, 3)).astype(np.float32), "w")
    b = numpy_helper.from_array(rng.standard_normal(16).astype(np.float32), "b")
    w2 = numpy_helper.from_array(rng.standard_normal((16, 16, 1, 1)).astype(np.float32), "w2")
    lo, hi = (numpy_helper.from_array(np.array(v, np.float32), n) for v, n in ((0.0, "lo"), (6.0, "hi")))
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Add", ["c", "r"], ["s"]),
             helper.make_node("Relu", ["s"], ["y"]),
             helper.make_node("Conv", ["y", "w2"], ["c2"]),
             helper.make_node("Clip", ["c2", "lo", "hi"], ["z"])]
    return tiny(nodes, [vi("x", [1, 8, 12, 12]), vi("r", [1, 16, 12, 12])], [vi("z", [1, 16, 12, 12])],
                [w, b, w2, lo, hi])


def test_a_task_carries_its_group_epilogue_outside_its_key():
    g = frontends.from_onnx(_conv_add_relu())
    tasks = extract_tasks(g, algorithms="preferred")
    by_w = {t.task.args[1][0:2]: t.task for t in tasks}
    t3 = by_w[(16, 8)]
    assert t3.epilogue == (("bias", (16,)), ("Add", ("x", (1, 16, 12, 12))), ("Relu", ("x",)))
    assert by_w[(16, 16)].epilogue == (("Clip", ("x", 0.0, 6.0)),)
    plain = autotune.create_task(t3.name, t3.args)
    assert plain.workload_key == t3.workload_key and plain.epilogue == ()


def test_a_task_used_by_several_kernels_is_timed_with_the_chain_most_of_them_fuse():
    """Three 1x1 convs of one workload: the first plain, the next two followed by Relu."""
    rng = np.random.default_rng(0)
    ws = [numpy_helper.from_array(rng.standard_normal((8, 8, 1, 1)).astype(np.float32), f"w{k}") for k in range(3)]
    nodes = [helper.make_node("Conv", ["x", "w0"], ["c0"]),
             helper.make_node("Conv", ["c0", "w1"], ["c1"]), helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Conv", ["r1", "w2"], ["c2"]), helper.make_node("Relu", ["c2"], ["y"])]
    g = frontends.from_onnx(tiny(nodes, [vi("x", [1, 8, 6, 6])], [vi("y", [1, 8, 6, 6])], ws))
    (mt,) = extract_tasks(g, algorithms="preferred")
    assert mt.count == 3 and mt.task.epilogue == (("Relu", ("x",)),)


def test_the_fused_candidate_computes_the_model_kernel():
    g = frontends.from_onnx(_conv_add_relu())
    task = next(t.task for t in extract_tasks(g, algorithms="preferred") if t.task.args[1][1] == 8)
    s, tensors = task.instantiate(None, fused=True)
    x_t, w_t, b_t, r_t, y_t = tensors
    import te
    f = te.build(s, tensors, target=host())
    rng = np.random.default_rng(1)
    x, r = rng.standard_normal(x_t.shape).astype(np.float32), rng.standard_normal(r_t.shape).astype(np.float32)
    w, b = g.constants["w"], g.constants["b"]
    y = np.zeros(y_t.shape, np.float32)
    f(x, task.pack_weight(w), b, r, y)
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    win = np.lib.stride_tricks.sliding_window_view(xp, (3, 3), axis=(2, 3))    # 1, C, H, W, 3, 3
    ref = np.maximum(np.einsum("nchwrs,kcrs->nkhw", win, w) + b[None, :, None, None] + r, 0)
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-4)


def test_an_epilogue_the_tuner_cannot_express_stops_there():
    g = frontends.from_onnx(tiny([helper.make_node("Conv", ["x", "w"], ["c"]),
                                  helper.make_node("LeakyRelu", ["c"], ["d"], alpha=0.1),
                                  helper.make_node("Relu", ["d"], ["y"])],
                                 [vi("x", [1, 8, 6, 6])], [vi("y", [1, 4, 6, 6])],
                                 [numpy_helper.from_array(np.ones((4, 8, 1, 1), np.float32), "w")]))
    from frontends.passes import fuse, run_passes
    g2 = run_passes(g)
    grp = next(grp for grp in fuse(g2) if grp.master.op == "Conv")
    assert epilogue_of(grp, g2) == ()


@pytest.mark.parametrize("bad", [[("Softmax", ["x"])], [("Relu", ["x"]), ("bias", [4])], [("Add", ["x", "y"])],
                                 [("Add", ["x", [0, 3]])], "relu",
                                 [("Relu", ["x"]), ("Mul", ["x2", "x"])],        # a value not entered yet
                                 [("bias", [4]), ("Mul", ["x0", "x"])],          # the product before its bias
                                 [("Relu", ["x"]), ("Mul", ["x-1", "x"])]])
def test_a_malformed_epilogue_is_refused_by_name(bad):
    with pytest.raises(ValueError, match="epilogue"):
        check_epilogue(bad)


def test_cold_weight_copies_outgrow_the_l2():
    t = host()
    w = np.ones(64 << 10, np.float32)                           # 256 KiB
    copies = _weight_copies(w, t)
    assert copies[0] is w and len({id(c) for c in copies}) == len(copies)
    assert sum(c.nbytes for c in copies) >= min(4 * t.caches.l2 * t.threads, 64 * w.nbytes)
    assert _weight_copies(w, t) is copies                       # the next candidate reuses them
    big = np.ones(64 << 20, np.uint8)
    assert len(_weight_copies(big, t)) <= 4                      # never more than 256 MiB of copies


def test_a_fused_task_is_measured_and_checked():
    g = frontends.from_onnx(_conv_add_relu())
    task = next(t.task for t in extract_tasks(g, algorithms="preferred") if t.task.args[1][1] == 8)
    space = task.config_space
    with autotune.Measurer(autotune.measure_option(n_parallel=1, min_repeat_ms=1, repeat=2)) as m:
        recs = m.measure(task, [space.get(space.default_index()), space.get(0)])
    assert all(r.ok for r in recs), [r.error_msg for r in recs]
    assert recs[0].workload == task.workload_key


def test_a_gemm_whose_template_takes_its_bias_builds_fused():
    """Gemm(bias) -> Relu: the dense templates hold the bias among their own inputs, so the
    epilogue's bias is theirs (a second bias input would be an argument the kernel never reads)."""
    rng = np.random.default_rng(2)
    w = numpy_helper.from_array(rng.standard_normal((24, 32)).astype(np.float32), "w")
    b = numpy_helper.from_array(rng.standard_normal(24).astype(np.float32), "b")
    nodes = [helper.make_node("Gemm", ["x", "w", "b"], ["g"], transB=1), helper.make_node("Relu", ["g"], ["y"])]
    g = frontends.from_onnx(tiny(nodes, [vi("x", [1, 32])], [vi("y", [1, 24])], [w, b]))
    import te
    for mt in extract_tasks(g):
        task = mt.task
        assert task.epilogue == (("bias", (24,)), ("Relu", ("x",)))
        s, tensors = task.instantiate(None, fused=True)
        assert [t.name for t in tensors[:3]] == ["x", tensors[1].name, "b"] and len(tensors) == 4
        f = te.build(s, tensors, target=host())
        x = rng.standard_normal((1, 32)).astype(np.float32)
        y = np.zeros((1, 24), np.float32)
        packed = task.pack_weight(g.constants["w"])
        f(x, g.constants["w"] if packed is None else packed, g.constants["b"], y)
        np.testing.assert_allclose(y, np.maximum(x @ g.constants["w"].T + g.constants["b"], 0), rtol=1e-4, atol=1e-4)


def _canonical(func) -> str:
    """A lowered function's text without comments, each name replaced by its order of first use."""
    import re
    names: dict[str, str] = {}
    text = "\n".join(ln.split("#")[0].rstrip() for ln in str(func).splitlines())
    return re.sub(r"\b[A-Za-z_][\w.]*", lambda m: names.setdefault(m.group(), f"n{len(names)}"), text)


def test_ffn1_is_timed_with_its_erf_gelu_the_kernel_the_model_runs():
    """The encoder's FFN1 dense: the model fuses its bias and Erf-GELU (a diamond: the last Mul reads
    the dense output again) into the dense output tile; the task's epilogue carries all of it, so the
    candidate is the model's kernel, loop for loop, and computes dense + GELU."""
    from math import erf

    import te
    from frontends import zoo
    from frontends.compile import plan_model
    g = frontends.from_onnx(zoo.encoder_layer(seq=16, hidden=32, heads=2, ffn=64))
    mt = next(t for t in extract_tasks(g, algorithms="preferred") if t.workload.N == 64)
    assert mt.task.epilogue == (("Add", ("x", (64,))), ("Div", ("x", float(np.float32(np.sqrt(2.0))))),
                                ("Erf", ("x",)), ("Add", ("x", 1.0)), ("Mul", ("x1", "x")), ("Mul", ("x", 0.5)))
    mp, _, _ = plan_model(g, host(), 17)
    step = next(st for st in mp.steps if st.nodes[0] == mt.nodes[0])
    assert [n.split("_")[0] for n in step.nodes] == ["MatMul", "Add", "Div", "Erf", "Add", "Mul", "Mul"]
    model_kernel = next(f for f in mp.funcs if f.name == step.kernel)
    s, tensors = mt.task.instantiate(None, fused=True)
    assert _canonical(te.lower(s, tensors, "task")) == _canonical(model_kernel)
    f = te.build(s, tensors, target=host())
    rng = np.random.default_rng(3)
    x, w, b = (rng.standard_normal(t).astype(np.float32) for t in ((16, 32), (32, 64), (64,)))
    y = np.zeros((16, 64), np.float32)
    f(x, mt.task.pack_weight(w), b, y)
    h = x @ w + b
    np.testing.assert_allclose(y, h * 0.5 * (1 + np.vectorize(erf)(h / np.sqrt(2))), rtol=1e-4, atol=1e-4)
