"""A model library's run(): the checks made once at load (ModelCall) give the same one-line
errors, outputs are fresh arrays every call, and calls from several threads do not share a
workspace."""
from __future__ import annotations

import ctypes
import threading
import time

import numpy as np
import pytest
from onnx import TensorProto, helper

import frontends
import te
from te.runtime import ModelCall, data_address


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """z = Transpose(x + y) * x (kernels with a workspace between them), JIT'd and loaded."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [8, 8])
    z = helper.make_tensor_value_info("z", TensorProto.FLOAT, [8, 8])
    nodes = [helper.make_node("Add", ["x", "y"], ["s"]),
             helper.make_node("Transpose", ["s"], ["t"], perm=[1, 0]),
             helper.make_node("Mul", ["t", "x"], ["z"])]
    model = helper.make_model(helper.make_graph(nodes, "g", [x, y], [z]),
                              opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path_factory.mktemp("rt") / "add_sub.so"
    lib = frontends.build(frontends.from_onnx(model))
    lib.export_library(path)
    return {"jit": lib, "loaded": te.runtime.load_module(path)}


@pytest.fixture
def add_sub(built):
    return built["loaded"]


def want(x, y):
    return (x + y).T * x


def feed(rng):
    return {"x": rng.standard_normal((8, 8)).astype(np.float32),
            "y": rng.standard_normal((8, 8)).astype(np.float32)}


@pytest.mark.parametrize("kind", ["jit", "loaded"])
def test_outputs_are_fresh_every_call(built, kind, rng):
    f1, f2 = feed(rng), feed(rng)
    (z1,), (z2,) = built[kind].run(None, f1), built[kind].run(None, f2)
    assert not np.shares_memory(z1, z2)
    np.testing.assert_allclose(z1, want(**f1), rtol=1e-6)     # not overwritten by the second call
    np.testing.assert_allclose(z2, want(**f2), rtol=1e-6)


def test_every_calling_convention(add_sub, rng):
    f = feed(rng)
    ref = want(**f)
    for got in (add_sub.run(None, f)[0], add_sub.run(["z"], f)[0], add_sub.run(**f)[0],
                add_sub.run(output_names=None, input_feed=f)[0], add_sub(f["x"], f["y"])[0]):
        np.testing.assert_allclose(got, ref, rtol=1e-6)


def test_strided_and_read_only_inputs(add_sub, rng):
    f = feed(rng)
    wide = np.repeat(f["x"], 2, axis=1)[:, ::2]                 # not C-contiguous
    ro = f["y"].copy()
    ro.flags.writeable = False
    np.testing.assert_allclose(add_sub.run(None, {"x": wide, "y": ro})[0], want(**f), rtol=1e-6)


def test_bad_inputs_give_one_line_errors(add_sub, rng):
    f = feed(rng)
    cases = [({"x": f["x"]}, r"^the model's inputs are \['x', 'y'\]; missing \['y'\], unknown \[\]$"),
             ({**f, "w": f["x"]}, r"^the model's inputs are \['x', 'y'\]; missing \[\], unknown \['w'\]$"),
             ({**f, "y": f["y"][:4]}, r"^input y: expected shape \(8, 8\), got \(4, 8\)$"),
             ({**f, "x": f["x"].astype(np.float64)}, r"^input x: expected dtype float32, got float64$"),
             ({**f, "x": f["x"].tolist()}, r"^input x: expected dtype float32, got float64$")]
    for bad, message in cases:
        with pytest.raises(ValueError, match=message):
            add_sub.run(None, bad)
    np.testing.assert_allclose(add_sub.run(None, f)[0], want(**f), rtol=1e-6)   # still usable


def test_threads_running_a_library(add_sub, rng):
    assert add_sub.metadata["model"]["workspace_bytes"] > 0
    feeds = [feed(rng) for _ in range(4)]
    wrong = []

    def work(f):
        for _ in range(200):
            if not np.allclose(add_sub.run(None, f)[0], want(**f), rtol=1e-6):
                wrong.append(f)

    threads = [threading.Thread(target=work, args=(f,)) for f in feeds]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not wrong


def copy_entry(calls: list, pause: float = 0.0):
    """A stand-in entry point `io[1] = io[0]` through the workspace, which pauses (letting other
    threads run) with the input in the workspace; records its arguments."""
    def entry(io, params, ws):
        calls.append((io[0], io[1], ws))
        ctypes.memmove(ws, io[0], 16)
        time.sleep(pause)
        ctypes.memmove(io[1], ws, 16)
        return 7 if params else 0
    return entry


SPECS = [{"name": "a", "shape": [4], "dtype": "float32"}], [{"name": "b", "shape": [4], "dtype": "float32"}]


def test_concurrent_calls_do_not_share_a_workspace():
    calls = []
    copy = ModelCall(copy_entry(calls, pause=0.02), *SPECS, 16, 0)
    got = {}

    def work(k):
        got[k] = copy({"a": np.full(4, k, np.float32)})[0]

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k in range(4):
        np.testing.assert_array_equal(got[k], np.full(4, k, np.float32))
    assert len({ws for _, _, ws in calls}) == len(copy._scratch) > 1


def test_model_call_reuses_workspace_and_releases_it_on_failure():
    calls = []
    ok = ModelCall(copy_entry(calls), *SPECS, 16, 0)
    a = np.arange(4, dtype=np.float32)
    b1, b2 = ok({"a": a})[0], ok({"a": a + 1})[0]
    np.testing.assert_array_equal(b1, a)
    np.testing.assert_array_equal(b2, a + 1)
    assert calls[0][2] == calls[1][2] and calls[0][2] % 64 == 0     # one aligned workspace, reused
    assert calls[0][0] == a.ctypes.data and calls[0][1] == b1.ctypes.data
    failing = ModelCall(copy_entry([]), *SPECS, 16, 1)
    for _ in range(2):
        with pytest.raises(RuntimeError, match="^the model failed with code 7$"):
            failing({"a": a})
    assert len(failing._scratch) == 1


@pytest.mark.parametrize("dtype", ["float32", "bool", "bfloat16"])
def test_data_address(dtype):
    a = np.zeros((3, 5), te.runtime.np_dtype(dtype))
    assert data_address(a) == a.ctypes.data
    a.flags.writeable = False
    assert data_address(a) == a.ctypes.data
    empty = np.zeros(0, np.float32)
    assert data_address(empty) == empty.ctypes.data


def test_runtime_reexports_the_call_path():
    """te.runtime is the API: its argument checks and model call are native_call's own objects."""
    from te import native_call
    for name in ("LoadError", "ArgSpec", "NativeFunction", "check_args", "np_dtype", "ModelCall",
                 "select_outputs", "node_args", "positional_feed", "data_address", "ALIGN", "num_threads",
                 "aligned_copy", "aligned_zeros"):
        assert getattr(te.runtime, name) is getattr(native_call, name), name


@pytest.mark.parametrize("shape, dtype", [((3, 5), "float32"), ((7,), "uint8"), ((2, 3, 4), "float64")])
def test_aligned_arrays(shape, dtype):
    """aligned_zeros: zeroed, C-contiguous, on a 64-byte line with `slack` bytes after it;
    aligned_copy: the same placement holding a's values."""
    from te.runtime import ALIGN, aligned_copy, aligned_zeros
    z = aligned_zeros(shape, dtype, slack=4096)
    assert z.shape == shape and z.dtype == np.dtype(dtype) and z.flags.c_contiguous and not z.any()
    assert z.ctypes.data % ALIGN == 0
    assert z.base.nbytes - (z.ctypes.data - z.base.ctypes.data) - z.nbytes >= 4096
    a = np.arange(int(np.prod(shape))).reshape(shape).astype(dtype)
    c = aligned_copy(a[..., ::-1])                  # a strided source comes out contiguous
    assert c.ctypes.data % ALIGN == 0 and c.flags.c_contiguous and c.dtype == a.dtype
    np.testing.assert_array_equal(c, a[..., ::-1])
