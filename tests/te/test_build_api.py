"""te.lower and te.build as a user calls them: the printed loop nests, kernel sources, targets,
the argument list's rules and the thread count."""
from __future__ import annotations

import numpy as np
import pytest

import te

from .build_helpers import ELEM, matmul


# ------------------------------------------------------------------ printing

def test_lower_prints_loop_names_and_annotations():
    A, B, C = matmul(24, 20, 18)
    s = te.create_schedule(C.op)
    io, ii = s[C].split(C.op.axis[0], factor=8)
    jo, ji = s[C].split(C.op.axis[1], nparts=3)
    s[C].parallel(io)
    s[C].vectorize(ji)
    s[C].unroll(ii)
    text = str(te.lower(s, [A, B, C]))
    assert text.startswith("def default_function(A: float32[24, 20], B: float32[20, 18], C: float32[24, 18]):")
    for name in ("i.outer", "i.inner", "j.outer", "j.inner", "k"):
        assert f"for {name} in range(" in text, name
    assert "for i.outer in range(3):  # parallel" in text
    assert "for i.inner in range(8):  # unrolled" in text
    assert "for j.inner in range(6):  # vectorized" in text
    assert "# produce C" in text
    assert "C[" in text and "A[" in text and "B[" in text


def test_lower_name_and_unsimplified():
    A = te.placeholder((4,), name="A")
    C = te.compute((4,), lambda i: A[i] * 1.0, name="C")
    s = te.create_schedule(C.op)
    f = te.lower(s, [A, C], name="scale")
    assert str(f).startswith("def scale(")
    assert f.name == "scale"
    raw = te.lower(s, [A, C], simple=False)
    assert "for i in range(4)" in str(raw)


def test_lower_shows_guard_for_non_divisible_split():
    A = te.placeholder((10,), name="A")
    C = te.compute((10,), lambda i: A[i], name="C")
    s = te.create_schedule(C.op)
    s[C].split(C.op.axis[0], factor=4)
    assert "if i.outer * 4 + i.inner < 10:" in str(te.lower(s, [A, C]))
    s2 = te.create_schedule(C.op)
    s2[C].split(C.op.axis[0], factor=5)
    assert "if " not in str(te.lower(s2, [A, C])), "a dividing split needs no guard"


def test_kernel_sources_and_repr():
    A = te.placeholder((4,), name="A")
    C = te.compute((4,), lambda i: A[i] + 1.0, name="C")
    f = te.build(te.create_schedule(C.op), [A, C], name="inc")
    assert "for i in range(4)" in f.get_source("ir")
    assert "define" in f.get_source("llvm") and "inc" in f.get_source("llvm")
    assert f.get_source("asm")
    with pytest.raises(ValueError, match="kind"):
        f.get_source("ptx")
    assert "inc(" in repr(f)
    assert [n for n, _, _ in f.arg_specs] == ["A", "C"]


def test_build_from_lowered_func(rand):
    A = te.placeholder((6,), name="A")
    C = te.compute((6,), lambda i: A[i] - 1.0, name="C")
    f = te.build(te.lower(te.create_schedule(C.op), [A, C]))
    a = rand(6)
    c = np.zeros(6, np.float32)
    f(a, c)
    np.testing.assert_allclose(c, a - 1, **ELEM)


def test_build_with_explicit_target_string(rand):
    A = te.placeholder((16,), name="A")
    C = te.compute((16,), lambda i: A[i] * 2.0, name="C")
    s = te.create_schedule(C.op)
    s[C].vectorize(C.op.axis[0])
    f = te.build(s, [A, C], target="llvm -mcpu=x86-64")
    a = rand(16)
    c = np.zeros(16, np.float32)
    f(a, c)
    np.testing.assert_allclose(c, a * 2, **ELEM)
    with pytest.raises(ValueError, match="target"):
        te.build(s, [A, C], target="cuda")

# ------------------------------------------------------------------ argument lists and threads

def test_lower_requires_inputs_and_outputs():
    A = te.placeholder((4,), name="A")
    C = te.compute((4,), lambda i: A[i] * 2.0, name="C")
    s = te.create_schedule(C.op)
    with pytest.raises(ValueError, match="placeholder A is read but is not in the argument list"):
        te.lower(s, [C])
    with pytest.raises(ValueError, match="output C is not in the argument list"):
        te.lower(s, [A])
    with pytest.raises(ValueError, match="passed twice"):
        te.lower(s, [A, A, C])
    with pytest.raises(TypeError, match="must be tensors"):
        te.lower(s, [A, "C"])


def test_intermediate_as_argument_must_be_at_root():
    A = te.placeholder((4,), name="A")
    B = te.compute((4,), lambda i: A[i] * 2.0, name="B")
    C = te.compute((4,), lambda i: B[i] + 1.0, name="C")
    s = te.create_schedule(C.op)
    s[B].compute_inline()
    with pytest.raises(te.ScheduleError, match="stage B: .*argument"):
        te.lower(s, [A, B, C])


def test_intermediate_as_argument_at_root_is_written(rand, run):
    A = te.placeholder((4,), name="A")
    B = te.compute((4,), lambda i: A[i] * 2.0, name="B")
    C = te.compute((4,), lambda i: B[i] + 1.0, name="C")
    a = rand(4)
    b, c = run(te.create_schedule(C.op), [A, B, C], [a])
    np.testing.assert_allclose(b, a * 2, **ELEM)
    np.testing.assert_allclose(c, a * 2 + 1, **ELEM)


def test_num_threads_environment_variable(monkeypatch):
    from te.target import num_threads
    monkeypatch.setenv("TILEWISE_NUM_THREADS", "3")
    assert num_threads() == 3
    monkeypatch.setenv("TILEWISE_NUM_THREADS", "many")
    with pytest.raises(ValueError, match="TILEWISE_NUM_THREADS"):
        num_threads()
    monkeypatch.setenv("TILEWISE_NUM_THREADS", "0")
    with pytest.raises(ValueError, match="at least 1"):
        num_threads()
