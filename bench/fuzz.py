"""Fuzz tilewise's untrusted inputs for a while: mutated ONNX files, tuning logs and libraries.

    python bench/fuzz.py --minutes 10                      # every kind, in turn
    python bench/fuzz.py --minutes 30 --kind lib --seed 7 --out fuzz-out

The same mutators and oracle as tests/fuzz (tests/fuzz/fuzzing.py): each case runs in a fresh
interpreter under a timeout and fails on a signal death, a hang, an error of a type tilewise
does not define, a message that is not one clear line, a wrong answer or a changed input.
At the end, per kind: inputs tried, failures, and each distinct failure (by kind, stage,
exception type and first line) with the folder of its reproducer: the input, a README with
the verdict, and the command that replays it.  Cases run one at a time (a shared machine).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from tests.fuzz import fuzzing, mutators         # noqa: E402


def main(argv: list[str] | None = None) -> int:
    """Run the fuzzer; exit code 1 when it found a failure."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, required=True, help="how long to fuzz")
    p.add_argument("--kind", choices=[*mutators.KINDS, "all"], default="all", help="which input (default: all, in turn)")
    p.add_argument("--seed", type=int, default=0, help="the random seed (a run is reproducible from it)")
    p.add_argument("--out", metavar="DIR", help="where reproducers go (default: a new temporary folder)")
    args = p.parse_args(argv)
    if args.minutes <= 0:
        p.error("--minutes must be positive")
    kinds = list(mutators.KINDS) if args.kind == "all" else [args.kind]
    out = args.out or tempfile.mkdtemp(prefix="tilewise-fuzz-")
    os.makedirs(out, exist_ok=True)
    print(f"fuzzing {', '.join(kinds)} for {args.minutes:g} min, seed {args.seed}; reproducers in {out}",
          flush=True)
    stats = fuzzing.fuzz(kinds, args.minutes * 60, args.seed, out, log=lambda m: print(m, flush=True))
    print()
    for kind, st in stats.items():
        outcomes = ", ".join(f"{k} {v}" for k, v in sorted(st.outcomes.items()))
        print(f"{kind}: {st.tried} inputs tried, {st.failed} failed, {len(st.distinct)} distinct ({outcomes})")
        for key, (case, verdict, path) in st.distinct.items():
            print(f"  - {key}\n      e.g. [{case.category}] {case.note[:150]}\n      reproducer: {path}")
    return 1 if any(st.failed for st in stats.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
