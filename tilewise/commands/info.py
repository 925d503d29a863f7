"""tilewise info: the CPU, the target tilewise compiles for, threads, and the measured ceilings."""
from __future__ import annotations

import json
import os
import time

from . import add_parser
from ..common import isa_tag, say

DESCRIPTION = """\
Show this CPU (name and ISA features), the target string tilewise compiles for, the ISA key
that tuning records are matched by, the thread count parallel kernels use, and a measurement
of this machine's fp32 peak (1 thread and all threads), its int8 peak (AVX-512 VNNI, and AMX
where present, on all threads) and memory bandwidth.  Every speed
figure tilewise prints is judged against these, so they are measured once and cached per ISA
(in $TILEWISE_CACHE_DIR or ~/.cache/tilewise/machine.json); --remeasure measures again."""

EXAMPLES = """\
  tilewise info
  tilewise info --remeasure          # measure peak and bandwidth again
  TILEWISE_NUM_THREADS=1 tilewise info
  tilewise info --json
  tilewise info --targets            # the CPU names and features --target accepts"""


def register(sub, common) -> None:
    p = add_parser(sub, common, "info", "this CPU, target, threads, peak and bandwidth", DESCRIPTION, EXAMPLES)
    p.add_argument("--remeasure", action="store_true", help="measure peak and bandwidth again (updates the cache)")
    p.add_argument("--no-measure", action="store_true", help="skip the peak and bandwidth figures")
    p.add_argument("--json", action="store_true", help="print the facts as one JSON object")
    p.add_argument("--targets", action="store_true",
                   help="list the CPU names (-mcpu=) and features (-mattr=) LLVM accepts in --target")
    p.set_defaults(run=run)


def run(args) -> int:
    if args.targets:
        return list_targets(args.json)
    import llvmlite

    import te
    from autotune import shared_logs
    from te import llvm_init
    from te.runtime import num_threads
    from te.target import ISA_FEATURES, host

    from ..ceilings import cache_file, ceilings
    tgt = host()
    threads = num_threads()
    env = os.environ.get("TILEWISE_NUM_THREADS", "").strip()
    try:
        omp = llvm_init.find_libgomp()
    except llvm_init.RuntimeMissingError as e:
        omp = f"missing: {e}"
    feats = sorted(tgt.feature_set)
    logs = shared_logs.find_logs(tgt.isa)
    facts = {
        "cpu": tgt.cpu, "isa": tgt.isa, "isa_level": isa_tag(tgt.isa), "target": str(tgt),
        "vector_bits": tgt.vector_bits, "features": feats, "threads": threads,
        "threads_from": "TILEWISE_NUM_THREADS" if env else "CPUs this process may use",
        "openmp": omp, "tilewise_version": te.__version__, "llvmlite_version": llvmlite.__version__,
        "llvm_version": ".".join(map(str, llvm_init.llvm().llvm_version_info)),
        "shared_logs": [str(p) for p in logs],
        "caches": {"l1d": tgt.caches.l1d, "l2": tgt.caches.l2, "l3": tgt.caches.l3},
    }
    c = None
    if not args.no_measure:
        c = ceilings(remeasure=args.remeasure, quiet=args.json, int8=True)
        facts.update(peak_gflops=c.peak_gflops, peak_gflops_1_thread=c.peak_gflops_1,
                     int8_peak_gops=c.int8_peak_gops,
                     bandwidth_gbs=c.bandwidth_gbs, measured_at=c.measured_at, measurement_cached=c.cached,
                     cache_file=cache_file())
    if args.json:
        say(json.dumps(facts, indent=1))
        return 0
    isa_feats = [f for f in ISA_FEATURES if f in tgt.feature_set]
    say(f"CPU            {tgt.cpu}")
    say(f"ISA            {isa_tag(tgt.isa)}, {tgt.vector_bits}-bit vectors: {' '.join(isa_feats) or 'baseline x86-64'}")
    say(f"ISA key        {tgt.isa}   (tuning records are matched by this)")
    say(f"target         {_short_target(tgt)}")
    say(f"threads        {threads} ({facts['threads_from']}; set TILEWISE_NUM_THREADS to change)")
    say(f"caches         {_caches_line(tgt.caches)}")
    say(f"OpenMP         {omp}")
    say(f"versions       tilewise {te.__version__}, llvmlite {llvmlite.__version__}, LLVM {facts['llvm_version']}")
    if logs:
        say(f"shared logs    {len(logs)} for this ISA: " + ", ".join(os.path.relpath(p) for p in logs[:4])
            + (" ..." if len(logs) > 4 else ""))
    else:
        say("shared logs    none for this ISA (tuning_logs/ and $TILEWISE_LOGS)")
    if c is not None:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(c.measured_at))
        src = f"cached, measured {when}; --remeasure to redo" if c.cached else "just measured, now cached"
        say(f"fp32 peak      {c.peak_gflops:.1f} GFLOP/s on {threads} thread(s), "
            f"{c.peak_gflops_1:.1f} GFLOP/s on 1 thread")
        if c.int8_peak_gops:
            say("int8 peak      " + ", ".join(f"{k.upper()} {g:.0f} GOP/s ({g / c.peak_gflops:.1f}x fp32)"
                                              for k, g in c.int8_peak_gops.items())
                + f" on {threads} thread(s)")
        say(f"bandwidth      {c.bandwidth_gbs:.1f} GB/s (1 thread, large copy)")
        say(f"ridge point    {c.peak_gflops / c.bandwidth_gbs:.1f} FLOP/byte   ({src})")
    if args.verbose:
        say(f"full target    {tgt}")
    return 0


def list_targets(as_json: bool) -> int:
    """Print LLVM's CPU names and features for this architecture (what --target may name)."""
    from te.target import known_cpus, known_features
    cpus, feats = known_cpus(), known_features()
    if as_json:
        say(json.dumps({"cpus": cpus, "features": feats}, indent=1))
        return 0
    say(f"CPUs (--target 'llvm -mcpu=NAME'), {len(cpus)}:")
    say("  " + " ".join(cpus))
    say(f"features (--target 'llvm -mcpu=NAME -mattr=+f1,-f2'), {len(feats)}:")
    width = max(map(len, feats))
    for name, desc in feats.items():
        say(f"  {name:<{width}}  {desc}")
    return 0


def _caches_line(caches) -> str:
    """The data caches per core as the defaults see them, e.g. 'L1d 48K, L2 2M, L3 150M per core'."""
    from te.caches import format_size
    return (f"L1d {format_size(caches.l1d)}, L2 {format_size(caches.l2)}, L3 {format_size(caches.l3)} per core "
            "(they size the untuned defaults; --target 'llvm ... -l1d=32K -l2=1M' for another CPU)")


def _short_target(tgt) -> str:
    """The target string, with the (long) feature list elided; `--verbose` shows every feature."""
    s = str(tgt)
    if len(s) <= 100:
        return s
    n = sum(1 for f in tgt.features.split(",") if f.startswith("+"))
    sizes = f" {tgt.caches.options()}" if s.endswith(tgt.caches.options()) else ""
    return f"llvm -mcpu={tgt.cpu} -mattr=+...{sizes}  ({n} features enabled; --verbose or --json prints them)"
