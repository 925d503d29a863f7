"""Tuning workers start isolated: a module planted in the folder where tuning runs is not imported."""
from __future__ import annotations

import autotune

PLANTED = """\
import pathlib
pathlib.Path(__file__).with_name("planted-module-was-imported").write_text("yes")
raise ImportError("a planted json.py")
"""


def test_a_planted_json_py_in_the_working_folder_is_not_imported_by_workers(tmp_path, monkeypatch):
    (tmp_path / "json.py").write_text(PLANTED)
    monkeypatch.chdir(tmp_path)
    task = autotune.create_task("matmul", (8, 8, 8, "float32"))
    with autotune.Measurer(autotune.measure_option(n_parallel=1, repeat=1, min_repeat_ms=1)) as m:
        (r,) = m.measure(task, [task.config_space.get(task.config_space.default_index())])
    assert not (tmp_path / "planted-module-was-imported").exists()
    assert r.ok, r.error_msg


def test_workers_still_import_a_template_module_from_the_parents_path():
    """The tests' own templates (tests/autotune/autotune_templates.py) are found by the workers
    through the parent's sys.path, passed explicitly."""
    from . import autotune_templates  # noqa: F401  (registers test_vadd)
    task = autotune.create_task("test_vadd", (64,))
    with autotune.Measurer(autotune.measure_option(n_parallel=1, repeat=1, min_repeat_ms=1)) as m:
        (r,) = m.measure(task, [task.config_space.get(task.config_space.default_index())])
    assert r.ok, r.error_msg
