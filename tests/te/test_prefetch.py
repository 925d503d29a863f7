"""The next kernel's weights prefetched by a model's kernels (te/prefetch.py): same results, the
right ranges, the loop that carries the prefetches, the decision per target."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import frontends
from te import prefetch
from te.cache_flush import CacheFlush
from te.caches import Caches
from te.expr import Const, Var
from te.schedule import ForKind
from te.stmt import Comment, For
from te.target import host, parse

from ..tiny_models import tiny_model


def _reference(x: np.ndarray, path: str) -> np.ndarray:
    """The tiny model in numpy: 3x3 conv (pad 1) + bias, Relu, 1x1 conv."""
    import onnx
    from onnx import numpy_helper
    w = {i.name: numpy_helper.to_array(i) for i in onnx.load(path).graph.initializer}
    xp = np.pad(x[0], ((0, 0), (1, 1), (1, 1)))
    win = np.lib.stride_tricks.sliding_window_view(xp, (3, 3), axis=(1, 2))        # C, H, W, 3, 3
    h = np.einsum("chwrs,kcrs->khw", win, w["w1"]) + w["b1"][:, None, None]
    return np.einsum("chw,kc->khw", np.maximum(h, 0), w["w2"][:, :, 0, 0])[None]


def _small_l2():
    """The host with a 4 KiB L2: the tiny model's 3x3 conv weights count as large there."""
    h = host()
    return dataclasses.replace(h, caches=Caches(h.caches.l1d, 4096, h.caches.l3))


@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    """The tiny model built with and without prefetching, and its path."""
    path = tiny_model(tmp_path_factory.mktemp("prefetch") / "tiny.onnx")
    return {p: frontends.build(frontends.from_onnx(path), target=_small_l2(), prefetch=p) for p in (False, True)}, path


@pytest.mark.parametrize("threads", [1, 2])
def test_prefetching_changes_no_result(builds, threads):
    libs, path = builds
    x = np.random.default_rng(threads).standard_normal((1, 8, 16, 16)).astype(np.float32)
    got = {}
    for p, lib in libs.items():
        lib.set_num_threads(threads)
        got[p] = lib.run(x=x)[0]
    np.testing.assert_array_equal(got[True], got[False])
    np.testing.assert_allclose(got[True], _reference(x, path), rtol=1e-4, atol=1e-4)


def _constants(lib, st) -> tuple[int, int]:
    """(first params offset, bytes through the last) of a step's constant arguments."""
    func = next(f for f in lib.plan.funcs if f.name == st.kernel)
    spans = [(off, n) for (space, off), n in zip(st.args, prefetch.arg_bytes(func)) if space == "param"]
    lo = min(off for off, _ in spans)
    return lo, max(off + n for off, n in spans) - lo


def test_each_kernel_prefetches_its_own_constants_ahead(builds):
    libs, _ = builds
    lib = libs[True]
    steps = lib.plan.steps
    assert [st.prefetch for st in libs[False].plan.steps] == [None] * len(steps)
    least = lib.target.threads * 4096 // prefetch.MIN_SHARE
    spans = [_constants(lib, st) for st in steps]
    assert [st.prefetch for st in steps] == [c + (1,) if c[1] > least else None for c in spans]
    assert steps[0].prefetch is not None                  # the 3x3 conv's 4.6 KB
    assert all(off + n <= lib.plan.param_bytes for off, n, _ in (st.prefetch or (0, 0, 0) for st in steps))
    text = str(lib._module().module)
    assert "llvm.prefetch.p0" in text and prefetch.PREFETCH_GLOBAL in text
    assert "llvm.prefetch" not in str(libs[False]._module().module)


def test_ahead_next_names_the_next_kernels_constants(builds):
    libs, _ = builds
    lib = libs[True]
    steps = lib.plan.steps
    spans = prefetch.ranges(steps, lib.plan.funcs, _small_l2(), ahead="next")
    assert spans[0] == _constants(lib, steps[1]) + (0,)
    assert spans[-1] is None                          # nothing comes after the last one
    with pytest.raises(ValueError, match="'own' or 'next'"):
        prefetch.ranges(steps, lib.plan.funcs, _small_l2(), ahead="last")


def test_an_exported_library_prefetches_too(builds, tmp_path):
    from te.runtime import load_module
    libs, path = builds
    libs[True].export_library(tmp_path / "tiny.so")
    x = np.random.default_rng(3).standard_normal((1, 8, 16, 16)).astype(np.float32)
    np.testing.assert_allclose(load_module(str(tmp_path / "tiny.so")).run(x=x)[0], _reference(x, path),
                               rtol=1e-4, atol=1e-4)


def _nest(parallel: int, *serial: int) -> For:
    body = Comment("work")
    for k, n in reversed(list(enumerate(serial))):
        body = For(Var(f"s{k}"), Const(n, "int64"), ForKind.SERIAL, body)
    return For(Var("p"), Const(parallel, "int64"), ForKind.PARALLEL, body)


def test_the_stream_loop_is_the_least_frequent_one_that_runs_often_enough():
    loop = _nest(64, 128, 4)                      # runs 8192 and 32768 times
    chosen, times = prefetch.stream_loop([loop])
    assert chosen.var.name == "s0" and times == 64 * 128
    chosen, times = prefetch.stream_loop([_nest(8, 16, 8)])     # 128 and 1024: none often enough
    assert chosen.var.name == "s1" and times == 1024
    vec = For(Var("p"), Const(4096, "int64"), ForKind.PARALLEL,
              For(Var("v"), Const(16, "int64"), ForKind.VECTORIZED, Comment("lanes")))
    assert prefetch.stream_loop([vec]) is None    # a vector loop carries no scalar prefetch


def test_the_decision_per_target(builds):
    zen = parse("llvm -mcpu=znver4 -l2=1M")
    resnet = 112 * 2**20
    assert prefetch.pays(zen, resnet)
    assert not prefetch.pays(zen, 2**20 // 2)                       # stays in one core's L2
    emr = parse("llvm -mcpu=emeraldrapids -l2=2M")
    assert prefetch.pays(emr, resnet) and not prefetch.pays(emr, 2**20)
    lib = builds[0][True]           # a kernel prefetches where its constants are large for the L2s
    assert prefetch.ranges(lib.plan.steps, lib.plan.funcs, emr) == [None] * len(lib.plan.steps)
    assert prefetch.ranges(lib.plan.steps, lib.plan.funcs, _small_l2())[0] is not None
    w = 512 * 512 * 9
    assert prefetch.reuses(2.0 * 49 * w, 4 * w)                     # a 3x3 conv at 7x7: 49 uses
    assert not prefetch.reuses(2.0 * 1000 * 2048, 4 * 1000 * 2048)  # a dense layer at batch 1: one


def test_a_dense_layer_at_batch_1_does_not_prefetch():
    from frontends import zoo
    lib = frontends.build(frontends.onnx.from_onnx(zoo.mlp(sizes=(256, 512, 10))), target=_small_l2(), prefetch=True)
    assert [st.prefetch for st in lib.plan.steps] == [None] * len(lib.plan.steps)
    assert "llvm.prefetch" not in str(lib._module().module)


def test_a_flushed_buffer_keeps_its_values():
    a = np.arange(100_000, dtype=np.float32)
    CacheFlush()(a.ctypes.data + 4, a.nbytes - 4)      # an unaligned start is rounded out to its line
    np.testing.assert_array_equal(a, np.arange(100_000, dtype=np.float32))
