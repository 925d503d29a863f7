"""How the runner times one kernel's calls on a shared machine: a repeat's time from its calls
(`per_call`), the CPU waits of the process's threads around each call (`RunQueueClock`), and the
arrays a kernel is timed on as a model holds them (`padded_array`, cold `weight_copies`).  Used
by the tuner's runner (autotune/measure.py) and the model check (frontends/profile.py)."""
from __future__ import annotations

import os
import statistics
import time

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


def weight_copies(w, target: Target) -> list:
    """Copies of weight w (w itself first) that together hold at least four times the L2 of the
    cores the kernel runs on, within COLD_COPIES_MAX and COLD_BYTES_MAX: a kernel that reads
    them in turn meets its weight as in a model, out of L2."""
    import numpy as np
    want = 4 * target.caches.l2 * max(1, target.threads)
    n = max(1, min(COLD_COPIES_MAX, -(-want // max(1, w.nbytes)), COLD_BYTES_MAX // max(1, w.nbytes)))
    copies = [w]
    for _ in range(n - 1):
        copies.append(padded_array(w.shape, w.dtype))
        copies[-1][...] = w
    return copies


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
