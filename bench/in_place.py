"""Outputs written over the inputs kernels are done with (frontends/in_place.py) against fresh buffers.

    python bench/in_place.py                         # ResNet-50 (frontends.zoo), 2 threads
    python bench/in_place.py --model shufflenet --rounds 9 --reps 4
    python bench/in_place.py --model /tmp/resnet50.onnx --logs tuning_logs/

Two builds of one model, one planned with no output written in place (in_place.aliases
returning nothing), made after the other (before it with --swap); outputs checked equal
(common.build_ab). Then, the builds alternating in
one process: the kernels that write in place, each timed where the model runs it
(frontends.step_timing.compare_builds: model order, --rounds rounds, the median round) and the
sum of all kernels; and the whole model, --reps times --runs paired runs
(frontends.profile.time_interleaved, blocks of 3), the median of fresh / in-place over the pairs
and how many pairs the in-place build won.
"""
from __future__ import annotations

import argparse
import os
import sys
from unittest import mock

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import build_ab, build_ab_arguments               # noqa: E402
from frontends import in_place                              # noqa: E402


def writes_in_place(call) -> bool:
    ws = [a for a in call.args if a[0] == "ws"]
    return len(set(ws)) < len(ws)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    build_ab_arguments(ap, reps=3)
    args = ap.parse_args()

    written: set[str] = set()

    def show(new, pair, fa, fb) -> bool:      # the kernels that write in place (found once)
        written.update(() if written else (st.kernel for st in new.plan.steps if writes_in_place(st)))
        return any(c.kernel in written for c in pair.b)
    fresh_buffers = mock.patch.object(in_place, "aliases", lambda *a, **k: {})     # no output in place
    build_ab(args, fresh_buffers, ("fresh", "in place"), show)


if __name__ == "__main__":
    main()
