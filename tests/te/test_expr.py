"""Expression IR: construction, dtype promotion, printing, tensors and the errors users see.

Most tests here only build expressions; the ones that check semantics compile a tiny kernel.
"""
from __future__ import annotations

import numpy as np
import pytest

import te
from te.expr import BinOp, BinOpKind, Cmp, Logic, Not, Select


# ------------------------------------------------------------------ constants and variables

def test_const_default_dtypes():
    assert te.const(3).dtype == "int64"
    assert te.const(2.5).dtype == "float32"
    assert te.const(True).dtype == "bool"
    assert te.const(3, "int8").dtype == "int8"
    assert te.const(3, "float64").value == 3.0


def test_const_rejects_unsupported_dtype():
    with pytest.raises(ValueError, match="complex64"):
        te.const(1, "complex64")


def test_var_default_dtype_and_name():
    v = te.var("n")
    assert v.name == "n" and v.dtype == "int64"
    assert te.var("x", "int32").dtype == "int32"


def test_dtypes_listed():
    for dt in ("float32", "float64", "int8", "uint8", "int16", "uint16", "int32", "uint32",
               "int64", "uint64", "bool"):
        assert dt in te.DTYPES


# ------------------------------------------------------------------ promotion

def test_python_number_takes_expression_dtype():
    x = te.var("x", "int8")
    assert (x + 1).dtype == "int8"
    assert (1 + x).dtype == "int8"
    assert (x * 3).dtype == "int8"
    f = te.placeholder((4,), "float64", name="F")
    assert (f[0] * 2).dtype == "float64"
    assert (f[0] + 0.5).dtype == "float64"


def test_mixed_dtypes_promote_to_wider():
    a = te.var("a", "int8")
    b = te.var("b", "int32")
    assert (a + b).dtype == "int32"
    f = te.placeholder((4,), "float32", name="F")
    assert (f[0] + b).dtype == "float32"
    d = te.placeholder((4,), "float64", name="D")
    assert (f[0] * d[0]).dtype == "float64"


def test_binop_operands_share_the_result_dtype():
    a = te.var("a", "int16")
    b = te.var("b", "int64")
    e = a - b
    assert isinstance(e, BinOp)
    assert e.a.dtype == e.b.dtype == e.dtype == "int64"


def test_int_expression_plus_python_float_promotes_to_float():
    A = te.placeholder((8,), "int32", name="A")
    C = te.compute((8,), lambda i: A[i] + 0.5, name="C")
    body = C.op.body[0]
    assert body.a.dtype == body.b.dtype == body.dtype
    assert C.dtype == "float32"
    a = np.arange(8, dtype=np.int32)
    c = np.zeros(8, np.float32)
    te.build(te.create_schedule(C.op), [A, C])(a, c)
    np.testing.assert_allclose(c, a + 0.5)


@pytest.mark.parametrize("a_dt, b_dt", [("int8", "uint8"), ("uint32", "int32")])
def test_mixed_signedness_promotion_is_symmetric(a_dt, b_dt):
    a, b = te.var("a", a_dt), te.var("b", b_dt)
    assert (a + b).dtype == (b + a).dtype
    assert (a * b).dtype == (b * a).dtype


def test_integer_true_division_is_floor_division():
    x = te.var("x", "int32")
    assert (x / 2).op is BinOpKind.FLOORDIV
    f = te.placeholder((2,), name="F")
    assert (f[0] / 2).op is BinOpKind.DIV


def test_bool_arithmetic_goes_through_int32():
    p = te.placeholder((2,), "bool", name="P")
    assert (p[0] + p[1]).dtype == "int32"


# ------------------------------------------------------------------ comparisons and logic

def test_comparisons_build_bool_nodes():
    x = te.var("x")
    for e in (x < 1, x <= 1, x > 1, x >= 1, x == 1, x != 1):
        assert isinstance(e, Cmp)
        assert e.dtype == "bool"


def test_expression_has_no_truth_value():
    x = te.var("x")
    with pytest.raises(TypeError, match="truth value"):
        bool(x < 3)
    with pytest.raises(TypeError):
        if x + 1:   # noqa: SIM108 - the point is that this raises
            pass


def test_eq_truth_is_identity_for_dict_lookups():
    x, y = te.var("x"), te.var("y")
    assert bool(x == x)
    assert not bool(x == y)
    d = {x: 1, y: 2}
    assert d[y] == 2
    assert x in [y, x]


def test_logic_and_or_not():
    x = te.var("x")
    e = (x > 1) & (x < 5)
    assert isinstance(e, Logic) and e.dtype == "bool"
    assert isinstance((x > 1) | (x < 0), Logic)
    n = ~(x > 1)
    assert isinstance(n, Not) and n.dtype == "bool"
    # non-bool operands are compared with zero
    assert isinstance(te.all(x, x > 1), Logic)
    assert isinstance(te.any(x > 1, x < -1, x == 0), Logic)


