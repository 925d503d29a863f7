"""A dense layer of a 3-D activation (MatMul (batch, seq, hidden) x (hidden, n), as PyTorch exports
transformers) runs as the 2-D matmul of its rows with its chain fused (frontends/flatten_dense.py):
the task of the 2-D dense of M = batch x seq rows, its records, int8 too."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import autotune
import frontends
from frontends import zoo
from frontends.passes import fuse, run_passes
from frontends.tasks import extract_tasks
from te.target import host

from ..quant_models import ort_run

HOST = host()
K, N = 32, 48


def dense_gelu(shape: tuple, residual: tuple | None = None, qdq: bool = False) -> onnx.ModelProto:
    """x -> MatMul W (K, N) -> Add bias -> Erf-GELU [-> Add residual] -> Softmax (a kernel of its own,
    so the chain's end is no graph output); with `qdq` x and W quantised (uint8, int8)."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.normal(0, 0.1, N).astype(np.float32), "b")]
    inits += [numpy_helper.from_array(np.float32(v), n) for n, v in (("s2", np.sqrt(2)), ("one", 1), ("half", .5))]
    nodes, x, w = [], "x", "w"
    if qdq:
        inits += [numpy_helper.from_array(np.float32(0.02), "xs"), numpy_helper.from_array(np.uint8(128), "xz"),
                  numpy_helper.from_array(rng.integers(-100, 100, (K, N)).astype(np.int8), "wq"),
                  numpy_helper.from_array(np.float32(0.002), "ws"), numpy_helper.from_array(np.int8(0), "wz")]
        nodes += [helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
                  helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"]),
                  helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["wd"])]
        x, w = "xd", "wd"
    else:
        inits.append(numpy_helper.from_array(rng.normal(0, 0.2, (K, N)).astype(np.float32), "w"))
    nodes += [helper.make_node("MatMul", [x, w], ["mm"]), helper.make_node("Add", ["mm", "b"], ["h"]),
              helper.make_node("Div", ["h", "s2"], ["d"]), helper.make_node("Erf", ["d"], ["e"]),
              helper.make_node("Add", ["e", "one"], ["e1"]), helper.make_node("Mul", ["h", "e1"], ["m"]),
              helper.make_node("Mul", ["m", "half"], ["g"])]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))]
    last = "g"
    if residual is not None:
        inputs.append(helper.make_tensor_value_info("r", TensorProto.FLOAT, list(residual)))
        nodes.append(helper.make_node("Add", ["g", "r"], ["gr"]))
        last = "gr"
    nodes.append(helper.make_node("Softmax", [last], ["y"], axis=-1))
    out = shape[:-1] + (N,)
    g = helper.make_graph(nodes, "dense", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(out))],
                          inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])


