"""Schedule primitives: structure, validation (ScheduleError), step recording, hashing, replay."""
from __future__ import annotations

import json

import numpy as np
import pytest

import te


def matmul(M=24, K=20, N=18):
    A = te.placeholder((M, K), name="A")
    B = te.placeholder((K, N), name="B")
    k = te.reduce_axis((0, K), name="k")
    C = te.compute((M, N), lambda i, j: te.sum(A[i, k] * B[k, j], axis=k), name="C")
    return A, B, C


@pytest.fixture
def graph():
    """A -> C (matmul) -> D (elementwise), and E reads only A: two outputs D and E."""
    A, B, C = matmul()
    D = te.compute(C.shape, lambda i, j: C[i, j] + 1.0, name="D")
    E = te.compute(C.shape, lambda i, j: A[i, j % 20] * 2.0, name="E")
    return A, B, C, D, E


# ------------------------------------------------------------------ structure

def test_create_schedule_stages_and_lookup(graph):
    A, B, C, D, E = graph
    s = te.create_schedule([D.op, E.op])
    names = [st.name for st in s.stages]
    assert set(names) == {"A", "B", "C", "D", "E"}
    assert names.index("C") < names.index("D"), "producers come before consumers"
    assert s[C] is s[C.op] is s.stage("C")
    assert s[D].is_output and s[E].is_output and not s[C].is_output
    assert te.create_schedule(D).stage("D").is_output, "a tensor is accepted too"


def test_create_schedule_rejects_placeholder_and_junk():
    A = te.placeholder((3,), name="A")
    with pytest.raises(te.ScheduleError, match="placeholder"):
        te.create_schedule(A.op)
    with pytest.raises(TypeError):
        te.create_schedule([42])


def test_schedule_lookup_errors(graph):
    A, B, C, D, E = graph
    s = te.create_schedule(D.op)
    with pytest.raises(te.ScheduleError, match="not part of this schedule"):
        s[E]
    with pytest.raises(te.ScheduleError, match="no stage named 'nope'"):
        s.stage("nope")


def test_duplicate_op_names_get_unique_stage_names():
    A = te.placeholder((4,), name="A")
    X1 = te.compute((4,), lambda i: A[i] + 1.0, name="X")
    X2 = te.compute((4,), lambda i: X1[i] * 2.0, name="X")
    s = te.create_schedule(X2.op)
    assert s[X1].name != s[X2].name
    assert {s[X1].name, s[X2].name} == {"X", "X_1"}


def test_split_structure():
    A, B, C = matmul()
    s = te.create_schedule(C.op)
    i, j = C.op.axis
    (k,) = C.op.reduce_axis
    io, ii = s[C].split(i, factor=8)
    assert s[C].leaf_iter_vars == [io, ii, j, k]
    assert (io.name, ii.name) == ("i.outer", "i.inner")
    ko, ki = s[C].split(k, nparts=4)
    assert s[C].leaf_iter_vars == [io, ii, j, ko, ki]
    assert ko.kind is k.kind and io.kind is i.kind
    # a second split of the same name gets a fresh, distinct name
    a, b = s[C].split(ii, factor=2)
    assert a.name != io.name and b.name != ii.name


def test_reorder_partial_keeps_other_positions():
    A, B, C = matmul()
    s = te.create_schedule(C.op)
    i, j = C.op.axis
    (k,) = C.op.reduce_axis
    io, ii = s[C].split(i, factor=4)
    s[C].reorder(k, io)          # io and k swap places; ii and j stay put
    assert s[C].leaf_iter_vars == [k, ii, j, io]
    s[C].reorder([io, ii])       # a list works too
    assert s[C].leaf_iter_vars == [k, io, j, ii]


def test_fuse_structure():
    A, B, C = matmul()
    s = te.create_schedule(C.op)
    i, j = C.op.axis
    f = s[C].fuse(i, j)
    assert f.name == "i.j.fused"
    assert s[C].leaf_iter_vars == [f, C.op.reduce_axis[0]]
    assert s[C].leaf_of(i) is f and s[C].leaf_of(j) is f


def test_fuse_three_axes():
    A = te.placeholder((2, 3, 4), name="A")
    C = te.compute((2, 3, 4), lambda a, b, c: A[a, b, c], name="C")
    s = te.create_schedule(C.op)
    f = s[C].fuse(*C.op.axis)
    assert s[C].leaf_iter_vars == [f]
    assert "for a.b.fused.c.fused in range(24)" in str(te.lower(s, [A, C]))


