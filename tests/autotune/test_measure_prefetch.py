"""The tuner times a model's task as the model runs it (autotune.measure_jobs._before_calls):
prefetching its weight where the model's kernel would (te.prefetch.kernel_prefetches: the
decision matches the model build's, and a candidate so built is told its weight's range before
each call), its input's slices in the L2s of the threads that would have produced them."""
from __future__ import annotations

import ctypes
import dataclasses

import numpy as np
import pytest

import autotune
import frontends
from autotune import measure_jobs
from autotune.call_timing import ColdWeights
from frontends.tasks import extract_tasks
from te import prefetch
from te.caches import Caches
from te.jit import JitModule
from te.target import host

from ..tiny_models import tiny_model


def _small_l2():
    """The host on one thread with a 4 KiB L2: the tiny model's weights outgrow it, and each
    conv's count as large there."""
    h = host()
    return dataclasses.replace(h, threads=1, caches=Caches(h.caches.l1d, 4096, h.caches.l3))


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path = tiny_model(tmp_path_factory.mktemp("measure_prefetch") / "tiny.onnx")
    graph = frontends.from_onnx(path)
    return graph, dict(enumerate(extract_tasks(graph, _small_l2(), algorithms="preferred")))


def _built(task):
    payload = autotune.measure._payload(task, task.config_space.get(task.config_space.default_index()))
    built = measure_jobs._build_job(payload)
    assert built["error_no"] == 0, built.get("error_msg")
    return built


def test_a_task_prefetches_where_the_model_build_has_its_kernel_prefetch(model):
    graph, tasks = model
    lib = frontends.build(graph, target=_small_l2(), prefetch=None)      # the build's own decision
    by_task = {st.task: st.prefetch is not None for st in lib.plan.steps if st.task is not None}
    assert any(by_task.values())
    for mt in tasks.values():
        task = mt.task
        if (task.name, task.args) not in by_task:
            continue
        built = _built(task)
        jit = JitModule(built["object"], task.target, built["uses_openmp"])
        assert bool(jit.engine.get_global_value_address(prefetch.PREFETCH_GLOBAL)) == by_task[task.name, task.args]
    alone = dataclasses.replace(next(iter(tasks.values())).task, model_weight_bytes=0)
    built = _built(alone)                                                # a task made alone: no model prefetch
    assert not JitModule(built["object"], alone.target, built["uses_openmp"]).engine.get_global_value_address(
        prefetch.PREFETCH_GLOBAL)


def test_a_prefetching_candidate_is_told_its_weight_before_each_call(model):
    graph, tasks = model
    task = next(mt.task for mt in tasks.values() if mt.task.args[1][2:] == (3, 3))
    built = _built(task)
    jit = JitModule(built["object"], task.target, built["uses_openmp"])
    at = jit.engine.get_global_value_address(prefetch.PREFETCH_GLOBAL)
    assert at
    fn = jit.function(built["symbol"], len(built["specs"]))
    arrays = [np.zeros(shape, dtype) for shape, dtype, *_ in built["specs"]]
    w = built["weight_arg"]
    copy = np.ones_like(arrays[w])                                       # another copy of the weight
    before = measure_jobs._before_calls(jit, w, arrays, ColdWeights([a.ctypes.data for a in arrays]), task.target)
    ptrs = [a.ctypes.data for a in arrays]
    ptrs[w] = copy.ctypes.data
    before(ptrs)
    assert fn(*ptrs) == 0
    assert list((ctypes.c_int64 * 3).from_address(at)) == [copy.ctypes.data, arrays[w].nbytes, 1]
    # and the tuner's measurer times it, its answer checked against the reference
    with autotune.Measurer(autotune.measure_option(n_parallel=1, min_repeat_ms=2, repeat=2, load_wait=0.0)) as m:
        recs = m.measure(task, [task.config_space.get(task.config_space.default_index())])
    assert recs[0].ok, recs[0].error_msg


def test_the_decision_follows_the_model_and_the_kernel():
    t = dataclasses.replace(_small_l2(), threads=2)
    big = 100 * t.threads * t.caches.l2
    w = 4 * t.threads * t.caches.l2 // prefetch.MIN_SHARE               # past the kernel threshold
    assert prefetch.kernel_prefetches(t, w, 2.0 * 49 * w / 4, big)       # used 49 times per weight
    assert not prefetch.kernel_prefetches(t, w, 2.0 * w / 4, big)        # once: a dense layer at batch 1
    assert not prefetch.kernel_prefetches(t, w, 2.0 * 49 * w / 4, t.threads * t.caches.l2)  # the model fits the L2s
    assert not prefetch.kernel_prefetches(t, t.threads * t.caches.l2 // prefetch.MIN_SHARE, 1e12, big)


def test_each_thread_writes_its_slice_of_an_input_back_unchanged_before_a_call():
    """The loader rewrites each thread's slice in place (its lines then sit modified in that
    thread's cache, as its producer left them): the input keeps its values, a tail past the
    equal slices included; nothing to place on one thread."""
    target = dataclasses.replace(host(), threads=2)
    x = np.random.default_rng(0).standard_normal(2 * 8 * 16 + 5).astype(np.float32)
    want = x.copy()
    load = measure_jobs._slice_loader(x.nbytes, target)
    load(x.ctypes.data)
    np.testing.assert_array_equal(x, want)
    assert (2, 8) in measure_jobs._RunnerState.loaders
    assert measure_jobs._slice_loader(x.nbytes, dataclasses.replace(target, threads=1)) is None
    assert measure_jobs._slice_loader(64, target) is None              # less than a line per thread
    cold = ColdWeights([x.ctypes.data], inputs={0: [x]})
    measure_jobs._before_calls(None, None, [x], cold, target)([x.ctypes.data])
    np.testing.assert_array_equal(x, want)
