"""Property tests: random schedules of a small matmul.

Every *valid* schedule (random splits, reorders, fuses, vectorize, unroll, parallel,
cache_write + compute_at) must compile and give numpy's answer, and must replay to the same
hash and the same loop nest.  Arbitrary (possibly invalid) primitive sequences must either
work or raise te.ScheduleError -- never another exception, never a wrong answer.  The same
holds for random schedules of a stencil -> stencil -> reduction -> normalise pipeline, with
compute_at / compute_inline / compute_root on every stage.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import te

SHAPES = [(24, 20, 18), (17, 13, 11), (7, 9, 5), (16, 8, 32), (1, 5, 3)]

SETTINGS = settings(max_examples=60, deadline=None, derandomize=True, print_blob=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# keep generated code small so that compiling stays fast
MAX_UNROLL_BODIES = 64
MAX_VECTOR_LANES = 64


def matmul(M, K, N):
    A = te.placeholder((M, K), name="A")
    B = te.placeholder((K, N), name="B")
    k = te.reduce_axis((0, K), name="k")
    C = te.compute((M, N), lambda i, j: te.sum(A[i, k] * B[k, j], axis=k), name="C")
    return A, B, C


def inputs(M, K, N):
    rng = np.random.default_rng(M * 10000 + K * 100 + N)
    a = rng.uniform(-1, 1, (M, K)).astype(np.float32)
    b = rng.uniform(-1, 1, (K, N)).astype(np.float32)
    return a, b, (a.astype(np.float64) @ b.astype(np.float64)).astype(np.float32)


class Model:
    """Tracks the leaf loops of one stage (axis, extent) so the generator can stay valid."""

    def __init__(self, stage, data_axes, reduce_axes, root_ext):
        self.stage = stage
        self.leaves = [(iv, root_ext[iv]) for iv in list(data_axes) + list(reduce_axes)]
        self.reduce = {id(iv) for iv in reduce_axes}
        self.annotated = {}     # id(iv) -> kind

    def is_reduce(self, iv):
        return id(iv) in self.reduce

    def idx(self, iv):
        return next(n for n, (x, _) in enumerate(self.leaves) if x is iv)

    def split(self, n, factor=None, nparts=None):
        iv, ext = self.leaves[n]
        outer, inner = self.stage.split(iv, factor=factor, nparts=nparts)
        if factor is not None:
            oe, ie = -(-ext // factor), factor
        else:
            oe, ie = nparts, -(-ext // nparts)
        if self.is_reduce(iv):
            self.reduce |= {id(outer), id(inner)}
        self.leaves[n:n + 1] = [(outer, oe), (inner, ie)]

    def fuse(self, n):
        (a, ea), (b, eb) = self.leaves[n], self.leaves[n + 1]
        f = self.stage.fuse(a, b)
        if self.is_reduce(a):
            self.reduce.add(id(f))
        self.leaves[n:n + 2] = [(f, ea * eb)]

    def reorder(self, positions, perm):
        ivs = [self.leaves[p] for p in positions]
        new = [ivs[q] for q in perm]
        self.stage.reorder(*[iv for iv, _ in new])
        for p, item in zip(sorted(positions), new):
            self.leaves[p] = item


def _annotate_valid(data, model: Model, unroll_budget: list):
    """Maybe vectorize / unroll / parallel some leaves (all valid for lowering)."""
    leaves = model.leaves
    free = [n for n, (iv, _) in enumerate(leaves) if id(iv) not in model.annotated]
    if not free:
        return
    # vectorize: the innermost data loop, small enough
    inner_n = len(leaves) - 1
    iv, ext = leaves[inner_n]
    if inner_n in free and not model.is_reduce(iv) and ext <= MAX_VECTOR_LANES \
            and data.draw(st.booleans(), label="vectorize innermost"):
        model.stage.vectorize(iv)
        model.annotated[id(iv)] = "vectorize"
    # unroll: any loop whose extent fits the budget
    cands = [n for n in free if id(leaves[n][0]) not in model.annotated
             and leaves[n][1] * unroll_budget[0] <= MAX_UNROLL_BODIES]
    if cands and data.draw(st.booleans(), label="unroll"):
        n = data.draw(st.sampled_from(cands), label="unroll which")
        model.stage.unroll(leaves[n][0])
        model.annotated[id(leaves[n][0])] = "unroll"
        unroll_budget[0] *= leaves[n][1]
    # parallel: a data loop
    cands = [n for n in free if id(leaves[n][0]) not in model.annotated
             and not model.is_reduce(leaves[n][0])]
    if cands and data.draw(st.booleans(), label="parallel"):
        n = data.draw(st.sampled_from(cands), label="parallel which")
        model.stage.parallel(leaves[n][0])
        model.annotated[id(leaves[n][0])] = "parallel"


def _reshape_valid(data, model: Model, n_ops: int):
    """Random splits, fuses and reorders that are all valid."""
    for _ in range(n_ops):
        op = data.draw(st.sampled_from(["split", "split", "fuse", "reorder"]), label="op")
        leaves = model.leaves
        if op == "split":
            n = data.draw(st.integers(0, len(leaves) - 1), label="split which")
            ext = leaves[n][1]
            how = data.draw(st.sampled_from(["factor", "nparts"]), label="split how")
            val = data.draw(st.integers(1, max(1, ext + 2)), label="split value")
            model.split(n, **{how: val})
        elif op == "fuse":
            pairs = [n for n in range(len(leaves) - 1)
                     if model.is_reduce(leaves[n][0]) == model.is_reduce(leaves[n + 1][0])]
            if pairs:
                model.fuse(data.draw(st.sampled_from(pairs), label="fuse which"))
        else:
            if len(leaves) < 2:
                continue
            positions = data.draw(st.lists(st.integers(0, len(leaves) - 1), min_size=2,
                                           max_size=len(leaves), unique=True), label="reorder which")
            perm = data.draw(st.permutations(range(len(positions))), label="reorder perm")
            model.reorder(positions, perm)


@SETTINGS
@given(shape=st.sampled_from(SHAPES), data=st.data())
def test_random_valid_schedule_matches_numpy(shape, data):
    M, K, N = shape
    A, B, C = matmul(M, K, N)
    s = te.create_schedule(C.op)
    use_cache = data.draw(st.booleans(), label="cache_write")
    unroll_budget = [1]
    if use_cache:
        CC = s.cache_write(C, "local")
        cmodel = Model(s[C], C.op.axis, (), {C.op.axis[0]: M, C.op.axis[1]: N})
        _reshape_valid(data, cmodel, data.draw(st.integers(0, 4), label="n ops C"))
        at = data.draw(st.integers(0, len(cmodel.leaves) - 1), label="compute_at loop")
        # the cache nest runs once per iteration of the chosen loop (and of the loops outside it)
        s[CC].compute_at(s[C], cmodel.leaves[at][0])
        cc_op = s[CC].op
        model = Model(s[CC], cc_op.axis, cc_op.reduce_axis,
                      {cc_op.axis[0]: M, cc_op.axis[1]: N, cc_op.reduce_axis[0]: K})
        # annotate the copy stage too (an annotated attach loop must still work: a vectorized
        # loop holding an allocation falls back to serial, a parallel one gets a cache per thread)
        _annotate_valid(data, cmodel, unroll_budget)
    else:
        model = Model(s[C], C.op.axis, C.op.reduce_axis,
                      {C.op.axis[0]: M, C.op.axis[1]: N, C.op.reduce_axis[0]: K})
    _reshape_valid(data, model, data.draw(st.integers(0, 5), label="n ops"))
    _annotate_valid(data, model, unroll_budget)

    a, b, ref = inputs(M, K, N)
    f = te.build(s, [A, B, C])
    c = np.full((M, N), np.nan, dtype=np.float32)
    f(a, b, c)
    np.testing.assert_allclose(c, ref, rtol=1e-4, atol=1e-5, err_msg=str(s))

    # the recorded steps replay to the same schedule
    s2 = te.replay(te.create_schedule(C.op), s.steps)
    assert s2.hash() == s.hash()
    assert str(s2) == str(s)
    assert str(te.lower(s2, [A, B, C])) == str(te.lower(s, [A, B, C]))


# ------------------------------------------------------------------ arbitrary (maybe invalid) schedules

FACTORS = st.one_of(st.integers(-2, 30), st.sampled_from([None, 1.5, True, "4"]))


def _unrolled_bodies(stmt) -> int:
    """The largest number of copies full unrolling makes of any statement."""
    from te.stmt import For, stmt_children
    kids = stmt_children(stmt)
    inner = max((_unrolled_bodies(k) for k in kids), default=1)
    if isinstance(stmt, For) and stmt.kind is te.ForKind.UNROLLED:
        return inner * int(stmt.extent.value)
    return inner


def _random_primitive(data, s, stages, all_axes):
    """Apply one random primitive with random (possibly wrong) arguments."""
    stage = data.draw(st.sampled_from(stages), label="stage")
    axes = all_axes(stage)
    ax = st.sampled_from(axes)
    prim = data.draw(st.sampled_from(["split", "split", "nparts", "fuse", "reorder", "vectorize",
                                      "unroll", "parallel", "compute_at", "compute_inline",
                                      "compute_root", "tile"]), label="primitive")
    if prim == "split":
        stage.split(data.draw(ax), factor=data.draw(FACTORS, label="factor"))
    elif prim == "nparts":
        stage.split(data.draw(ax), nparts=data.draw(FACTORS, label="nparts"))
    elif prim == "fuse":
        stage.fuse(*data.draw(st.lists(ax, min_size=2, max_size=3), label="fuse axes"))
    elif prim == "reorder":
        stage.reorder(*data.draw(st.lists(ax, min_size=1, max_size=4), label="reorder axes"))
    elif prim == "tile":
        stage.tile(data.draw(ax), data.draw(ax), data.draw(FACTORS), data.draw(FACTORS))
    elif prim in ("vectorize", "unroll", "parallel"):
        getattr(stage, prim)(data.draw(ax, label=prim))
    elif prim == "compute_at":
        parent = data.draw(st.sampled_from(stages), label="parent")
        stage.compute_at(parent, data.draw(st.sampled_from(all_axes(parent)), label="at"))
    else:
        getattr(stage, prim)()


@SETTINGS
@given(shape=st.sampled_from(SHAPES[:3]), data=st.data())
def test_random_schedule_is_correct_or_raises_schedule_error(shape, data):
    M, K, N = shape
    A, B, C = matmul(M, K, N)
    # an elementwise consumer gives compute_at / compute_inline something to do
    D = te.compute((M, N), lambda i, j: C[i, j] * 2.0 + 1.0, name="D")
    s = te.create_schedule(D.op)
    if data.draw(st.booleans(), label="cache_write"):
        s.cache_write(C, "local")
    stages = [st_ for st_ in s.stages if isinstance(st_.op, te.ComputeOp)]

    def all_axes(stage):
        # leaves, stale (already split) axes and axes of the other stages
        own = list(stage.all_iter_vars)
        other = [iv for x in stages if x is not stage for iv in x.all_iter_vars]
        return own + other[:3]

    for _ in range(data.draw(st.integers(1, 8), label="n primitives")):
        try:
            _random_primitive(data, s, stages, all_axes)
        except te.ScheduleError:
            pass

    a, b, ref = inputs(M, K, N)
    try:
        func = te.lower(s, [A, B, D])
    except te.ScheduleError:
        return
    if _unrolled_bodies(func.body) > 512:
        return      # valid, but too slow to compile in a unit test
    f = te.build(func)
    d = np.full((M, N), np.nan, dtype=np.float32)
    f(a, b, d)
    np.testing.assert_allclose(d, ref * 2 + 1, rtol=1e-4, atol=1e-4, err_msg=str(s))


@pytest.mark.parametrize("shape", SHAPES)
def test_default_schedule_each_shape(shape):
    M, K, N = shape
    A, B, C = matmul(M, K, N)
    s = te.create_schedule(C.op)
    a, b, ref = inputs(M, K, N)
    c = np.empty((M, N), np.float32)
    te.build(s, [A, B, C])(a, b, c)
    np.testing.assert_allclose(c, ref, rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------ random schedules of a pipeline

def _pipeline(H, W):
    X = te.placeholder((H, W), name="X")
    Bx = te.compute((H, W - 2), lambda y, x: X[y, x] + X[y, x + 1] * 2.0 + X[y, x + 2], name="Bx")
    By = te.compute((H - 2, W - 2), lambda y, x: Bx[y, x] - Bx[y + 1, x] * 0.5 + Bx[y + 2, x],
                    name="By")
    k = te.reduce_axis((0, W - 2), name="k")
    R = te.compute((H - 2,), lambda y: te.sum(By[y, k] * By[y, k], axis=k), name="R")
    Out = te.compute((H - 2, W - 2), lambda y, x: By[y, x] / (R[y] + 1.0), name="Out")
    return X, Bx, By, R, Out


def _pipeline_ref(x):
    x = x.astype(np.float64)
    bx = x[:, :-2] + x[:, 1:-1] * 2 + x[:, 2:]
    by = bx[:-2] - bx[1:-1] * 0.5 + bx[2:]
    return by / ((by * by).sum(axis=1)[:, None] + 1)


@settings(max_examples=40, deadline=None, derandomize=True, print_blob=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(shape=st.sampled_from([(12, 11), (9, 17), (16, 16)]), data=st.data())
def test_random_pipeline_schedule(shape, data):
    """stencil -> stencil -> row reduction -> normalise, with random primitives on every stage
    (including compute_at / compute_inline / compute_root): correct or ScheduleError."""
    H, W = shape
    X, Bx, By, R, Out = _pipeline(H, W)
    s = te.create_schedule(Out.op)
    stages = [s[Bx], s[By], s[R], s[Out]]
    for _ in range(data.draw(st.integers(1, 10), label="n primitives")):
        stg = data.draw(st.sampled_from(stages), label="stage")
        prim = data.draw(st.sampled_from(["split", "reorder", "fuse", "vectorize", "parallel", "unroll",
                                          "compute_at", "compute_inline", "compute_root"]), label="prim")
        leaves = list(stg.leaf_iter_vars)
        try:
            if prim == "split":
                stg.split(data.draw(st.sampled_from(leaves)), factor=data.draw(st.integers(1, 9)))
            elif prim == "reorder":
                stg.reorder(*data.draw(st.permutations(leaves)))
            elif prim == "fuse":
                if len(leaves) >= 2:
                    p = data.draw(st.integers(0, len(leaves) - 2))
                    stg.fuse(leaves[p], leaves[p + 1])
            elif prim in ("vectorize", "parallel", "unroll"):
                getattr(stg, prim)(data.draw(st.sampled_from(leaves)))
            elif prim == "compute_at":
                parent = data.draw(st.sampled_from(stages), label="parent")
                stg.compute_at(parent, data.draw(st.sampled_from(parent.leaf_iter_vars), label="at"))
            else:
                getattr(stg, prim)()
        except te.ScheduleError:
            pass
    try:
        func = te.lower(s, [X, Out])
    except te.ScheduleError:
        return
    if _unrolled_bodies(func.body) > 512:
        return
    f = te.build(func)
    x = np.random.default_rng(H * W).uniform(-1, 1, (H, W)).astype(np.float32)
    out = np.full((H - 2, W - 2), np.nan, np.float32)
    f(x, out)
    np.testing.assert_allclose(out, _pipeline_ref(x), rtol=1e-4, atol=1e-5, err_msg=str(s))