def test_annotations_recorded_on_stage():
    A, B, C = matmul()
    s = te.create_schedule(C.op)
    i, j = C.op.axis
    s[C].parallel(i)
    s[C].vectorize(j)
    s[C].unroll(C.op.reduce_axis[0])
    assert s[C].iter_attrs[i] is te.ForKind.PARALLEL
    assert s[C].iter_attrs[j] is te.ForKind.VECTORIZED
    s[C].parallel(i)     # re-applying the same annotation is fine


def test_compute_root_undoes_compute_at(rand):
    A = te.placeholder((8,), name="A")
    B = te.compute((8,), lambda i: A[i] * 2.0, name="B")
    C = te.compute((8,), lambda i: B[i] + 1.0, name="C")
    s = te.create_schedule(C.op)
    s[B].compute_at(s[C], C.op.axis[0])
    s[B].compute_root()
    text = str(te.lower(s, [A, C]))
    assert text.index("produce B") < text.index("produce C")
    f = te.build(s, [A, C])
    a, c = rand(8), np.zeros(8, np.float32)
    f(a, c)
    np.testing.assert_allclose(c, a * 2 + 1, rtol=1e-6)


# ------------------------------------------------------------------ ScheduleError cases

def test_schedule_error_is_value_error():
    assert issubclass(te.ScheduleError, ValueError)


def test_axis_of_another_stage(graph):
    A, B, C, D, E = graph
    s = te.create_schedule([D.op, E.op])
    with pytest.raises(te.ScheduleError, match=r"stage C: split: axis i belongs to stage D"):
        s[C].split(D.op.axis[0], factor=2)
    with pytest.raises(te.ScheduleError, match=r"stage E: .*axis k belongs to stage C"):
        s[E].vectorize(C.op.reduce_axis[0])
    with pytest.raises(te.ScheduleError, match=r"stage D: reorder: .*belongs to stage E"):
        s[D].reorder(E.op.axis[1], D.op.axis[0])
    with pytest.raises(te.ScheduleError, match=r"stage D: fuse: .*belongs to stage C"):
        s[D].fuse(C.op.axis[0], C.op.axis[1])


def test_not_an_axis():
    A, B, C = matmul()
    s = te.create_schedule(C.op)
    with pytest.raises(te.ScheduleError, match="stage C: split: expected an axis"):
        s[C].split(3, factor=2)
    stray = te.reduce_axis((0, 4), name="stray")
    with pytest.raises(te.ScheduleError, match="stage C: unroll: axis stray is not an axis of this stage"):
        s[C].unroll(stray)


def test_fuse_non_adjacent_axes():
    A, B, C = matmul()
    s = te.create_schedule(C.op)
    i, j = C.op.axis
    io, ii = s[C].split(i, factor=4)
    with pytest.raises(te.ScheduleError, match=r"stage C: fuse\(i.outer, j\): .*not adjacent"):
        s[C].fuse(io, j)
    with pytest.raises(te.ScheduleError, match=r"fuse\(i.inner, i.outer\).*loop order: i.outer, i.inner, j, k"):
        s[C].fuse(ii, io)     # adjacent but in the wrong order
    with pytest.raises(te.ScheduleError, match="at least two"):
        s[C].fuse(io)
    assert s[C].leaf_iter_vars[:2] == [io, ii], "a failed fuse changes nothing"


def test_fuse_reduce_with_data_axis():
    A, B, C = matmul()
    s = te.create_schedule(C.op)
    with pytest.raises(te.ScheduleError, match="stage C: .*cannot fuse a reduction axis with a data axis"):
        s[C].fuse(C.op.axis[1], C.op.reduce_axis[0])


def test_compute_at_stage_that_does_not_consume(graph):
    A, B, C, D, E = graph
    s = te.create_schedule([D.op, E.op])
    with pytest.raises(te.ScheduleError, match=r"stage C: compute_at: stage E does not read C"):
        s[C].compute_at(s[E], E.op.axis[0])


def test_compute_at_axis_of_wrong_stage(graph):
    A, B, C, D, E = graph
    s = te.create_schedule([D.op, E.op])
    with pytest.raises(te.ScheduleError, match=r"stage C: compute_at: axis i is not a loop of stage D "
                                               r"\(it belongs to stage E\)"):
        s[C].compute_at(s[D], E.op.axis[0])


