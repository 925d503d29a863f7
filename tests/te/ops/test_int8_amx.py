"""The AMX int8 GEMM (int8_matmul.py's AMX schedule, te/amx.py): weights packed 64-byte aligned,
odd shapes padded to whole tiles and equal to numpy's int64 matmul, built for a Sapphire Rapids
target whatever the host (the run itself only where the CPU has AMX)."""
from __future__ import annotations

import numpy as np
import pytest

import te
from te.ops import registry
from te.ops.conv_geometry import geometry
from te.ops.int8_conv2d import pack_weight_amx_direct_numpy, pack_weight_amx_numpy
from te.ops.int8_matmul import pack_weight_numpy
from te.target import Target, host, parse

SPR = Target("sapphirerapids")
HAS_AMX = {"amx-tile", "amx-int8"} <= host().feature_set


@pytest.mark.parametrize("shape,transpose_b", [((256, 96), False), ((40, 128), True), ((1024, 1024), False)])
def test_packed_int8_weights_start_on_a_cache_line(rng, shape, transpose_b):
    # a tile row (64 bytes) of a weight 16 bytes past a line, as numpy places large arrays,
    # reads two cache lines: the packers hand out aligned arrays
    w = rng.integers(-128, 128, shape, dtype=np.int8)
    p = pack_weight_numpy(w, 16, 4, transpose_b)
    assert p.ctypes.data % 64 == 0 and p.flags.c_contiguous
    b = w.T if transpose_b else w
    K, N = b.shape
    unpacked = p.transpose(0, 2, 1, 3).reshape(-1, K)[:N].T      # (No, L, Kq, G) -> (N, K) -> (K, N)
    np.testing.assert_array_equal(unpacked, b)


def test_amx_conv_weights_start_on_a_cache_line(rng):
    g1 = geometry((1, 128, 7, 7), (64, 128, 1, 1))
    g3 = geometry((1, 64, 9, 9), (32, 64, 3, 3), padding=1)
    for g, pack in ((g1, pack_weight_amx_numpy), (g3, pack_weight_amx_direct_numpy)):
        w = rng.integers(-128, 128, (g.K, g.C, g.R, g.S), dtype=np.int8)
        assert pack(w, g).ctypes.data % 64 == 0


def _kernel(wl, prepacked: bool):
    """(implementation, config, lowered function) of the AMX matmul/dense for wl on Sapphire Rapids."""
    impl = registry.IMPLEMENTATIONS[("dense" if wl.transpose_b else "matmul") + ".int8_amx"]
    assert impl.match(wl, SPR) is not None, wl
    cfg = impl.config(wl, SPR)
    s, args = impl.instantiate(cfg, impl.args(wl), SPR, prepacked=prepacked)
    return impl, cfg, te.lower(s, args)


# M, N and K not multiples of 16 / 64: rows, columns and the reduction padded to whole tiles
ODD = [(17, 40, 100, True, True), (50, 33, 130, False, True), (33, 70, 77, True, False), (64, 48, 200, False, False)]


@pytest.mark.parametrize("M,N,K,dense,prepacked", ODD)
def test_amx_gemm_of_odd_shapes_equals_numpy(rng, M, N, K, dense, prepacked):
    wl = registry.MatmulWorkload(M, N, K, "uint8", dense)
    impl, cfg, func = _kernel(wl, prepacked)
    if not HAS_AMX:
        pytest.skip("this CPU has no AMX (the codegen test below still builds it)")
    f = te.build(func, target=SPR)
    a = rng.integers(0, 256, (M, K), dtype=np.uint8)
    w = rng.integers(-128, 128, impl.weight_shape(wl), dtype=np.int8)
    a[0], w[..., 0] = 255, -128                      # the extreme products too
    c = np.zeros((M, N), np.int32)
    f(a, impl.pack_weight(w, wl, cfg, SPR) if prepacked else w, c)
    b = w.T if dense else w
    np.testing.assert_array_equal(c, a.astype(np.int64) @ b.astype(np.int64))


def test_amx_gemm_of_an_odd_k_compiles_to_tile_loads_and_tdpbusd():
    from te.build import optimize
    from te.codegen_llvm import codegen
    wl = registry.MatmulWorkload(40, 48, 100, "uint8", True)      # K 100: two tile steps, the second half zeros
    impl, cfg, func = _kernel(wl, prepacked=True)
    assert impl.placeholders(wl, cfg, SPR, True)[1].shape == (3, 32, 16, 4)
    asm = SPR.machine().emit_assembly(optimize(str(codegen([func], SPR).module), SPR))
    assert "tdpbusd" in asm and "tileloadd" in asm and "ldtilecfg" in asm


