"""Measurement: errors become records, crashes and hangs cost one trial, not the run."""
import time

import numpy as np
import pytest

import autotune
from autotune.record import ErrorNo

from . import autotune_templates  # noqa: F401  (registers test_vadd)


@pytest.fixture(scope="module")
def measurer():
    """No waiting out a busy machine (load_wait=0): these tests check records, errors and builds,
    never which config is faster (test_a_batch_waits_while_the_machine_is_busy checks the wait)."""
    with autotune.Measurer(autotune.measure_option(n_parallel=1, run_timeout=4, build_timeout=60,
                                                   min_repeat_ms=2, repeat=2, load_wait=0.0)) as m:
        yield m


def configs(task, **wanted):
    sp = task.config_space
    out = []
    for mode in wanted["modes"]:
        out.append(sp.from_json({"tile": [-1, 16], "mode": mode}))
    return out


def test_errors_are_records_and_tuning_continues(measurer):
    task = autotune.create_task("test_vadd", (256,))
    recs = measurer.measure(task, configs(task, modes=["ok", "invalid", "wrong", "crash", "hang", "ok"]))
    codes = [r.error_no for r in recs]
    assert codes[0] == ErrorNo.NO_ERROR and recs[0].costs
    assert codes[1] == ErrorNo.INSTANTIATION_ERROR and "ScheduleError" in recs[1].error_msg
    assert codes[2] == ErrorNo.WRONG_ANSWER
    assert codes[3] == ErrorNo.RUNTIME_ERROR and "died" in recs[3].error_msg
    assert codes[4] == ErrorNo.RUN_TIMEOUT
    assert codes[5] == ErrorNo.NO_ERROR          # the runner was restarted and goes on
    for r in recs:
        assert r.workload == task.workload_key and r.isa == task.target.isa


def test_matmul_candidate_is_timed(measurer):
    task = autotune.create_task("matmul", (64, 64, 64, "float32"))
    sp = task.config_space
    recs = measurer.measure(task, [sp.get(0), sp.get(sp.default_index())])
    assert all(r.ok for r in recs), [r.error_msg for r in recs]
    assert all(len(r.costs) == 2 and min(r.costs) > 0 for r in recs)


def test_a_search_batch_is_timed_beside_the_default(measurer):
    """Each search record carries the default's time in its batch over its own (MeasureOption.anchor);
    the final check's rounds compare with the default themselves."""
    task = autotune.create_task("matmul", (64, 64, 64, "float32"))
    sp = task.config_space
    recs = measurer.measure(task, [sp.get(0), sp.get(sp.default_index())])
    assert all(r.ok and r.vs_default > 0 and not r.checked for r in recs)
    assert all(r.vs_default == 0 for r in measurer.measure(task, [sp.get(0)], rounds=2))


def test_a_batch_waits_while_the_machine_is_busy(monkeypatch):
    """The default, timed before each batch, runs 3x its fastest time twice (other jobs hold the
    cores), then at its speed again: the batch waits for that and compares with that timing."""
    from autotune import measure
    task = autotune.create_task("matmul", (64, 64, 64, "float32"))
    m = autotune.Measurer(autotune.measure_option(check_correctness=False))
    anchors = [1e-3, 3e-3, 3e-3, 1.1e-3]
    monkeypatch.setattr(m, "build_batch", lambda task, configs: [{"object": b""} for _ in configs])
    monkeypatch.setattr(m, "run_one", lambda task, b, role, cutoff=None: {"costs": [anchors.pop(0)]}
                        if anchors else {"costs": [5e-4]})
    monkeypatch.setattr(measure.time, "sleep", lambda s: None)
    far = time.monotonic() + 60
    assert m._anchor(task, far) == 1e-3 and m._anchor(task, far) == 1.1e-3 and not anchors
    anchors[:] = [3e-3] * 100
    assert m._anchor(task, 0.0) == 3e-3 and len(anchors) == 99      # no time to wait: timed as it is
    anchors[:] = [3e-3]                          # the batch's anchor, then its candidate (5e-4)
    m.option.load_wait = 0.0
    rec = m.measure(task, [task.config_space.get(0)])[0]
    assert rec.vs_default == pytest.approx(3e-3 / 5e-4)


