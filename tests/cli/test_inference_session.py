"""ONNX Runtime's calling convention on tilewise models: tilewise.InferenceSession, and run /
get_inputs / get_outputs on a JIT GraphLibrary and a loaded library, each against onnxruntime."""
from __future__ import annotations

import numpy as np
import pytest

from ..tiny_models import tiny_model


@pytest.fixture(scope="module")
def two_output_model(tmp_path_factory) -> str:
    """The tiny two-conv model with its Relu as a second output (ordering is then visible)."""
    import onnx
    from onnx import helper
    path = tmp_path_factory.mktemp("ort") / "two.onnx"
    m = onnx.load(tiny_model(path))
    m.graph.output.append(helper.make_tensor_value_info("r", onnx.TensorProto.FLOAT, [1, 16, 16, 16]))
    onnx.save(m, str(path))
    return str(path)


def test_inference_session_as_an_onnxruntime_user_writes_it(two_output_model):
    import onnxruntime as ort

    import tilewise
    sess = tilewise.InferenceSession(two_output_model, providers=["CPUExecutionProvider"])
    ref = ort.InferenceSession(two_output_model, providers=["CPUExecutionProvider"])
    for mine, theirs in [(sess.get_inputs(), ref.get_inputs()), (sess.get_outputs(), ref.get_outputs())]:
        assert [(a.name, a.shape, a.type) for a in mine] == [(a.name, a.shape, a.type) for a in theirs]
    inp = sess.get_inputs()[0]
    assert inp.type == "tensor(float)"
    x = np.random.default_rng(0).standard_normal(inp.shape).astype(np.float32)
    for names in (None, ["r", "y"], ["y"]):
        got = sess.run(names, {inp.name: x})
        want = ref.run(names, {inp.name: x})
        assert len(got) == len(want)
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4)


def test_library_and_jit_take_both_calling_conventions(two_output_model, tmp_path):
    import frontends
    import te
    import tilewise
    lib = frontends.build(frontends.from_onnx(two_output_model))
    lib.export_library(tmp_path / "two.so")
    loaded = te.runtime.load_module(tmp_path / "two.so")
    sess = tilewise.InferenceSession(str(tmp_path / "two.so"))
    x = np.random.default_rng(1).standard_normal((1, 8, 16, 16)).astype(np.float32)
    y, r = lib.run(x=x)                                   # the keyword form: every output, model order
    for m in (lib, loaded):
        assert [o.name for o in m.get_outputs()] == ["y", "r"]
        r2, y2 = m.run(["r", "y"], {"x": x})
        np.testing.assert_array_equal(r2, r)
        np.testing.assert_array_equal(y2, y)
        np.testing.assert_array_equal(m.run(output_names=None, input_feed={"x": x})[0], y)
        np.testing.assert_array_equal(m(x)[1], r)
        with pytest.raises(ValueError, match=r"unknown output name\(s\) \['z'\]; the model's outputs are"):
            m.run(["z"], {"x": x})
        with pytest.raises(TypeError, match="input_feed must be a dict"):
            m.run(None, x)
        with pytest.raises(TypeError, match="output_names must be a list"):
            m.run("y", {"x": x})
    np.testing.assert_array_equal(sess.run(["r"], {"x": x})[0], r)


def test_session_refuses_a_kernel_library(tmp_path):
    import te
    import tilewise
    A = te.placeholder((4,), name="A")
    B = te.compute((4,), lambda i: A[i] + 1, name="B")
    te.build(te.create_schedule(B.op), [A, B], name="add1").export_library(str(tmp_path / "k.so"))
    with pytest.raises(te.runtime.LoadError, match="holds kernels .add1., not a model"):
        tilewise.InferenceSession(str(tmp_path / "k.so"))


def test_session_of_a_dynamic_batch_model_runs_any_batch_and_other_symbols_say_the_fix():
    """As with ONNX Runtime, a model with a symbolic batch runs without arguments (any batch up to
    8, as `tilewise build`); a symbolic inner dimension needs shapes=, which the error says."""
    import onnx
    from onnx import helper

    import frontends
    import tilewise

    def relu(dims):
        x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, dims)
        y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, dims)
        return helper.make_model(helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "dyn", [x], [y]),
                                 opset_imports=[helper.make_opsetid("", 13)]).SerializeToString()
    sess = tilewise.InferenceSession(relu(["N", 4]), shared_logs=False)
    assert sess.get_inputs()[0].shape == ["N", 4]
    for n in (1, 3, 8):
        x = np.linspace(-1, 1, 4 * n, dtype=np.float32).reshape(n, 4)
        np.testing.assert_array_equal(sess.run(None, {"x": x})[0], np.maximum(x, 0))
    with pytest.raises(frontends.ModelError, match=r"pass shapes=\{'x': \(1, 1\)\} to tilewise.InferenceSession"):
        tilewise.InferenceSession(relu(["N", "M"]))
    sess = tilewise.InferenceSession(relu(["N", "M"]), shapes={"x": (3, 4)})
    assert sess.get_inputs()[0].shape == [3, 4]


def test_another_provider_is_warned_about_and_the_cpu_used_as_onnxruntime_falls_back(two_output_model):
    import tilewise
    says = "'CUDAExecutionProvider' is not available: tilewise runs on CPUExecutionProvider"
    with pytest.warns(UserWarning, match=says):
        sess = tilewise.InferenceSession(two_output_model, providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert sess.get_providers() == ["CPUExecutionProvider"]
    x = np.ones(sess.get_inputs()[0].shape, np.float32)
    assert sess.run(None, {sess.get_inputs()[0].name: x})[0].shape == tuple(sess.get_outputs()[0].shape)
    with pytest.raises(TypeError, match="providers must be a list of names"):
        tilewise.InferenceSession(two_output_model, providers="CPUExecutionProvider")
    with pytest.raises(TypeError, match=r"a name or a \(name, options dict\) pair, not 3"):
        tilewise.InferenceSession(two_output_model, providers=[3])
