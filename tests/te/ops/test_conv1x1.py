"""The 1x1 GEMM conv with its input read in place (no pack stage) or packed: both match numpy."""
from __future__ import annotations

import numpy as np
import pytest

import autotune
import te

from .conv_reference import conv_ref


@pytest.mark.parametrize("xs, ws, stride", [((1, 24, 16, 16), (40, 24, 1, 1), 1),
                                            ((1, 16, 12, 12), (19, 16, 1, 1), 1),
                                            ((1, 16, 16, 16), (24, 16, 1, 1), 2)])
def test_the_input_read_in_place_or_packed(xs, ws, stride, rng):
    args = (xs, ws, (stride, stride), (0, 0, 0, 0), (1, 1), 1, "float32")
    task = autotune.create_task("conv2d_1x1_gemm", args)
    sp = task.config_space
    x = rng.standard_normal(xs).astype(np.float32)
    w = rng.standard_normal(ws).astype(np.float32)
    want = conv_ref(x, w, (stride, stride))
    seen = set()
    for i in range(len(sp)):
        cfg = sp.get(i)
        pack = cfg["pack_input"].val if "pack_input" in cfg.values else True
        if (pack, cfg["bn"].val) in seen or not sp.valid(i):
            continue
        seen.add((pack, cfg["bn"].val))
        s, tensors = task.instantiate(cfg)
        stages = {t.op.name for t in tensors[-1].op.input_tensors[0].op.input_tensors}
        assert ("conv2d.packed" in stages) == pack
        out = np.zeros(tensors[-1].shape, np.float32)
        te.build(s, tensors)(x, w, out)
        np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-4, err_msg=str(cfg))
    packs = {p for p, _ in seen}
    assert packs == ({True} if stride == 2 else {True, False})


def test_the_untuned_kernel_packs_its_input_in_two_vector_panels():
    """The default config packs the input into contiguous panels two vectors wide, also where the
    block does not divide the pixels (14x14): conv2d.gemm1x1's docstrings say why."""
    from te.target import host
    lanes = host().lanes()
    for hw, k in ((56, 64), (14, 256)):
        task = autotune.create_task("conv2d_1x1_gemm", ((1, 256, hw, hw), (k, 256, 1, 1), (1, 1), (0, 0, 0, 0),
                                                        (1, 1), 1, "float32"))
        d = task.config_space.get(task.config_space.default_index())
        assert d["pack_input"].val is True
        assert d["bn"].val == 2 * lanes
        assert d["tile_y"].size[-1] * 2 <= host().acc_vectors
