"""Large buffers go on 2 MiB pages (te.native_call.huge_page_bytes): aligned_zeros from HUGE_MIN
bytes on, a model's weights blob and workspace, a loaded library's weights copied at its first run.
Whether Linux backs them with huge pages depends on its setting and free memory; that the advice
was given is what a test can see (the mapping's "hg" flag in /proc/self/smaps)."""
from __future__ import annotations

import mmap
import os

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import frontends
import te
from te.native_call import ALIGN, HUGE_MIN, HUGE_PAGE, aligned_zeros, huge_page_bytes

ADVISES = hasattr(mmap, "MADV_HUGEPAGE") and os.path.exists("/proc/self/smaps")
needs_advice = pytest.mark.skipif(not ADVISES, reason="no MADV_HUGEPAGE or /proc/self/smaps here")


def vm_flags(addr: int) -> set[str]:
    """The VmFlags of the mapping holding addr (/proc/self/smaps)."""
    inside = False
    with open("/proc/self/smaps") as f:
        for line in f:
            head = line.split()[0]
            if "-" in head and not head.endswith(":"):
                lo, hi = (int(x, 16) for x in head.split("-"))
                inside = lo <= addr < hi
            elif inside and head == "VmFlags:":
                return set(line.split()[1:])
    raise AssertionError(f"no mapping holds {addr:#x}")


@needs_advice
def test_large_aligned_buffers_start_on_a_huge_page_advised_for_huge_pages():
    a = aligned_zeros((HUGE_MIN // 4 + 3,), np.float32, slack=ALIGN)
    assert a.ctypes.data % HUGE_PAGE == 0 and not a.any()
    assert "hg" in vm_flags(a.ctypes.data)
    a[:] = 1.0                                     # writable, its own memory
    b = huge_page_bytes(3 * HUGE_PAGE + 5)
    assert b.nbytes == 3 * HUGE_PAGE + 5 and b.ctypes.data % HUGE_PAGE == 0
    assert "hg" in vm_flags(b.ctypes.data + b.nbytes - 1)     # the advice covers the last page


def test_small_buffers_keep_numpy_memory_and_every_alignment(monkeypatch):
    # no huge-page advice below HUGE_MIN (whether a small buffer's mapping shows "hg" depends on
    # the process's history: malloc may reuse heap that an earlier large buffer had advised)
    def advised(nbytes):
        raise AssertionError(f"a buffer of {nbytes} bytes was put on huge pages")
    monkeypatch.setattr(te.native_call, "huge_page_bytes", advised)
    for align in (16, 64, 4096):
        a = aligned_zeros((7, 5), np.float64, align=align, slack=32)
        assert a.ctypes.data % align == 0 and a.shape == (7, 5) and not a.any()
    assert not aligned_zeros((HUGE_MIN // 4 - 1,), np.float32).any()


@pytest.fixture(scope="module")
def dense(tmp_path_factory):
    """y = x @ w with 2 MiB of weights: JIT'd and loaded."""
    w = np.random.default_rng(3).standard_normal((1024, 512)).astype(np.float32)
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "dense",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1024])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 512])],
                          [numpy_helper.from_array(w, "w")])
    lib = frontends.build(frontends.from_onnx(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])))
    path = tmp_path_factory.mktemp("hp") / "dense.so"
    lib.export_library(path)
    return w, lib, te.runtime.load_module(path)


@needs_advice
def test_a_models_weights_blob_is_advised_for_huge_pages(dense):
    _, lib, _ = dense
    assert lib.plan.param_bytes >= HUGE_MIN
    assert lib.params.ctypes.data % HUGE_PAGE == 0 and "hg" in vm_flags(lib.params.ctypes.data)


def test_a_loaded_library_runs_from_its_weights_copied_onto_huge_pages(dense):
    w, lib, mod = dense
    x = np.random.default_rng(4).standard_normal((1, 1024)).astype(np.float32)
    want = x.astype(np.float64) @ w
    for m in (lib, mod):
        np.testing.assert_allclose(m.run(x=x)[0], want, rtol=1e-4, atol=1e-3)
    if ADVISES:
        assert mod._params is not None and mod._params.nbytes == lib.plan.param_bytes
        assert "hg" in vm_flags(mod._params.ctypes.data)
        np.testing.assert_array_equal(mod._params, lib.params)      # the library's blob, copied
