"""Session fixtures of the fuzz tests: the seed inputs, made once, and a scratch folder for cases."""
from __future__ import annotations

import pytest

from . import fuzzing


@pytest.fixture(scope="session")
def fuzz_dir(tmp_path_factory) -> str:
    """Where cases are written and the children keep their scratch files."""
    return str(tmp_path_factory.mktemp("fuzz"))


class Seeds(dict):
    """The seed file of each kind; a short repr, as hypothesis prints a failing test's arguments."""

    def __repr__(self) -> str:
        return f"Seeds({', '.join(f'{k}: {len(v)} bytes' for k, v in self.items())})"


@pytest.fixture(scope="session")
def seed_inputs(fuzz_dir) -> Seeds:
    """The seed ONNX model, tuning log and exported library (built once per session)."""
    return Seeds(fuzzing.seed_inputs(fuzz_dir, ("onnx", "log", "lib")))
