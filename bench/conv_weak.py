"""ResNet-50's (and AlexNet's) weak convs (issue 19) as the model runs them: default against alternative configs.

    python bench/conv_weak.py                     # every shape, 2 threads (TILEWISE_NUM_THREADS)
    python bench/conv_weak.py s2_3x3_128 256_64   # some of them
    python bench/conv_weak.py --rounds 21         # more alternating rounds
    python bench/conv_weak.py stem --tiles        # every register tile the template's space allows

Each conv is built by the implementation an untuned model build picks (te.ops.registry), with
the epilogue the model fuses into it (bias + ReLU, bias + residual add + ReLU, or bias alone),
its weights pre-packed as a model build packs them, and arrays 64-byte aligned as the model's
workspace is (numpy's large arrays sit 16 bytes past a line: every vector access would straddle
two).  The untuned kernel and the alternatives listed in ALTERNATIVES (knob overrides, or
another implementation's defaults) run in alternating rounds in one process, all reading the
same input, so a change in the machine's speed hits them alike.  Each call reads its weight
from rotating copies larger than the L2s (autotune.call_timing.weight_copies), cold as in a
model, and a round's time is the median of the calls during which no thread of this process
waited for a CPU (autotune.call_timing.RunQueueClock, per_call): on a machine other processes
load, the calls they disturbed are left out, not averaged in.  GFLOP/s are against the fp32
FMA peak 'tilewise info' shows (measured once, cached: tilewise.ceilings).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import autotune                                            # noqa: E402
import te                                                  # noqa: E402
from common import env_note, table                         # noqa: E402
from autotune.call_timing import CLEAN_WAIT, RunQueueClock, per_call, weight_copies  # noqa: E402
from te import ops                                         # noqa: E402
from tilewise.ceilings import ceilings                     # noqa: E402
from te.ops import registry                                # noqa: E402
from te.ops.registry import ConvWorkload                   # noqa: E402
from te.runtime import aligned_zeros                       # noqa: E402
from te.target import host                                 # noqa: E402

# name: (C, H, K, R, stride, epilogue) of ResNet-50 (v1.5) convs under 70% of peak in session 13, and its
# direct 3x3 at 7x7 (Winograd is not preferred on 7x7 maps: implementations.WinogradConv.match)
SHAPES = {
    "s2_3x3_128": (128, 56, 128, 3, 2, "relu"), "s2_3x3_256": (256, 28, 256, 3, 2, "relu"),
    "s2_3x3_512": (512, 14, 512, 3, 2, "relu"),
    "p256_512_s2": (256, 56, 512, 1, 2, "bias"), "p512_1024_s2": (512, 28, 1024, 1, 2, "bias"),
    "p1024_2048_s2": (1024, 14, 2048, 1, 2, "bias"),
    "p64_256": (64, 56, 256, 1, 1, "bias"),
    "64_64": (64, 56, 64, 1, 1, "relu"), "64_256_sum": (64, 56, 256, 1, 1, "sum"),
    "256_64": (256, 56, 64, 1, 1, "relu"), "256_128": (256, 56, 128, 1, 1, "relu"),
    "128_512_sum": (128, 28, 512, 1, 1, "sum"), "512_128": (512, 28, 128, 1, 1, "relu"),
    "512_256": (512, 28, 256, 1, 1, "relu"), "256_1024_sum": (256, 14, 1024, 1, 1, "sum"),
    "1024_256": (1024, 14, 256, 1, 1, "relu"), "2048_512": (2048, 7, 512, 1, 1, "relu"),
    "1024_512": (1024, 14, 512, 1, 1, "relu"),
    "512_2048_sum": (512, 7, 2048, 1, 1, "sum"), "stem": (3, 224, 64, 7, 2, "relu"),
    "3x3_512_7": (512, 7, 512, 3, 1, "relu"),
    "3x3_256_14": (256, 14, 256, 3, 1, "relu"), "3x3_128_28": (128, 28, 128, 3, 1, "relu"),
    "3x3_64_56": (64, 56, 64, 3, 1, "relu"),
    # AlexNet (the onnx light model) on AVX2, where the tuner found the defaults weak (session 30),
    # with groups and padding after the epilogue
    "alex_stem": (3, 224, 96, 11, 4, "relu", 1, 0), "alex_g5x5": (96, 26, 256, 5, 1, "relu", 2, 2),
    "alex_g3x3_384": (384, 12, 384, 3, 1, "relu", 2, 1), "alex_g3x3_256": (384, 12, 256, 3, 1, "relu", 2, 1),
    "alex_3x3_384": (256, 12, 384, 3, 1, "relu", 1, 1),
    # and ZFNet-512's (session 31)
    "zf_stem": (3, 224, 96, 7, 2, "relu", 1, 0), "zf_5x5_s2": (96, 54, 256, 5, 2, "relu", 1, 0),
    "zf_3x3_512": (256, 12, 512, 3, 1, "relu", 1, 1), "zf_3x3_512_512": (512, 12, 512, 3, 1, "relu", 1, 1),
}
CLEAN_CALLS = 3         # undisturbed calls a variant needs for its round to count
# knob overrides timed beside the default, by the implementation the default build uses
ALTERNATIVES = {
    "conv2d.gemm1x1": {"session 13 default": {"bn": 32, "tile_y": [-1, 8], "pack_input": True,
                                             "tile_order": "cols_outer"},
                       "panels": {"tile_order": "panels", "pack_input": True},
                       "packed first": {"tile_order": "cols_outer", "pack_input": True},
                       "6x4 tile packed": {"bn": 64, "tile_y": [-1, 6], "pack_input": True}},
    "conv2d.direct": {"rows_outer": {"out_order": "rows_outer"}, "oc_outer": {"out_order": "oc_outer"},
                      "chunks_outer": {"out_order": "chunks_outer"},
                      "chunks_outer ic16": {"out_order": "chunks_outer", "tile_ic": [-1, 16]}, "vec_oc": {"store": "vec_oc"},
                      "one row": {"tile_oh": [-1, 1]}, "oc_block": {"pack_at": "oc_block"},
                      "1x1 GEMM": {"implementation": "conv2d.gemm1x1"}, "stem kernel": {"implementation": "conv2d.stem"}},
    "conv2d.stem": {"direct": {"implementation": "conv2d.direct"}},
}


# the knobs of each implementation's register tile, swept by --tiles (its other knobs as the default
# config sets them, and the tap unroll with two settings: it decides what the tile's loop body holds)
TILE_KNOBS = {"conv2d.stem": ("tile_k", "tile_h", "tile_v"),
              "conv2d.direct": ("tile_oc", "tile_oh", "tile_ow", "unroll_kw")}


def tile_sweep(wl: ConvWorkload, impl, target) -> dict[str, dict]:
    """Every register tile of impl's config space for wl that meets its constraints, as overrides."""
    knobs = TILE_KNOBS.get(impl.name)
    if knobs is None:
        raise SystemExit(f"--tiles: {impl.name} has no register tile to sweep (one of {', '.join(TILE_KNOBS)})")
    sp = autotune.create_task(impl.template, impl.args(wl), target).config_space
    out: dict[str, dict] = {}
    for index in range(len(sp)):
        if not sp.valid(index):
            continue
        values = sp.get(index).to_json()
        tile = {k: values[k] for k in knobs if k in values}
        label = " ".join(f"{k}={v[-1] if isinstance(v, list) else v}" for k, v in tile.items())
        out.setdefault(label, tile)
    return out


