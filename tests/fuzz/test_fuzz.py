"""Property: no mutated ONNX file, tuning log or library makes tilewise die, hang, raise from
inside or answer wrong; each is accepted or refused with one clear line of tilewise's own.

Every case runs in a fresh interpreter (fuzzing.run_case).  Hypothesis draws the mutators'
randomness (derandomized, no database, no shrinking: a case is one subprocess, and the
verdict names the mutation), a few examples per mutator so the suite stays within a minute;
bench/fuzz.py runs the same cases for as long as it is given.
"""
from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from . import fuzzing, mutators

SETTINGS = dict(deadline=None, derandomize=True, database=None, phases=[Phase.explicit, Phase.generate],
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

# Mutators whose cases fail on this branch, with what they meet: defects of issue 17 that other
# branches fix.  Remove a mark once its fix is merged (strict=False: the derandomized examples
# may happen to miss the defect).
KNOWN: dict[tuple[str, str], str] = {}


def params(kind: str, names) -> list:
    """pytest params of a kind's mutators (or special files), with the KNOWN marks."""
    return [pytest.param(n, id=n, marks=[pytest.mark.xfail(strict=False, reason=KNOWN[(kind, n)])]
                         if (kind, n) in KNOWN else []) for n in names]


def fuzz_test(kind: str, examples: int, skip=()):
    """The property test of one kind: each mutator (a param) on `examples` derandomized draws."""
    @pytest.mark.parametrize("category", params(kind, [c for c in mutators.MUTATORS[kind] if c not in skip]))
    @settings(max_examples=examples, **SETTINGS)
    @given(rnd=st.randoms(use_true_random=False))
    def test(category, rnd, seed_inputs, fuzz_dir):
        case = mutators.mutate(kind, category, seed_inputs[kind], rnd)
        verdict = fuzzing.run_case(case, os.path.join(fuzz_dir, kind))
        assert verdict.ok, verdict.report(case)
    return test


# An ONNX case costs about two seconds of CPU (importing onnx alone takes one), the others a
# third of that: together with the tests below the suite stays within a minute on two cores.
test_mutated_onnx_model = fuzz_test("onnx", examples=1, skip=("invalid_graph",))   # each defect below
test_mutated_tuning_log = fuzz_test("log", examples=2, skip=("special_file",))
test_mutated_library = fuzz_test("lib", examples=2)


@pytest.mark.parametrize("special", params("log", mutators.SPECIAL))
def test_tuning_log_that_is_not_a_regular_file(special, fuzz_dir):
    # a refusal needs no reading, so a few seconds is a generous bound for a FIFO or /dev/zero
    case = mutators.Case("log", "special_file", b"", f"the log is a {special}", special)
    verdict = fuzzing.run_case(case, os.path.join(fuzz_dir, "special"), timeout=3)
    assert verdict.ok, verdict.report(case)


@pytest.mark.parametrize("defect", params("onnx", mutators.GRAPH_DEFECTS))
def test_invalid_onnx_graph_is_refused(defect, seed_inputs, fuzz_dir):
    data, note = mutators.invalid_graph(seed_inputs["onnx"], defect)
    case = mutators.Case("onnx", "invalid_graph", data, note)
    verdict = fuzzing.run_case(case, os.path.join(fuzz_dir, "onnx"))
    assert verdict.ok, verdict.report(case)


@pytest.mark.parametrize("kind", ["onnx", "log", "lib"])
def test_seed_inputs_pass(kind, seed_inputs, fuzz_dir):
    # the unmutated seeds are accepted and answer right: the oracle's baseline
    verdict = fuzzing.run_case(mutators.Case(kind, "seed", seed_inputs[kind], "unchanged"),
                               os.path.join(fuzz_dir, "seed"))
    assert verdict.ok and verdict.outcome == "ok", verdict.report()
