"""Tuning callbacks: log writing, a progress bar, and early stopping hooks.

A callback is called as cb(tuner, config_indices, records) after every measured batch, and
may have start(tuner) / finish(tuner).  The search loop itself does no I/O.
"""
from __future__ import annotations

import os
import sys
import time

from . import record as rec


class log_to_file:                   # noqa: N801  (AutoTVM's name)
    """Append every measured record to a JSON-lines log; the tuner resumes from it."""

    def __init__(self, path: str | os.PathLike):
        self.history_path = os.fspath(path)

    def __call__(self, tuner, indices, records) -> None:
        rec.append(self.history_path, records)


class progress_bar:                  # noqa: N801
    """One status line on stderr: trials, best GFLOP/s, errors, elapsed time and ETA."""

    def __init__(self, stream=None, prefix: str = ""):
        self.stream = stream or sys.stderr
        self.prefix = prefix
        self.errors = 0

    def start(self, tuner) -> None:
        self.t0 = time.time()
        self._draw(tuner)

    def __call__(self, tuner, indices, records) -> None:
        self.errors += sum(1 for r in records if not r.ok)
        self._draw(tuner)

    def _draw(self, tuner) -> None:
        done, total = tuner.trials, max(1, getattr(tuner, "n_trial", tuner.trials))
        el = time.time() - self.t0
        eta = el / done * (total - done) if done else float("nan")
        width = 24
        fill = int(width * min(1.0, done / total))
        bar = "#" * fill + "." * (width - fill)
        line = (f"\r{self.prefix}[{bar}] {done}/{total} trials | best {tuner.best_flops / 1e9:7.1f} GFLOP/s"
                f" | errors {self.errors} | {el:5.0f}s elapsed, ETA {eta:4.0f}s")
        if self.stream.isatty() or done == 0 or done >= total:
            self.stream.write(line)
        else:
            self.stream.write(line.replace("\r", "") + "\n")
        self.stream.flush()

    def finish(self, tuner) -> None:
        self.stream.write("\n")
        self.stream.flush()


class early_stopping:                # noqa: N801
    """Stop when `patience` trials in a row bring no improvement."""

    def __init__(self, patience: int):
        self.patience = patience
        self.last_best = 0.0
        self.last_trial = 0

    def __call__(self, tuner, indices, records) -> None:
        if tuner.best_flops > self.last_best:
            self.last_best, self.last_trial = tuner.best_flops, tuner.trials
        elif tuner.trials - self.last_trial >= self.patience:
            tuner.stopped = True