def test_compute_at_misc_errors(graph):
    A, B, C, D, E = graph
    s = te.create_schedule([D.op, E.op])
    with pytest.raises(te.ScheduleError, match="an output stage must stay at the root"):
        s[D].compute_at(s[E], E.op.axis[0])
    with pytest.raises(te.ScheduleError, match="cannot be computed inside itself"):
        s[C].compute_at(s[C], C.op.axis[0])
    with pytest.raises(te.ScheduleError, match="expected a stage"):
        s[C].compute_at(D, D.op.axis[0])
    with pytest.raises(te.ScheduleError, match="stage A: compute_at needs a compute stage"):
        s[A].compute_at(s[C], C.op.axis[0])
    io, ii = s[D].split(D.op.axis[0], factor=4)
    with pytest.raises(te.ScheduleError, match="stage C: compute_at: axis i is not a loop of stage D"):
        s[C].compute_at(s[D], D.op.axis[0])     # already split: use io / ii


@pytest.mark.parametrize("prim", ["vectorize", "parallel"])
def test_vectorize_or_parallel_reduce_axis(prim):
    A, B, C = matmul()
    s = te.create_schedule(C.op)
    (k,) = C.op.reduce_axis
    with pytest.raises(te.ScheduleError, match=fr"stage C: {prim}: k is a reduction axis"):
        getattr(s[C], prim)(k)
    ko, ki = s[C].split(k, factor=4)
    with pytest.raises(te.ScheduleError, match=fr"stage C: {prim}: k.inner is a reduction axis"):
        getattr(s[C], prim)(ki)


def test_unroll_reduce_axis_is_allowed():
    A, B, C = matmul()
    s = te.create_schedule(C.op)
    s[C].unroll(C.op.reduce_axis[0])


@pytest.mark.parametrize("kw", [dict(factor=0), dict(factor=-3), dict(nparts=0), dict(factor=2.0),
                                dict(factor=True), dict(factor="4"), dict(factor=None),
                                dict(factor=2, nparts=3)])
def test_split_bad_factor(kw):
    A, B, C = matmul()
    s = te.create_schedule(C.op)
    with pytest.raises(te.ScheduleError, match="stage C: split of i"):
        s[C].split(C.op.axis[0], **kw)
    assert s[C].leaf_iter_vars == list(C.op.axis) + list(C.op.reduce_axis)
    assert s.steps == [], "a rejected primitive records nothing"


def test_split_accepts_numpy_int_factor():
    A, B, C = matmul()
    s = te.create_schedule(C.op)
    s[C].split(C.op.axis[0], factor=np.int64(4))
    s[C].split(C.op.axis[1], nparts=np.int32(3))
    json.dumps(s.to_json())
    assert "for i.inner in range(4)" in str(te.lower(s, [A, B, C]))


def test_already_split_axis():
    A, B, C = matmul()
    s = te.create_schedule(C.op)
    i = C.op.axis[0]
    s[C].split(i, factor=4)
    for prim in ("split", "vectorize", "parallel", "unroll"):
        with pytest.raises(te.ScheduleError, match=f"stage C: {prim}: axis i was already split or fused"):
            if prim == "split":
                s[C].split(i, factor=2)
            else:
                getattr(s[C], prim)(i)
    with pytest.raises(te.ScheduleError, match="already split or fused"):
        s[C].reorder(C.op.axis[1], i)


def test_already_fused_axis():
    A, B, C = matmul()
    s = te.create_schedule(C.op)
    s[C].fuse(*C.op.axis)
    with pytest.raises(te.ScheduleError, match="axis j was already split or fused"):
        s[C].split(C.op.axis[1], factor=2)


def test_reorder_duplicate_axis():
    A, B, C = matmul()
    s = te.create_schedule(C.op)
    j = C.op.axis[1]
    with pytest.raises(te.ScheduleError, match="listed twice"):
        s[C].reorder(j, j)


def test_conflicting_annotations():
    A, B, C = matmul()
    s = te.create_schedule(C.op)
    j = C.op.axis[1]
    s[C].vectorize(j)
    with pytest.raises(te.ScheduleError, match="stage C: parallel: axis j is already marked vectorized"):
        s[C].parallel(j)


