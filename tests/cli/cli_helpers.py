"""Helpers of the command-line tests (imported by conftest.py and the test modules).

The tiny model and its fake tuning records, which other test folders use too, are in tests/tiny_models.py."""
from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass


@dataclass
class Result:
    """What a command printed and returned."""
    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err


def one_line_error(r: Result) -> str:
    """Assert the command failed with exactly one 'tilewise: error:' line and no traceback; return it."""
    assert r.code == 1, (r.code, r.text)
    assert "Traceback" not in r.text, r.text
    lines = [ln for ln in r.err.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("tilewise: error:")]
    assert len(errors) == 1, r.err
    return errors[0]


def run_cli(base_env: dict, cwd, *args, env: dict | None = None, timeout: float = 300) -> Result:
    """`python -m tilewise ARGS` in `cwd`, with base_env (conftest's cli_env) updated by env."""
    e = dict(base_env)
    e.update(env or {})
    p = subprocess.run([sys.executable, "-m", "tilewise", *map(str, args)], cwd=cwd, env=e,
                       capture_output=True, text=True, timeout=timeout)
    return Result(p.returncode, p.stdout, p.stderr)
