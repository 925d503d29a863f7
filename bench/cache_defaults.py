"""Knob defaults derived from the caches: what they are for this machine, a Zen 4 and an Ice Lake
server, and, where they differ, the configs timed side by side on this machine.

    python bench/cache_defaults.py                # the derivations, then the timings
    python bench/cache_defaults.py --no-time      # the derivations only
    python bench/cache_defaults.py --rounds 15    # more alternating rounds
    python bench/cache_defaults.py --flip         # also every shape's default against the other loop order

The knobs whose defaults read te.Target.caches: the direct conv's `pack_at` and `out_order`
(te.ops.conv2d.default_pack_at / default_out_order), the packed GEMM's `tile_order`
(te.ops.matmul_defaults.default_tile_order, also the 1x1 GEMM conv's) and Winograd's `tile_bm`
(te.ops.winograd.default_bm).  Each shape's default config is taken from its task built for this
machine's features with each cache setting.  "old" is the defaults before they read the caches
(pack_at by a 64 KiB map, out_order oc_outer, tile_order cols_outer where N >= M).  Where two
configs differ they are built for this machine and run in alternating rounds (conv_defaults.py's
`alternate`); the median of the rounds' best times is quoted.  Figures are rough on a shared machine.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import autotune                                            # noqa: E402
from common import env_note, table                         # noqa: E402
from conv_defaults import alternate, build                 # noqa: E402
from te.caches import Caches, KiB, MiB, format_size        # noqa: E402
from te.ops import registry                                # noqa: E402
from te.ops.registry import ConvWorkload, MatmulWorkload   # noqa: E402
from te.target import host                                 # noqa: E402

SETTINGS = {"here": None, "zen4": Caches(32 * KiB, 1 * MiB, 4 * MiB),
            "icelake": Caches(48 * KiB, 1280 * KiB, 1536 * KiB)}
KNOBS = ("pack_at", "out_order", "tile_order", "tile_bm")
ORDERS = {"out_order": ("oc_outer", "rows_outer"), "tile_order": ("cols_outer", "rows_outer")}


def conv(C: int, H: int, K: int, R: int, stride: int = 1) -> ConvWorkload:
    p = R // 2
    return ConvWorkload((1, C, H, H), (K, C, R, R), (stride, stride), (p, p, p, p))


# (label, implementation, workload): ResNet-50's direct and 1x1 GEMM convs, VGG-19's 512-channel
# Winograd layer, BERT's matmuls and two tall GEMMs whose order the model changes here
SHAPES = [
    ("stem 7x7/2", "conv2d.direct", conv(3, 224, 64, 7, 2)),
    ("3x3/2 128 56", "conv2d.direct", conv(128, 56, 128, 3, 2)),
    ("3x3 512 7", "conv2d.direct", conv(512, 7, 512, 3)),
    ("1x1 1024->256 14", "conv2d.direct", conv(1024, 14, 256, 1)),
    ("1x1 256->64 56 direct", "conv2d.direct", conv(256, 56, 64, 1)),
    ("1x1 64->256 56 direct", "conv2d.direct", conv(64, 56, 256, 1)),
    ("1x1 512->128 28 direct", "conv2d.direct", conv(512, 28, 128, 1)),
    ("1x1 256->64 56 gemm", "conv2d.gemm1x1", conv(256, 56, 64, 1)),
    ("1x1 512->1024/2 28 gemm", "conv2d.gemm1x1", conv(512, 28, 1024, 1, 2)),
    ("winograd 512 28", "conv2d.winograd", conv(512, 28, 512, 3)),
    ("bert 128x3072x768", "matmul.packed", MatmulWorkload(128, 3072, 768)),
    ("bert 128x768x3072", "matmul.packed", MatmulWorkload(128, 768, 3072)),
    ("gemm 2048x512x2048", "matmul.packed", MatmulWorkload(2048, 512, 2048)),
    ("gemm 4096x256x1024", "matmul.packed", MatmulWorkload(4096, 256, 1024)),
]


def old_defaults(impl: str, wl, cfg: dict) -> dict:
    """The knobs as they were before they read the caches."""
    old = dict(cfg)
    if "out_order" in old:
        old["out_order"] = "oc_outer"
    if "pack_at" in old:
        g, ocb, bh, bw = wl.geometry, old["tile_oc"], old["tile_oh"][-1], old["tile_ow"][-1]
        fits = g.OH % bh == 0 and g.OW % bw == 0 and g.OH * g.OW * ocb * 4 <= 64 * 1024
        deep = g.K * g.C * g.R * g.S > 4 * g.N * g.K * g.OH * g.OW
        old["pack_at"] = "oc_block" if fits and deep else "root"
    if "tile_order" in old:
        M, N = (wl.M, wl.N) if isinstance(wl, MatmulWorkload) else (wl.geometry.K, wl.geometry.OH * wl.geometry.OW)
        old["tile_order"] = "cols_outer" if N >= M else "rows_outer"
    return old


def default_config(impl: str, wl, target) -> dict:
    im = registry.IMPLEMENTATIONS[impl]
    sp = autotune.create_task(im.template, im.args(wl), target).config_space
    return sp.get(sp.default_index()).to_json()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--no-time", action="store_true", help="print the derivations only")
    ap.add_argument("--flip", action="store_true",
                    help="also time every shape's default for this machine against the other loop order")
    args = ap.parse_args()
    here = host()
    targets = {k: here if c is None else dataclasses.replace(here, caches=c) for k, c in SETTINGS.items()}
    print(env_note())
    print("caches: " + "; ".join(f"{k} L1d {format_size(t.caches.l1d)} L2 {format_size(t.caches.l2)} "
                                 f"L3 {format_size(t.caches.l3)}" for k, t in targets.items()))
    rows, to_time = [], []
    for label, impl, wl in SHAPES:
        cfgs = {k: default_config(impl, wl, t) for k, t in targets.items()}
        cfgs = {"old": old_defaults(impl, wl, cfgs["here"]), **cfgs}
        shown = [k for k in KNOBS if k in cfgs["here"]]
        rows.append([label, *[" ".join(str(c[k]) for k in shown) for c in cfgs.values()]])
        distinct = {}
        for name, c in cfgs.items():
            distinct.setdefault(str(sorted(c.items())), (name, c))
        if len(distinct) > 1:
            to_time.append((label, impl, wl, list(distinct.values())))
        knob = next((k for k in ORDERS if k in cfgs["here"]), None)
        if args.flip and knob:
            a, b = ORDERS[knob]
            flipped = {**cfgs["here"], knob: b if cfgs["here"][knob] == a else a}
            to_time.append((f"{label} ({knob})", impl, wl, [("here", cfgs["here"]), (flipped[knob], flipped)]))
    print(table(["shape", *["old", *SETTINGS]], rows, "lllll"))
    if args.no_time:
        return
    print("\nconfigs that differ, timed on this machine (ms, median of alternating rounds):")
    for label, impl, wl, variants in to_time:
        built = {}
        for name, c in variants:
            f, a, _ = build(impl, wl, c, here)
            built[name] = (f, a)
        ms = {k: v * 1e3 for k, v in alternate(built, args.rounds).items()}
        names = list(ms)
        print(f"  {label}: " + ", ".join(f"{k} {v:.3f}" for k, v in ms.items())
              + f"   ({names[0]} / {names[1]} = {ms[names[0]] / ms[names[1]]:.2f})", flush=True)


if __name__ == "__main__":
    main()
