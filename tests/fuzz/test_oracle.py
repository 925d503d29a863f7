"""The fuzz oracle sees every kind of failure: a child that misbehaves on purpose is judged so."""
from __future__ import annotations

import os

import pytest

from . import fuzzing, mutators


def run(action: str, folder: str, timeout: float = 10) -> fuzzing.Verdict:
    case = mutators.Case("selftest", action, action.encode(), action)
    return fuzzing.run_case(case, os.path.join(folder, "selftest"), timeout=timeout)


@pytest.mark.parametrize("action, outcome, signature", [
    ("segv", "signal", "killed by SIGSEGV"),
    ("internal", "internal", "builtins.KeyError: 'missing'"),
    ("multiline", "message", "multi-line message from te.runtime.LoadError: first line"),
    ("wrong", "wrong", "wrong answer: the answer is wrong"),
    ("exit", "exit", "exited with code 3 without an answer"),
    ("touch", "changed", "the input file was changed"),
])
def test_failures_are_seen(action, outcome, signature, fuzz_dir):
    v = run(action, fuzz_dir)
    assert (v.ok, v.outcome, v.signature) == (False, outcome, signature), v.report()
    assert v.stage == action


def test_a_hang_is_killed_at_the_bound(fuzz_dir):
    v = run("hang", fuzz_dir, timeout=2)
    assert (v.ok, v.outcome, v.stage) == (False, "hang", "hang"), v.report()


def test_a_one_line_error_of_tilewise_passes(fuzz_dir):
    v = run("project", fuzz_dir)
    assert (v.ok, v.outcome) == (True, "refused"), v.report()
    assert v.signature.startswith("te.runtime.LoadError: ") and "case.txt" in v.signature


def test_modelerror_may_list_its_problems():
    out = 'FUZZ-RESULT {"outcome": "error", "type": "frontends.onnx_model.ModelError", "project": true, ' \
          '"message": "cannot import m: 2 problem(s):\\n  node a: x\\n  node b: y"}'
    assert fuzzing.judge(0, out, "", False, 1).ok


def test_overlong_line_fails():
    out = ('FUZZ-RESULT {"outcome": "error", "type": "te.runtime.LoadError", "project": true, '
           f'"message": "{"x" * (fuzzing.MAX_LINE + 1)}"}}')
    v = fuzzing.judge(0, out, "", False, 1)
    assert (v.ok, v.outcome) == (False, "message")


def test_failures_deduplicate_by_type_and_first_line():
    a = fuzzing.Verdict(False, "internal", "builtins.TypeError: line 12 of /tmp/x/case.jsonl", stage="load")
    b = fuzzing.Verdict(False, "internal", "builtins.TypeError: line 40 of /tmp/y/case.jsonl", stage="load")
    c = fuzzing.Verdict(False, "internal", "builtins.KeyError: 'costs'", stage="load")
    assert fuzzing.failure_key("log", a) == fuzzing.failure_key("log", b) != fuzzing.failure_key("log", c)
