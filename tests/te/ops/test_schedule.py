"""te/ops/schedule.py: the rule that splits a kernel's work by rows, and a conv it sends there
built and checked against numpy on two threads."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import te
from te.caches import Caches, KiB, MiB
from te.ops.conv2d import default_ocb, default_out_order, default_pack_at, default_tiles
from te.ops.conv_geometry import geometry
from te.ops.schedule import rows_split_pays
from te.target import host, parse

from .conv_reference import conv_ref

L2S = {"1M": Caches(32 * KiB, 1 * MiB, 32 * MiB), "2M": Caches(48 * KiB, 2 * MiB, 150 * MiB),
       "4M": Caches(48 * KiB, 4 * MiB, 64 * MiB)}
AVX512 = parse("llvm -mcpu=skylake-avx512")


def target(l2: str, threads: int):
    return dataclasses.replace(AVX512, caches=L2S[l2], threads=threads)


def conv1x1(C, K, H, rows, l2, threads):
    """rows_split_pays for a 1x1 conv C -> K on an H x H map with `rows` rows of tiles."""
    return rows_split_pays(4.0 * C * H * H, 4.0 * K * C, rows, target(l2, threads))


@pytest.mark.parametrize("l2", list(L2S))
def test_rows_where_the_input_outweighs_the_weights_and_a_share_fits_l2(l2):
    # SqueezeNet's squeeze convs at 13x13: 346 KB of input, 131 KB of weights
    assert conv1x1(512, 64, 13, 13, l2, 2) and conv1x1(512, 64, 13, 13, l2, 4)
    # ResNet-50's 1024 -> 256 at 14x14: 0.8 MB of input, 1 MB of weights: rows (an input byte
    # from the other core costs twice a weight byte); 256 -> 1024 (0.2 MB in) and the 7x7
    # stage's 2048 -> 512 (0.4 MB in, 4 MB of weights): channels
    assert conv1x1(1024, 256, 14, 14, l2, 2)
    assert not conv1x1(256, 1024, 14, 14, l2, 2) and not conv1x1(2048, 512, 7, 7, l2, 2)
    # one thread: no other core to read from, the caches model decides
    assert not conv1x1(512, 64, 13, 13, l2, 1)
    # fewer rows of tiles than threads: a band would be part of a row
    assert not conv1x1(512, 64, 13, 1, l2, 2)


def test_rows_only_while_a_threads_share_of_the_input_fits_half_its_l2():
    # 256 -> 64 at 56x56: 3.1 MiB of input, 1.6 MiB a thread on two, 0.8 MiB on four
    assert [conv1x1(256, 64, 56, 56, l2, 2) for l2 in L2S] == [False, False, True]
    assert [conv1x1(256, 64, 56, 56, l2, 4) for l2 in L2S] == [False, True, True]


def test_a_1x1_conv_split_by_rows_matches_numpy(rng):
    # the direct conv, as AVX-512 runs this 1x1 (16 registers run it as the GEMM: conv2d.as_matmul)
    t = dataclasses.replace(te.target.parse("llvm -mcpu=skylake-avx512"), threads=2, caches=host().caches)
    x = te.placeholder((1, 96, 13, 13), name="x")
    w = te.placeholder((32, 96, 1, 1), name="w")
    y = te.ops.conv2d(x, w, target=t)
    s = te.ops.schedule([y], t)
    text = str(te.lower(s, [x, w, y]))
    # rows of tiles outside the channel blocks in the one parallel loop
    assert "n.oh.outer.fused.k.outer.fused" in text and "# parallel" in text
    a = rng.standard_normal((1, 96, 13, 13)).astype(np.float32)
    b = rng.standard_normal((32, 96, 1, 1)).astype(np.float32)
    out = np.zeros((1, 32, 13, 13), np.float32)
    f = te.build(s, [x, w, y], target=t)
    f.set_num_threads(2)
    f(a, b, out)
    np.testing.assert_allclose(out, conv_ref(a, b), rtol=1e-4, atol=1e-4)


def test_a_1x1_conv_split_by_rows_packs_at_the_root():
    # packing per channel block would make every task a channel block again
    g = geometry((1, 1024, 14, 14), (256, 1024, 1, 1), (1, 1), 0, (1, 1), 1)
    for threads, order, pack in ((1, "oc_outer", "oc_block"), (2, "rows_outer", "root")):
        t = target("2M", threads)
        ocb = default_ocb(g, t)
        bh, bw = default_tiles(g, ocb, t)
        assert (default_out_order(g, ocb, bh, bw, t), default_pack_at(g, ocb, bh, bw, t)) == (order, pack)