def test_primitives_on_placeholder_stage():
    A, B, C = matmul()
    s = te.create_schedule(C.op)
    with pytest.raises(te.ScheduleError, match="stage A: .*placeholder"):
        s[A].compute_inline()
    with pytest.raises(te.ScheduleError, match="stage A: .*placeholder"):
        s[A].split(C.op.axis[0], factor=2)


def test_compute_inline_errors(graph):
    A, B, C, D, E = graph
    s = te.create_schedule([D.op, E.op])
    with pytest.raises(te.ScheduleError, match="stage D: compute_inline: an output stage"):
        s[D].compute_inline()
    with pytest.raises(te.ScheduleError, match="stage C: compute_inline: a reduction cannot be inlined"):
        s[C].compute_inline()


def test_inlined_stage_has_no_loops():
    A = te.placeholder((8, 8), name="A")
    B = te.compute((8, 8), lambda i, j: A[i, j] * 2.0, name="B")
    C = te.compute((8, 8), lambda i, j: B[i, j] + 1.0, name="C")
    s = te.create_schedule(C.op)
    s[B].compute_inline()
    for call in (lambda: s[B].split(B.op.axis[0], factor=2), lambda: s[B].vectorize(B.op.axis[1]),
                 lambda: s[B].fuse(*B.op.axis), lambda: s[B].reorder(B.op.axis[1], B.op.axis[0])):
        with pytest.raises(te.ScheduleError, match="stage B: .*compute_inline'd"):
            call()
    s2 = te.create_schedule(C.op)
    s2[B].split(B.op.axis[0], factor=2)
    with pytest.raises(te.ScheduleError, match="stage B: compute_inline: the stage already has loop primitives"):
        s2[B].compute_inline()


def test_inline_stage_that_has_a_stage_attached():
    A = te.placeholder((8,), name="A")
    B = te.compute((8,), lambda i: A[i] * 2.0, name="B")
    C = te.compute((8,), lambda i: B[i] + 1.0, name="C")
    D = te.compute((8,), lambda i: C[i] - 1.0, name="D")
    s = te.create_schedule(D.op)
    s[B].compute_at(s[C], C.op.axis[0])
    with pytest.raises(te.ScheduleError, match="stage C: compute_inline: stage B is computed at this stage"):
        s[C].compute_inline()


def test_compute_at_cycle():
    A = te.placeholder((8,), name="A")
    B = te.compute((8,), lambda i: A[i] * 2.0, name="B")
    C = te.compute((8,), lambda i: B[i] + 1.0, name="C")
    D = te.compute((8,), lambda i: C[i] - B[i], name="D")
    s = te.create_schedule(D.op)
    s[C].compute_at(s[D], D.op.axis[0])
    s[B].compute_at(s[C], C.op.axis[0])
    with pytest.raises(te.ScheduleError, match="compute_at"):
        s[C].compute_at(s[B], B.op.axis[0])     # B does not read C, nor may it contain C


def test_compute_at_producer_with_two_consumers_fails_at_lowering():
    A = te.placeholder((6, 8), name="A")
    B = te.compute((6, 8), lambda i, j: A[i, j] * 2.0, name="B")
    C = te.compute((6, 8), lambda i, j: B[i, j] + 1.0, name="C")
    D = te.compute((6, 8), lambda i, j: B[i, j] + C[i, j], name="D")
    s = te.create_schedule(D.op)
    s[B].compute_at(s[C], C.op.axis[0])
    with pytest.raises(te.ScheduleError, match="stage B: it is computed at C but D reads it too"):
        te.lower(s, [A, D])


def test_cache_write_after_other_primitives():
    A, B, C = matmul()
    s = te.create_schedule(C.op)
    s[C].split(C.op.axis[0], factor=4)
    with pytest.raises(te.ScheduleError, match="stage C: cache_write must come before"):
        s.cache_write(C, "local")


def test_cache_write_multi_output_rejected():
    A = te.placeholder((4,), name="A")
    X, Y = te.compute((4,), lambda i: (A[i] + 1.0, A[i] * 2.0), name="XY")
    s = te.create_schedule(X.op)
    with pytest.raises(te.ScheduleError, match="multi-output"):
        s.cache_write(X, "local")