def test_if_then_else_unifies_branches():
    x = te.var("x", "int32")
    f = te.placeholder((2,), "float64", name="F")
    e = te.if_then_else(x > 0, f[0], 1)
    assert isinstance(e, Select)
    assert e.dtype == "float64"
    assert te.select is te.if_then_else


# ------------------------------------------------------------------ casts and intrinsics

def test_astype_and_cast():
    x = te.var("x", "int32")
    assert x.astype("float32").dtype == "float32"
    assert te.cast("int8", x).dtype == "int8"
    assert x.astype("int32") is x, "a cast to the same dtype is a no-op"
    assert te.cast("float64", 3).dtype == "float64"
    with pytest.raises(ValueError):
        x.astype("complex64")


def test_math_functions_promote_ints_to_float32():
    x = te.var("x", "int32")
    for fn in (te.exp, te.log, te.sqrt, te.tanh, te.sigmoid, te.erf, te.floor, te.ceil,
               te.round, te.sin, te.cos):
        assert fn(x).dtype == "float32", fn.__name__
    assert te.abs(x).dtype == "int32", "abs keeps integer dtypes"
    assert te.power(x, 2).dtype == "float32"
    d = te.placeholder((1,), "float64", name="D")
    assert te.exp(d[0]).dtype == "float64"
    assert te.rsqrt(d[0]).dtype == "float64"


def test_elementwise_max_min():
    a, b = te.var("a", "int32"), te.var("b", "int32")
    for e, kind in ((te.max(a, b), BinOpKind.MAX), (te.min(a, b), BinOpKind.MIN),
                    (te.max_of(a, b), BinOpKind.MAX), (te.min_of(a, b), BinOpKind.MIN)):
        assert isinstance(e, BinOp) and e.op is kind


def test_reducer_needs_axis():
    A = te.placeholder((4,), name="A")
    with pytest.raises(TypeError, match="axis"):
        te.sum(A[0])


def test_reducer_rejects_data_axis():
    A = te.placeholder((4, 4), name="A")
    with pytest.raises(TypeError, match="reduce_axis"):
        te.compute((4, 4), lambda i, j: te.sum(A[i, j], axis=[te.reduce_axis((0, 4), "k"),
                                                            _data_axis()]))


def _data_axis():
    C = te.compute((3,), lambda i: i.astype("float32"), name="tmp")
    return C.op.axis[0]


def test_reduction_must_be_whole_body():
    A = te.placeholder((4, 4), name="A")
    k = te.reduce_axis((0, 4), name="k")
    with pytest.raises(ValueError, match="whole"):
        te.compute((4,), lambda i: te.sum(A[i, k], axis=k) + 1.0, name="C")


def test_multi_output_reduction_rejected():
    A = te.placeholder((4, 4), name="A")
    k = te.reduce_axis((0, 4), name="k")
    with pytest.raises(ValueError, match="several outputs"):
        te.compute((4,), lambda i: (te.sum(A[i, k], axis=k), te.max(A[i, k], axis=k)), name="C")


def test_reduce_axis_validation():
    k = te.reduce_axis((2, 7), name="k")
    assert k.dom == (2, 5)
    assert te.reduce_axis(5, name="r").dom == (0, 5)
    with pytest.raises(ValueError, match="empty"):
        te.reduce_axis((3, 3), name="e")


def test_comm_reducer_identity_per_dtype():
    r = te.comm_reducer(lambda x, y: x * y, lambda t: te.const(1, t), name="myprod")
    assert r.name == "myprod"
    assert r.identity("int8").dtype == "int8"
    assert r.identity("float64").value == 1.0
    r2 = te.comm_reducer(lambda x, y: x + y, lambda t: 0, name="plain")
    assert r2.identity("float32").dtype == "float32"


# ------------------------------------------------------------------ tensors

def test_placeholder_properties():
    A = te.placeholder((3, 4), name="A")
    assert A.shape == (3, 4) and A.dtype == "float32" and A.ndim == 2 and A.name == "A"
    assert te.placeholder(5, "int8", name="v").shape == (5,)
    assert te.placeholder((np.int64(2), 3), name="np").shape == (2, 3)


@pytest.mark.parametrize("shape", [(-1, 2), (2.5,), ("3",)])
def test_placeholder_rejects_bad_shapes(shape):
    with pytest.raises(ValueError, match="shape"):
        te.placeholder(shape, name="bad")


def test_placeholder_rejects_bad_dtype():
    with pytest.raises(ValueError, match="unsupported dtype"):
        te.placeholder((2,), "complex64")


def test_tensor_index_arity_checked():
    A = te.placeholder((3, 4), name="A")
    with pytest.raises(IndexError, match="2 dimensions"):
        A[1]
    with pytest.raises(IndexError):
        A[1, 2, 3]


