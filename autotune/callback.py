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
    """Append every measured record to a JSON-lines log; the tuner resumes from it.

    The path is checked at once (record.check_is_log): a file that is not a tuning log, such as
    the model itself, or a FIFO or device is refused with a LogError before anything is tuned."""

    def __init__(self, path: str | os.PathLike):
        self.history_path = os.fspath(path)
        rec.check_is_log(self.history_path)

    def __call__(self, tuner, indices, records) -> None:
        rec.append(self.history_path, records)


class progress_bar:                  # noqa: N801
    """A status line on stderr: trials, best GFLOP/s, errors, elapsed time and ETA.

    On a terminal the line is redrawn in place; written to a file or a pipe, it is one line per
    batch, so a log of the run stays readable.  The tuner's final check says so on the line.
    """

    def __init__(self, stream=None, prefix: str = ""):
        self.stream = stream or sys.stderr
        self.prefix = prefix
        self.errors = 0
        self.t0 = time.time()
        self._width = 0              # the longest line drawn in place, to blank a shorter one

    def start(self, tuner) -> None:
        self.t0 = time.time()
        self._draw(tuner)

    def __call__(self, tuner, indices, records) -> None:
        self.errors += sum(1 for r in records if not r.ok)
        self._draw(tuner, checking=bool(records) and all(r.checked for r in records))

    def _draw(self, tuner, checking: bool = False) -> None:
        done, total = tuner.trials, max(1, getattr(tuner, "n_trial", tuner.trials))
        el = time.time() - self.t0
        if checking:
            state = "final check (best configs timed again)"
        elif done >= total:
            state = "done"
        else:
            state = f"ETA {el / done * (total - done):4.0f}s" if done else "ETA    ?"
        width = 24
        fill = int(width * min(1.0, done / total))
        bar = "#" * fill + "." * (width - fill)
        line = (f"{self.prefix}[{bar}] {done}/{total} trials | best {tuner.best_flops / 1e9:7.1f} GFLOP/s"
                f" | errors {self.errors} | {el:5.0f}s elapsed, {state}")
        if self._tty():
            self.stream.write(f"\r{line:<{self._width}}")
            self._width = max(self._width, len(line))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def _tty(self) -> bool:
        isatty = getattr(self.stream, "isatty", None)
        return bool(isatty and isatty())

    def finish(self, tuner) -> None:
        if self._tty():
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
