"""tilewise tune on a model whose dense layer reads a 3-D activation (PyTorch's export of a
transformer's linear layers): the layer is a task, and a build with the log runs its best record."""
from __future__ import annotations

import numpy as np
import onnx

import frontends
from frontends.tasks import extract_tasks

from ..frontends.test_dense_3d import K, dense_gelu
from ..quant_models import ort_run

FAST = ["--tuner", "random", "--repeat", "1", "--min-repeat-ms", "2"]


def test_tune_a_3d_dense_model_round_trips(cli, tmp_path):
    m = dense_gelu((2, 16, K))
    path = tmp_path / "dense3d.onnx"
    onnx.save(m, path)
    log = tmp_path / "t.jsonl"
    r = cli("tune", path, "--trials", "4", "--log", log, "--no-shared-logs", *FAST)
    assert r.code == 0, r.err
    assert "matmul" in r.out
    lib = frontends.build(frontends.from_onnx(m), logs=str(log))
    # the record the build runs is one of the 2-D dense layer's tasks (M = 2 x 16 rows)
    flat = {mt.task.workload_key for mt in extract_tasks(frontends.from_onnx(dense_gelu((32, K))))}
    assert len(lib.records) == 1 and lib.records[0].workload in flat
    x = np.random.default_rng(2).normal(0, 1, (2, 16, K)).astype(np.float32)
    np.testing.assert_allclose(lib.run(x=x)[0], ort_run(m, {"x": x})[0], rtol=1e-5, atol=1e-6)
