"""The data caches of a target, per core, and the cost of re-reading a working set from them.

Defaults whose best value depends on the caches (which operand a loop order keeps close, how
much a task may accumulate before its epilogue) read them from `Target.caches`, a `Caches`:

* the host's come from Linux's sysfs (/sys/devices/system/cpu/cpu0/cache/index*/{level,type,size}),
  else from glibc's sysconf (which asks cpuid leaf 4 on x86), else `CONSERVATIVE`;
* a cross target (`--target 'llvm -mcpu=...'`) has the sizes its string gives (`-l1d=32K
  -l2=1M -l3=32M`), else `CONSERVATIVE`: 32 KiB L1d and 1 MiB L2, the smallest of the x86 cores
  tilewise meets (Zen 4; Ice Lake server has 48 KiB / 1.25 MiB, Sapphire and Emerald Rapids
  48 KiB / 2 MiB), so a default sized for them never spills on a bigger one.

The sizes decide knob defaults only: a tuned config names every knob, so the code a record
builds does not depend on them and they are not part of the ISA key records are matched by.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

KiB, MiB = 1 << 10, 1 << 20
SYSFS_CPU0 = Path("/sys/devices/system/cpu/cpu0")
# Bytes a cycle one core reads from L1d, L2, L3 and memory: roughly halving at each level down
# on recent Intel and AMD cores (two 64-byte loads, one line from L2, ~32 from L3, ~16 from DRAM
# when the other cores stream too).  The models below need only these ratios to be about right.
BYTES_PER_CYCLE = (128.0, 64.0, 32.0, 16.0)
# The share of a level a working set may fill and still be there when read again: the output
# written meanwhile and conflict misses take the rest.  A 1 MiB packed operand re-read per row
# tile stays in a 2 MiB L2 (measured: the order re-reading it there is the faster one).
FILL = 0.75
FMA_UNITS = 2       # vector FMAs a cycle: every AVX2 and AVX-512 core tilewise meets has two ports
# Independent FMAs that hide their latency: 4 cycles on each of those cores (Zen 3-5, Ice Lake,
# Sapphire/Emerald Rapids) x FMA_UNITS; a register tile with fewer accumulators leaves ports idle.
FMAS_IN_FLIGHT = 4 * FMA_UNITS
# Bytes a cycle a core moves to or from NCHW lines beyond its L2 when it visits them a channel plane
# apart (a tile's input lines per channel, a GEMM tile's output rows): each plane lies H*W*4 bytes
# after the last (12.5 KiB at 56x56), so the L2 streamers, which follow addresses within a 4 KiB
# page, never fetch them ahead, and each line costs a miss's latency (~50-100 cycles to L3 on
# Zen 4 and on Intel's server cores) with ~10-16 misses in flight: ~8 bytes a cycle, a quarter of
# the L3's streaming rate.  Measured on Emerald Rapids (1 thread): the stride-2 3x3 128@56x56 conv,
# whose 1.7 MiB input oc_outer re-reads from L3 per channel block, runs 1.16-1.3x faster with
# rows_outer.
PLANE_BYTES_PER_CYCLE = 8.0
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([KMG]?)(?:i?B)?", re.I)


@dataclass(frozen=True)
class Caches:
    """Data cache sizes in bytes that one core can use: private L1d and L2, its share of L3."""
    l1d: int
    l2: int
    l3: int

    def __post_init__(self):
        for name in ("l1d", "l2", "l3"):
            v = getattr(self, name)
            if type(v) is not int or v < 4 * KiB:
                raise ValueError(f"cache size {name}={v!r}: give a whole number of bytes, at least 4K "
                                 f"(e.g. -{name}=32K)")

    def level(self, working_set: float) -> int:
        """The closest level (0 = L1d, 1 = L2, 2 = L3, 3 = memory) where `working_set` bytes (all
        that is read between two reads of the same byte) stay: one they fill at most FILL of."""
        for i, size in enumerate((self.l1d, self.l2, self.l3)):
            if working_set <= FILL * size:
                return i
        return 3

    def reread_cycles(self, streams: list[tuple[float, float]]) -> float:
        """Cycles a core spends re-reading operands: for each (bytes read, working set between two
        reads of the same byte), the bytes at BYTES_PER_CYCLE of the level that working set stays in."""
        return sum(nbytes / BYTES_PER_CYCLE[self.level(ws)] for nbytes, ws in streams)

    def plane_cycles(self, nbytes: float, working_set: float) -> float:
        """Cycles to move `nbytes` of NCHW lines visited a channel plane apart from the level
        `working_set` stays in: beyond L2 at PLANE_BYTES_PER_CYCLE, where no prefetcher helps."""
        level = self.level(working_set)
        return nbytes / (BYTES_PER_CYCLE[level] if level < 2 else PLANE_BYTES_PER_CYCLE)

    def loop_cycles(self, flops: float, lanes: int, streams: list[tuple[float, float]]) -> float:
        """A loop nest's cycles on one core: its FMAs (FMA_UNITS a cycle of `lanes` lanes) plus its
        re-reads (reread_cycles), not overlapped: a bound that only a loop order's re-reads change."""
        return flops / (2.0 * FMA_UNITS * lanes) + self.reread_cycles(streams)

    def options(self) -> str:
        """The target-string options that give these sizes, e.g. '-l1d=48K -l2=2M -l3=150M'."""
        return " ".join(f"-{n}={format_size(getattr(self, n))}" for n in ("l1d", "l2", "l3"))


