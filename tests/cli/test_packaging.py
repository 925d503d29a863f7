"""Packaging: `pip wheel .` makes a wheel that installs into a fresh venv, with the shared tuning logs,
and runs the demo there;
without onnxruntime (the `compare` extra) the comparison is left out with one clear line.

The venv sees the system's packages (--system-site-packages) and the wheel installs with
--no-deps, so nothing is downloaded but the build backend (none when `wheel` is installed);
what runs is the wheel's own copy of tilewise, which the test checks."""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SOURCES = ("pyproject.toml", "README.md", "te", "autotune", "frontends", "tilewise")


def _wheel(tmp_path) -> str:
    """A wheel built from a copy of the sources (a build writes build/ and *.egg-info beside them)."""
    src = tmp_path / "src"
    for name in SOURCES:
        from_ = os.path.join(REPO, name)
        if os.path.isdir(from_):
            shutil.copytree(from_, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            src.mkdir(exist_ok=True)
            shutil.copy(from_, src / name)
    offline = ["--no-build-isolation"] if importlib.util.find_spec("wheel") else []
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", *offline, "-w",
                        str(tmp_path / "dist"), "-q"], capture_output=True, text=True, timeout=300)
    if r.returncode != 0 and not offline and "satisfies the requirement setuptools" in r.stderr:
        pytest.skip("pip cannot fetch the build backend (no package index reachable)")
    assert r.returncode == 0, r.stderr
    (whl,) = (tmp_path / "dist").glob("tilewise-*.whl")
    return str(whl)


def test_wheel_installs_and_runs_the_demo_in_a_fresh_venv(tmp_path):
    whl = _wheel(tmp_path)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)],
                   check=True, timeout=120)
    py = str(venv / "bin" / "python")
    subprocess.run([py, "-m", "pip", "install", "--no-deps", "-q", whl], check=True, timeout=300,
                   capture_output=True)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "TILEWISE_LOGS")}
    cache = tmp_path / "cache"
    cache.mkdir()
    from te.target import host                  # the machine's ceilings as measured: skip measuring
    (cache / "machine.json").write_text(json.dumps({host().isa: {
        "cpu": host().cpu, "peak_gflops": {"1": 100.0, "2": 200.0}, "bandwidth_gbs": 20.0,
        "measured_at": time.time()}}))
    env.update(TILEWISE_CACHE_DIR=str(cache), TILEWISE_NUM_THREADS="1")
    where = subprocess.run([py, "-c", "import te, tilewise; print(te.__file__); print(tilewise.__file__)"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, check=True)
    assert all(line.startswith(str(venv)) for line in where.stdout.split()), where.stdout
    logs = subprocess.run([py, "-c", "from autotune.shared_logs import REPO_LOGS; "
                           "print(REPO_LOGS); print(len(list(REPO_LOGS.glob('*/*.jsonl'))))"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, check=True).stdout.split()
    assert logs[0].startswith(str(venv)) and int(logs[1]) > 0, logs     # the shared logs came along
    r = subprocess.run([str(venv / "bin" / "tilewise"), "demo", "--model", "mobilenet-block", "--trials", "2",
                        "--max-tasks", "1", "--repeat", "1", "--no-shared-logs"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "outputs agree with ONNX Runtime" in r.stdout


def test_without_onnxruntime_the_comparison_says_which_extra(monkeypatch):
    from frontends import profile
    from tilewise.commands import demo
    monkeypatch.setitem(sys.modules, "onnxruntime", None)       # import onnxruntime fails
    with pytest.raises(ImportError, match=r"pip install 'tilewise\[compare\]'"):
        profile.onnxruntime_session(b"")
    notes = []
    monkeypatch.setattr(demo, "note", notes.append)
    out = demo._time_all({"t": lambda: None}, b"", {}, threads=1, repeat=1)
    assert set(out) == {"t"}
    assert notes == ["tilewise: note: onnxruntime is not installed, so no comparison with it "
                     "(pip install 'tilewise[compare]')"]
