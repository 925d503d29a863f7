"""Dynamic batch: a model whose input leads with a symbolic "N" is built once and runs any batch
1..max, in process and as an exported library (and from C), matching ONNX Runtime; models that
mix images or compute with the batch size are refused naming the node."""
from __future__ import annotations

import os
import subprocess

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import frontends
import te
from frontends import ModelError
from frontends.profile import onnxruntime_session
from te import export

from .onnx_helpers import tiny, vi

SHAPE = (3, 12, 12)


def _const(name, a):
    return numpy_helper.from_array(np.asarray(a), name)


def resnet_like(path=None, dim="N"):
    """A small ResNet-like net with a symbolic batch: conv-BN-ReLU, a residual block, max pool,
    global pool, PyTorch's flatten (Shape -> Gather -> Concat -> Reshape), Gemm, Softmax."""
    rng = np.random.default_rng(0)
    f = lambda *s: (rng.standard_normal(s) * 0.3).astype(np.float32)   # noqa: E731
    inits = [_const("w0", f(8, 3, 3, 3)), _const("b0", f(8)), _const("w1", f(8, 8, 3, 3)),
             _const("w2", f(8, 8, 1, 1)), _const("scale", f(8) + 1), _const("bias", f(8)),
             _const("mean", f(8)), _const("var", np.abs(f(8)) + 0.5), _const("fw", f(10, 8)),
             _const("fb", f(10)), _const("zero", np.array(0, np.int64)), _const("minus1", np.array([-1], np.int64))]
    nodes = [
        helper.make_node("Conv", ["x", "w0", "b0"], ["c0"], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c0", "scale", "bias", "mean", "var"], ["bn"]),
        helper.make_node("Relu", ["bn"], ["r0"]),
        helper.make_node("Conv", ["r0", "w1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2"], ["c2"]),
        helper.make_node("Add", ["c2", "r0"], ["res"]),
        helper.make_node("Relu", ["res"], ["r2"]),
        helper.make_node("MaxPool", ["r2"], ["mp"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("GlobalAveragePool", ["mp"], ["gp"]),
        helper.make_node("Shape", ["gp"], ["shp"]),
        helper.make_node("Gather", ["shp", "zero"], ["n"]),
        helper.make_node("Unsqueeze", ["n"], ["n1"], axes=[0]),
        helper.make_node("Concat", ["n1", "minus1"], ["target"], axis=0),
        helper.make_node("Reshape", ["gp", "target"], ["flat"]),
        helper.make_node("Gemm", ["flat", "fw", "fb"], ["logits"], transB=1),
        helper.make_node("Softmax", ["logits"], ["prob"], axis=1),
    ]
    m = tiny(nodes, [vi("x", [dim, *SHAPE])], [vi("prob", [dim, 10])], inits, opset=11)
    if path is not None:
        onnx.save(m, str(path))
    return m


def _x(n, seed=0):
    return np.random.default_rng(seed).standard_normal((n, *SHAPE)).astype(np.float32)


@pytest.fixture(scope="module")
def built():
    model = resnet_like()
    lib = frontends.build(frontends.from_onnx(model, max_batch=8))
    return model, lib, onnxruntime_session(model)


def test_builds_once_and_runs_every_batch_up_to_the_maximum_as_ort(built):
    model, lib, sess = built
    assert lib.plan.batch == {"dim": "N", "max": 8, "sizes": [1, 2, 4, 8]}
    # batch 8 runs the plan a static batch-8 build makes: its kernels take 8 images
    (size1, steps1), *_, (size8, steps8) = lib.plan.variants
    funcs = {f.name: f for f in lib.plan.funcs}
    assert (size1, size8) == (1, 8) and steps8[0].kernel.startswith("b8_")
    assert funcs[steps8[0].kernel].args[0].shape[0] == 8 and funcs[steps1[0].kernel].args[0].shape[0] == 1
    assert [(a.name, a.shape) for a in lib.get_inputs()] == [("x", ["N", *SHAPE])]
    assert [(a.name, a.shape) for a in lib.get_outputs()] == [("prob", ["N", 10])]
    for n in range(1, 9):
        x = _x(n, seed=n)
        (got,) = lib.run(None, {"x": x})
        assert got.shape == (n, 10)
        np.testing.assert_allclose(got, sess.run(None, {"x": x})[0], rtol=1e-4, atol=1e-5)


def test_batch_above_the_maximum_or_a_wrong_inner_shape_is_one_line(built):
    _, lib, _ = built
    with pytest.raises(ValueError, match=r"^input x: batch 9 is outside 1\.\.8, the maximum .*--max-batch 9"):
        lib.run(None, {"x": _x(9)})
    with pytest.raises(ValueError, match=r"^input x: expected shape \(N, 3, 12, 12\) with N from 1 to 8, got \(2, 3, 12, 11\)$"):
        lib.run(None, {"x": np.zeros((2, 3, 12, 11), np.float32)})
    with pytest.raises(ValueError, match="expected shape"):
        lib.run(None, {"x": np.zeros((3, 12, 12), np.float32)})


def test_exported_library_runs_every_batch_and_its_header_says_the_maximum(built, tmp_path):
    model, lib, sess = built
    lib.export_library(tmp_path / "dyn.so", header=str(tmp_path / "dyn.h"))
    m = te.runtime.load_module(tmp_path / "dyn.so")
    assert m.inputs == [{"name": "x", "shape": ["N", *SHAPE], "dtype": "float32"}]
    assert m.get_outputs()[0].shape == ["N", 10]
    for n in (1, 4, 8):
        x = _x(n, seed=10 + n)
        np.testing.assert_allclose(m.run(None, {"x": x})[0], sess.run(None, {"x": x})[0], rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="batch 9 is outside 1..8"):
        m.run(x=_x(9))
    header = (tmp_path / "dyn.h").read_text()
    for line in ("int32_t tilewise_run_batch(void *const *io, const void *params, void *workspace, int64_t batch);",
                 "#define TILEWISE_MAX_BATCH 8\n", '#define TILEWISE_BATCH_DIM "N"', "#define TILEWISE_INPUT0_SHAPE {8, 3, 12, 12}",
                 "#define TILEWISE_INPUT0_IMAGE_BYTES 1728\n", "#define TILEWISE_OUTPUT0_BATCHED 1\n"):
        assert line in header
    assert "int32_t tilewise_run(" not in header


C_PROGRAM = r"""
#include <stdio.h>
#include <stdlib.h>
#include "dyn.h"
int main(int argc, char **argv) {
    long n = atol(argv[1]);
    float *x = malloc(TILEWISE_INPUT0_BYTES), *y = malloc(TILEWISE_OUTPUT0_BYTES);
    void *ws = aligned_alloc(TILEWISE_WORKSPACE_ALIGN, TILEWISE_WORKSPACE_BYTES);
    FILE *f = fopen(argv[2], "rb");
    if (fread(x, TILEWISE_INPUT0_IMAGE_BYTES, n, f) != (size_t)n) return 3;
    void *io[] = {x, y};
    int rc = tilewise_run_batch(io, TILEWISE_PARAMS, ws, n);
    if (rc == TILEWISE_BATCH_ERROR) { puts("batch error"); return 2; }
    for (long i = 0; i < n * TILEWISE_OUTPUT0_IMAGE_BYTES / 4; i++) printf("%.6f\n", y[i]);
    return rc;
}
"""


def test_c_program_runs_a_batch_through_tilewise_run_batch(built, tmp_path):
    model, lib, sess = built
    lib.export_library(tmp_path / "dyn.so", header=str(tmp_path / "dyn.h"))
    (tmp_path / "main.c").write_text(C_PROGRAM)
    exe = str(tmp_path / "main")
    cc = subprocess.run([*export.find_cc(), "-O1", "-std=c11", "-Wall", "-Werror", "-o", exe, str(tmp_path / "main.c"),
                         "-I", str(tmp_path), str(tmp_path / "dyn.so"), f"-Wl,-rpath,{tmp_path}"],
                        capture_output=True, text=True, timeout=120)
    assert cc.returncode == 0, cc.stderr
    x = _x(5, seed=7)
    x.tofile(tmp_path / "x.bin")
    r = subprocess.run([exe, "5", str(tmp_path / "x.bin")], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    got = np.array(r.stdout.split(), np.float32).reshape(5, 10)
    np.testing.assert_allclose(got, sess.run(None, {"x": x})[0], rtol=1e-4, atol=1e-5)
    r = subprocess.run([exe, "0", str(tmp_path / "x.bin")], capture_output=True, text=True, timeout=60)
    assert (r.returncode, r.stdout) == (2, "batch error\n")


def test_without_max_batch_a_symbolic_batch_is_still_refused_and_shapes_fix_it():
    with pytest.raises(ModelError, match=r"not static; pass shapes=.* \(or max_batch=8 for any batch up to 8\)"):
        frontends.from_onnx(resnet_like())
    g = frontends.from_onnx(resnet_like(), shapes={"x": (2, *SHAPE)}, max_batch=8)
    assert g.batch is None and g.inputs[0].shape == (2, *SHAPE)
    with pytest.raises(ValueError, match="max_batch=0"):
        frontends.from_onnx(resnet_like(), max_batch=0)


def _one(nodes, out_shape, inits=(), in_shape=("N", 4, 5)):
    return tiny(nodes, [vi("x", list(in_shape))], [vi("y", list(out_shape))], list(inits))


MIXING = {
    "softmax over the batch": (_one([helper.make_node("Softmax", ["x"], ["y"], axis=0)], ["N", 4, 5]),
                               r"node .* \(Softmax\) works along axis 0"),
    "transpose of the batch": (_one([helper.make_node("Transpose", ["x"], ["y"], perm=[1, 0, 2])], [4, "N", 5]),
                               r"\(Transpose\): output y has shape \[4, 1, 5\] at batch 1 and \[4, 2, 5\]"),
    "max over the batch": (_one([helper.make_node("ReduceMax", ["x"], ["y"], axes=[0], keepdims=1)], [1, 4, 5]),
                           r"\(ReduceMax\)"),
    "a fixed reshape": (_one([helper.make_node("Reshape", ["x", "s"], ["y"])], [1, "M"],
                             [_const("s", np.array([1, -1], np.int64))]), r"\(Reshape\)"),
    "the batch size as data": (_one([helper.make_node("Shape", ["x"], ["s"]),
                                     helper.make_node("Cast", ["s"], ["sf"], to=TensorProto.FLOAT),
                                     helper.make_node("ReduceProd", ["sf"], ["p"], keepdims=0),
                                     helper.make_node("Mul", ["x", "p"], ["y"])], ["N", 4, 5]),
                               r"computed from the batch size"),
    "broadcasting the batch along an inner axis": (
        _one([helper.make_node("ReduceMean", ["x"], ["v"], axes=[1, 2], keepdims=0),
              helper.make_node("Add", ["x", "v"], ["y"])], ["N", 4, 2], in_shape=("N", 4, 2)),
        r"\(Add\) would align the batch of v \(rank 1\) with another axis"),
    "a broadcast that only fits batch 1": (
        _one([helper.make_node("ReduceMean", ["x"], ["v"], axes=[1, 2], keepdims=0),
              helper.make_node("Add", ["x", "v"], ["y"])], ["N", 4, 5]),
        r"the model does not import at batch 2 \(node .*Add"),
}


@pytest.mark.parametrize("case", list(MIXING))
def test_a_model_that_mixes_images_is_refused_naming_the_node(case):
    model, what = MIXING[case]
    with pytest.raises(ModelError, match=what) as e:
        frontends.from_onnx(model, max_batch=8)
    msg = str(e.value)
    assert "\n" not in msg and "cannot run with a dynamic batch; build it for one batch with shapes={'x'" in msg


def test_per_image_ops_with_axes_and_broadcasting_match_ort():
    bias = _const("b", np.arange(5, dtype=np.float32))
    model = _one([helper.make_node("Softmax", ["x"], ["s"], axis=-1),
                  helper.make_node("Add", ["s", "b"], ["a"]),
                  helper.make_node("ReduceMean", ["a"], ["y"], axes=[1], keepdims=1)], ["N", 1, 5], [bias])
    lib = frontends.build(frontends.from_onnx(model, max_batch=4))
    sess = onnxruntime_session(model)
    for n in (1, 4):
        x = np.random.default_rng(n).standard_normal((n, 4, 5)).astype(np.float32)
        np.testing.assert_allclose(lib.run(x=x)[0], sess.run(None, {"x": x})[0], rtol=1e-5, atol=1e-6)


def test_an_inference_session_runs_any_batch_as_ort_users_call_it(built):
    import tilewise
    model, _, ort = built
    sess = tilewise.InferenceSession(model.SerializeToString(), max_batch=3, shared_logs=False)
    assert sess.get_inputs()[0].shape == ["N", *SHAPE] and sess.get_outputs()[0].shape == ["N", 10]
    x = _x(3, seed=5)
    np.testing.assert_allclose(sess.run(["prob"], {"x": x})[0], ort.run(None, {"x": x})[0], rtol=1e-4, atol=1e-5)
