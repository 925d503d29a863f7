"""The knob API as the tuner's users know it: autotune.space re-exports te.ops.knobs.

The spaces, configs and the template registry live in te.ops (the templates declare and read
them; te.ops never imports autotune).  The space of a template for some arguments is
`autotune.create_task(name, args, target).config_space`.
"""
from __future__ import annotations

from te.ops.knobs import (TEMPLATES, ConfigEntity, ConfigError, ConfigSpace, FallbackConfig,
                          OtherOptionEntity, OtherOptionSpace, ReorderEntity, ReorderSpace,
                          SplitEntity, SplitSpace, get_template, register_template)

__all__ = ["ConfigError", "SplitEntity", "ReorderEntity", "OtherOptionEntity", "SplitSpace",
           "ReorderSpace", "OtherOptionSpace", "ConfigSpace", "ConfigEntity", "FallbackConfig",
           "TEMPLATES", "register_template", "get_template"]
