"""Direct convs that pad a copy of their input per thread (direct_defaults.padded_by_thread)
against one shared copy before a barrier.

    python bench/pad_by_thread.py                         # ResNet-50 (frontends.zoo), 2 threads
    python bench/pad_by_thread.py --model inception_v2 --rounds 9 --reps 4 --swap
    python bench/pad_by_thread.py --model /tmp/resnet50.onnx --logs tuning_logs/

Two builds of one model, one with every direct conv padding one shared copy as before
(padded_by_thread answering no), made after the other (before it with --swap: a model of large
weights can run faster built first); outputs checked equal.  Then, the builds alternating in one
process: the kernels whose time differs by more than --show, each timed where the model runs it
(frontends.step_timing.compare_builds: model order, --rounds rounds, the median round) and the
sum of all kernels; and the whole model, --reps times --runs paired runs
(frontends.profile.time_interleaved, blocks of 3), the median of shared / per-thread over the
pairs and how many pairs the per-thread build won (common.build_ab).
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from unittest import mock

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import build_ab, build_ab_arguments               # noqa: E402

conv2d = importlib.import_module("te.ops.conv2d")          # the module (te.ops.conv2d is also a function)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    build_ab_arguments(ap, reps=2)
    ap.add_argument("--show", type=float, default=0.02, help="list kernels whose times differ by more (default 2%%)")
    args = ap.parse_args()
    one_shared_copy = mock.patch.object(conv2d, "padded_by_thread", lambda *a, **k: False)
    build_ab(args, one_shared_copy, ("shared", "per thread"), lambda new, p, fa, fb: abs(fa / fb - 1) > args.show)


if __name__ == "__main__":
    main()
