"""A batched MatMul of two activations (attention's Q.K^T and scores.V) is a tuning task, float or
int8 (the QDQ pass's QLinearMatMul), and a build runs the record of that task: te/ops/batch_implementations.py,
te/ops/int8_batch_matmul.py."""
from __future__ import annotations

import numpy as np
import pytest

import autotune
import frontends
from frontends.tasks import extract_tasks
from te.target import Target, host

from ..quant_models import ATTENTION_QPARAMS, attention_core, ort_run

HOST = host()


def _feed(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"q": rng.normal(0, 1, (2, 6, 8)).astype(np.float32), "kt": rng.normal(0, 1, (2, 8, 6)).astype(np.float32),
            "v": rng.normal(0, 1, (2, 6, 8)).astype(np.float32)}


def _tasks(qdq: bool, target=HOST) -> dict[str, tuple]:
    return {mt.task.workload_key: (mt.task.name, mt.task.args) for mt in
            extract_tasks(frontends.from_onnx(attention_core(qdq)), target)}


def test_the_batched_matmuls_of_attention_are_tasks():
    # Q.K^T: (2 heads, 6 x 8) by (8 x 6), both zero points compensated (120 for q, 130 - 128 for kt
    # as int8); scores.V: the softmax's zero point is 0, v's 100 - 128
    assert sorted(_tasks(True).values()) == [
        ("batch_matmul_int8", (2, 6, 6, 8, "uint8", "uint8", "uint8", "ab")),
        ("batch_matmul_int8", (2, 6, 8, 6, "uint8", "uint8", "uint8", "b"))]
    assert sorted(_tasks(False).values()) == [("batch_matmul", (2, 6, 6, 8, "float32")),
                                              ("batch_matmul", (2, 6, 8, 6, "float32"))]


def test_without_a_dot_product_the_int8_matmuls_run_in_float_and_are_no_tasks():
    """x86-64 has no 8-bit dot product: QLinearMatMul runs dequantized (batch_matmul.int8_float, no
    template), and still matches ONNX Runtime within one output step."""
    old = Target("x86-64")
    assert _tasks(True, old) == {}
    m = attention_core(True)
    got = frontends.build(frontends.from_onnx(m), target="llvm -mcpu=x86-64").run(**_feed())[0]
    want = ort_run(m, _feed())[0]
    assert np.abs(got - want).max() <= ATTENTION_QPARAMS["c"][0] * 1.001


def _other_config(task: autotune.Task) -> dict:
    """A valid config of the task other than its default; for the int8 kernel whole heads per
    thread with their packs inside, the knobs a default build does not turn."""
    space = task.config_space
    d = space.default_index()
    if task.name == "batch_matmul_int8":
        return {**space.get(d).to_json(), "split": "batch", "pack": "in_task", "tile_m": 2}
    return space.get(next(i for i in range(len(space)) if i != d and space.valid(i))).to_json()


@pytest.mark.parametrize("qdq", [True, False], ids=["int8", "float32"])
def test_a_record_of_each_task_is_what_the_build_runs(tmp_path, qdq):
    m = attention_core(qdq)
    g = frontends.from_onnx(m)
    tasks = [mt.task for mt in extract_tasks(g, HOST)]
    records = [autotune.Record(workload=t.workload_key, config=_other_config(t), costs=[1e-6], isa=HOST.isa,
                               cpu=HOST.cpu, target=f"llvm -mcpu={HOST.cpu}") for t in tasks]
    log = tmp_path / "attention.jsonl"
    log.write_text("".join(r.to_json() + "\n" for r in records))
    lib = frontends.build(g, logs=str(log))
    assert {r.workload: r.config for r in lib.records} == {r.workload: r.config for r in records}
    got, want = lib.run(**_feed(1))[0], ort_run(m, _feed(1))[0]
    if qdq:
        assert np.abs(got - want).max() <= ATTENTION_QPARAMS["c"][0] * 1.001
    else:
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
