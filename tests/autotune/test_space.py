"""The knob API: spaces, index <-> config, JSON, neighbours, fallback defaults."""
import random

import pytest

from autotune.space import ConfigError, ConfigSpace, FallbackConfig, space_of


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
    sp = space_of("matmul", 64, 64, 64, "float32")
    d = sp.get(sp.default_index())
    assert d["tile_y"].size == (-1, 8) and len(sp) > 10