def test_packing_pads_k_to_whole_tiles_with_zeros(rng):
    w = rng.integers(-128, 128, (100, 20), dtype=np.int8)
    p = pack_weight_numpy(w, 16, 4, False, k_multiple=64)
    assert p.shape == (2, 32, 16, 4)
    full = p.transpose(0, 2, 1, 3).reshape(32, 128)           # (N padded, K padded)
    np.testing.assert_array_equal(full[:20, :100], w.T)
    assert not full[20:].any() and not full[:, 100:].any()
    with pytest.raises(ValueError, match="K = 100 is not a multiple of 8"):
        pack_weight_numpy(w, 16, 8, False)


@pytest.mark.parametrize("l2,M,N,K,chunk", [("2M", 1024, 1024, 1024, 0), ("2M", 512, 4096, 4096, 256),
                                            ("1M", 512, 4096, 4096, 128), ("1M", 1024, 1024, 1024, 512)])
def test_b_streams_in_column_chunks_that_fit_the_l2(l2, M, N, K, chunk):
    # B (K x N) is read once per row block: all of it while it fits the L2, else in chunks that do
    tgt = parse(f"llvm -mcpu=sapphirerapids -l1d=48K -l2={l2} -l3=32M")
    cfg = registry.IMPLEMENTATIONS["matmul.int8_amx"].config(registry.MatmulWorkload(M, N, K, "uint8"), tgt)
    assert (cfg["order"].val, cfg["chunk"].val) == ("rows_outer", chunk)


def test_a_gemm_in_column_chunks_equals_numpy(rng):
    # a 64 KiB L2: B (256 x 640) in chunks of 128 columns; none divides 520 columns (33 blocks of 16)
    tgt = parse("llvm -mcpu=sapphirerapids -l1d=48K -l2=64K -l3=1M")
    impl = registry.IMPLEMENTATIONS["matmul.int8_amx"]
    assert impl.config(registry.MatmulWorkload(40, 520, 256, "uint8"), tgt)["chunk"].val == 0
    wl = registry.MatmulWorkload(40, 640, 256, "uint8")
    cfg = impl.config(wl, tgt)
    assert cfg["chunk"].val == 128
    s, args = impl.instantiate(cfg, impl.args(wl), tgt, prepacked=True)
    func = te.lower(s, args)
    if not HAS_AMX:
        pytest.skip("this CPU has no AMX")
    f = te.build(func, target=tgt)
    a = rng.integers(0, 256, (40, 256), dtype=np.uint8)
    b = rng.integers(-128, 128, (256, 640), dtype=np.int8)
    c = np.zeros((40, 640), np.int32)
    f(a, impl.pack_weight(b, wl, cfg, tgt), c)
    np.testing.assert_array_equal(c, a.astype(np.int64) @ b.astype(np.int64))


@pytest.mark.parametrize("M,N,K,in_place", [(64, 48, 128, True), (96, 40, 192, True), (40, 48, 128, False),
                                            (64, 48, 100, False)])
def test_a_of_whole_tiles_is_loaded_in_place_else_copied_into_tiles(rng, M, N, K, in_place):
    wl = registry.MatmulWorkload(M, N, K, "uint8", False)
    impl, cfg, func = _kernel(wl, prepacked=True)
    assert ("atiles" not in str(func)) == in_place
    if not HAS_AMX:
        pytest.skip("this CPU has no AMX")
    f = te.build(func, target=SPR)
    a = rng.integers(0, 256, (M, K), dtype=np.uint8)
    b = rng.integers(-128, 128, (K, N), dtype=np.int8)
    c = np.zeros((M, N), np.int32)
    f(a, impl.pack_weight(b, wl, cfg, SPR), c)
    np.testing.assert_array_equal(c, a.astype(np.int64) @ b.astype(np.int64))


@pytest.mark.parametrize("case,tiles", [(((2, 128, 9, 9), (144, 128, 1, 1), (1, 1)), True),
                                        (((1, 192, 13, 12), (128, 192, 1, 1), (2, 2)), True),
                                        (((1, 128, 9, 9), (64, 128, 1, 1), (1, 1)), False)])
def test_amx_1x1_conv_packs_its_input_in_pixel_tiles_from_128_channels(rng, case, tiles):
    # 16 pixels x 64 channels of the packed input 1 KiB in a row (the GEMM's B layout), where at
    # least 128 output channels read each packed byte (amx_input_tiles says why)
    from .test_int8_conv2d import _conv, check
    wl = _conv(*case, (0, 0, 0, 0), (1, 1), groups=1, dtype="uint8")
    impl = registry.IMPLEMENTATIONS["conv2d.int8_gemm1x1_amx"]
    cfg = impl.config(wl, SPR)
    s, args = impl.instantiate(cfg, impl.args(wl), SPR, prepacked=True)
    assert ("xtiles" in str(te.lower(s, args))) == tiles
    if not HAS_AMX:
        pytest.skip("this CPU has no AMX")
    check(rng, wl, SPR, "conv2d.int8_gemm1x1_amx")
