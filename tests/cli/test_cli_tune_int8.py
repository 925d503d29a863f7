"""tilewise tune on a QDQ model whose MatMuls multiply two quantised activations (attention): the int8
batched matmul is tuned like any task, and a build with the log runs the tuned kernel."""
from __future__ import annotations

import json

import numpy as np
import onnx

import frontends

from ..quant_models import ATTENTION_QPARAMS, attention_core, ort_run

FAST = ["--tuner", "random", "--repeat", "1", "--min-repeat-ms", "2"]


def test_tune_then_build_runs_the_tuned_int8_batched_matmul(cli, tmp_path):
    model, log = tmp_path / "attention_int8.onnx", tmp_path / "t.jsonl"
    onnx.save(attention_core(qdq=True), str(model))
    r = cli("tune", model, "--trials", "6", "--log", log, "--no-shared-logs", *FAST)
    assert r.code == 0, r.err
    tuned = [json.loads(line) for line in open(log)]
    names = {json.loads(d["workload"])[0] for d in tuned}
    assert names == {"batch_matmul_int8"}, names
    assert len({json.dumps(d["config"], sort_keys=True) for d in tuned}) > 2     # configs beyond the defaults
    lib = frontends.build(frontends.from_onnx(str(model)), logs=str(log))
    assert {r.workload for r in lib.records} == {d["workload"] for d in tuned}
    rng = np.random.default_rng(7)
    feed = {"q": rng.normal(0, 1, (2, 6, 8)), "kt": rng.normal(0, 1, (2, 8, 6)), "v": rng.normal(0, 1, (2, 6, 8))}
    feed = {k: v.astype(np.float32) for k, v in feed.items()}
    got, want = lib.run(**feed)[0], ort_run(str(model), feed)[0]
    assert np.abs(got - want).max() <= ATTENTION_QPARAMS["c"][0] * 1.001
