"""hoist_scratch: a kernel's large per-call allocations become arguments a model plans in its workspace."""
import numpy as np

import te
from te.stmt import Allocate, For, hoist_scratch, walk_stmt


def _two_stage(n: int, parallel_inner: bool):
    a = te.placeholder((n, 64), "float32", name="a")
    t = te.compute((n, 64), lambda i, j: a[i, j] * 2.0, name="t")
    out = te.compute((n, 64), lambda i, j: t[i, j] + 1.0, name="out")
    s = te.create_schedule(out.op)
    if parallel_inner:          # t computed inside the parallel loop: a per-row buffer
        s[out].parallel(s[out].op.axis[0])
        s[t].compute_at(s[out], s[out].op.axis[0])
    return s, [a, out]


def test_a_large_root_allocation_becomes_the_last_argument():
    s, args = _two_stage(1024, parallel_inner=False)          # t: 256 KiB at the root
    f = te.lower(s, args, "k")
    h = hoist_scratch(f, 64 * 1024)
    assert [b.name for b in h.args] == [b.name for b in f.args] + ["t"]
    assert h.attrs["scratch"] == 1
    assert not any(isinstance(x, Allocate) for x in walk_stmt(h.body))
    a = np.random.default_rng(0).standard_normal((1024, 64)).astype(np.float32)
    out, scratch = np.zeros_like(a), np.zeros_like(a)
    te.build(h)(a, out, scratch)
    np.testing.assert_allclose(out, a * 2 + 1, rtol=1e-6)
    np.testing.assert_allclose(scratch, a * 2, rtol=1e-6)   # the kernel wrote its stage there


def test_small_and_per_thread_allocations_stay():
    s, args = _two_stage(16, parallel_inner=False)             # 4 KiB: on the stack
    f = te.lower(s, args, "k")
    assert hoist_scratch(f, 64 * 1024) is f
    s, args = _two_stage(1024, parallel_inner=True)
    f = te.lower(s, args, "k")
    h = hoist_scratch(f, 0)                                     # even a tiny one inside a parallel loop stays
    assert h is f
    assert any(isinstance(x, For) for x in walk_stmt(h.body))


def test_model_kernels_take_their_scratch_from_the_workspace():
    from frontends import build, from_onnx, zoo
    lib = build(from_onnx(zoo.mobilenet_block(size=28)))
    with_scratch = [f for f in lib.plan.funcs if f.attrs.get("scratch")]
    assert with_scratch, "the block's convs pad their input into a scratch buffer"
    for st in lib.plan.steps:
        f = next((f for f in lib.plan.funcs if f.name == st.kernel), None)
        if f is not None:
            assert len(st.args) == len(f.args)
    x = np.random.default_rng(0).standard_normal(lib.plan.inputs[0]["shape"]).astype(np.float32)
    out = lib.run(**{lib.plan.inputs[0]["name"]: x})
    from frontends.profile import onnxruntime_session
    sess = onnxruntime_session(zoo.mobilenet_block(size=28))
    want = sess.run(None, {sess.get_inputs()[0].name: x})
    np.testing.assert_allclose(out[0], want[0], rtol=1e-3, atol=1e-3 * np.abs(want[0]).max())
