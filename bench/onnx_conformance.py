"""Run ONNX's node conformance cases through tilewise and report the pass rate.

    python bench/onnx_conformance.py              # every applicable case
    python bench/onnx_conformance.py --pattern conv --show-failures
"""
from __future__ import annotations

import argparse
import collections
import sys
import time

from frontends import conformance


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
    print(f"pass rate over applicable cases: {100 * counts.get(conformance.Outcome.PASS, 0) / max(n, 1):.1f}% "
          f"({time.time() - t0:.0f} s)")
    if a.show_failures:
        for r in results:
            if r.outcome is not conformance.Outcome.PASS:
                print(f"  {r.name}: {r.outcome.value}: {r.message}")


if __name__ == "__main__":
    main()
