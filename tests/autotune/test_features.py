"""Loop-IR features: the reuse distance of each access against the target's caches."""
from __future__ import annotations

import numpy as np

import autotune
import te
from autotune import features as F
from autotune.cost_model import distinct_first
from te.caches import Caches
from te.schedule import ForKind

# ResNet-50's last 1x1 conv: a 4 MiB packed weight, a 100 KiB input
CONV = ((1, 512, 7, 7), (2048, 512, 1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1, "float32")
KNOBS = {"tile_oc": 32, "tile_ow": [-1, 7], "tile_oh": [-1, 1], "unroll_kw": False, "tile_ic": [-1, 32],
         "reduce_order": "c_rs", "store": "vec_ow", "pack_at": "root"}
EMR = Caches(l1d=48 << 10, l2=2 << 20, l3=300 << 20)


def _lowered(out_order: str):
    task = autotune.create_task("conv2d_nchw", CONV, "llvm -mcpu=emeraldrapids")
    s, tensors = task.instantiate(task.config_space.from_json({**KNOBS, "out_order": out_order}), prepacked=True)
    return te.lower(s, tensors, "f")


def _weight_reuse_at_parallel_loop(vec: np.ndarray) -> tuple[float, float]:
    """(reuse / L1d, reuse / L2) of the 4 MiB weight at the hottest store's parallel loop."""
    for level in range(F.MAX_LOOPS):
        base = level * F.PER_LOOP
        if vec[base + 3 + F.KINDS.index(ForKind.PARALLEL)] == 1.0:
            for a in range(F.MAX_ACCESS):
                off = base + 3 + len(F.KINDS) + a * F.PER_ACCESS
                if vec[off + 5] == 1.0:             # log2(4 MiB / 2 MiB): the weight
                    return float(vec[off + 3]), float(vec[off + 4])
    raise AssertionError("no parallel loop reading the weight among the features")


def test_reuse_distance_tells_apart_loop_orders_whose_strides_look_alike():
    """Both orders fuse (channel block, row) into one parallel loop read through div/mod (stride
    -1 alike); rows outside the blocks re-read the whole 4 MiB weight per row (past the L2),
    blocks outside the rows re-read one 64 KiB block per row (within it, past the L1d)."""
    oc_l1, oc_l2 = _weight_reuse_at_parallel_loop(F.extract(_lowered("oc_outer"), EMR))
    rows_l1, rows_l2 = _weight_reuse_at_parallel_loop(F.extract(_lowered("rows_outer"), EMR))
    assert 0 < oc_l1 and oc_l2 < 0 < rows_l2
    # 64 iterations (channel blocks) apart against 1
    np.testing.assert_allclose([rows_l1 - oc_l1, rows_l2 - oc_l2], [6.0, 6.0], atol=1e-4)


def test_cache_terms_are_relative_to_the_target_caches():
    func = _lowered("oc_outer")
    small, big = F.extract(func, EMR), F.extract(func, Caches(l1d=96 << 10, l2=4 << 20, l3=300 << 20))
    cache_cols = np.zeros(F.LENGTH, bool)
    for slot in range(F.MAX_STORES):
        for level in range(F.MAX_LOOPS):
            for a in range(F.MAX_ACCESS):
                off = (slot * F.MAX_LOOPS + level) * F.PER_LOOP + 3 + len(F.KINDS) + a * F.PER_ACCESS
                cache_cols[off + 3:off + 6] = True
    filled = cache_cols & (small != 0)
    assert filled.sum() > 20
    np.testing.assert_allclose(small[filled] - big[filled], 1.0, atol=1e-5)    # twice the caches: one less
    np.testing.assert_array_equal(small[~cache_cols], big[~cache_cols])


def test_configs_the_features_cannot_tell_apart_are_ranked_last():
    X = np.array([[1, 0], [1, 0], [2, 0], [3, 0], [2, 0]], np.float32)
    assert distinct_first([0, 1, 2, 4, 3], X) == [0, 2, 3, 1, 4]
    assert distinct_first([0, 1, 2, 4, 3], X, seen=X[3:4]) == [0, 2, 1, 4, 3]
