"""The knob API in te.ops: the operator library stands alone, autotune re-exports it."""
import subprocess
import sys


def test_te_ops_does_not_import_autotune():
    code = "import te.ops, sys; assert 'autotune' not in sys.modules, 'te.ops imported autotune'"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


def test_autotune_space_re_exports_the_same_classes():
    import autotune.space
    from te.ops import knobs
    for name in ("ConfigError", "ConfigSpace", "ConfigEntity", "FallbackConfig", "SplitSpace",
                 "register_template", "get_template"):
        assert getattr(autotune.space, name) is getattr(knobs, name)