def test_vectorize_too_wide_and_unroll_too_long_fail_at_lowering():
    A = te.placeholder((4, 1000), name="A")
    C = te.compute((4, 1000), lambda i, j: A[i, j] * 2.0, name="C")
    s = te.create_schedule(C.op)
    s[C].vectorize(C.op.axis[1])
    with pytest.raises(te.ScheduleError, match="stage C: vectorize j: extent 1000 is more than 64 lanes"):
        te.lower(s, [A, C])
    s = te.create_schedule(C.op)
    s[C].unroll(C.op.axis[1])
    with pytest.raises(te.ScheduleError, match="stage C: unroll j: extent 1000"):
        te.lower(s, [A, C])


# ------------------------------------------------------------------ step recording, hashing, replay

def _gemm_schedule(C):
    s = te.create_schedule(C.op)
    CC = s.cache_write(C, "local")
    xo, yo, xi, yi = s[C].tile(C.op.axis[0], C.op.axis[1], 8, 6)
    s[CC].compute_at(s[C], yo)
    (kk,) = s[CC].op.reduce_axis
    ko, ki = s[CC].split(kk, factor=4)
    s[CC].reorder(ko, s[CC].op.axis[0], ki, s[CC].op.axis[1])
    s[CC].vectorize(s[CC].op.axis[1])
    s[CC].unroll(ki)
    f = s[C].fuse(xo, yo)
    s[C].parallel(f)
    s[C].pragma(xi, "auto_unroll_max_step", 8)
    return s


def test_default_schedule_prints_and_has_no_steps():
    A, B, C = matmul()
    s = te.create_schedule(C.op)
    assert str(s) == "(default schedule)"
    assert s.steps == [] and s.to_json() == []
    assert s.hash() == te.create_schedule(C.op).hash()


def test_steps_are_recorded_in_order():
    A, B, C = matmul()
    s = _gemm_schedule(C)
    kinds = [st.kind for st in s.steps]
    assert kinds == ["cache_write", "split", "split", "reorder", "compute_at", "split", "reorder",
                     "vectorize", "unroll", "fuse", "parallel", "pragma"]
    assert all(isinstance(st, te.Step) for st in s.steps)
    lines = str(s).splitlines()
    assert lines[0] == "s[C].cache_write(local)"
    assert lines[1] == "s[C].split(i, factor, 8)"
    assert "s[C.local].compute_at(C, j.outer)" in lines
    assert "s[C].fuse(i.outer, j.outer)" in lines
    assert lines[-1] == "s[C].pragma(i.inner, auto_unroll_max_step, 8)"


def test_to_json_is_plain_json():
    A, B, C = matmul()
    s = _gemm_schedule(C)
    data = s.to_json()
    assert json.loads(json.dumps(data)) == json.loads(json.dumps(data))
    assert data[1] == ["split", "C", ["i", "factor", 8]]


def test_hash_is_stable_and_sensitive():
    A, B, C = matmul()
    h1 = _gemm_schedule(C).hash()
    h2 = _gemm_schedule(C).hash()
    assert h1 == h2 and isinstance(h1, str) and len(h1) >= 8
    s = te.create_schedule(C.op)
    s[C].split(C.op.axis[0], factor=4)
    t = te.create_schedule(C.op)
    t[C].split(C.op.axis[0], factor=8)
    u = te.create_schedule(C.op)
    u[C].split(C.op.axis[0], nparts=4)
    assert len({s.hash(), t.hash(), u.hash(), h1}) == 4


def test_hash_is_independent_of_object_identity():
    """Two separately built identical computations with the same primitives hash the same."""
    _, _, C1 = matmul()
    _, _, C2 = matmul()
    assert _gemm_schedule(C1).hash() == _gemm_schedule(C2).hash()


def test_replay_steps_reproduces_schedule(rand):
    A, B, C = matmul()
    s = _gemm_schedule(C)
    r = te.replay(te.create_schedule(C.op), s.steps)
    assert r.hash() == s.hash()
    assert str(r) == str(s)
    assert str(te.lower(r, [A, B, C])) == str(te.lower(s, [A, B, C]))
    a, b = rand((24, 20)), rand((20, 18))
    c1, c2 = np.zeros((24, 18), np.float32), np.zeros((24, 18), np.float32)
    te.build(s, [A, B, C])(a, b, c1)
    te.build(r, [A, B, C])(a, b, c2)
    np.testing.assert_array_equal(c1, c2)
    np.testing.assert_allclose(c1, a.astype(np.float64) @ b, rtol=1e-4, atol=1e-5)


