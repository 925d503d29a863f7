"""Run ONNX's node conformance cases through tilewise and report the pass rate.

    python bench/onnx_conformance.py              # every applicable case
    python bench/onnx_conformance.py --pattern conv --show-failures

A case is applicable when tilewise supports every operator of its graph.  The inputs that
decide shapes (a Reshape's shape, Pad's pads...) are bound to the data set's values at import,
as a static-shape compiler does; the passes whose whole graph then folds to constants are
counted.  Rejections are grouped by reason (unsupported element types, modes...).
"""
from __future__ import annotations

import argparse
import collections
import re
import sys
import time

from frontends import conformance


def reason(message: str) -> str:
    """A rejection message without the names of nodes and values, so that alike ones group."""
    message = re.sub(r"^(node|input|value) \S+ ", r"\1 ", message)
    return re.sub(r" \(tilewise supports.*", "", message)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pattern", help="only cases whose name contains this")
    ap.add_argument("--limit", type=int, help="at most this many cases")
    ap.add_argument("--show-failures", action="store_true", help="list every case that did not pass")
    a = ap.parse_args()
    t0 = time.time()
    total = len(conformance.all_cases())

    def progress(done, n, r):
        sys.stderr.write(f"\r{done}/{n} cases, last: {r.name[:50]:50s}")
        sys.stderr.flush()
    results = conformance.run(a.pattern, a.limit, progress)
    sys.stderr.write("\n")
    counts = collections.Counter(r.outcome for r in results)
    n = len(results)
    print(f"ONNX node conformance: {total} cases in onnx, {n} use only operators tilewise supports")
    for o in conformance.Outcome:
        print(f"  {o.value:30s} {counts.get(o, 0):5d}  ({100 * counts.get(o, 0) / max(n, 1):.1f}%)")
    folded = sum(r.folded for r in results)
    print(f"pass rate over applicable cases: {100 * counts.get(conformance.Outcome.PASS, 0) / max(n, 1):.1f}% "
          f"({time.time() - t0:.0f} s); {folded} of the passes fold to constants at import "
          "(every input they read was bound)")
    rejected = collections.Counter(reason(r.message) for r in results
                                   if r.outcome is conformance.Outcome.REJECTED)
    if rejected:
        print("rejections by reason:")
        for why, k in rejected.most_common():
            print(f"  {k:5d}  {why}")
    if a.show_failures:
        for r in results:
            if r.outcome is not conformance.Outcome.PASS:
                print(f"  {r.name}: {r.outcome.value}: {r.message}")


if __name__ == "__main__":
    main()