def test_a_timing_whose_calls_were_disturbed_is_taken_again(monkeypatch):
    """The runner says most calls of the anchor, then of the candidate, waited for a CPU: each is
    timed again after a pause, and the batch compares the undisturbed timings."""
    from autotune import measure
    task = autotune.create_task("matmul", (64, 64, 64, "float32"))
    m = autotune.Measurer(autotune.measure_option(check_correctness=False))
    runs = [([9e-3], 1.0), ([1e-3], 0.0), ([8e-3], 0.9), ([5e-4], 0.1)]
    monkeypatch.setattr(m, "build_batch", lambda task, configs: [{"object": b""} for _ in configs])
    monkeypatch.setattr(m, "run_one", lambda *a, **k: dict(zip(("costs", "disturbed"), runs.pop(0))))
    monkeypatch.setattr(measure.time, "sleep", lambda s: None)
    rec = m.measure(task, [task.config_space.get(0)])[0]
    assert not runs and rec.costs == [5e-4] and rec.vs_default == pytest.approx(2.0)


def test_a_candidate_far_slower_than_the_best_is_timed_once(measurer):
    task = autotune.create_task("matmul", (64, 64, 64, "float32"))
    cfg = task.config_space.get(task.config_space.default_index())
    slow, fast = measurer.measure(task, [cfg], best_cost=1e-12) + measurer.measure(task, [cfg], best_cost=1.0)
    assert slow.ok and len(slow.costs) == 1          # one repeat shows it is over 2x the best
    assert fast.ok and len(fast.costs) == 2          # within reach of the best: every repeat


def test_a_config_built_recently_is_not_built_again(measurer, monkeypatch):
    task = autotune.create_task("matmul", (32, 32, 32, "float32"))
    cfg = task.config_space.get(task.config_space.default_index())
    first = measurer.measure(task, [cfg])[0]
    jobs = []
    spread = measurer._spread
    monkeypatch.setattr(measurer, "_spread", lambda js, *a: jobs.extend(js) or spread(js, *a))
    again = measurer.measure(task, [cfg, cfg], rounds=2)      # e.g. the tuner's final check
    assert jobs == [] and all(r.ok for r in again) and len(again) == 4
    assert again[0].build_time == first.build_time


def test_a_full_build_cache_keeps_the_batch_it_serves(measurer, monkeypatch):
    """Fresh builds that overflow the cache do not evict a cached build the same batch uses
    (a final check, the default built long ago and the best configs new to the cache)."""
    task = autotune.create_task("matmul", (32, 32, 32, "float32"))
    space = task.config_space
    a, b, c, d = (space.get(i) for i in [i for i in range(len(space)) if space.valid(i)][:4])
    monkeypatch.setattr(measurer, "KEEP_BUILDS", 2)
    measurer.measure(task, [a, b])
    recs = measurer.measure(task, [a, c, d], rounds=2)
    assert len(recs) == 6 and all(r.ok for r in recs)
    assert len(measurer._built) == 2


def test_flops_of_matmul():
    task = autotune.create_task("matmul", (32, 64, 16, "float32"))
    assert task.flops == pytest.approx(2 * 32 * 64 * 16)


def test_flops_of_an_int8_matmul_count_its_integer_multiply_adds():
    from te.ops import registry
    from te.ops.registry import MatmulWorkload
    impl = registry.IMPLEMENTATIONS["matmul.int8_vnni"]
    task = autotune.create_task(impl.template, impl.args(MatmulWorkload(32, 64, 64, "uint8")),
                                "llvm -mcpu=cascadelake")       # a CPU with AVX-512 VNNI
    # the u8 x s8 products and their sums, and a few operations an output (the zero-point terms)
    assert 2 * 32 * 64 * 64 <= task.flops <= 1.15 * 2 * 32 * 64 * 64


def test_task_build_runs(rng=np.random.default_rng(0)):
    task = autotune.create_task("matmul", (24, 32, 8, "float32"))
    f = task.build(task.config_space.get(3))
    a = rng.standard_normal((24, 8), dtype=np.float32)
    b = rng.standard_normal((8, 32), dtype=np.float32)
    c = np.zeros((24, 32), np.float32)
    f(a, b, c)
    np.testing.assert_allclose(c, a @ b, rtol=1e-4, atol=1e-5)


