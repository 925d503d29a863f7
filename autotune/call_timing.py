"""How the runner times one kernel's calls on a shared machine: a repeat's time from its calls
(`per_call`), the CPU waits of the process's threads around each call (`RunQueueClock`), and the
arrays a kernel is timed on as a model holds them (`padded_array`, cold `weight_copies`).  Used
by the tuner's runner (autotune/measure.py) and the model check (frontends/profile.py)."""
from __future__ import annotations

import ctypes
import functools
import os
import statistics
import time
from dataclasses import dataclass

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


COLD_COPIES_MAX = 64            # copies of a small weight: enough to leave L2, few enough to make fast
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
    """How each timed call of a kernel meets its weight: read from `copies` copies in turn
    (1: the weight alone), and with `flush`, the weight's lines flushed from every cache first."""
    copies: int
    flush: bool = False

    @property
    def where(self) -> str:
        """Where the calls read the weight from, for people: 'memory' or 'L3'."""
        return "memory" if self.flush else "L3"


def cold_plan(weight_bytes: int, model_weight_bytes: int, target: Target) -> ColdPlan:
    """How a kernel whose weight holds `weight_bytes` is timed to meet it as its model does.

    In a model a kernel reads its weight once per run, after the model's other weights went
    through the caches.  Where they all fit the cores' last-level share (llc_share), the weight
    comes from L3: copies read in turn that together outgrow the L2s (weight_copies).  Where the
    model's weights outgrow it (`model_weight_bytes`; 0 for a task not taken from a model), it
    comes from memory: the runner flushes its lines before each call (clflushopt, outside the
    timed call: 2-3 ns a line, about the time of a kernel that reads its weight once), which
    times ResNet-50's kernels as the model runs them; copies outgrowing an L3 shared with cores
    the VM cannot see would not.  Without clflushopt (clflush is ten times slower, ordered)
    copies as large as COLD_BYTES_MAX allows."""
    if model_weight_bytes <= llc_share(target):
        return ColdPlan(_copies(weight_bytes, 4 * target.caches.l2 * max(1, target.threads)))
    if "clflushopt" in target.feature_set:
        return ColdPlan(1, flush=True)
    return ColdPlan(_copies(weight_bytes, max(2 * llc_share(target), model_weight_bytes)))


def _copies(weight_bytes: int, want: int) -> int:
    """Copies of a weight (itself included) that together hold `want` bytes, within
    COLD_COPIES_MAX and COLD_BYTES_MAX."""
    w = max(1, weight_bytes)
    return max(1, min(COLD_COPIES_MAX, -(-want // w), COLD_BYTES_MAX // w))


def weight_copies(w, target: Target, copies: int | None = None) -> list:
    """`copies` copies of weight w (w itself first; by default those that together hold at least
    four times the L2 of the cores the kernel runs on, within COLD_COPIES_MAX and COLD_BYTES_MAX):
    a kernel that reads them in turn meets its weight as in a model, out of L2."""
    n = copies or cold_plan(w.nbytes, 0, target).copies
    out = [w]
    for _ in range(n - 1):
        out.append(padded_array(w.shape, w.dtype))
        out[-1][...] = w
    return out


class ColdWeights:
    """The arguments of a kernel's timed calls with its weight (argument `index`) cold: read from
    `copies` of it in turn (copies[0] the array the call's pointers name), and with `flush`, its
    lines flushed from every cache before each call (flush_lines_fn).  `args(k)`: call k's pointers."""

    def __init__(self, ptrs: list[int], index: int | None, copies: list, flush: bool, target: Target):
        self.index = index
        self.copies = copies if index is not None else []
        self.rotation = [[c.ctypes.data if k == index else p for k, p in enumerate(ptrs)]
                         for c in self.copies] or [list(ptrs)]
        self.flush = flush_lines_fn(target) if flush and index is not None else None
        self.nbytes = copies[0].nbytes if self.copies else 0

    def args(self, k: int) -> list[int]:
        """The pointers of call k, its weight made cold for it."""
        ptrs = self.rotation[k % len(self.rotation)]
        if self.flush is not None:
            self.flush(ptrs[self.index], self.nbytes)
        return ptrs


_FLUSH_IR = """
define void @tw_flush_lines(ptr %p, i64 %n) {
entry:
  %empty = icmp sle i64 %n, 0
  br i1 %empty, label %done, label %loop
loop:
  %off = phi i64 [0, %entry], [%next, %loop]
  %a = getelementptr i8, ptr %p, i64 %off
  call void @llvm.x86.clflushopt(ptr %a)
  %next = add i64 %off, 64
  %more = icmp slt i64 %next, %n
  br i1 %more, label %loop, label %done
done:
  call void @llvm.x86.sse2.mfence()
  ret void
}
declare void @llvm.x86.clflushopt(ptr)
declare void @llvm.x86.sse2.mfence()
"""


@functools.lru_cache(maxsize=None)
def _flush_kernel(target: Target):
    from te import llvm_init
    from te.jit import JitModule
    jit = JitModule(llvm_init.llvm().parse_assembly(_FLUSH_IR), target)
    return jit, jit.function("tw_flush_lines", restype=None, argtypes=[ctypes.c_void_p, ctypes.c_int64])


def flush_lines_fn(target: Target):
    """flush(address, nbytes): write back and evict the cache lines of those bytes from every
    cache (clflushopt over them, then mfence), so the next read comes from memory; the target
    must have clflushopt (cold_plan asks for a flush only then)."""
    if "clflushopt" not in target.feature_set:
        raise ValueError(f"{target.cpu}: no clflushopt to flush a weight with; time it on copies (cold_plan)")
    _, fn = _flush_kernel(target)

    def flush(address: int, nbytes: int) -> None:
        start = address & ~63           # whole lines: the first may begin before the array
        fn(start, address + nbytes - start)
    return flush


SLACK = 4096        # bytes after a padded array


def padded_array(shape, dtype):
    """A zeroed C-contiguous array at a 64-byte boundary with SLACK bytes of memory after it, as a
    model's weights blob and workspace hold a kernel's arguments (each 64-byte aligned, in one
    large buffer): a kernel whose last vector load runs past an argument's end reads memory
    there, and so must it where the tuner or the model check times it alone."""
    import numpy as np
    dt = np.dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dt.itemsize
    buf = np.zeros(nbytes + 64 + SLACK, np.uint8)
    off = (-buf.ctypes.data) % 64
    return buf[off:off + nbytes].view(dt).reshape(shape)