# A loop order the cycle model prefers replaces the usual one only below this share of its cycles:
# the model is rough, and the usual orders are the measured ones.
ORDER_MARGIN = 0.9


def beats(cycles: float, usual_cycles: float) -> bool:
    """Does a loop order taking `cycles` replace the usual one taking `usual_cycles` (ORDER_MARGIN)?"""
    return cycles < ORDER_MARGIN * usual_cycles


CONSERVATIVE = Caches(l1d=32 * KiB, l2=1 * MiB, l3=8 * MiB)
OPTIONS = ("l1d", "l2", "l3")


def parse_size(text: str, what: str = "cache size") -> int:
    """Bytes from '48K', '1.25M', '2MiB', '32768' (K/M/G are binary, as sysfs and lscpu write them)."""
    m = _SIZE.fullmatch(text.strip())
    if not m:
        raise ValueError(f"{what} {text!r}: write a size like 48K, 1.25M or 2M")
    return int(float(m.group(1)) * {"": 1, "K": KiB, "M": MiB, "G": 1 << 30}[m.group(2).upper()])


def format_size(n: int) -> str:
    """'48K', '2M', '1280K': the shortest exact spelling parse_size reads back."""
    for unit, scale in (("G", 1 << 30), ("M", MiB), ("K", KiB)):
        if n % scale == 0:
            return f"{n // scale}{unit}"
    return str(n)


def _cpu_count(cpu_list: str) -> int:
    """How many CPUs a sysfs list like '0-3,8,10-11' names."""
    n = 0
    for part in filter(None, cpu_list.strip().split(",")):
        lo, _, hi = part.partition("-")
        n += int(hi or lo) - int(lo) + 1
    return n


def read_sysfs(cpu_dir: Path = SYSFS_CPU0) -> Caches | None:
    """cpu_dir's data caches from sysfs (None when it lists no L1d or L2): L1d and L2 as they are
    (private to a core), L3 divided among the cores that share it (its shared_cpu_list over the
    core's SMT siblings)."""
    sizes: dict[int, int] = {}
    try:
        for index in sorted((cpu_dir / "cache").glob("index*")):
            if (index / "type").read_text().strip() not in ("Data", "Unified"):
                continue
            level, size = int((index / "level").read_text()), parse_size((index / "size").read_text())
            if level == 3:
                sharing = _cpu_count((index / "shared_cpu_list").read_text())
                siblings_file = cpu_dir / "topology" / "thread_siblings_list"
                siblings = _cpu_count(siblings_file.read_text()) if siblings_file.exists() else 1
                size = size * siblings // max(1, sharing)
            sizes[level] = size
    except (OSError, ValueError) as e:
        log.debug("cache sizes from %s unreadable: %s", cpu_dir, e)
        return None
    if 1 not in sizes or 2 not in sizes:
        return None
    return Caches(sizes[1], sizes[2], sizes.get(3, max(sizes[2], CONSERVATIVE.l3)))


# glibc's sysconf names for the data caches (bits/confname.h), which Python's os.sysconf lacks
_SC_LEVEL1_DCACHE_SIZE, _SC_LEVEL2_CACHE_SIZE, _SC_LEVEL3_CACHE_SIZE = 188, 191, 194


def read_sysconf() -> Caches | None:
    """The data caches glibc's sysconf reports (on x86 from cpuid leaf 4), None where it reports
    none or there is no glibc."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.sysconf.restype, libc.sysconf.argtypes = ctypes.c_long, [ctypes.c_int]
        libc.gnu_get_libc_version.restype = ctypes.c_char_p      # only glibc has it: the numbers are its
        libc.gnu_get_libc_version()
    except (OSError, AttributeError):
        return None
    l1, l2, l3 = (libc.sysconf(n) for n in (_SC_LEVEL1_DCACHE_SIZE, _SC_LEVEL2_CACHE_SIZE, _SC_LEVEL3_CACHE_SIZE))
    if l1 < 4 * KiB or l2 < 4 * KiB:
        return None
    # glibc gives the whole L3: divide it among the CPUs, as the share sysfs gives is
    return Caches(l1, l2, max(l2, l3 // max(1, os.cpu_count() or 1)) if l3 > 0 else max(l2, CONSERVATIVE.l3))


@functools.lru_cache(maxsize=None)
def host_caches() -> Caches:
    """This machine's data caches per core: sysfs, else sysconf (cpuid), else CONSERVATIVE."""
    found = read_sysfs() or read_sysconf()
    if found is None:
        log.info("no cache sizes from sysfs or sysconf: using %s", CONSERVATIVE.options())
    return found or CONSERVATIVE
