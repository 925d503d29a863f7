"""This machine's ceilings (fp32 peak, memory bandwidth, and on request the int8 peaks of VNNI
and AMX), measured once and cached per ISA.

Every speed figure the command prints is judged against these, so they are measured with
te.machine and kept in <cache dir>/machine.json (TILEWISE_CACHE_DIR, else ~/.cache/tilewise),
keyed by the ISA key; `tilewise info --remeasure` measures again.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field

from .common import note


@dataclass
class Ceilings:
    """Measured ceilings of this machine."""
    isa: str
    cpu: str
    threads: int
    peak_gflops: float            # on `threads` threads
    peak_gflops_1: float          # on one thread
    bandwidth_gbs: float
    measured_at: float
    cached: bool
    int8_peak_gops: dict[str, float] = field(default_factory=dict)   # "vnni"/"amx" -> GOP/s on `threads`


def cache_file() -> str:
    """Where the measurements are kept."""
    from te.cache import cache_dir
    return os.path.join(cache_dir(), "machine.json")


def _read() -> dict:
    try:
        with open(cache_file(), encoding="utf-8") as f:
            data = json.load(f)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _write(data: dict) -> None:
    from te.files import atomic_write
    path = cache_file()
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with atomic_write(path) as f:
            json.dump(data, f, indent=1, sort_keys=True)
    except OSError as e:          # a read-only home is no reason to fail a command
        note(f"tilewise: note: cannot cache the machine measurement in {path} ({e.strerror or e})")


def ceilings(remeasure: bool = False, quiet: bool = False, int8: bool = False) -> Ceilings:
    """The cached ceilings for this ISA and thread count, measured (and cached) when missing;
    with `int8`, the int8 peaks of the dot-product units this CPU has (te.peak_int8) too."""
    from te import machine
    from te.runtime import num_threads
    from te.target import host
    tgt = host()
    threads = num_threads()
    data = _read()
    entry = data.get(tgt.isa) if isinstance(data.get(tgt.isa), dict) else {}
    peaks = entry.get("peak_gflops") if isinstance(entry.get("peak_gflops"), dict) else {}
    cached = True
    if remeasure or entry.get("peak_kernel") != machine.PEAK_KERNEL:    # measured by an older kernel
        entry, peaks = {}, {}
    need = [n for n in sorted({1, threads}) if not _positive(peaks.get(str(n)))]
    if need or not _positive(entry.get("bandwidth_gbs")):
        cached = False
        if not quiet:
            note("measuring this machine's fp32 peak and memory bandwidth (once; cached in "
                 f"{cache_file()})...")
        for n in need:
            peaks[str(n)] = machine.peak_gflops(n)
        if not _positive(entry.get("bandwidth_gbs")):
            entry["bandwidth_gbs"] = machine.bandwidth_gbs()
        entry.update(cpu=tgt.cpu, peak_gflops=peaks, measured_at=time.time(), peak_kernel=machine.PEAK_KERNEL)
        data[tgt.isa] = entry
        _write(data)
    int8_peaks = _int8_peaks(entry, threads, quiet) if int8 else {}
    if int8_peaks.pop("measured", False):
        cached = False
        data[tgt.isa] = entry
        _write(data)
    return Ceilings(tgt.isa, entry.get("cpu", tgt.cpu), threads, float(peaks[str(threads)]),
                    float(peaks["1"]), float(entry["bandwidth_gbs"]), float(entry.get("measured_at", 0)),
                    cached, int8_peaks)


def _int8_peaks(entry: dict, threads: int, quiet: bool) -> dict:
    """kind -> the int8 peak on `threads` from entry["int8_peak_gops"][kind][threads], measuring
    the missing ones (then "measured": True is in the result)."""
    from te import peak_int8
    table = entry.get("int8_peak_gops") if isinstance(entry.get("int8_peak_gops"), dict) else {}
    out: dict = {}
    for kind in ("vnni", "amx"):
        if not peak_int8.available(kind):
            continue
        per = table.get(kind) if isinstance(table.get(kind), dict) else {}
        if not _positive(per.get(str(threads))):
            if not quiet:
                note(f"measuring this machine's int8 {kind} peak (once; cached)...")
            per[str(threads)] = peak_int8.peak_gops(kind, threads)
            out["measured"] = True
        table[kind] = per
        out[kind] = float(per[str(threads)])
    entry["int8_peak_gops"] = table
    return out


def _positive(x) -> bool:
    return isinstance(x, (int, float)) and x > 0
