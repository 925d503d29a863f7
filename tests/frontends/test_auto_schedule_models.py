"""A model's kernels without a template as auto-scheduler tasks: extraction, records, the build using them."""
from __future__ import annotations

import random

import numpy as np
import pytest
import onnx
from onnx import helper

import autotune
import frontends
from autotune import record as rec
from autotune.auto_scheduler import SketchPolicy
from autotune.auto_scheduler.workload import GROUP
from frontends.profile import onnxruntime_session
from frontends.tasks import extract_tasks
from te import ops

from .onnx_helpers import tiny, vi


def _model():
    """Gemm (a template) -> Softmax (no template) -> batched MatMul (a template)."""
    w = onnx.numpy_helper.from_array(np.random.default_rng(0).standard_normal((16, 32)).astype(np.float32), "w")
    nodes = [helper.make_node("Gemm", ["x", "w"], ["h"]),
             helper.make_node("Softmax", ["h"], ["p"], axis=-1),
             helper.make_node("Reshape", ["p", "shape"], ["p3"]),
             helper.make_node("MatMul", ["p3", "p3t"], ["y"])]
    shape = onnx.numpy_helper.from_array(np.array([2, 4, 32], np.int64), "shape")
    p3t = onnx.numpy_helper.from_array(np.random.default_rng(1).standard_normal((2, 32, 8)).astype(np.float32), "p3t")
    return tiny(nodes, [vi("x", [8, 16])], [vi("y", [2, 4, 8])], [w, shape, p3t])


def test_kernels_without_template_become_tasks_and_builds_use_their_records(tmp_path):
    model = _model()
    g = frontends.from_onnx(model)
    plain = extract_tasks(g, algorithms="preferred")
    tasks = extract_tasks(g, algorithms="preferred", auto_schedule=True)
    assert [t.task.name for t in plain] == ["matmul_rows", "batch_matmul"]       # the Gemm of 8 rows first
    groups = [t.task for t in tasks if t.task.name == GROUP]
    assert len(tasks) > len(plain) and groups, "softmax is a task now"
    assert all(isinstance(t, autotune.AutoTask) for t in groups)
    for t in groups:        # the default config is the schedule the model builds without a record
        assert t.config_space.get(0).steps == tuple((st.kind, st.stage, st.args)
                                                     for st in ops.schedule(t.outputs, t.target).steps)
    # a schedule of each group task as the auto-scheduler would log it
    records = []
    for t in groups:
        policy = SketchPolicy(t)
        s, _ = policy.apply(policy.mutate(policy.sample(random.Random(3)), random.Random(4)))
        cfg = t.config_space.get(t.config_space.add(s.steps))
        records.append(rec.Record(workload=t.workload_key, config=cfg.to_json(), costs=[1e-6],
                                  isa=t.target.isa, cpu="cpu", target="llvm -mcpu=cpu"))
    path = tmp_path / "model.jsonl"
    rec.append(path, records)
    lib = frontends.build(g, logs=str(path))
    used = {r.workload for r in lib.records}
    assert {t.workload_key for t in groups} <= used, "the build scheduled those kernels by their records"
    x = np.random.default_rng(2).standard_normal((8, 16)).astype(np.float32)
    want = onnxruntime_session(model, 1).run(None, {"x": x})[0]
    np.testing.assert_allclose(lib.run(x=x)[0], want, rtol=1e-4, atol=1e-5)


def test_model_kernel_records_load_without_the_model(tmp_path):
    """A log read where the model is not lowered (tilewise logs, merging) keeps well-formed group
    records and refuses malformed ones; their steps are checked when a build replays them."""
    key = f'["{GROUP}",["0123456789abcdef01234567"]]'
    good = rec.Record(workload=key, config={"steps": [["split", "Y", ["j", "factor", 8]]]}, costs=[1e-5],
                      isa="x86_64+avx2", cpu="cpu", target="llvm -mcpu=cpu")
    bad = rec.Record(**{**good.__dict__, "config": {"steps": [["split"]]}})
    path = tmp_path / "log.jsonl"
    rec.append(path, [good, bad])
    check = rec.read_log(path)
    assert [r.config for r in check.records] == [good.config]
    assert "nor an auto-scheduled schedule's steps" in check.problems[0].reason


def _conv_model():
    w = onnx.numpy_helper.from_array(np.random.default_rng(5).standard_normal((16, 8, 3, 3)).astype(np.float32), "w")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["y"])]
    return tiny(nodes, [vi("x", [1, 8, 10, 10])], [vi("y", [1, 16, 10, 10])], [w])


def test_auto_schedule_all_makes_the_anchors_auto_tasks_and_a_faster_record_wins(tmp_path):
    """'--auto-schedule all': the conv is an auto-scheduler task (no template task); a build takes
    its record where it ran faster than the template's best record, the template's otherwise."""
    model = _conv_model()
    g = frontends.from_onnx(model)
    tasks = extract_tasks(g, auto_schedule="all")
    assert [t.task.name for t in tasks] == [GROUP]
    auto = tasks[0].task
    policy = SketchPolicy(auto)
    s, _ = policy.apply(policy.mutate(policy.sample(random.Random(3)), random.Random(4)))
    cfg = auto.config_space.get(auto.config_space.add(s.steps))
    template = extract_tasks(g, algorithms="preferred")[0].task
    x = np.random.default_rng(6).standard_normal((1, 8, 10, 10)).astype(np.float32)
    want = onnxruntime_session(model, 1).run(None, {"x": x})[0]
    for auto_cost, wins in ((1e-6, auto.workload_key), (1e-3, template.workload_key)):
        records = [rec.Record(workload=auto.workload_key, config=cfg.to_json(), costs=[auto_cost],
                              isa=auto.target.isa, cpu="cpu", target="llvm -mcpu=cpu"),
                   rec.Record(workload=template.workload_key, config=template.config_space.get(0).to_json(),
                              costs=[1e-4], isa=auto.target.isa, cpu="cpu", target="llvm -mcpu=cpu")]
        path = tmp_path / f"{auto_cost}.jsonl"
        rec.append(path, records)
        lib = frontends.build(g, logs=str(path))
        assert {r.workload for r in lib.records} == {wins}
        np.testing.assert_allclose(lib.run(x=x)[0], want, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="auto_schedule"):
        extract_tasks(g, auto_schedule="everything")