def test_conv_candidates_take_prepacked_weights(measurer):
    """A direct conv is timed as a model runs it: weights packed ahead of time, by each
    candidate's own channel block, from the same logical weight (so the answers still agree)."""
    from autotune.measure_jobs import _build_job

    task = autotune.create_task("conv2d_nchw", ((1, 16, 8, 8), (32, 16, 3, 3), (1, 1), (1, 1, 1, 1),
                                                (1, 1), 1, "float32"))
    sp = task.config_space
    cfgs = []
    for ocb in (8, 16, 32):
        d = sp.get(sp.default_index()).to_json()
        d.update(tile_oc=ocb, tile_ow=[-1, 8], tile_oh=[-1, 1])
        cfgs.append(sp.from_json(d))
    payload = measurer._payload(task, cfgs[0])
    specs = _build_job(payload)["specs"]
    assert specs[1][0] == [4, 16, 3, 3, 8]                     # the weight, packed by 8
    assert specs[1][3] == [32, 16, 3, 3]                       # its logical shape: the runner packs that
    recs = measurer.measure(task, cfgs)
    assert [r.error_no for r in recs] == [ErrorNo.NO_ERROR] * 3, [r.error_msg for r in recs]
    # outside the tuner the template keeps the plain weight: task.build() takes OIHW weights
    x = np.random.default_rng(1).standard_normal((1, 16, 8, 8)).astype(np.float32)
    w = np.random.default_rng(2).standard_normal((32, 16, 3, 3)).astype(np.float32)
    y = np.zeros((1, 32, 8, 8), np.float32)
    task.build(cfgs[2])(x, w, y)
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    ref = np.zeros_like(y)
    for r in range(3):
        for s in range(3):
            ref += np.einsum("kc,nchw->nkhw", w[:, :, r, s], xp[:, :, r:r + 8, s:s + 8])
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-4)


def test_calls_the_machine_preempted_do_not_make_a_config_slow():
    from autotune.call_timing import per_call
    kernel = [1e-4 + k * 1e-6 for k in range(12)]
    preempted = [4e-3] * 4                       # a thread of the team descheduled for a time slice
    assert per_call(kernel + preempted) < 1.1e-4
    assert per_call([1e-4, 3e-4]) == pytest.approx(2e-4)     # fewer than 4 calls: their mean


def test_calls_whose_threads_waited_for_a_cpu_are_left_out():
    """With each call's wait for a CPU known, a repeat is the median of the undisturbed calls;
    a call stretched only a little but whose thread waited is left out too."""
    from autotune.call_timing import per_call
    kernel = [1.00e-4, 1.02e-4, 1.04e-4]
    times = kernel + [1.3e-4] + [4e-3] * 12
    waits = [0.0] * 3 + [2.5e-5] + [3.9e-3] * 12
    assert per_call(times, waits) == pytest.approx(1.02e-4)         # the median of the three clean calls
    assert per_call(times) == 4e-3           # the lower quartile: too busy a machine for it
    assert per_call(times[1:], waits[1:]) == 4e-3                   # two clean calls: the lower quartile
    assert per_call([2e-3, 3e-3], [0.0, 0.0]) == pytest.approx(2.5e-3)     # a slow kernel timed twice


def test_the_run_queue_clock_reads_this_process_threads():
    import sys
    from autotune.call_timing import RunQueueClock
    clock = RunQueueClock()
    if not sys.platform.startswith("linux"):
        assert clock.seconds() is None
        return
    a = clock.seconds()
    sum(range(200_000))
    assert a is not None and clock.seconds() >= a
    clock.close()


def test_arguments_are_aligned_with_memory_after_them_as_in_a_model():
    from autotune.call_timing import SLACK, padded_array
    a = padded_array((3, 5), "float32")
    assert a.ctypes.data % 64 == 0 and a.shape == (3, 5) and a.flags.c_contiguous and not a.any()
    assert a.base.nbytes - (a.ctypes.data - a.base.ctypes.data) - a.nbytes >= SLACK
