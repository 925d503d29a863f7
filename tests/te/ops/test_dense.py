"""matmul / dense / batch_matmul: every strategy (packed, dot, rows) against numpy, epilogues,
fusion through ops.schedule, pre-packed weights, and the dense/matmul templates."""
from __future__ import annotations

import numpy as np
import pytest

import te
from autotune import create_task
from autotune.space import FallbackConfig, get_template
from te import ops
from te.ops import registry
from te.ops.matmul import dense_packed, pack_dense_weight, pack_dense_weight_numpy
from te.ops.matmul_defaults import default_strategy

TOL = dict(rtol=1e-4, atol=1e-4)


def ref(a, b):
    return (a.astype(np.float64) @ b.astype(np.float64)).astype(np.float32)


def run(outs, args, arrays):
    s = ops.schedule(outs)
    f = te.build(s, args)
    out = np.zeros(args[-1].shape, np.float32)
    f(*arrays, out)
    return out


@pytest.mark.parametrize("M, N, K, strategy", [
    (1, 40, 64, "dot"), (1, 37, 70, "dot"), (3, 24, 19, "dot"), (5, 10, 7, "dot"),   # K tails, odd N
    (20, 48, 33, "packed"), (33, 17, 16, "packed"),
    (1, 64, 32, "rows"), (2, 50, 24, "rows"), (6, 96, 20, "rows"),
    (1, 64, 32, "splitk"), (2, 40, 27, "splitk"), (1, 24, 7, "splitk"),
])
def test_dense_strategies(M, N, K, strategy, rand):
    x = te.placeholder((M, K), name="x")
    w = te.placeholder((N, K), name="w")
    b = te.placeholder((N,), name="b")
    if strategy in ("rows", "splitk"):     # these read a row-major B: that is matmul, not dense
        w = te.placeholder((K, N), name="w")
        y = ops.matmul(x, w, b, strategy=strategy)
    else:
        y = ops.dense(x, w, b, strategy=strategy)
    assert y.op.attrs["strategy"] == strategy
    a, wa, ba = rand(x.shape), rand(w.shape), rand(b.shape)
    got = run([y], [x, w, b, y], [a, wa, ba])
    np.testing.assert_allclose(got, ref(a, wa if strategy in ("rows", "splitk") else wa.T) + ba, **TOL)


@pytest.mark.parametrize("M, N, K, expect", [(1, 100, 64, "dot"), (128, 64, 32, "packed")])
def test_dense_default_strategy(M, N, K, expect, rand):
    assert ops.matmul(te.placeholder((1, 8), name="a"), te.placeholder((8, 32), name="b")).op.attrs["strategy"] \
        == "splitk"
    x, w = te.placeholder((M, K), name="x"), te.placeholder((N, K), name="w")
    y = ops.dense(x, w)
    assert y.op.attrs["strategy"] == expect
    a, wa = rand(x.shape), rand(w.shape)
    np.testing.assert_allclose(run([y], [x, w, y], [a, wa]), ref(a, wa.T), **TOL)


@pytest.mark.parametrize("M, N, K, ta, tb", [
    (1, 48, 40, False, False), (4, 33, 21, False, False), (40, 24, 16, False, False),
    (9, 20, 12, True, False), (9, 20, 12, True, True), (30, 20, 12, False, True),
])
def test_matmul_transposes(M, N, K, ta, tb, rand):
    A = te.placeholder((K, M) if ta else (M, K), name="A")
    B = te.placeholder((N, K) if tb else (K, N), name="B")
    C = ops.matmul(A, B, transpose_a=ta, transpose_b=tb)
    a, b = rand(A.shape), rand(B.shape)
    np.testing.assert_allclose(run([C], [A, B, C], [a, b]), ref(a.T if ta else a, b.T if tb else b), **TOL)


def test_matmul_bad_strategy_raises():
    A, B = te.placeholder((4, 8), name="A"), te.placeholder((8, 6), name="B")
    with pytest.raises(ValueError, match="dot"):
        ops.matmul(A, B, strategy="dot")
    with pytest.raises(ValueError, match="unknown strategy"):
        ops.matmul(A, B, strategy="magic")
    with pytest.raises(ValueError, match="inner dimensions"):
        ops.matmul(A, te.placeholder((7, 6), name="B2"))


def test_batch_matmul_broadcast(rand):
    A = te.placeholder((3, 5, 8), name="A")
    B = te.placeholder((1, 12, 8), name="B")
    C = ops.batch_matmul(A, B, transpose_b=True)
    a, b = rand(A.shape), rand(B.shape)
    np.testing.assert_allclose(run([C], [A, B, C], [a, b]), np.einsum("bmk,nk->bmn", a, b[0]), **TOL)


