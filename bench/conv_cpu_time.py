"""ResNet-50's convs (bench/conv_weak.py's shapes) on one thread, timed by the calling thread's CPU
time: a comparison that holds on a machine other processes load.

    python bench/conv_cpu_time.py 256_1024_sum 512_2048_sum          # the untuned kernels
    python bench/conv_cpu_time.py 256_64 --var 'k2={"tile_k": [-1, 2]}'   # and a knob override
    python /other/checkout/bench/conv_cpu_time.py ...      # another checkout's code (it imports its own)

Each conv is built as conv_weak.build builds it (the implementation an untuned model build picks,
its model epilogue, weights pre-packed, arrays aligned); with --var, also the template's default
config updated by the given knobs ("impl" names another implementation).  With one thread the
parallel loop runs in the calling thread, so time.thread_time counts only the cycles the kernel
got: time the OS gave other processes is left out (their cache traffic is not).  The variants
alternate in rounds; a round's figure is a variant's fastest of 5 calls, and the median over the
rounds is printed, with its share of the one-thread fp32 peak ('tilewise info') and its ratio to
the untuned kernel.  Weights stay warm (the same array every call).
"""
from __future__ import annotations

import os

os.environ["TILEWISE_NUM_THREADS"] = "1"        # before te loads: the kernels' thread count

import argparse                                  # noqa: E402
import sys                                       # noqa: E402
import time                                      # noqa: E402

import numpy as np                               # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import conv_weak                                 # noqa: E402
from common import knob_variants, table          # noqa: E402
from te.ops import registry                      # noqa: E402
from te.target import host                       # noqa: E402
from tilewise.ceilings import ceilings           # noqa: E402

CALLS = 5           # calls per variant and round; the fastest counts


def variants_of(name: str, extra: dict[str, dict], target) -> tuple[dict, float]:
    """{label: (kernel, arrays)} of the untuned kernel and each override, and the untuned FLOPs."""
    wl, _ = conv_weak.workload(name)
    impl = registry.candidates(wl, target)[0][1]
    arrays: dict = {}
    f, args, flops = conv_weak.build(name, impl, None, target, arrays)
    out = {"untuned": (f, args)}
    for label, over in extra.items():
        over = dict(over)
        other = registry.IMPLEMENTATIONS[over.pop("impl")] if "impl" in over else impl
        if other.match(wl, target) is None:
            print(f"  {name}: {other.name} does not run this conv; {label} left out", flush=True)
            continue
        out[label] = conv_weak.build(name, other, over or None, target, arrays)[:2]
    return out, flops


def cpu_times(variants: dict, rounds: int) -> dict[str, float]:
    """Median over rounds of each variant's fastest call (thread CPU seconds), alternating."""
    best: dict[str, list[int]] = {k: [] for k in variants}
    for f, args in variants.values():
        f(*args)
    for _ in range(rounds):
        for k, (f, args) in variants.items():
            calls = []
            for _ in range(CALLS):
                t0 = time.thread_time_ns()
                f(*args)
                calls.append(time.thread_time_ns() - t0)
            best[k].append(min(calls))
    return {k: float(np.median(v)) / 1e9 for k, v in best.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("shapes", nargs="*", choices=[[], *conv_weak.SHAPES], help="default: all")
    ap.add_argument("--rounds", type=int, default=11)
    ap.add_argument("--var", action="append", default=[], metavar="LABEL=JSON",
                    help='a variant: knob overrides of the template default, e.g. k2={"tile_k": [-1, 2]}')
    args = ap.parse_args()
    extra = knob_variants(args.var)
    target = host()
    peak = ceilings(quiet=True).peak_gflops_1
    import te
    print(f"code from {os.path.dirname(os.path.dirname(te.__file__))}, one thread, "
          f"peak ~{peak:.0f} GFLOP/s per core")
    rows = []
    for name in args.shapes or conv_weak.SHAPES:
        variants, flops = variants_of(name, extra, target)
        secs = cpu_times(variants, args.rounds)
        for label, t in secs.items():
            rows.append([name, label, f"{t * 1e6:.1f}", f"{flops / t / 1e9:.0f}", f"{flops / t / 1e9 / peak:.0%}",
                         f"{secs['untuned'] / t:.3f}x"])
            print("  " + " ".join(rows[-1]), flush=True)
    print()
    print(table(["conv", "config", "us (CPU)", "GFLOP/s", "of peak", "untuned / this"], rows, "llrrrr"))


if __name__ == "__main__":
    main()
