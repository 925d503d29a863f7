"""The one JIT loader (te.jit.JitModule): optimised modules and object files, the thread global."""
from __future__ import annotations

import ctypes

import numpy as np

import te
from te.build import optimize
from te.codegen_llvm import codegen
from te.jit import JitModule
from te.runtime import num_threads


def _add_one():
    A = te.placeholder((16,), name="A")
    B = te.compute((16,), lambda i: A[i] + 1.0, name="B")
    return te.lower(te.create_schedule(B.op), [A, B], "add_one")


def _call(fn, n=16):
    a = np.arange(n, dtype=np.float32)
    b = np.zeros(n, np.float32)
    assert fn(a.ctypes.data, b.ctypes.data) == 0
    return a, b


def test_a_module_and_its_object_file_load_alike():
    tgt = te.target.host()
    cg = codegen([_add_one()], tgt)
    for code in (optimize(str(cg.module), tgt), tgt.machine().emit_object(optimize(str(cg.module), tgt))):
        jit = JitModule(code, tgt, cg.uses_openmp)
        a, b = _call(jit.function("add_one", 2))
        np.testing.assert_array_equal(b, a + 1)
        # the thread-count global of generated code is found and set
        assert jit.num_threads is not None and jit.num_threads.value == num_threads()


def test_hand_written_ir_without_the_thread_global_loads():
    from te import llvm_init
    ir = ('define float @twice(float %x) {\n  %y = fadd float %x, %x\n  ret float %y\n}\n')
    tgt = te.target.host()
    jit = JitModule(llvm_init.llvm().parse_assembly(ir), tgt)
    assert jit.num_threads is None
    twice = jit.function("twice", restype=ctypes.c_float, argtypes=[ctypes.c_float])
    assert twice(1.5) == 3.0


def test_build_kernels_load_through_the_jit_module():
    A = te.placeholder((16,), name="A")
    B = te.compute((16,), lambda i: A[i] + 1.0, name="B")
    f = te.build(te.create_schedule(B.op), [A, B])
    assert isinstance(f._jit, JitModule)
    f.set_num_threads(1)
    assert f._jit.num_threads.value == 1