def workload(name: str) -> tuple[ConvWorkload, str]:
    C, H, K, R, stride, epilogue, *rest = SHAPES[name]
    groups, pad = rest if rest else (1, R // 2)
    return ConvWorkload((1, C, H, H), (K, C // groups, R, R), (stride, stride), (pad,) * 4, groups=groups), epilogue


def aligned(shape, dtype, rng: np.random.Generator) -> np.ndarray:
    """Random values in an array that starts on an ALIGN boundary, as the model's buffers do."""
    a = aligned_zeros(shape, dtype)
    a[...] = rng.standard_normal(shape)
    return a


def build(name: str, impl, overrides: dict | None, target, arrays: dict):
    """(kernel, its arrays, flops) of the conv with its model epilogue, untuned as a model build
    runs it (overrides None, or {"implementation": name}: that implementation's defaults) or the
    template's default config updated by `overrides` (knobs the template lacks skipped: a strided
    conv has no pack_input); arrays of the same name and shape are shared between variants."""
    wl, epilogue = workload(name)
    if overrides and "implementation" in overrides:
        impl, overrides = registry.IMPLEMENTATIONS[overrides["implementation"]], None
    task = autotune.create_task(impl.template, impl.args(wl), target)
    sp = task.config_space
    if overrides is None:
        cfg = impl.config(wl, target)
    else:
        cfg = sp.default_with({k: v for k, v in overrides.items() if k in sp.space_map})
    x, w = impl.placeholders(wl, cfg, target, True)
    b = te.placeholder((wl.w_shape[0],), name="b")
    y = impl.compute([x, w, b], wl, cfg, target, True)
    ins = [x, w, b]
    if epilogue == "sum":
        r = te.placeholder(y.shape, name="r")
        ins.append(r)
        y = ops.relu(ops.add(y, r))
    elif epilogue == "relu":
        y = ops.relu(y)
    s = ops.schedule([y], target, anchor_schedule=lambda s, out, final: impl.schedule(s, out, final, cfg, target))
    f = te.build(s, ins + [y], target=target)
    rng = np.random.default_rng(0)
    args = [arrays.setdefault((t.name, tuple(t.shape)), aligned(t.shape, t.dtype, rng)) for t in ins + [y]]
    return f, args, task.flops


def timed_rounds(variants: dict, rounds: int, target, min_time: float = 0.05,
                 attempts: int = 20) -> dict[str, float]:
    """Median over rounds of each variant's time per call (seconds), its weight (argument 1) cold.

    A round counts where every variant had CLEAN_CALLS calls no wait for a CPU disturbed (their
    median is its time); a round that did not is run again, up to `attempts` times the rounds,
    then the rounds so far are used, or per_call's quartile of all calls if there are none."""
    rotations = {k: [[c if i == 1 else x for i, x in enumerate(a)] for c in weight_copies(a[1], target)]
                 for k, (f, a) in variants.items()}
    times: dict[str, list[float]] = {k: [] for k in variants}
    fallback: dict[str, list[float]] = {k: [] for k in variants}
    for f, a in variants.values():
        f(*a)
    clock = RunQueueClock()             # after a call: the OpenMP team is there to be read
    for _ in range(rounds * attempts):
        if min(len(v) for v in times.values()) >= rounds:
            break
        clock.refresh()
        this: dict[str, float] = {}
        for k, (f, _) in variants.items():
            calls, waits, t0 = [], [], time.perf_counter()
            while not calls or time.perf_counter() - t0 < min_time:
                dt, wait = clock.call(f, rotations[k][len(calls) % len(rotations[k])])
                calls.append(dt)
                waits.append(wait)
            clean = [t for t, w in zip(calls, waits) if w is not None and w <= CLEAN_WAIT * t]
            fallback[k].append(per_call(calls))
            if len(clean) >= CLEAN_CALLS:
                this[k] = float(np.median(clean))
        if len(this) == len(variants):
            for k, t in this.items():
                times[k].append(t)
        else:
            time.sleep(1.0)             # the machine is busy: let the others' time slices pass
    clock.close()
    if not all(times.values()):
        print("  (no round ran undisturbed: times are per_call's quartiles, rough)", flush=True)
        times = fallback
    return {k: float(np.median(v)) for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("shapes", nargs="*", choices=[[], *SHAPES], help="default: all")
    ap.add_argument("--rounds", type=int, default=11)
    ap.add_argument("--tiles", action="store_true",
                    help="time every register tile the implementation's space allows (TILE_KNOBS), not ALTERNATIVES")
    args = ap.parse_args()
    target = host()
    print(env_note())
    peak = ceilings(quiet=True).peak_gflops     # measured once and cached, as 'tilewise info' shows it
    print(f"fp32 FMA peak on {target.threads} threads: {peak:.0f} GFLOP/s")
    rows = []
    for name in args.shapes or SHAPES:
        wl, _ = workload(name)
        impl = registry.candidates(wl, target)[0][1]
        arrays: dict = {}
        variants, flops = {}, 0.0
        others = tile_sweep(wl, impl, target) if args.tiles else ALTERNATIVES.get(impl.name, {})
        for label, over in {"untuned": None, **others}.items():
            other = registry.IMPLEMENTATIONS.get((over or {}).get("implementation", impl.name))
            if other is None or other.match(wl, target) is None:
                continue                # another implementation that does not run this conv
            f, a, fl = build(name, impl, over, target, arrays)
            variants[label] = (f, a)
            flops = flops or fl         # the untuned kernel's count
        secs = timed_rounds(variants, args.rounds, target)
        for label, t in secs.items():
            rows.append([name, impl.name, label, f"{t * 1e3:.3f}", f"{flops / t / 1e9:.0f}",
                         f"{flops / t / 1e9 / peak:.0%}", f"{secs['untuned'] / t:.2f}x"])
            print("  " + " ".join(rows[-1]), flush=True)
    print()
    print(table(["conv", "implementation", "config", "ms", "GFLOP/s", "of peak", "untuned / this"], rows,
                "lllrrrr"))


if __name__ == "__main__":
    main()
