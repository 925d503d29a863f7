"""Ops build for the target they are given, not for the machine that builds them: an AVX2 target
(`llvm -mcpu=haswell`: 8 lanes, 16 vector registers) gets 8-lane vectors and register tiles that
fit 16 registers, whatever the host, and the kernels still match numpy on this host."""
from __future__ import annotations

import dataclasses
import random

import numpy as np
import pytest

import autotune
import te
from te import ops

from .conv_reference import conv_ref

HASWELL = te.target.parse("llvm -mcpu=haswell")
AVX512 = te.target.parse("llvm -mcpu=skylake-avx512")
TOL = dict(rtol=1e-4, atol=1e-4)
runs_here = pytest.mark.skipif("avx2" not in te.target.host().feature_set, reason="this CPU lacks AVX2")
CONV = ((1, 32, 28, 28), (64, 32, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1, "float32")


def vectors(lanes_wide: int, target: te.target.Target) -> int:
    return -(-lanes_wide // target.lanes())


def test_the_targets_registers():
    assert (HASWELL.lanes(), HASWELL.vector_registers, HASWELL.acc_vectors) == (8, 16, 12)
    assert (AVX512.lanes(), AVX512.vector_registers, AVX512.acc_vectors) == (16, 32, 28)


def test_a_target_carries_its_threads(monkeypatch):
    """host() and parse() give a target this process's threads (TILEWISE_NUM_THREADS first), read
    once; a Target refuses a count outside 1..MAX_THREADS in one line."""
    monkeypatch.setenv("TILEWISE_NUM_THREADS", "3")
    te.target.host.cache_clear()
    try:
        assert te.target.host().threads == 3 and te.target.parse("llvm -mcpu=haswell").threads == 3
        monkeypatch.setenv("TILEWISE_NUM_THREADS", "5")
        assert te.target.parse(None).threads == 3
    finally:
        te.target.host.cache_clear()
    assert te.target.Target("haswell", threads=4.0).threads == 4 and te.target.Target("haswell").threads == 1
    with pytest.raises(ValueError, match=r"^Target\('haswell'\) threads=0 must be at least 1; give 1 to 1024$"):
        te.target.Target("haswell", threads=0)


def test_ops_schedule_for_the_targets_threads():
    """The thread count that sizes split-K slices and parallel loops is the target's, not the host's."""
    one, many = (dataclasses.replace(HASWELL, threads=n) for n in (1, 16))
    A, B = te.placeholder((1, 4096), name="A"), te.placeholder((4096, 64), name="B")
    parts = {t.threads: ops.matmul(A, B, strategy="splitk", target=t).op.attrs["parts"] for t in (one, many)}
    assert parts == {1: 2, 16: 16}
    x = te.placeholder((4, 16, 256), name="x")
    y = ops.relu(x)
    leaves = {t.threads: len(ops.schedule([y], t)[y].leaf_iter_vars) for t in (one, many)}
    # 64 rows feed one thread; 16 threads also take the row's vector blocks into the parallel loop
    assert leaves[1] == leaves[16] + 1


def test_matmul_for_avx2_has_an_avx2_register_tile():
    A, B = te.placeholder((64, 64), name="A"), te.placeholder((64, 96), name="B")
    for target in (HASWELL, AVX512):
        at = ops.matmul(A, B, target=target).op.attrs
        assert at["bn"] == 2 * target.lanes()            # two vectors of the target wide
        assert at["bm"] * vectors(at["bn"], target) <= target.acc_vectors


def test_conv_for_avx2_has_an_avx2_register_tile():
    x, w = te.placeholder((1, 32, 28, 28), name="x"), te.placeholder((64, 32, 3, 3), name="w")
    at = ops.conv2d(x, w, padding=1, target=HASWELL).op.attrs       # direct_defaults.pair_block
    assert at["ocb"] == 16 and at["bh"] * at["bw"] * vectors(at["ocb"], HASWELL) <= 12
    at = ops.conv2d(x, w, padding=1, target=AVX512).op.attrs        # the measured AVX-512 block
    assert at["ocb"] == 32 and at["bh"] * at["bw"] * 2 <= 28


@pytest.mark.parametrize("name, args", [("conv2d_nchw", CONV), ("matmul", (64, 96, 64, "float32")),
                                        ("dense", (64, 96, 64, "float32"))])
def test_templates_take_the_tasks_target(name, args):
    space = autotune.create_task(name, args, target=HASWELL).config_space
    d = space.get(space.default_index())
    if name == "conv2d_nchw":
        assert d["tile_oc"].val == 16          # two 8-lane vectors: direct_defaults.pair_block
        tile = d["tile_oh"].size[-1] * d["tile_ow"].size[-1] * vectors(d["tile_oc"].val, HASWELL)
    else:
        assert d["bn"].val == 16
        tile = d["tile_y"].size[-1] * vectors(d["bn"].val, HASWELL)
    assert tile <= HASWELL.acc_vectors and space.valid(space.default_index())
    rng = random.Random(0)
    for _ in range(50):          # the tuner's proposals fit 16 registers too
        c = space.get(space.sample(rng))
        if name == "conv2d_nchw":
            assert c["tile_oh"].size[-1] * c["tile_ow"].size[-1] * vectors(c["tile_oc"].val, HASWELL) <= \
                max(12, 4 * vectors(c["tile_oc"].val, HASWELL))          # tile_budget's floor of 4 pixels
        else:
            assert c["tile_y"].size[-1] * vectors(c["bn"].val, HASWELL) <= 12


@runs_here
def test_avx2_kernels_use_8_lanes_and_match_numpy(rand):
    A, B = te.placeholder((64, 64), name="A"), te.placeholder((64, 96), name="B")
    C = ops.matmul(A, B, target=HASWELL)
    f = te.build(ops.schedule([C], HASWELL), [A, B, C], target=HASWELL)
    assert "ymm" in f.get_source("asm") and "zmm" not in f.get_source("asm")
    av, bv = rand(A.shape), rand(B.shape)
    out = np.zeros(C.shape, np.float32)
    f(av, bv, out)
    np.testing.assert_allclose(out, av @ bv, **TOL)

    x, w = te.placeholder((1, 32, 28, 28), name="x"), te.placeholder((64, 32, 3, 3), name="w")
    y = ops.conv2d(x, w, padding=1, target=HASWELL)
    f = te.build(ops.schedule([y], HASWELL), [x, w, y], target=HASWELL)
    assert "ymm" in f.get_source("asm") and "zmm" not in f.get_source("asm")
    xv, wv = rand(x.shape), rand(w.shape)
    out = np.zeros(y.shape, np.float32)
    f(xv, wv, out)
    np.testing.assert_allclose(out, conv_ref(xv, wv, pads=(1, 1, 1, 1)), **TOL)


@runs_here
def test_avx2_tasks_build_and_match_numpy(rand):
    task = autotune.create_task("conv2d_nchw", CONV, target=HASWELL)
    f = task.build(None)
    xv, wv = rand(CONV[0]), rand(CONV[1])
    out = np.zeros((1, 64, 28, 28), np.float32)
    f(xv, wv, out)
    np.testing.assert_allclose(out, conv_ref(xv, wv, pads=(1, 1, 1, 1)), **TOL)
