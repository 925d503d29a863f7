"""The sketch's channel-vector rule: a conv tiled with its output channels as the vector axis,
the accumulators laid out channels last and the weights packed in panels of channels."""
from __future__ import annotations

import json
import random

import numpy as np
import pytest

import autotune
import te
from autotune.auto_scheduler import SketchPolicy

from . import auto_workloads as wl

CONV = (1, 8, 10, 16, 32, 3, 3)         # N C H W K R S: 16 pixels a row, 32 output channels


def _inputs(task):
    data = np.random.default_rng(3)
    return [data.standard_normal(t.shape).astype(np.float32) for t in task.tensors[:-1]]


def _conv(x, w):
    R, S = w.shape[2:]
    xp = np.pad(x, ((0, 0), (0, 0), (R // 2, R // 2), (S // 2, S // 2)))
    win = np.lib.stride_tricks.sliding_window_view(xp, (R, S), axis=(2, 3))
    return np.einsum("ncyxrs,kcrs->nkyx", win, w)


def _run(s, tensors, ins):
    out = np.zeros(tensors[-1].shape, np.float32)
    te.build(s, tensors)(*ins, out)
    return out


def _steps(s) -> list[str]:
    return [f"{st.kind}:{st.stage}" for st in s.steps]


def test_the_rule_applies_to_convs_and_not_to_matmuls_or_elementwise_ops():
    conv = SketchPolicy(autotune.create_task(wl.as_conv2d, CONV))
    assert conv.facts["Y"].channel_axes == (1,), "x slides over the window; k alone indexes W"
    assert conv.facts["P"].guarded, "the pad's select may be computed apart"
    assert {conv.sample(random.Random(i))["vaxis:Y"] for i in range(40)} == {1, 3}, "both sketches are drawn"
    for func, args in [(wl.as_matmul, (64, 64, 64)), (wl.as_dense_relu, (16, 32, 24)),
                       (wl.as_batch_matmul, (1, 2, 16, 8, 32)), (wl.as_scale_relu, (16, 64))]:
        policy = SketchPolicy(autotune.create_task(func, args))
        assert all(f.channel_axes == () for f in policy.facts.values()), func.__name__
        p = policy.sample(random.Random(0))
        assert not any(k.startswith("vaxis:") for k in p), func.__name__
        s, _ = policy.apply(p)
        assert not [st for st in s.steps if st.kind == "cache_write" and len(st.args) > 1], func.__name__


def test_channel_seeds_vectorize_output_channels_over_packed_weights_and_match_numpy():
    task = autotune.create_task(wl.as_conv2d, CONV)
    policy = SketchPolicy(task, threads=2)
    ins = _inputs(task)
    want = _conv(*ins)
    seeds = [p for p in policy.seeds() if p.get("vaxis:Y") == 1]
    assert len(seeds) >= 2, "one and two vectors of channels fit 32 channels"
    assert seeds[0]["tile:Y:1"][2] == 32, "the most channels a tile first: the fewest input loads a FMA"
    assert not seeds[0]["inline:P"] and seeds[0]["vec:P"] == 18, "the pad apart, a row a vector"
    assert seeds[-1]["inline:P"], "and once inlined"
    for p in seeds:
        s, tensors = policy.apply(p)
        steps = s.to_json()
        assert ["cache_write", "Y", ["local", (0, 2, 3, 1)]] in steps, "accumulators channels last"
        assert ["cache_read", "W", ["global", ("Y.local",), p["tile:Y:1"][2], 0]] in steps, \
            "W packed in panels of the tile's channels"
        assert {"vectorize:Y.local", "parallel:W.global", "parallel:Y"} <= set(_steps(s))
        np.testing.assert_allclose(_run(s, tensors, ins), want, rtol=1e-4, atol=1e-4, err_msg=str(p))
        again = te.replay(task.schedule(), json.loads(json.dumps(steps)))
        assert str(te.lower(again, tensors)) == str(te.lower(s, tensors))


def test_random_channel_sketches_and_mutations_match_numpy():
    task = autotune.create_task(wl.as_conv2d, CONV)
    policy = SketchPolicy(task)
    ins = _inputs(task)
    want = _conv(*ins)
    rng = random.Random(11)
    built = 0
    for _ in range(40):
        p = policy.mutate({**policy.sample(rng), "vaxis:Y": 1, "kind:Y": "tile"}, rng)
        if p["vaxis:Y"] != 1:
            continue
        policy._fit_registers(p, policy.facts["Y"])
        s, tensors = policy.apply(p)
        np.testing.assert_allclose(_run(s, tensors, ins), want, rtol=1e-4, atol=1e-4, err_msg=str(p))
        built += 1
        if built == 4:
            break
    assert built == 4


def test_a_fused_relu_reads_the_channels_last_accumulators():
    task = autotune.create_task(wl.as_conv2d_relu, CONV)
    policy = SketchPolicy(task, threads=2)
    ins = _inputs(task)
    p = next(p for p in policy.seeds() if p.get("vaxis:Y") == 1)
    s, tensors = policy.apply(p)
    assert {"compute_inline:Y", "compute_at:Y.local", "parallel:Z"} <= set(_steps(s))
    np.testing.assert_allclose(_run(s, tensors, ins), np.maximum(_conv(*ins), 0), rtol=1e-4, atol=1e-4)


def test_a_channel_sketch_record_replays():
    task = autotune.create_task(wl.as_conv2d, CONV)
    policy = SketchPolicy(task)
    p = next(p for p in policy.seeds() if p.get("vaxis:Y") == 1)
    s, _ = policy.apply(p)
    cfg = task.config_space.get(task.config_space.add(s.steps))
    line = json.dumps(cfg.to_json())                    # as a log holds it
    again = task.config_space.from_json(json.loads(line))
    assert again == cfg
    ins = _inputs(task)
    out = np.zeros(task.tensors[-1].shape, np.float32)
    task.build(again)(*ins, out)
    np.testing.assert_allclose(out, _conv(*ins), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("bad", [(0, 1, 2), (0, 1, 1, 2), (0, 1, 2, 4)])
def test_cache_write_refuses_an_order_that_is_not_a_permutation(bad):
    s = autotune.create_task(wl.as_conv2d, CONV).schedule()
    Y = s.stage("Y").op.output(0)
    with pytest.raises(te.ScheduleError, match=r"stage Y: cache_write: order=.* permutation of 0\.\.3"):
        s.cache_write(Y, "local", bad)
