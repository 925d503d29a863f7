"""How the runner times one kernel's calls on a shared machine: a repeat's time from its calls
(`per_call`), the CPU waits of the process's threads around each call (`RunQueueClock`), and the
arrays a kernel is timed on as a model holds them (`padded_array`, cold `weight_copies`).  Used
by the tuner's runner (autotune/measure.py) and the model check (frontends/profile.py)."""
from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass

from te.native_call import aligned_zeros
from te.target import Target


def per_call(times: list[float], waits: list[float] | None = None) -> float:
    """One repeat's time per call from its calls' times (seconds) and, where known, how long the
    runner's threads waited for a CPU during each (`waits`, seconds: RunQueueClock).

    On a shared machine a call that the OS preempts, or whose parallel team waits at a barrier
    for a thread descheduled until its next time slice (milliseconds), takes many times the
    kernel's own time; such calls say how busy the machine was, not how fast the config is.
    With waits, those calls are known: the repeat's time is the median of the calls none of
    whose threads waited more than CLEAN_WAIT of the call (an honest figure: a median, not a
    lucky call), when 3 of them (or all, of fewer calls) are such.  Otherwise (no waits, or a
    machine too busy for that) the lower quartile of all calls (from 4; the mean of fewer),
    which leaves the stretched calls out while a quarter are not."""
    if waits is not None:
        clean = [t for t, w in zip(times, waits) if w <= CLEAN_WAIT * t]
        if clean and len(clean) >= min(3, len(times)):
            return statistics.median(clean)
    if len(times) < 4:
        return sum(times) / max(1, len(times))
    return sorted(times)[len(times) // 4]


CLEAN_WAIT = 0.02       # a call whose threads waited for a CPU longer than this share of it was disturbed


class RunQueueClock:
    """Seconds this process's threads have spent runnable but waiting for a CPU (the second field
    of Linux's /proc/self/task/<tid>/schedstat), read around each timed call; None where the
    kernel does not keep it.  The threads (the OpenMP team appears with the first parallel
    call) are looked up again by `refresh`, once per repeat."""

    def __init__(self):
        self.fds: dict[str, int] = {}
        self.ok = os.path.exists("/proc/self/task")
        self.refresh()

    def refresh(self) -> None:
        if not self.ok:
            return
        try:
            tids = os.listdir("/proc/self/task")
        except OSError:
            self.ok = False
            return
        for tid in tids:
            if tid not in self.fds:
                try:
                    self.fds[tid] = os.open(f"/proc/self/task/{tid}/schedstat", os.O_RDONLY)
                except OSError:
                    pass
        if not self.fds:
            self.ok = False

    def seconds(self) -> float | None:
        """The waits of the known threads so far (None if they cannot be read)."""
        if not self.ok:
            return None
        total = 0
        for tid, fd in list(self.fds.items()):
            try:
                total += int(os.pread(fd, 128, 0).split()[1])
            except (OSError, IndexError, ValueError):       # a thread that ended
                os.close(fd)
                del self.fds[tid]
        return total / 1e9

    def call(self, fn, args) -> tuple[float, float | None]:
        """(seconds fn(*args) took, seconds its process's threads waited for a CPU meanwhile or None)."""
        w = self.seconds()
        t = time.perf_counter()
        fn(*args)
        dt = time.perf_counter() - t
        after = self.seconds() if w is not None else None
        return dt, (after - w if after is not None else None)

    def close(self) -> None:
        for fd in self.fds.values():
            os.close(fd)
        self.fds.clear()


COLD_COPIES_MAX = 4096          # copies of a small weight: enough to leave the caches, few enough to make fast
COLD_BYTES_MAX = 256 << 20      # and never more memory than this for them
# The last-level cache one core can count on, at most: a VM sees its socket's whole L3 as shared
# by its own CPUs alone (this Emerald Rapids VM: 300 MiB by 2, so sysfs says 150 MiB a core),
# while the cores it cannot see use it too.  Real shares are 1.5-2 MiB a core (Ice Lake, Sapphire
# Rapids), 4 MiB (Zen 4 and 5: 32 MiB a CCD of 8), 5 MiB (Emerald Rapids: 320 MiB for 64 cores).
LLC_SHARE_MAX = 4 << 20


def llc_share(target: Target) -> int:
    """Bytes of the last-level cache the kernel's cores can count on: the target's L3 share per
    core, at most LLC_SHARE_MAX (see there: a VM's report of a shared L3 is not taken at its word),
    times its threads."""
    return min(target.caches.l3, LLC_SHARE_MAX) * max(1, target.threads)


@dataclass(frozen=True)
class ColdPlan:
    """How each timed call of a kernel meets its weight: read from `copies` copies in turn (1: the
    weight alone), so that `reuse` bytes of weights pass between two reads of one copy; `where`
    the weight then comes from, for people ('L3' or 'memory')."""
    copies: int
    reuse: int
    where: str


def cold_plan(weight_bytes: int, model_weight_bytes: int, target: Target) -> ColdPlan:
    """How a kernel whose weight holds `weight_bytes` is timed to meet it as its model does.

    In a model a kernel reads its weight once per run, after the model's other weights went
    through the caches.  The calls read copies of the weight in turn that together hold as much:
    at least four times the L2s of the kernel's cores (out of L2: a task made alone, or one of a
    model whose weights fit the cores' L3 share, llc_share), and as much as the model's weights
    (`model_weight_bytes`, 0 for a task not taken from a model) where they outgrow that share, so
    the weight comes from wherever the model's other weights leave it: memory or a far L3, as
    the hardware decides, whatever size of L3 the VM reports.  Copies, not a flush of the weight
    before each call (clflushopt, about as long as such a kernel): so timed, ResNet-50's 9 MiB 3x3
    weight took 6.4 ms a call against 1.0 ms in the model and 0.94 ms on copies (2 threads on a
    busy VM, bench/cold_weights.py; the idle gap a flush leaves between calls seems to cost the
    parallel team its CPUs).  Within COLD_COPIES_MAX and COLD_BYTES_MAX."""
    want = 4 * target.caches.l2 * max(1, target.threads)
    where = "L3"
    if model_weight_bytes > llc_share(target):
        want, where = max(want, model_weight_bytes), "memory"
    w = max(1, weight_bytes)
    copies = max(1, min(COLD_COPIES_MAX, -(-want // w), COLD_BYTES_MAX // w))
    return ColdPlan(copies, copies * w, where)


def weight_copies(w, target: Target, copies: int | None = None, reuse: list | None = None) -> list:
    """`copies` copies of weight w (w itself first; by default cold_plan's for a task alone: out of
    the L2s); `reuse`: a list of earlier copies of w's shape and dtype, filled again (no new memory
    to fault in) rather than made afresh."""
    n = copies or cold_plan(w.nbytes, 0, target).copies
    out = [w]
    spare = [c for c in (reuse or [])[1:] if c.shape == w.shape and c.dtype == w.dtype]
    for k in range(n - 1):
        out.append(spare[k] if k < len(spare) else padded_array(w.shape, w.dtype))
        out[-1][...] = w
    return out


class ColdWeights:
    """The arguments of a kernel's timed calls with its weight (argument `index`) read from
    `copies` of it in turn (copies[0] the array the pointers name), and each argument of `inputs`
    ({index: its copies}) from its own copies in turn; `args(k)`: call k's pointers."""

    def __init__(self, ptrs: list[int], index: int | None = None, copies: list | None = None,
                 inputs: dict[int, list] | None = None):
        self.rotation = [[c.ctypes.data if k == index else p for k, p in enumerate(ptrs)]
                         for c in (copies or [])] if index is not None else []
        self.rotation = self.rotation or [list(ptrs)]
        self.inputs = {i: [c.ctypes.data for c in cs] for i, cs in (inputs or {}).items() if cs}

    def args(self, k: int) -> list[int]:
        """The pointers of call k."""
        ptrs = self.rotation[k % len(self.rotation)]
        if not self.inputs:
            return ptrs
        ptrs = list(ptrs)
        for i, cs in self.inputs.items():
            ptrs[i] = cs[k % len(cs)]
        return ptrs


SLACK = 4096        # bytes after a padded array


def padded_array(shape, dtype):
    """A zeroed C-contiguous array at a 64-byte boundary with SLACK bytes of memory after it, as a
    model's weights blob and workspace hold a kernel's arguments (each 64-byte aligned, in one
    large buffer): a kernel whose last vector load runs past an argument's end reads memory
    there, and so must it where the tuner or the model check times it alone."""
    return aligned_zeros(shape, dtype, slack=SLACK)
