"""The direct 1x1 conv's NCHW output stage on rows shorter than a register (ResNet's 14x14 and
7x7 maps): accumulator rows read as vectors of channels and transposed (te/codegen_rows.py), in
both of its loop structures (a tile of registers: pack_at "root"; a channel block's whole map:
"oc_block"), with the residual add + ReLU a model fuses; answers against numpy."""
from __future__ import annotations

import numpy as np
import pytest

import autotune
import te
from te import ops
from te.ops import registry
from te.ops.registry import ConvWorkload
from te.target import parse

from .conv_reference import conv_ref


AVX512 = "llvm -mcpu=skylake-avx512"


def _conv_sum_relu(C: int, H: int, K: int, overrides: dict, target):
    """The direct conv (pre-packed weights) with bias, residual add and ReLU for target, by
    overrides of its template's default config; returns the function, its implementation,
    workload and config."""
    impl = registry.IMPLEMENTATIONS["conv2d.direct"]
    wl = ConvWorkload((1, C, H, H), (K, C, 1, 1), (1, 1), (0, 0, 0, 0))
    task = autotune.create_task(impl.template, impl.args(wl), target)
    sp = task.config_space
    cfg = sp.default_with(overrides)
    assert sp.valid(cfg.index), cfg          # the register tile fits the target's registers
    x, w = impl.placeholders(wl, cfg, target, True)
    b = te.placeholder((K,), name="b")
    r = te.placeholder((1, K, H, H), name="r")
    y = ops.relu(ops.add(impl.compute([x, w, b], wl, cfg, target, True), r))
    s = ops.schedule([y], target, anchor_schedule=lambda s, out, final: impl.schedule(s, out, final, cfg, target))
    return te.build(s, [x, w, b, r, y], target=target), impl, wl, cfg


@pytest.mark.parametrize("target,C,H,K,overrides", [
    # register tiles of AVX-512's 28 accumulators: 4 vectors x 7 pixels, 2 x 14, 2 x 7 x 2 rows
    (AVX512, 32, 7, 128, {"tile_oc": 64, "tile_ow": [-1, 7], "tile_oh": [-1, 1], "pack_at": "oc_block"}),
    (AVX512, 32, 7, 128, {"tile_oc": 64, "tile_ow": [-1, 7], "tile_oh": [-1, 1], "pack_at": "root"}),
    # channel pairs (direct_defaults.paired_channels) with tile_ic 2 and an odd 1
    (AVX512, 32, 7, 128, {"tile_oc": 64, "tile_ow": [-1, 7], "tile_oh": [-1, 1], "tile_ic": [-1, 2]}),
    (AVX512, 32, 7, 128, {"tile_oc": 64, "tile_ow": [-1, 7], "tile_oh": [-1, 1], "tile_ic": [-1, 1]}),
    (AVX512, 16, 14, 64, {"tile_oc": 32, "tile_ow": [-1, 14], "tile_oh": [-1, 1], "pack_at": "root"}),
    (AVX512, 16, 14, 64, {"tile_oc": 32, "tile_ow": [-1, 7], "tile_oh": [-1, 2], "pack_at": "oc_block"}),
    # the host's own default register tile (with AVX-512, the ones above), in both loop structures
    (None, 32, 7, 128, {"pack_at": "oc_block"}),
    (None, 32, 7, 128, {"pack_at": "root"}),
    (None, 32, 7, 128, {"tile_ic": [-1, 2]}),
    (None, 32, 7, 128, {"tile_ic": [-1, 1]}),
    (None, 16, 14, 64, {"pack_at": "root"}),
    (None, 16, 14, 64, {"pack_at": "oc_block"}),
])
def test_short_rows_with_a_residual_match_numpy(target, C, H, K, overrides):
    target = parse(target)
    f, impl, wl, cfg = _conv_sum_relu(C, H, K, overrides, target)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((1, C, H, H)).astype(np.float32)
    w = rng.standard_normal((K, C, 1, 1)).astype(np.float32)
    b = rng.standard_normal(K).astype(np.float32)
    r = rng.standard_normal((1, K, H, H)).astype(np.float32)
    out = np.full((1, K, H, H), np.nan, np.float32)
    f(x, impl.pack_weight(w, wl, cfg, target), b, r, out)
    want = np.maximum(conv_ref(x, w) + b[:, None, None] + r, 0)
    np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-4)
