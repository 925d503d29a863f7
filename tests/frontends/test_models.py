"""Whole models against ONNX Runtime: the light model zoo (real random weights), a MobileNetV2 block,
a BERT-base-like encoder layer; the JIT'd model and the exported library agree."""
import numpy as np
import pytest

import frontends
import te
from frontends import zoo
from frontends.profile import onnxruntime_session

# fp32 through tens of layers: a relative tolerance on the output scale
RTOL, ATOL_REL = 1e-3, 1e-4


def reference(model, feed):
    return onnxruntime_session(model, threads=2).run(None, feed)


def check(model, feed, lib_or_module):
    want = reference(model, feed)
    got = lib_or_module.run(**feed)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=RTOL, atol=ATOL_REL * float(np.abs(w).max()))


def test_mobilenet_block(tmp_path, rng):
    model = zoo.mobilenet_block(size=14)
    lib = frontends.build(frontends.from_onnx(model))
    feed = {"x": rng.standard_normal((1, 32, 14, 14)).astype(np.float32)}
    check(model, feed, lib)
    lib.export_library(tmp_path / "mb.so")
    m = te.runtime.load_module(tmp_path / "mb.so")
    assert m.input_names == ["x"] and m.outputs[0]["shape"] == [1, 32, 14, 14]
    check(model, feed, m)


@pytest.mark.parametrize("decomposed", [False, True])
def test_encoder_layer(rng, decomposed):
    model = zoo.encoder_layer(seq=16, hidden=64, heads=4, ffn=128, decomposed_layernorm=decomposed)
    lib = frontends.build(frontends.from_onnx(model))
    check(model, {"x": rng.standard_normal((16, 64)).astype(np.float32)}, lib)


LIGHT = ["squeezenet", "bvlc_alexnet", "zfnet512", "inception_v1", "shufflenet", "resnet50",
         "inception_v2", "densenet121", "vgg19"]


@pytest.mark.parametrize("name", LIGHT)
def test_light_model_matches_onnxruntime(name, rng):
    if name not in zoo.light_models():
        pytest.skip(f"the installed onnx has no light_{name}")
    model = zoo.light_model(name, logits=True)     # the softmax saturates: compare its input too
    g = frontends.from_onnx(model)
    lib = frontends.build(g)
    feed = {g.inputs[0].name: rng.standard_normal(g.inputs[0].shape).astype(np.float32)}
    check(model, feed, lib)


def _records_off_default(model_tasks) -> list:
    """A record per task of a config other than its default, as if measured fastest: a build that
    runs it proves the record, not the default, was used.  Not measured: the build compiles and
    runs the config itself, checked against ONNX Runtime (measuring built each kernel once more)."""
    import autotune
    out = []
    for t in model_tasks:
        space = t.task.config_space
        cfg = space.get((space.default_index() + 1) % len(space))
        out.append(autotune.Record(t.task.workload_key, cfg.to_json(), [1e-6], isa=t.task.target.isa,
                                   cpu=t.task.target.cpu))
    return out


def test_tuned_build_uses_records_and_matches(tmp_path, rng):
    from autotune import record
    from frontends import tasks
    model = zoo.mobilenet_block(size=7)         # 7 columns: the depthwise conv is a kernel of its own (te.ops.dwpw)
    g = frontends.from_onnx(model)
    log = tmp_path / "tune.jsonl"
    conv_tasks = [t for t in tasks.extract_tasks(g) if t.task.name in ("conv2d_nchw", "depthwise_conv2d_nchw")]
    assert {t.task.name for t in conv_tasks} == {"conv2d_nchw", "depthwise_conv2d_nchw"}
    record.append(log, _records_off_default(conv_tasks))
    lib = frontends.build(g, logs=[log])
    assert len(lib.records) == len(conv_tasks) >= 1
    check(model, {"x": rng.standard_normal((1, 32, 7, 7)).astype(np.float32)}, lib)


def test_tuned_build_applies_matmul_and_dense_records(tmp_path, rng):
    """Records of the matmul and dense templates reach a model's MatMul and Gemm kernels."""
    from autotune import record
    from frontends import tasks
    model = zoo.encoder_layer(seq=16, hidden=64, heads=4, ffn=128)
    g = frontends.from_onnx(model)
    mm = [t for t in tasks.extract_tasks(g) if t.task.name in ("matmul", "dense")]
    assert mm
    log = tmp_path / "tune.jsonl"
    record.append(log, _records_off_default(mm))
    lib = frontends.build(g, logs=[log])
    assert len(lib.records) == len(mm)
    check(model, {"x": rng.standard_normal((16, 64)).astype(np.float32)}, lib)
