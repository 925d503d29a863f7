"""The test tree cannot shadow the packages it tests.

Under the README's plain `pytest` on an editable install, a test folder without `__init__.py`
named like a package (`tests/autotune/`) is importable as a namespace package and can win over
the installed `autotune`; every test folder is therefore a regular package of `tests`.
"""
from __future__ import annotations

import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("te", "autotune", "frontends", "tilewise")


def test_every_test_folder_is_a_package():
    folders = [d for d in [ROOT / "tests", *(ROOT / "tests").rglob("*")]
               if d.is_dir() and d.name != "__pycache__" and any(d.glob("*.py"))]
    missing = [str(d.relative_to(ROOT)) for d in folders if not (d / "__init__.py").is_file()]
    assert not missing, f"test folders without __init__.py (they can shadow a package): {missing}"


@pytest.mark.parametrize("name", PACKAGES)
def test_packages_resolve_to_the_source_tree(name):
    mod = importlib.import_module(name)
    assert mod.__file__ is not None, f"{name} was imported as a namespace package"
    assert Path(mod.__file__).resolve().parent == ROOT / name
