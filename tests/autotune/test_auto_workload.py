"""Auto-scheduler workloads: registration, tasks, keys, records of schedules, dispatch in a new process."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import autotune
import te
from autotune import record as rec

from . import auto_workloads as wl


def _tiled(task):
    """A hand-made schedule of as_matmul as the search would record it."""
    s, C = task.schedule(), task.tensors[-1]
    i, j = s[C].op.axis
    jo, ji = s[C].split(j, factor=8)
    s[C].vectorize(ji)
    s[C].parallel(i)
    return task.config_space.get(task.config_space.add(s.steps))


def test_create_task_from_function_or_name():
    task = autotune.create_task(wl.as_matmul, args=(16, 24, 8))
    assert isinstance(task, autotune.AutoTask)
    assert task.workload_key == '["as_matmul",[16,24,8]]'
    assert autotune.create_task("as_matmul", [16, 24, 8]).workload_key == task.workload_key
    assert task.flops == 2 * 16 * 24 * 8
    assert [spec for spec in task.arg_specs()] == [((16, 8), "float32"), ((8, 24), "float32"),
                                                   ((16, 24), "float32")]
    a = np.random.default_rng(0).random((16, 8), np.float32)
    b = np.random.default_rng(1).random((8, 24), np.float32)
    c = np.zeros((16, 24), np.float32)
    task.build(_tiled(task))(a, b, c)
    np.testing.assert_allclose(c, a @ b, rtol=1e-5)


def test_bad_workloads_and_arguments_are_one_line_errors():
    def unregistered(n):
        return []
    with pytest.raises(autotune.ConfigError, match="not a registered workload.*register_workload"):
        autotune.create_task(unregistered, args=(4,))
    with pytest.raises(autotune.ConfigError, match="already a template name"):
        autotune.register_workload(unregistered, name="matmul")

    @autotune.register_workload(name="as_bad_order")
    def bad_order(n):
        A = te.placeholder((n,), name="A")
        return [te.compute((n,), lambda i: A[i] * 2.0, name="B"), A]
    with pytest.raises(autotune.ConfigError, match="inputs .* first and its outputs .* last"):
        autotune.create_task(bad_order, args=(4,))
    with pytest.raises(ValueError, match="as_matmul: argument M=0: 0 is outside 1"):
        autotune.create_task(wl.as_matmul, args=(0, 4, 4))
    with pytest.raises(ValueError, match="do not fit the workload"):
        autotune.create_task(wl.as_matmul, args=(4, 4))


def test_schedule_records_round_trip_and_refuse_what_does_not_fit(tmp_path):
    task = autotune.create_task(wl.as_matmul, args=(16, 24, 8))
    good = _tiled(task)
    r = rec.Record(workload=task.workload_key, config=good.to_json(), costs=[1e-4],
                   isa=task.target.isa, cpu="cpu", target="llvm -mcpu=cpu")
    bad_axis = rec.Record(**{**r.__dict__, "config": {"steps": [["split", "C", ["nope", "factor", 4]]]}})
    bad_form = rec.Record(**{**r.__dict__, "config": {"steps": "split everything"}})
    path = tmp_path / "auto.jsonl"
    rec.append(path, [r, bad_axis, bad_form])
    check = rec.read_log(path)
    assert [x.config for x in check.records] == [good.to_json()]
    reasons = " | ".join(p.reason for p in check.problems)
    assert "axis named 'nope'" in reasons and 'not a {"steps": [...]} schedule' in reasons
    assert task.config_space.from_json(json.loads(json.dumps(good.to_json()))) == good


def test_dispatch_in_a_new_process(tmp_path):
    """A log's best schedule is found by workload key in a process that only registers the workload."""
    task = autotune.create_task(wl.as_matmul, args=(16, 24, 8))
    fast = _tiled(task)
    rec.append(tmp_path / "log.jsonl", [
        rec.Record(workload=task.workload_key, config={}, costs=[2e-4], isa=task.target.isa),
        rec.Record(workload=task.workload_key, config=fast.to_json(), costs=[1e-4], isa=task.target.isa)])
    code = f"""
import sys, numpy as np, autotune
sys.path.insert(0, {str(sys.path[0])!r})
from tests.autotune import auto_workloads as wl
task = autotune.create_task(wl.as_matmul, args=(16, 24, 8))
with autotune.apply_history_best({str(tmp_path / 'log.jsonl')!r}) as ctx:
    f = task.build()
a = np.ones((16, 8), np.float32); b = np.ones((8, 24), np.float32); c = np.zeros((16, 24), np.float32)
f(a, b, c)
assert np.all(c == 8), c
print(len(ctx.used[task.workload_key].config["steps"]))
"""
    import os
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root,
                         env={**os.environ, "PYTHONPATH": root}, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "3"


def test_measurer_builds_a_workload_defined_in_main(tmp_path):
    """Workers get the compute DAG pickled: a workload of a script's __main__ is measured and checked."""
    code = """
import te, autotune
@autotune.register_workload
def scaled(n):
    A = te.placeholder((n,), name="A")
    return [A, te.compute((n,), lambda i: te.exp(A[i]) * 2.0, name="B")]
task = autotune.create_task(scaled, args=(64,))
s, (A, B) = task.schedule(), task.tensors
o, i = s[B].split(B.op.axis[0], factor=16); s[B].vectorize(i)
cfg = task.config_space.get(task.config_space.add(s.steps))
with autotune.Measurer(autotune.measure_option(n_parallel=1, repeat=1, min_repeat_ms=1)) as m:
    rs = m.measure(task, [cfg])
assert rs[0].ok, rs[0].error_msg
print("ok")
"""
    import os
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=str(tmp_path),
                         env={**os.environ, "PYTHONPATH": root}, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
