"""The 1x1 convs of a model as the GEMM or as the direct conv, timed where the model runs them.

    python bench/conv1x1_gemm.py resnet50                   # a bench/models.py name, or an .onnx path
    python bench/conv1x1_gemm.py resnet50 --rounds 7 --repeat 10

Two untuned builds of one model: every 1x1 conv the GEMM applies to (te.ops.conv2d.gemm_applies)
as the GEMM, and the rule AVX-512 keeps (te.ops.conv2d.as_matmul without a target: the direct
conv on maps of 14x14 and less, unless strided and larger than 14x14).  The pieces that differ are
timed in the model's order, the builds alternating round by round
(frontends.step_timing.compare_builds), so each call meets its weights and input as the model
leaves them.  On a 16-register target (AVX2) as_matmul takes the GEMM for every 1x1: the first
column is what an AVX-512 target would run there.
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import frontends                                          # noqa: E402
import te.ops.implementations as implementations          # noqa: E402
from frontends import step_timing                         # noqa: E402
from te.ops.conv2d import as_matmul, gemm_applies         # noqa: E402
from common import env_note, table                        # noqa: E402
from models import load                                   # noqa: E402


def build_with(graph, rule):
    """The untuned build of graph with the registry's GEMM-or-direct rule replaced by rule(g)."""
    saved = implementations.as_matmul
    implementations.as_matmul = lambda g, target=None: rule(g)
    try:
        return frontends.build(graph)
    finally:
        implementations.as_matmul = saved


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="a bench/models.py name or an .onnx path")
    ap.add_argument("--rounds", type=int, default=5, help="rounds, the builds alternating (default 5)")
    ap.add_argument("--repeat", type=int, default=10, help="model passes per round (default 10)")
    a = ap.parse_args()
    print(env_note())
    graph = frontends.from_onnx(a.model if a.model.endswith(".onnx") else load(a.model))
    direct = build_with(graph, lambda g: as_matmul(g))
    gemm = build_with(graph, gemm_applies)
    rows = []
    for p in step_timing.compare_builds(direct, gemm, rounds=a.rounds, repeat=a.repeat):
        if p.a[0].task == p.b[0].task:
            continue
        t_a, t_b = np.median(p.times_a), np.median(p.times_b)
        x, w = p.b[0].task[1][:2]
        rows.append([p.nodes[0], f"{w[1]} -> {w[0]} @ {x[2]}x{x[3]}", f"{t_a * 1e6:.0f}", f"{t_b * 1e6:.0f}",
                     f"{t_b / t_a:.2f}x"])
    print(table(["node", "1x1 conv (input map)", "direct us", "GEMM us", "GEMM / direct"], rows))


if __name__ == "__main__":
    main()