@pytest.mark.parametrize("M", [1, 70])
def test_dense_epilogue_and_fused_relu(M, rand):
    """A residual in the epilogue, and a relu after it fused by ops.schedule."""
    x, w = te.placeholder((M, 24), name="x"), te.placeholder((32, 24), name="w")
    r = te.placeholder((M, 32), name="r")
    d = ops.dense(x, w, epilogue=lambda v, i: v + r[i])
    y = te.compute(d.shape, lambda i, j: te.max_of(d[i, j], 0.0), name="relu", tag="elemwise")
    s = ops.schedule([y])
    assert s[d].attach_type.value == "inline"
    f = te.build(s, [x, w, r, y])
    a, wa, ra = rand(x.shape), rand(w.shape), rand(r.shape)
    out = np.zeros(y.shape, np.float32)
    f(a, wa, ra, out)
    np.testing.assert_allclose(out, np.maximum(ref(a, wa.T) + ra, 0), **TOL)


def test_dense_prepacked_weights(rand):
    x, w = te.placeholder((9, 20), name="x"), te.placeholder((30, 20), name="w")
    pw = pack_dense_weight(w, 16)
    a, wa = rand(x.shape), rand(w.shape)
    np.testing.assert_array_equal(run([pw], [w, pw], [wa]), pack_dense_weight_numpy(wa, 16))
    P = te.placeholder(pw.shape, name="P")
    b = te.placeholder((30,), name="b")
    y = dense_packed(x, P, 30, bias=b)
    ba = rand(b.shape)
    np.testing.assert_allclose(run([y], [x, P, b, y], [a, pack_dense_weight_numpy(wa, 16), ba]),
                               ref(a, wa.T) + ba, **TOL)


@pytest.mark.parametrize("name, args", [("dense", (1, 40, 48)), ("dense_dot", (1, 40, 48)), ("dense", (24, 32, 20)),
                                        ("matmul", (2, 48, 16)), ("matmul_rows", (2, 48, 16)),
                                        ("matmul_splitk", (2, 48, 16)), ("matmul", (24, 32, 20))])
def test_templates_default_and_other_configs(name, args, rand):
    space = create_task(name, args).config_space
    assert len(space) > 2
    other = [space.get(i) for i in (len(space) - 1, len(space) // 2, 1)]
    for cfg in [FallbackConfig(), space.get(space.default_index()), *other]:
        s, tensors = get_template(name)(cfg, *args)
        arrays = [rand(t.shape) for t in tensors[:-1]]
        out = np.zeros(tensors[-1].shape, np.float32)
        te.build(s, tensors)(*arrays, out)
        expect = ref(arrays[0], arrays[1].T if name.startswith("dense") else arrays[1])
        if name.startswith("dense"):
            expect = expect + arrays[2]
        np.testing.assert_allclose(out, expect, **TOL)


@pytest.mark.parametrize("name, transpose_b", [("matmul", False), ("dense", True)])
def test_tuned_config_reaches_the_model_kernel(name, transpose_b, rand):
    """A config of the matmul/dense template shapes the kernel a model builds with it (the registry's choice)."""
    M, N, K = 24, 40, 32
    task = create_task(name, (M, N, K, "float32"))
    space = task.config_space
    cfg = next(space.get(i) for i in range(len(space))
               if space.get(i)["bn"].val == 8 and space.get(i)["tile_y"].size[-1] == 4)
    a = te.placeholder((M, K), name="a")
    b = te.placeholder((N, K) if transpose_b else (K, N), name="b")
    wl = registry.MatmulWorkload(M, N, K, transpose_b=transpose_b)
    choice = registry.Choice(task.implementation, wl, task.target, cfg)
    assert task.implementation.name == f"{name}.packed"
    y = choice.compute([a, b], name="y")
    assert (y.op.attrs["strategy"], y.op.attrs["bn"], y.op.attrs["bm"]) == ("packed", 8, 4)
    av, bv = rand(a.shape), rand(b.shape)
    out = np.zeros((M, N), np.float32)
    te.build(ops.schedule([y], anchor_schedule=choice.schedule), [a, b, y])(av, bv, out)
    np.testing.assert_allclose(out, av @ (bv.T if transpose_b else bv), rtol=1e-4, atol=1e-4)
    assert ops.matmul(a, b, transpose_b=transpose_b).op.attrs["strategy"] == \
        default_strategy(M, N, K, transpose_b=transpose_b)                           # the op alone: defaults


def test_small_m_strategies_only_for_small_m():
    """splitk/rows/dot apply (and are tuned) only where M is small (splitk at M=128 took > 30 s to build)."""
    def strategies(transpose_b, M):
        wl = registry.MatmulWorkload(M, 256, 256, transpose_b=transpose_b)
        return [impl.name for _, impl in registry.candidates(wl, te.target.host())]
    assert strategies(False, 128) == ["matmul.packed"] and strategies(True, 128) == ["dense.packed"]
    assert strategies(False, 2) == ["matmul.splitk", "matmul.packed", "matmul.rows"]
    assert strategies(True, 8) == ["dense.dot", "dense.packed"]