def test_float_index_rejected():
    A = te.placeholder((3,), name="A")
    F = te.placeholder((3,), name="F")
    with pytest.raises(TypeError, match="integer"):
        A[F[0]]


def test_tensor_used_as_value_rejected():
    A = te.placeholder((3,), name="A")
    with pytest.raises(TypeError, match="index it"):
        te.compute((3,), lambda i: A[i] + A)


def test_compute_arity_must_match_shape():
    with pytest.raises(ValueError, match="2 dimensions"):
        te.compute((3, 4), lambda i: i)


def test_compute_varargs_lambda():
    A = te.placeholder((3, 4), name="A")
    C = te.compute((3, 4), lambda *idx: A[idx] * 2.0, name="C")
    assert [a.name for a in C.op.axis] == ["i0", "i1"]


def test_compute_axes_named_after_lambda_args():
    A = te.placeholder((3, 4), name="A")
    C = te.compute((3, 4), lambda row, col: A[row, col], name="C")
    assert [a.name for a in C.op.axis] == ["row", "col"]
    assert C.op.axis[0].dom == (0, 3)
    assert C.op.input_tensors == [A]


def test_multiple_outputs_are_a_list():
    A = te.placeholder((3,), name="A")
    outs = te.compute((3,), lambda i: (A[i] + 1.0, A[i] * 2.0, A[i] > 0), name="T")
    assert isinstance(outs, list) and len(outs) == 3
    assert [t.value_index for t in outs] == [0, 1, 2]
    assert outs[2].dtype == "bool"
    assert outs[0].op is outs[1].op


def test_reduce_axis_expression_uses():
    A = te.placeholder((4, 4), name="A")
    k = te.reduce_axis((0, 4), name="k")
    # an IterVar works on the left of arithmetic and comparisons
    e1 = k + 1
    e2 = k * 2 - 1
    e3 = k < 3
    assert e1.dtype == e2.dtype == "int64" and e3.dtype == "bool"
    C = te.compute((4,), lambda i: te.sum(A[i, k], axis=k, where=k < i), name="C")
    assert C.op.body[0].condition is not None


def test_var_plus_reduce_axis():
    A = te.placeholder((10,), name="A")
    r = te.reduce_axis((0, 3), name="r")
    C = te.compute((8,), lambda i: te.sum(A[i + r], axis=r), name="C")
    a = np.arange(10, dtype=np.float32)
    c = np.zeros(8, np.float32)
    te.build(te.create_schedule(C.op), [A, C])(a, c)
    np.testing.assert_allclose(c, a[:-2] + a[1:-1] + a[2:])


# ------------------------------------------------------------------ printing and simplify

def test_expression_printing():
    A = te.placeholder((4, 4), name="A")
    i, j = te.var("i"), te.var("j")
    assert str(A[i, j]) == "A[i, j]"
    assert str((i + 1) * j) == "(i + 1) * j"
    assert str(i + 1 * j) == "i + 1 * j"
    assert "select(" in str(te.if_then_else(i < j, 1, 0))
    assert "max(" in str(te.max_of(i, j))
    assert str(te.const(1.5)) == "1.5f"
    assert "float32(" in str(i.astype("float32"))
    assert "exp(" in str(te.exp(A[i, j]))
    k = te.reduce_axis((0, 4), name="k")
    assert str(te.sum(A[i, k], axis=k)) == "sum(A[i, k], axis=[k in [0, 4)])"


def test_simplify_constant_folding():
    x = te.var("x")
    e = te.simplify(x * 4 + 6 - x * 4)
    assert isinstance(e, te.Const) and e.value == 6
    assert te.simplify(te.const(7) // 2).value == 3
    assert te.simplify(te.const(-7) // 2).value == -4, "floor division, as numpy"
    assert te.simplify(te.const(-7) % 2).value == 1, "floor modulo, as numpy"
    assert te.simplify(te.const(100, "int8") + te.const(100, "int8")).value == -56, "int8 wraps"
    assert te.simplify(te.const(3) < 4).value is True


def test_simplify_with_ranges():
    x = te.var("x")
    e = te.simplify((x * 32 + 5) // 32, {x: (0, 10)})
    assert e is x or str(e) == "x"
    m = te.simplify((x * 32 + 5) % 32, {x: (0, 10)})
    assert isinstance(m, te.Const) and m.value == 5
    assert te.simplify(x < 11, {x: (0, 10)}).value is True


def test_simplify_merges_a_split_index_beside_another_division():
    """(q // 56) * 56 + q % 56 is q even where another x // 49 precedes it in the sum (a fused
    loop's index read back as rows and columns: without the merge every lane is a gather)."""
    f, p = te.var("f"), te.var("p")
    q = f % 49 * 64 + p
    e = te.simplify(f // 49 * 87808 + (q // 56) * 56 + q % 56, {f: (0, 195), p: (0, 63)})
    assert "56" not in str(e), str(e)
