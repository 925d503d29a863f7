"""Sketch rules: every random annotation (and mutation) is a valid schedule that computes the workload."""
from __future__ import annotations

import math
import random

import numpy as np
import pytest

import autotune
import te
from autotune.auto_scheduler import SketchPolicy
from autotune.auto_scheduler.sketch import divisors

from . import auto_workloads as wl


def _numpy(task, ins):
    name = task.name
    if name == "as_matmul":
        return ins[0] @ ins[1]
    if name == "as_dense_relu":
        return np.maximum(ins[0] @ ins[1].T + ins[2], 0)
    if name == "as_conv2d":
        x, w = ins
        R, S = w.shape[2:]
        xp = np.pad(x, ((0, 0), (0, 0), (R // 2, R // 2), (S // 2, S // 2)))
        win = np.lib.stride_tricks.sliding_window_view(xp, (R, S), axis=(2, 3))    # n c y x r s
        return np.einsum("ncyxrs,kcrs->nkyx", win, w)
    if name == "as_softmax":
        e = np.exp(ins[0] - ins[0].max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)
    return ins[0].sum(keepdims=True)


CASES = [(wl.as_matmul, (32, 48, 16)), (wl.as_dense_relu, (16, 32, 24)), (wl.as_softmax, (12, 64)),
         (wl.as_total, (256,)), (wl.as_conv2d, (1, 8, 10, 16, 16, 3, 3))]


@pytest.mark.parametrize("func,args", CASES, ids=[c[0].__name__ for c in CASES])
def test_random_and_mutated_schedules_match_numpy(func, args):
    task = autotune.create_task(func, args)
    policy = SketchPolicy(task)
    rng = random.Random(7)
    data = np.random.default_rng(0)
    ins = [data.standard_normal(t.shape).astype(np.float32) for t in task.tensors[:-1]]
    want = _numpy(task, ins)
    seen = set()
    p = policy.sample(rng)
    for k in range(6):
        p = policy.mutate(p, rng) if k % 2 else policy.sample(rng)
        s, tensors = policy.apply(p)
        seen.add(s.hash())
        out = np.zeros(want.shape, np.float32)
        te.build(s, tensors)(*ins, out)
        np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-4)
        again = te.replay(task.schedule(), s.to_json())      # the steps alone make the schedule
        assert str(te.lower(again, tensors)) == str(te.lower(s, tensors))
    assert len(seen) > 1, "random annotation gives different schedules"


def _kinds_steps(func, args, **fixed):
    task = autotune.create_task(func, args)
    policy = SketchPolicy(task, threads=2)
    p = policy.sample(random.Random(1))
    p.update(fixed)
    s, _ = policy.apply(p)
    return policy, [st.kind + ":" + st.stage for st in s.steps]


def test_rules_tile_with_cache_write_or_fuse_the_reader():
    policy, steps = _kinds_steps(wl.as_matmul, (64, 64, 64), **{"pack:C": 1, "packa:C": False})
    assert policy.kinds(policy.facts["C"]) == ["tile"], "a big matmul is tiled, never rfactor'd"
    assert {"cache_write:C", "parallel:C", "vectorize:C", "vectorize:C.local",
            "compute_at:C.local"} <= set(steps)
    assert {"cache_read:B", "compute_at:B.global", "vectorize:B.global"} <= set(steps), \
        "B, the operand of the vector loads, is copied per tile; A is not"
    assert "cache_read:A" not in steps
    policy, steps = _kinds_steps(wl.as_dense_relu, (64, 64, 64), **{"kind:D": "tile"})
    assert "cache_write:D" not in steps, "the elementwise chain owns the tile: no accumulator copy"
    assert {"compute_inline:E", "compute_at:D", "parallel:R", "vectorize:R"} <= set(steps)


def test_rules_rfactor_plain_reductions_and_small_spatial_ones():
    policy, steps = _kinds_steps(wl.as_softmax, (12, 64), **{"kind:mx": "rfactor", "rf:mx": 16})
    assert policy.kinds(policy.facts["mx"]) == ["plain", "rfactor"]
    assert {"rfactor:mx", "vectorize:mx.rf", "compute_at:mx.rf"} <= set(steps)
    assert "inline:ex" in " ".join(policy.sample(random.Random(0))), "exp with two readers: inlining is a choice"
    policy, steps = _kinds_steps(wl.as_total, (1024,), **{"kind:S": "rfactor"})
    assert "rfactor:S" in steps


def test_tiles_divide_and_leave_parallel_work():
    task = autotune.create_task(wl.as_matmul, (256, 512, 128))
    policy = SketchPolicy(task, threads=2)
    rng = random.Random(3)
    for _ in range(50):
        p = policy.mutate(policy.sample(rng), rng)
        (a1, a2, a3), (b1, b2, b3) = p["tile:C:0"], p["tile:C:1"]
        # rows may overhang only where the last row tile is padded (te's overhang clamp)
        assert 256 % (a1 * a2 * a3) == 0 or p["pad:C"]
        assert 512 % (b1 * b2 * b3) == 0
        assert b3 <= 64 and a3 <= 16
        assert (256 // (a1 * a2 * a3)) * (512 // (b1 * b2 * b3)) >= 4 or p["pad:C"], \
            "the parallel loop feeds 2 threads"
        r1, r2 = p["rtile:C:0"]
        assert 128 % (r1 * r2) == 0 and r2 <= 16
    assert divisors(12) == [1, 2, 3, 4, 6, 12]


@pytest.mark.parametrize("target,lanes", [("llvm -mcpu=skylake-avx512", 16), ("llvm -mcpu=haswell", 8)])
def test_default_and_seeds_are_register_tiles_of_the_target(target, lanes):
    task = autotune.create_task(wl.as_matmul, (256, 512, 512), target=target)
    policy = SketchPolicy(task, threads=2)
    seeds = policy.seeds()
    assert seeds[0] == policy.default_params() and len(seeds) >= 4
    regs = task.target.acc_vectors
    for p in seeds:
        (_, _, mr), (_, _, nr) = p["tile:C:0"], p["tile:C:1"]
        assert nr % lanes == 0 and mr * (nr // lanes) <= regs, (mr, nr)
        assert p["pack:C"] in (2, 3) or p == policy.register_local(seeds[0]), "B packed, but where B is read in place"
    (_, _, mr), (_, _, nr) = seeds[0]["tile:C:0"], seeds[0]["tile:C:1"]
    # two vectors wide; rows: the most dividing 256 that 28 (AVX-512) or 12 (AVX2) accumulators allow
    assert (mr, nr) == {16: (8, 32), 8: (4, 16)}[lanes]
    s, tensors = policy.apply(seeds[0])     # the panel is copied in whole vectors of the target
    text = str(te.lower(s, tensors, "f"))
    assert f"ax1.inner in range({lanes}):  # vectorized" in text
    rng = random.Random(5)
    for _ in range(40):            # random and mutated register tiles fit the registers too
        p = policy.mutate(policy.sample(rng), rng)
        rows, cols = p["tile:C:0"][2], p["tile:C:1"][2]
        assert rows * -(-cols // lanes) <= regs or rows == 1


def _check_matmul(s, tensors):
    data = np.random.default_rng(1)
    ins = [data.standard_normal(t.shape).astype(np.float32) for t in tensors[:-1]]
    out = np.zeros(tensors[-1].shape, np.float32)
    te.build(s, tensors)(*ins, out)
    np.testing.assert_allclose(out, ins[0] @ ins[1], rtol=1e-4, atol=1e-4)


def test_panel_pack_copies_the_vector_operand_per_column_of_register_tiles():
    task = autotune.create_task(wl.as_matmul, (64, 128, 96))
    policy = SketchPolicy(task, threads=2)
    p = policy.default_params()
    p.update({"tile:C:0": (1, 2, 8), "tile:C:1": (1, 2, 32), "rtile:C:0": (6, 4), "pack:C": 2})
    s, tensors = policy.apply(p)
    text = str(te.lower(s, tensors, "f"))
    assert "B.global: float32[768]" in text and "shape (24, 32)" in text, \
        "a panel of 24 reduction steps x one 32-wide register tile, contiguous"
    _check_matmul(s, tensors)


def test_row_pack_copies_the_broadcast_operand_per_reduction_block():
    task = autotune.create_task(wl.as_matmul, (64, 128, 96))
    policy = SketchPolicy(task, threads=2)
    p = policy.default_params()
    p.update({"tile:C:0": (1, 2, 8), "tile:C:1": (1, 2, 32), "rtile:C:0": (4, 4), "packa:C": True})
    s, tensors = policy.apply(p)
    steps = [st.kind + ":" + st.stage for st in s.steps]
    assert {"cache_read:A", "compute_at:A.global", "vectorize:A.global"} <= set(steps)
    text = str(te.lower(s, tensors, "f"))
    assert "A.global: float32[256]" in text and "shape (16, 16)" in text, \
        "the tile's 16 rows x one reduction block of 16, rows 16 apart"
    _check_matmul(s, tensors)
    dense = SketchPolicy(autotune.create_task(wl.as_dense_relu, (16, 32, 24)), threads=2)
    q = {**dense.default_params(), "kind:D": "tile", "packa:D": True}
    steps = [st.kind + ":" + st.stage for st in dense.apply(q)[0].steps]
    assert "cache_read:A" in steps and "cache_read:W" not in steps, \
        "W[j, k] is read along the vector axis: not a row operand"


@pytest.mark.parametrize("caches,kc", [("-l1d=32K -l2=1M", 128), ("-l1d=48K -l2=2M", 256)])
def test_blockings_come_from_the_targets_caches(caches, kc):
    task = autotune.create_task(wl.as_matmul, (1024, 1024, 1024), target=f"llvm -mcpu=skylake-avx512 {caches}")
    policy = SketchPolicy(task, threads=2)
    l1, l2 = task.target.caches.l1d, task.target.caches.l2
    for p in policy.seeds():
        (_, s2, mr), (_, c2, nr), (r1, r2) = p["tile:C:0"], p["tile:C:1"], p["rtile:C:0"]
        assert r1 * r2 * nr * 4 <= 0.75 * l1, "B's panel [kc, nr] stays in L1"
        assert s2 * mr * r1 * r2 * 4 <= 0.25 * l2 and s2 * mr * c2 * nr * 4 <= 0.25 * l2, \
            "A's block and the tile's accumulators take a quarter of L2 each"
    assert math.prod(policy.default_params()["rtile:C:0"]) == kc
    assert any(p["packa:C"] for p in policy.seeds()) and not policy.default_params()["packa:C"]


def test_rows_rule_computes_a_softmax_a_row_at_a_time():
    task = autotune.create_task(wl.as_softmax, (12, 64))
    policy = SketchPolicy(task, threads=2)
    assert policy.rows_output == "Y"
    p = policy.default_params()
    assert p["rows:Y"] and p["kind:mx"] == p["kind:sm"] == "rfactor"
    s, tensors = policy.apply(p)
    text = str(te.lower(s, tensors, "f"))
    assert p["rowblock:Y"] == 4
    assert text.count("# parallel") == 1 and "ex: float32[256]" in text, "one parallel loop, 4 rows of exp"
    x = np.random.default_rng(2).standard_normal((12, 64)).astype(np.float32)
    out = np.zeros_like(x)
    te.build(s, tensors)(x, out)
    np.testing.assert_allclose(out, _numpy(task, [x]), rtol=1e-4, atol=1e-5)
    matmul = SketchPolicy(autotune.create_task(wl.as_dense_relu, (16, 32, 24)), threads=2)
    assert matmul.rows_output is None, "a stage to tile: no rows rule"


def test_rows_rule_keeps_a_rows_scale_scalar():
    task = autotune.create_task(wl.as_layernorm, (8, 48))
    policy = SketchPolicy(task, threads=2)
    p = policy.default_params()
    assert policy.rows_output == "Y" and p["rows:Y"] and p["inline:rstd"] is False
    s, tensors = policy.apply(p)
    text = str(te.lower(s, tensors, "f"))
    start = text.index("# produce rstd")
    produce = text[start:text.index("rstd[", start)]        # the loops around rstd's store
    assert "rstd: float32[4]" in text and "vectorized" not in produce and "if " not in produce, \
        "the scale of a block of 4 rows: one scalar each, its row loop not vectorized"
    x = np.random.default_rng(3).standard_normal((8, 48)).astype(np.float32)
    out = np.zeros_like(x)
    te.build(s, tensors)(x, out)
    want = (x - x.mean(1, keepdims=True)) / np.sqrt(x.var(1, keepdims=True) + 1e-5)
    np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-4)


def test_padded_register_tiles_where_the_registers_allow_more_rows_than_divide():
    task = autotune.create_task(wl.as_matmul, (1024, 1024, 1024), target="llvm -mcpu=skylake-avx512")
    policy = SketchPolicy(task, threads=2)
    padded = {(p["tile:C:0"][2], p["tile:C:1"][2]) for p in policy.seeds() if p["pad:C"]}
    assert padded == {(6, 64), (14, 32)}, "6 x 4 and 14 x 2 registers: 1024 rows divide by neither"
    for p in policy.seeds():
        if p["pad:C"]:
            t = math.prod(p["tile:C:0"])
            assert -(-1024 // t) * t - 1024 < p["tile:C:0"][2] * 3, "little padding: the blocks share the rows"
    small = SketchPolicy(autotune.create_task(wl.as_matmul, (64, 128, 96)), threads=2)
    p = small.default_params()
    p.update({"tile:C:0": (1, 2, 6), "tile:C:1": (1, 2, 32), "rtile:C:0": (4, 4), "pad:C": True,
              "packa:C": True})                     # 64 rows in tiles of 12: the last one 8 past the end
    s, tensors = small.apply(p)
    text = str(te.lower(s, tensors, "f"))
    update = text[text.index("for k.outer"):text.index("for i.inner.inner")]    # C.local's reduction
    assert "min(" in update and "if " not in update, "the padded rows are clamped, not guarded"
    _check_matmul(s, tensors)


def test_partial_lanes_of_a_short_row_are_folded_in_halves():
    task = autotune.create_task(wl.as_softmax, (12, 64))
    policy = SketchPolicy(task, threads=2)
    p = policy.default_params()
    assert p["fold:mx"] and p["fold:sm"], "64 in 16 (8) lanes: 4 (8) steps, short next to 16 (8) scalar ones"
    s, tensors = policy.apply(p)
    text = str(te.lower(s, tensors, "f"))
    lanes = task.target.lanes()                       # halved down to 2: rf2 holds lanes / 2, the last 2
    last = lanes.bit_length() - 1
    assert f"allocate mx.rf2: float32[{lanes // 2}]" in text and f"allocate mx.rf{last}: float32[2]" in text
    again = te.replay(task.schedule(), s.steps)
    assert str(te.lower(again, tensors, "f")) == text, "the folds replay from the steps"
    x = np.random.default_rng(2).standard_normal((12, 64)).astype(np.float32)
    out = np.zeros_like(x)
    te.build(s, tensors)(x, out)
    np.testing.assert_allclose(out, _numpy(task, [x]), rtol=1e-4, atol=1e-5)
    long_rows = SketchPolicy(autotune.create_task(wl.as_layernorm, (8, 768)), threads=2)
    assert not any(v for k, v in long_rows.default_params().items() if k.startswith("fold:")), \
        "768 in 16 lanes: 48 steps, the fold does not pay"


def test_a_seed_keeps_the_accumulators_of_one_register_tile():
    task = autotune.create_task(wl.as_matmul, (64, 128, 96))
    policy = SketchPolicy(task, threads=2)
    seed = policy.seeds()[1]
    assert seed == policy.register_local(policy.default_params())
    assert seed["at:C"] == 1 and seed["pack:C"] == 0 and all(seed[f"tile:C:{d}"][1] == 1 for d in (0, 1))
    s, tensors = policy.apply(seed)
    text = str(te.lower(s, tensors, "f"))
    mr, nr = seed["tile:C:0"][2], seed["tile:C:1"][2]
    assert f"allocate C.local: float32[{mr * nr}]" in text and "B.global" not in text, \
        "one register tile of accumulators, B read in place"
    _check_matmul(s, tensors)
    big = SketchPolicy(autotune.create_task(wl.as_matmul, (1024, 1024, 1024)), threads=2)
    assert big.register_local(big.default_params()) not in big.seeds(), \
        "B's 1024 x 32 column is 128 KiB: read in place it leaves L1"


def test_panel_seed_packs_each_column_panel_once_and_sums_the_whole_reduction_in_registers():
    task = autotune.create_task(wl.as_matmul, (64, 128, 96), target="llvm -mcpu=skylake-avx512")
    policy = SketchPolicy(task, threads=2)
    panels = [p for p in policy.seeds() if p["pack:C"] == 3]
    assert {(p["tile:C:0"][2], p["tile:C:1"][2], p["pad:C"]) for p in panels} == \
        {(8, 32, False), (4, 64, False), (6, 64, True)}, "2 and 4 vectors wide, and 6 x 4 padded"
    assert panels[0]["tile:C:0"] == (8, 1, 8) and panels[0]["tile:C:1"] == (1, 1, 32), \
        "four panels of 32 columns keep 2 threads busy: each takes all 64 rows, B is packed once"
    assert panels[1]["tile:C:0"] == (8, 1, 4), "two panels of 64: each split in two blocks of rows"
    for p in panels:
        s, tensors = policy.apply(p)
        text = str(te.lower(s, tensors, "f"))
        mr, nr = p["tile:C:0"][2], p["tile:C:1"][2]
        assert f"B.global: float32[{96 * nr}]" in text, "a panel of the whole reduction x one register tile"
        parallel = text.index("# parallel")
        assert text.count("allocate B.global") == 1 and text.index("allocate B.global") > parallel, \
            "packed by each parallel task"
        tile = text[text.index(f"allocate C.local: float32[{mr * nr}]"):]
        assert tile.index("for k.outer") < tile.index(" C["), \
            "one register tile of accumulators over the whole reduction, then stored"
        assert text.count("for i.inner.outer") == 1 and text.count("for k.outer") == 1
        _check_matmul(s, tensors)
        again = te.replay(task.schedule(), s.to_json())
        assert str(te.lower(again, tensors, "f")) == text
    huge = SketchPolicy(autotune.create_task(wl.as_matmul, (64, 128, 1 << 16)), threads=2)
    assert not any(p["pack:C"] == 3 for p in huge.seeds()), "a 65536 x 32 panel is 8 MiB: no panel seed"
    with pytest.raises(te.ScheduleError, match=r"stage C: pack 3: a panel of 8192 KiB is larger than L2"):
        huge.apply({**huge.panel(huge.default_params(), 8, 32)})


def test_panel_seed_of_a_fused_dense_and_relu():
    task = autotune.create_task(wl.as_dense_relu, (16, 64, 48))
    policy = SketchPolicy(task, threads=2)
    p = next(p for p in policy.seeds() if p.get("pack:D") == 3)
    s, tensors = policy.apply(p)
    data = np.random.default_rng(4)
    ins = [data.standard_normal(t.shape).astype(np.float32) for t in tensors[:-1]]
    out = np.zeros(tensors[-1].shape, np.float32)
    te.build(s, tensors)(*ins, out)
    np.testing.assert_allclose(out, _numpy(task, ins), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("pack", [3, 4])
def test_random_schedules_with_the_whole_reduction_packed_match_numpy(pack):
    task = autotune.create_task(wl.as_matmul, (32, 48, 16))
    policy = SketchPolicy(task, threads=2)
    rng = random.Random(11)
    for _ in range(6):
        p = {**policy.sample(rng), "kind:C": "tile", "pack:C": pack}
        s, tensors = policy.apply(p)
        text = str(te.lower(s, tensors, "f"))
        cols, nr = math.prod(p["tile:C:1"]), p["tile:C:1"][2]
        assert (f"B.global: float32[{16 * cols}]  # global, shape (16, {cols})" if pack == 3 else
                f"B.global: float32[768]  # global, shape ({48 // nr}, 16, {nr})") in text, \
            "the task's columns over the whole reduction, or all of B in panels of the register tile"
        _check_matmul(s, tensors)


def test_row_block_seed_reads_b_packed_once_in_panels():
    task = autotune.create_task(wl.as_matmul, (256, 64, 2048), target="llvm -mcpu=skylake-avx512")
    policy = SketchPolicy(task, threads=2)
    (p,) = [p for p in policy.seeds() if p["pack:C"] == 4]
    assert p["tile:C:0"] == (4, 1, 8) and p["tile:C:1"] == (2, 1, 32), \
        "blocks of 32 rows (A's block: 256 KiB, a quarter of L2), each over both panels"
    s, tensors = policy.apply(p)
    text = str(te.lower(s, tensors, "f"))
    assert text.index("allocate B.global: float32[131072]  # global, shape (2, 2048, 32)") < text.index("# produce C")
    assert "in range(8):  # parallel" in text, "eight tasks of row blocks"
    _check_matmul(s, tensors)


def test_a_register_tile_wider_than_te_vectors_is_split_in_vectors():
    task = autotune.create_task(wl.as_matmul, (24, 128, 16), target="llvm -mcpu=skylake-avx512")
    policy = SketchPolicy(task, threads=2)
    p = policy.register_local(policy.default_params())
    p.update({"tile:C:0": (5, 1, 5), "pad:C": True, "tile:C:1": (1, 1, 128), "rtile:C:0": (2, 8)})
    s, tensors = policy.apply(p)
    text = str(te.lower(s, tensors, "f"))
    assert "range(64):  # vectorized" in text and "range(128):  # vectorized" not in text, \
        "a whole row of 128 outputs in two vectors of 64 lanes (te's widest), not one of 128"
    assert "allocate C.local: float32[640]" in text, "5 padded rows x 128 accumulators"
    _check_matmul(s, tensors)


def test_every_seed_of_a_batched_matmul_matches_numpy():
    task = autotune.create_task(wl.as_batch_matmul, (1, 3, 24, 16, 64), target="llvm -mcpu=skylake-avx512")
    policy = SketchPolicy(task, threads=2)
    seeds = policy.seeds()
    assert {(p["pack:Z"], p["at:Z"]) for p in seeds} >= {(2, 0), (0, 1), (3, 1)}, \
        "the default, B read in place per register tile, and B's panel packed by its task"
    data = np.random.default_rng(2)
    x, y = (data.standard_normal(t.shape).astype(np.float32) for t in task.tensors[:2])
    for p in seeds:
        s, tensors = policy.apply(p)
        out = np.zeros(tensors[-1].shape, np.float32)
        te.build(s, tensors)(x, y, out)
        np.testing.assert_allclose(out, x @ y, rtol=1e-4, atol=1e-4, err_msg=str(p))


def test_default_and_seeds_of_a_padded_3x3_conv_match_numpy():
    """Three reduction axes and a pad stage: the default schedule and every seed compute the conv."""
    task = autotune.create_task(wl.as_conv2d, (1, 8, 10, 16, 16, 3, 3))
    policy = SketchPolicy(task)
    data = np.random.default_rng(1)
    ins = [data.standard_normal(t.shape).astype(np.float32) for t in task.tensors[:-1]]
    want = _numpy(task, ins)
    assert policy.default_params()["kind:Y"] == "tile", "the conv reuses its inputs: the tiling rule applies"
    for p in [policy.default_params(), *policy.seeds()]:
        s, tensors = policy.apply(p)
        out = np.zeros(want.shape, np.float32)
        te.build(s, tensors)(*ins, out)
        np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-4)


def test_panels_at_the_root_only_where_the_tile_divides_the_operands_rows():
    """The conv's padded input rows (W + 2 = 14) take no panels of 8 or 16 pixels at the root
    (pack 4): sampled and mutated parameters copy the operand per tile instead, and every draw
    builds (a 1-D conv's draws had failed with "panel=7 must ... divide its last axis")."""
    task = autotune.create_task(wl.as_conv2d, (1, 4, 6, 12, 16, 3, 3))
    policy = SketchPolicy(task, threads=2)
    rng = random.Random(3)
    (f,) = [f for f in policy.facts.values() if f.reduce_ext]
    assert f.vector_widths == (14,)
    p = policy.sample(rng)
    for k in range(60):
        p = policy.mutate(p, rng) if k % 2 else policy.sample(rng)
        width = p[f"tile:{f.name}:{f.last}"][2]
        if p[f"pack:{f.name}"] == 4 and p.get(f"vaxis:{f.name}", f.last) == f.last:
            assert 14 % width == 0, (width, p)
        policy.apply(p)
