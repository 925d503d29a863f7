"""The knob API: spaces, index <-> config, JSON, neighbours, fallback defaults."""
import random
import subprocess
import sys

import pytest

from autotune import create_task
from autotune.space import ConfigError, ConfigSpace, FallbackConfig
from te.ops.knobs import MAX_SPLIT_EXTENT, divisors


def test_split_space_factors():
    cfg = ConfigSpace()
    cfg.define_split("t", 12, num_outputs=2)
    sizes = sorted(e.size for e in cfg.space_map["t"].entities)
    assert sizes == [(-1, 1), (-1, 2), (-1, 3), (-1, 4), (-1, 6), (-1, 12)]


def test_index_config_round_trip():
    cfg = ConfigSpace()
    cfg.define_split("a", 16, num_outputs=3)
    cfg.define_knob("b", [1, 2, 3])
    cfg.define_reorder("c", 3)
    assert len(cfg) == len(cfg.space_map["a"].entities) * 3 * 6
    for i in range(0, len(cfg), 7):
        e = cfg.get(i)
        assert e.index == i
        assert cfg.from_json(e.to_json()).index == i
        assert cfg.index_from_point(cfg.point(i)) == i


def test_neighbours_differ_in_one_knob():
    cfg = ConfigSpace()
    cfg.define_knob("x", list(range(5)))
    cfg.define_knob("y", list(range(7)))
    rng = random.Random(0)
    for n in cfg.neighbours(10, rng, 20):
        diff = sum(a != b for a, b in zip(cfg.point(n), cfg.point(10)))
        assert diff == 1


def test_bad_configs_are_rejected():
    cfg = ConfigSpace()
    cfg.define_knob("x", [1, 2])
    with pytest.raises(ConfigError, match="not one of"):
        cfg.from_json({"x": 3})
    with pytest.raises(ConfigError, match="missing"):
        cfg.from_json({})
    with pytest.raises(ConfigError, match="outside"):
        cfg.get(2)


def test_fallback_uses_declared_defaults():
    f = FallbackConfig()
    f.define_split("t", 64, default=[-1, 16])
    f.define_knob("k", ["a", "b"], default="b")
    assert f["t"].size == (-1, 16) and f["k"].val == "b"


def test_matmul_template_space_and_default():
    for target, rows in [("llvm -mcpu=skylake-avx512", 8), ("llvm -mcpu=haswell", 4)]:   # 32 / 16 registers
        sp = create_task("matmul", (64, 64, 64, "float32"), target).config_space
        d = sp.get(sp.default_index())
        assert d["tile_y"].size == (-1, rows) and len(sp) > 10, target


def _constrained() -> ConfigSpace:
    cfg = ConfigSpace()
    cfg.define_knob("x", list(range(6)))
    cfg.define_knob("y", list(range(6)))
    cfg.define_constraint("x + y small", lambda c: c["x"].val + c["y"].val <= 4)
    return cfg


def test_constraints_keep_sampling_and_neighbours_valid():
    cfg = _constrained()
    assert len(cfg) == 36                   # every combination is still indexable
    valid = {i for i in range(36) if cfg.valid(i)}
    assert len(valid) == 15
    rng = random.Random(1)
    assert {cfg.sample(rng) for _ in range(400)} == valid
    for i in valid:
        assert set(cfg.neighbours(i, rng, 10)) <= valid
    # a config outside the constraints still instantiates (records of it stay usable)
    assert cfg.from_json({"x": 5, "y": 5}).index == 35


def test_tuners_propose_only_valid_configs():
    from autotune.tuner import GridSearchTuner, RandomTuner

    class FakeTask:
        config_space = _constrained()
    for cls in (RandomTuner, GridSearchTuner):
        t = cls.__new__(cls)
        t.space, t.visited, t.rng, t._next = FakeTask.config_space, set(), random.Random(0), 0
        got = t.next_batch(40)
        assert got and all(t.space.valid(i) for i in got)


def test_register_tile_constraint_of_the_conv_template():
    """Register tiles larger than the vector registers are not proposed; the default is valid."""
    from te.target import host
    args = ((1, 64, 56, 56), (64, 64, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1, "float32")
    sp = create_task("conv2d_nchw", args).config_space
    assert sp.valid(sp.default_index())
    rng = random.Random(0)
    for _ in range(200):
        c = sp.get(sp.sample(rng))
        vecs = c["tile_oh"].size[-1] * c["tile_ow"].size[-1] * max(1, c["tile_oc"].val // 16)
        assert vecs <= max(4 * max(1, c["tile_oc"].val // 16), host().acc_vectors)
    assert not all(sp.valid(i) for i in range(len(sp)))


def test_split_space_of_a_huge_extent_is_refused_with_the_knob_and_extent():
    # the space of this workload used to scan all 10**12 divisor candidates of K (a hang);
    # create_task refuses its arguments first, so the Task is made directly here
    code = ("import te\n"
            "from autotune.space import ConfigError\n"
            "from autotune.task import Task\n"
            "try:\n"
            "    Task('matmul', (1, 10**12, 10**12, 'float32'), te.target.host()).config_space\n"
            "except ConfigError as e:\n"
            "    print(e)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "'tile_k'" in r.stdout and "1000000000000" in r.stdout and "2**31" in r.stdout


def test_split_extents_outside_the_bound_are_refused():
    cfg = ConfigSpace()
    for extent in (0, -4, MAX_SPLIT_EXTENT + 1):
        with pytest.raises(ConfigError, match=f"knob 't': cannot split an axis of extent {extent}"):
            cfg.define_split("t", extent)
    cfg.define_split("t", MAX_SPLIT_EXTENT)        # 2**31: 32 splits, found by trial division
    assert len(cfg.space_map["t"].entities) == 32


def test_divisors_by_trial_division():
    assert divisors(1) == [1]
    assert divisors(36) == [1, 2, 3, 4, 6, 9, 12, 18, 36]
    assert divisors(97) == [1, 97]
    assert divisors(10**12)[-1] == 10**12 and len(divisors(10**12)) == 169
