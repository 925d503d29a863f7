"""Cold weights as a model meets them: copies that outgrow the L2s, or as many as the model's weights
where those outgrow the cores' L3 share, by target and size."""
from dataclasses import replace

import numpy as np
import pytest

import autotune
import frontends
from autotune import call_timing as ct
from autotune.call_timing import COLD_BYTES_MAX, COLD_COPIES_MAX, LLC_SHARE_MAX, ColdWeights, cold_plan, llc_share
from frontends.tasks import extract_tasks
from te.caches import MiB, Caches
from te.target import Target

# an Emerald Rapids VM as sysfs shows it: 2 MiB L2, its socket's 300 MiB L3 "shared" by 2 CPUs
VM = Target("emeraldrapids", "+avx512f", 2, Caches(48 << 10, 2 * MiB, 150 * MiB))
ICELAKE = Target("icelake-server", "+avx512f", 2, Caches(48 << 10, 1280 << 10, 1536 << 10))
HASWELL = Target("haswell", "+avx2,+fma", 4, Caches(32 << 10, 256 << 10, 2560 << 10))


def test_a_vm_l3_share_is_not_taken_at_its_word():
    assert llc_share(VM) == 2 * LLC_SHARE_MAX                     # not 2 x 150 MiB
    assert llc_share(ICELAKE) == 2 * 1536 << 10                   # a real share is kept
    assert llc_share(replace(ICELAKE, threads=1)) == 1536 << 10


@pytest.mark.parametrize("target", [VM, ICELAKE, HASWELL])
def test_a_task_alone_or_from_a_small_model_meets_its_weight_out_of_l2(target):
    w = 2 * MiB
    alone = cold_plan(w, 0, target)
    assert alone.where == "L3" and alone.copies * w >= 4 * target.caches.l2 * target.threads
    for model in (llc_share(target) // 2, llc_share(target)):
        assert cold_plan(w, model, target) == alone              # a model that fits the L3 share: the same


@pytest.mark.parametrize("target", [VM, ICELAKE, HASWELL])
def test_a_task_of_a_model_outgrowing_the_l3_share_meets_its_weight_after_the_models(target):
    resnet50 = 97 * MiB
    for w in (9 * MiB, 2 * MiB, 256 << 10):
        plan = cold_plan(w, resnet50, target)
        assert plan.where == "memory" and plan.copies * w == plan.reuse >= resnet50   # as far as the model's push it
        assert plan.reuse <= COLD_BYTES_MAX
    assert cold_plan(9 * MiB, llc_share(target) + 1, target).where == "memory"


def test_weight_copies_stay_within_their_bounds():
    tiny = cold_plan(256, 97 * MiB, VM)
    assert tiny.copies == COLD_COPIES_MAX                       # a small weight: not a million copies
    huge = cold_plan(300 * MiB, 500 * MiB, VM)
    assert huge.copies == 1                                     # a weight no cache holds is cold alone
    assert cold_plan(100 * MiB, 500 * MiB, VM).reuse <= COLD_BYTES_MAX


def test_cold_weights_rotate_the_copies_and_refill_old_ones():
    w = np.arange(1000, dtype=np.float32)
    copies = ct.weight_copies(w, VM, 3)
    assert copies[0] is w and all(np.array_equal(c, w) for c in copies)
    cold = ColdWeights([11, w.ctypes.data, 33], 1, copies)
    assert [cold.args(k)[1] for k in range(4)] == [c.ctypes.data for c in copies + copies[:1]]
    assert cold.args(0)[0::2] == [11, 33]
    assert ColdWeights([1, 2]).args(5) == [1, 2]
    v = w + 1
    again = ct.weight_copies(v, VM, 3, reuse=copies)
    assert again[0] is v and again[1] is copies[1] and np.array_equal(again[2], v)   # filled again, not made


def test_a_models_tasks_carry_its_weight_bytes_and_a_task_alone_none(tiny_onnx):
    g = frontends.from_onnx(tiny_onnx)
    tasks = extract_tasks(g)
    weights = (16 * 8 * 9 + 16 + 16 * 16) * 4
    assert tasks and all(mt.task.model_weight_bytes == weights for mt in tasks)
    alone = autotune.create_task(tasks[0].task.name, tasks[0].task.args)
    assert alone.model_weight_bytes == 0 and alone == tasks[0].task


def test_the_models_weight_bytes_reach_the_runner(tiny_onnx):
    from autotune.measure import _payload
    from autotune.measure_jobs import _worker_task
    task = extract_tasks(frontends.from_onnx(tiny_onnx))[0].task
    big = replace(task, model_weight_bytes=97 * MiB)
    assert _worker_task(_payload(big, None)).model_weight_bytes == 97 * MiB       # a cluster's timer too
    assert _worker_task(_payload(replace(task, model_weight_bytes=0), None)).model_weight_bytes == 0
