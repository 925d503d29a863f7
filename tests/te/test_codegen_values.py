"""Code generation emits integer arithmetic once: constants fold, repeated values are reused only
where they dominate (te/codegen_values.py).  Results are checked against numpy; the emitted IR
is read before LLVM's optimisation, which would hide what our code generator wrote."""
from __future__ import annotations

import re

import numpy as np

import te
from te.codegen_llvm import codegen
from te.target import parse

# an integer instruction whose two operands are both constants: folding should have removed it
CONST_PAIR = re.compile(r"= (add|sub|mul|sdiv|srem|udiv|urem) i64 -?\d+, -?\d+")


def emitted_ir(s, args) -> str:
    return str(codegen([te.lower(s, args, "f")], parse(None)).module)


def unrolled_stencil():
    """3-tap row filter, output tile (2 x 8) with its row and tap loops unrolled, 8 lanes."""
    A = te.placeholder((6, 34), name="A")
    W = te.placeholder((3,), name="W")
    r = te.reduce_axis((0, 3), name="r")
    C = te.compute((6, 32), lambda i, j: te.sum(A[i, j + r] * W[r], axis=r), name="C")
    s = te.create_schedule(C.op)
    io, ii = s[C].split(C.op.axis[0], factor=2)
    jo, ji = s[C].split(C.op.axis[1], factor=8)
    s[C].reorder(io, jo, r, ii, ji)
    s[C].unroll(r)
    s[C].unroll(ii)
    s[C].vectorize(ji)
    return s, [A, W, C]


def test_unrolled_index_arithmetic_folds_and_matches_numpy(rand, run):
    s, args = unrolled_stencil()
    text = emitted_ir(s, args)
    assert not CONST_PAIR.search(text), CONST_PAIR.search(text).group(0)
    assert "zeroinitializer" in text and "<float 0.0, float 0.0" not in text
    a, w = rand((6, 34)), rand(3)
    ref = sum(a[:, r:r + 32] * w[r] for r in range(3))
    np.testing.assert_allclose(run(s, args, [a, w]), ref, rtol=1e-5, atol=1e-6)


def test_repeated_address_is_computed_once_per_scope():
    s, args = unrolled_stencil()
    text = emitted_ir(s, args)
    geps = re.findall(r"getelementptr inbounds float, ptr %\"?C\"?, i64 (%\S+)", text)
    assert geps and len(geps) == len(set(geps)), "each store address of C should be emitted once"


def test_folded_division_keeps_numpy_semantics(run):
    """Indices of an unrolled loop become constants, so these divisions fold at code generation:
    floor semantics for negative operands, and x // 0 = x % 0 = 0 as numpy gives."""
    C = te.compute((3, 8), lambda i, j: ((j - 5) // 3 + (j - 5) % 3 * 10
                                         + (j * 7 - 20 - i) // (j - 3) * 100
                                         + (j * 7 - 20 - i) % (j - 3) * 1000).astype("float32"),
                   name="C")
    s = te.create_schedule(C.op)
    s[C].unroll(C.op.axis[1])
    text = emitted_ir(s, [C])
    assert not CONST_PAIR.search(text)
    i, j = np.meshgrid(np.arange(3), np.arange(8), indexing="ij")
    num, den = j * 7 - 20 - i, j - 3
    with np.errstate(divide="ignore"):
        ref = (j - 5) // 3 + (j - 5) % 3 * 10 + num // den * 100 + num % den * 1000
    np.testing.assert_array_equal(run(s, [C], []), ref.astype(np.float32))


def test_value_from_a_branch_is_not_reused_after_it(rand, run):
    """The same address computed under a condition and again after it: the second use must not
    take the first's value, which does not dominate it (LLVM's verifier would reject the IR)."""
    A = te.placeholder((40,), name="A")
    B = te.compute((40,), lambda i: te.if_then_else(i % 3 == 0, A[i * 7 % 40] * 2.0, 0.0), name="B")
    C = te.compute((40,), lambda i: B[i] + A[i * 7 % 40], name="C")
    s = te.create_schedule(C.op)
    s[B].compute_at(s[C], C.op.axis[0])
    a = rand(40)
    idx = np.arange(40) * 7 % 40
    ref = np.where(np.arange(40) % 3 == 0, a[idx] * 2, 0) + a[idx]
    np.testing.assert_allclose(run(s, [A, C], [a]), ref, rtol=1e-6)