def test_replay_from_json_onto_a_fresh_computation():
    A, B, C = matmul()
    s = _gemm_schedule(C)
    data = json.loads(json.dumps(s.to_json()))
    A2, B2, C2 = matmul()       # a different but identical computation, e.g. in another process
    r = te.replay(te.create_schedule(C2.op), data)
    assert r.hash() == s.hash()
    assert str(te.lower(r, [A2, B2, C2])) == str(te.lower(s, [A, B, C]))


def test_replay_pipeline_with_inline_and_cache_read():
    A = te.placeholder((16, 12), name="A")
    P = te.compute((16, 12), lambda i, j: A[i, j] * 2.0, name="P")
    k = te.reduce_axis((0, 12), name="k")
    R = te.compute((16,), lambda i: te.sum(P[i, k], axis=k), name="R")
    Q = te.compute((16,), lambda i: R[i] + 1.0, name="Q")

    def sched():
        s = te.create_schedule(Q.op)
        AA = s.cache_read(A, "local", [P])
        s[P].compute_inline()
        o, i = s[Q].split(Q.op.axis[0], factor=4)
        s[R].compute_at(s[Q], o)
        s[AA].compute_at(s[R], R.op.axis[0])
        s[Q].compute_root()
        return s

    s = sched()
    r = te.replay(te.create_schedule(Q.op), json.loads(json.dumps(s.to_json())))
    assert r.hash() == s.hash()
    text = str(te.lower(r, [A, Q]))
    assert text == str(te.lower(s, [A, Q]))
    assert "produce P" not in text and "A.local" in text
    a = np.random.default_rng(1).uniform(-1, 1, (16, 12)).astype(np.float32)
    q = np.zeros(16, np.float32)
    te.build(r, [A, Q])(a, q)
    np.testing.assert_allclose(q, (2 * a).sum(axis=1) + 1, rtol=1e-5, atol=1e-5)


def test_cache_read_reader_must_read_tensor():
    A = te.placeholder((16, 12), name="A")
    P = te.compute((16, 12), lambda i, j: A[i, j] * 2.0, name="P")
    k = te.reduce_axis((0, 12), name="k")
    R = te.compute((16,), lambda i: te.sum(P[i, k], axis=k), name="R")
    s = te.create_schedule(R.op)
    with pytest.raises(te.ScheduleError, match="R"):
        s.cache_read(A, "local", [R])       # R reads P, not A


def test_replay_invalid_steps_raise_schedule_error():
    A, B, C = matmul()
    with pytest.raises(te.ScheduleError, match="no axis named 'zz'"):
        te.replay(te.create_schedule(C.op), [["split", "C", ["zz", "factor", 2]]])
    with pytest.raises(te.ScheduleError, match="unknown step"):
        te.replay(te.create_schedule(C.op), [["frobnicate", "C", []]])
    with pytest.raises(te.ScheduleError, match="no stage named"):
        te.replay(te.create_schedule(C.op), [["split", "Z", ["i", "factor", 2]]])
    with pytest.raises(te.ScheduleError, match="positive"):
        te.replay(te.create_schedule(C.op), [["split", "C", ["i", "factor", 0]]])


def test_replay_compute_at_unknown_axis_raises_schedule_error():
    A = te.placeholder((8,), name="A")
    B = te.compute((8,), lambda i: A[i] * 2.0, name="B")
    C = te.compute((8,), lambda i: B[i] + 1.0, name="C")
    with pytest.raises(te.ScheduleError):
        te.replay(te.create_schedule(C.op), [["compute_at", "B", ["C", "nope"]]])


def test_rejected_primitive_is_not_recorded():
    A, B, C = matmul()
    s = te.create_schedule(C.op)
    s[C].split(C.op.axis[0], factor=4)
    with pytest.raises(te.ScheduleError):
        s[C].vectorize(C.op.reduce_axis[0])
    with pytest.raises(te.ScheduleError):
        s[C].fuse(C.op.axis[1], C.op.reduce_axis[0])
    assert len(s.steps) == 1


def test_replay_with_duplicate_axis_names():
    A = te.placeholder((6, 4, 5), name="A")
    r1 = te.reduce_axis((0, 4))
    r2 = te.reduce_axis((0, 5))
    C = te.compute((6,), lambda i: te.sum(A[i, r1, r2], axis=[r1, r2]), name="C")
    s = te.create_schedule(C.op)
    s[C].split(r2, factor=2)
    r = te.replay(te.create_schedule(C.op), s.steps)
    assert str(te.lower(r, [A, C])) == str(te.lower(s, [A, C]))
