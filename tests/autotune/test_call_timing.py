"""Cold weights as a model meets them: from L3 (copies) or from memory (flushed), by target and size."""
from dataclasses import replace

import numpy as np
import pytest

import autotune
import frontends
from autotune import call_timing as ct
from autotune.call_timing import COLD_BYTES_MAX, LLC_SHARE_MAX, ColdWeights, cold_plan, llc_share
from frontends.tasks import extract_tasks
from te.caches import MiB, Caches
from te.target import Target, host

# an Emerald Rapids VM as sysfs shows it: 2 MiB L2, its socket's 300 MiB L3 "shared" by 2 CPUs
VM = Target("emeraldrapids", "+avx512f,+clflushopt", 2, Caches(48 << 10, 2 * MiB, 150 * MiB))
ICELAKE = Target("icelake-server", "+avx512f,+clflushopt", 2, Caches(48 << 10, 1280 << 10, 1536 << 10))
HASWELL = Target("haswell", "+avx2,+fma", 2, Caches(32 << 10, 256 << 10, 2560 << 10))     # no clflushopt


def test_a_vm_l3_share_is_not_taken_at_its_word():
    assert llc_share(VM) == 2 * LLC_SHARE_MAX                     # not 2 x 150 MiB
    assert llc_share(ICELAKE) == 2 * 1536 << 10                   # a real share is kept
    assert llc_share(replace(ICELAKE, threads=1)) == 1536 << 10


@pytest.mark.parametrize("target", [VM, ICELAKE, HASWELL])
def test_a_task_alone_or_from_a_small_model_meets_its_weight_in_l3(target):
    w = 2 * MiB
    for model in (0, llc_share(target) // 2, llc_share(target)):
        plan = cold_plan(w, model, target)
        assert not plan.flush and plan.where == "L3"
        assert plan.copies * w >= min(4 * target.caches.l2 * target.threads, 64 * w)   # out of the L2s
        assert plan.copies * w <= COLD_BYTES_MAX


@pytest.mark.parametrize("target", [VM, ICELAKE])
def test_a_task_of_a_model_outgrowing_the_l3_share_meets_its_weight_in_memory(target):
    resnet50 = 102 * MiB
    for w in (64 << 10, 9_437_184):
        plan = cold_plan(w, resnet50, target)
        assert plan.flush and plan.copies == 1 and plan.where == "memory"
    assert cold_plan(9_437_184, llc_share(target) + 1, target).flush


def test_without_clflushopt_a_large_model_is_timed_on_copies_outgrowing_the_l3():
    w = 9_437_184
    plan = cold_plan(w, 102 * MiB, HASWELL)
    assert not plan.flush and plan.copies * w >= 2 * llc_share(HASWELL)
    assert plan.copies * w <= COLD_BYTES_MAX
    with pytest.raises(ValueError, match="clflushopt"):
        ct.flush_lines_fn(HASWELL)
    big = cold_plan(100 * MiB, 500 * MiB, HASWELL)
    assert big.copies * 100 * MiB <= COLD_BYTES_MAX                # never more memory than that


def test_cold_weights_rotate_copies_and_flush_the_one_called(monkeypatch):
    flushed = []
    monkeypatch.setattr(ct, "flush_lines_fn", lambda target: lambda p, n: flushed.append((p, n)))
    w = np.ones(1000, np.float32)
    copies = ct.weight_copies(w, VM, 3)
    cold = ColdWeights([11, w.ctypes.data, 33], 1, copies, flush=True, target=VM)
    assert [cold.args(k)[1] for k in range(4)] == [c.ctypes.data for c in copies + copies[:1]]
    assert cold.args(0)[0::2] == [11, 33]
    assert flushed[:4] == [(c.ctypes.data, w.nbytes) for c in copies + copies[:1]]
    none = ColdWeights([1, 2], None, [], flush=True, target=VM)
    assert none.args(5) == [1, 2] and none.flush is None


@pytest.mark.skipif("clflushopt" not in host().feature_set, reason="this CPU has no clflushopt")
def test_the_flush_keeps_the_values():
    a = ct.padded_array((3, 1001), np.float32)
    a[...] = np.arange(a.size, dtype=np.float32).reshape(a.shape)
    flush = ct.flush_lines_fn(host())
    flush(a.ctypes.data + 4, a.nbytes - 4)          # not on a line boundary: whole lines around it
    flush(a.ctypes.data, 0)
    np.testing.assert_array_equal(a.reshape(-1), np.arange(a.size, dtype=np.float32))


def test_a_models_tasks_carry_its_weight_bytes_and_a_task_alone_none(tiny_onnx):
    g = frontends.from_onnx(tiny_onnx)
    tasks = extract_tasks(g)
    weights = (16 * 8 * 9 + 16 + 16 * 16) * 4
    assert tasks and all(mt.task.model_weight_bytes == weights for mt in tasks)
    alone = autotune.create_task(tasks[0].task.name, tasks[0].task.args)
    assert alone.model_weight_bytes == 0 and alone == tasks[0].task
