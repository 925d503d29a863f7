"""A model's kernels take their scratch buffers (hoist_scratch) from the model's workspace."""
import numpy as np

from frontends import build, from_onnx, zoo
from frontends.profile import onnxruntime_session


def test_model_kernels_take_their_scratch_from_the_workspace():
    lib = build(from_onnx(zoo.mobilenet_block(size=28)))
    with_scratch = [f for f in lib.plan.funcs if f.attrs.get("scratch")]
    assert with_scratch, "the block's convs pad their input into a scratch buffer"
    for st in lib.plan.steps:
        f = next((f for f in lib.plan.funcs if f.name == st.kernel), None)
        if f is not None:
            assert len(st.args) == len(f.args)
    x = np.random.default_rng(0).standard_normal(lib.plan.inputs[0]["shape"]).astype(np.float32)
    out = lib.run(**{lib.plan.inputs[0]["name"]: x})
    sess = onnxruntime_session(zoo.mobilenet_block(size=28))
    want = sess.run(None, {sess.get_inputs()[0].name: x})
    np.testing.assert_allclose(out[0], want[0], rtol=1e-3, atol=1e-3 * np.abs(want[0]).max())
