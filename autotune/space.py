"""The knob API as the tuner's users know it: autotune.space re-exports te.ops.knobs.

The spaces, configs and the template registry live in te.ops (the templates declare and read
them; te.ops never imports autotune), and `space_of` is the one thing the tuner adds.
"""
from __future__ import annotations

from te.ops.knobs import (TEMPLATES, ConfigEntity, ConfigError, ConfigSpace, FallbackConfig,
                          OtherOptionEntity, OtherOptionSpace, ReorderEntity, ReorderSpace,
                          SplitEntity, SplitSpace, get_template, register_template)

__all__ = ["ConfigError", "SplitEntity", "ReorderEntity", "OtherOptionEntity", "SplitSpace",
           "ReorderSpace", "OtherOptionSpace", "ConfigSpace", "ConfigEntity", "FallbackConfig",
           "TEMPLATES", "register_template", "get_template", "space_of"]


def space_of(name: str, *args) -> ConfigSpace:
    """Run a template against a ConfigSpace to collect its knobs."""
    cfg = ConfigSpace()
    get_template(name)(cfg, *args)
    return cfg