def _feed(m: onnx.ModelProto, seed: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {i.name: rng.normal(0, 1, [d.dim_value for d in i.type.tensor_type.shape.dim]).astype(np.float32)
            for i in m.graph.input}


def _tasks(m: onnx.ModelProto) -> dict[str, tuple]:
    return {mt.task.workload_key: (mt.task.name, mt.task.args, mt.task.epilogue)
            for mt in extract_tasks(frontends.from_onnx(m), HOST)}


@pytest.mark.parametrize("qdq", [False, True], ids=["float32", "int8"])
def test_a_3d_dense_layer_is_the_task_of_the_2d_one(qdq):
    flat = _tasks(dense_gelu((32, K), qdq=qdq))
    assert flat and all(args[0] == 32 for _, args, _ in flat.values())
    assert _tasks(dense_gelu((2, 16, K), qdq=qdq)) == flat          # same keys, same fused epilogue
    if not qdq:
        assert all([op for op, _ in ep] == ["Add", "Div", "Erf", "Add", "Mul", "Mul"] for _, _, ep in flat.values())


def test_the_chain_runs_in_the_dense_kernel():
    """The bias, GELU and residual join the matmul's group at its own (M, N) shape, which is what the
    anchor's schedule fuses into its tile (te.ops.schedule._joins_tile); as many calls as the 2-D model."""
    g = run_passes(frontends.from_onnx(dense_gelu((2, 16, K), (2, 16, N))))
    (grp,) = [grp for grp in fuse(g) if grp.master.op == "MatMul"]
    assert [n.op for n in grp.nodes] == ["MatMul", "Add", "Div", "Erf", "Add", "Mul", "Mul", "Add"]
    assert {g.info(n.outputs[0]).shape for n in grp.nodes} == {(32, N)}
    two = frontends.build(frontends.from_onnx(dense_gelu((32, K), (32, N))))
    three = frontends.build(frontends.from_onnx(dense_gelu((2, 16, K), (2, 16, N))))
    assert len(three.plan.steps) == len(two.plan.steps) == 2


@pytest.mark.parametrize("residual, moves", [((2, 16, N), True), ((1, 1, N), True), ((2, 16, 1), True),
                                             ((16, N), False), ((2, 1, N), False)],
                         ids=["full", "row", "per-row", "per-position", "per-batch"])
def test_3d_dense_matches_onnx_runtime(residual, moves):
    """A residual of the full shape, a row (N,) or a column (M, 1) moves to (M, N) with the chain;
    one broadcast along some leading axes only, (16, N) or (2, 1, N), has no 2-D form and stays
    after the kernel, at (2, 16, N)."""
    m = dense_gelu((2, 16, K), residual)
    g = run_passes(frontends.from_onnx(m))
    moved = {n.outputs[0] for n in g.nodes if n.outputs[0].endswith("::2d")}
    assert {"h::2d", "e::2d", "g::2d"} <= moved and ("gr::2d" in moved) == moves
    got, want = frontends.build(frontends.from_onnx(m)).run(**_feed(m))[0], ort_run(m, _feed(m))[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_a_record_of_the_2d_task_is_what_the_3d_model_runs(tmp_path):
    m = dense_gelu((2, 16, K))
    g = frontends.from_onnx(m)
    mts = extract_tasks(g, HOST, algorithms="preferred")
    assert len(mts) == 1
    task = mts[0].task
    space = task.config_space
    other = next(i for i in range(len(space)) if i != space.default_index() and space.valid(i))
    rec = autotune.Record(workload=task.workload_key, config=space.get(other).to_json(), costs=[1e-6], isa=HOST.isa,
                          cpu=HOST.cpu, target=f"llvm -mcpu={HOST.cpu}")
    log = tmp_path / "dense.jsonl"
    log.write_text(rec.to_json() + "\n")
    lib = frontends.build(g, logs=str(log))
    assert {r.workload: r.config for r in lib.records} == {rec.workload: rec.config}
    np.testing.assert_allclose(lib.run(**_feed(m))[0], ort_run(m, _feed(m))[0], rtol=1e-5, atol=1e-6)


def test_a_3d_dense_writing_a_graph_output_matches_onnx_runtime():
    """The chain's last value is the caller's: its view back is a copy into the output."""
    m = dense_gelu((2, 16, K))
    m.graph.node.pop()                              # drop the Softmax: the GELU writes y
    m.graph.node[-1].output[0] = "y"
    got, want = frontends.build(frontends.from_onnx(m)).run(**_feed(m))[0], ort_run(m, _feed(m))[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


SMALL = dict(seq=16, hidden=64, heads=4, ffn=128)


def test_the_encoder_exported_3d_has_the_tasks_of_the_2d_one():
    """zoo.encoder_layer(batch=1), x (1, seq, hidden) as PyTorch exports it: its QKV, output and
    feed-forward dense layers are the 2-D encoder's tasks (epilogues too), beside the attention's
    batched matmuls."""
    flat, batched = _tasks(zoo.encoder_layer(**SMALL)), _tasks(zoo.encoder_layer(**SMALL, batch=1))
    assert batched == flat
    assert sorted({name for name, _, _ in flat.values()}) == ["batch_matmul", "matmul", "matmul_rows"]


def test_the_encoder_exported_3d_matches_onnx_runtime():
    m = zoo.encoder_layer(**SMALL, batch=2)
    feed = {"x": np.random.default_rng(3).normal(0, 1, (2, 16, 64)).astype(np.float32)}
    got = frontends.build(frontends.from_onnx(m)).run(**feed)[0]
    np.testing.assert_allclose(got, ort_run(m, feed)[0], rtol=1e-4, atol=1e-4)
