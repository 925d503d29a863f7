"""A model's weights and workspace on 2 MiB pages (te.native_call.huge_page_bytes) against 4 KiB pages.

    python bench/huge_pages.py                         # ResNet-50 (frontends.zoo), 2 threads
    python bench/huge_pages.py --model vgg19 --reps 2 --runs 10
    python bench/huge_pages.py --library               # the exported library, loaded, both ways

Two builds of one model (or, with --library, one exported library loaded twice), the second made
and first run with huge_page_bytes answering None, so its weights blob and workspace come from
numpy on the OS's default pages; outputs checked equal, then --reps times --runs paired runs
in alternating blocks of 3 (frontends.profile.time_interleaved): the median of 4k / 2m over the
pairs and how many pairs the huge-page build won. Prints the process's AnonHugePages (Linux)
and the transparent huge page setting: with "never" both builds are the same.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np                                          # noqa: E402

import frontends                                            # noqa: E402
import te.native_call as native_call                        # noqa: E402
from common import env_note, paired                         # noqa: E402
from frontends.profile import random_inputs                 # noqa: E402


def anon_huge() -> str:
    try:
        with open(f"/proc/{os.getpid()}/smaps_rollup") as f:
            return next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("AnonHugePages")), "?")
    except OSError:
        return "?"


def thp_setting() -> str:
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            return f.read().strip()
    except OSError:
        return "unknown"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="resnet50", help="a bench/models.py name or an .onnx path")
    ap.add_argument("--library", action="store_true", help="time the exported library loaded (te.runtime)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--runs", type=int, default=40, help="paired runs per comparison")
    args = ap.parse_args()
    from node_compare import load_model
    print(env_note())
    print(f"transparent huge pages: {thp_setting()}")
    graph = frontends.from_onnx(load_model(args.model))
    tmp = tempfile.TemporaryDirectory()

    def make():
        lib = frontends.build(graph)
        if not args.library:
            return lib
        from te import runtime
        path = os.path.join(tmp.name, f"m{len(os.listdir(tmp.name))}.so")
        lib.export_library(path)
        return runtime.load_module(path)

    huge = make()
    feed = random_inputs([{"name": i.name, "shape": i.shape, "dtype": i.dtype} for i in graph.inputs])
    keep = native_call.huge_page_bytes
    native_call.huge_page_bytes = lambda nbytes: None
    try:
        small = make()
        want = small.run(**feed)            # its workspace made now, on default pages
    finally:
        native_call.huge_page_bytes = keep
    for a, b in zip(want, huge.run(**feed)):
        np.testing.assert_array_equal(a, b)
    print(f"{args.model} ({'loaded library' if args.library else 'JIT'}): outputs equal; "
          f"AnonHugePages {anon_huge()}")
    for _ in range(args.reps):
        print(paired(("4 KiB pages", lambda: small.run(**feed)), ("2 MiB pages", lambda: huge.run(**feed)),
                     args.runs), flush=True)


if __name__ == "__main__":
    main()
