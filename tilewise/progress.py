"""Progress bars on stderr: redrawn in place on a terminal, a line per step otherwise."""
from __future__ import annotations

import shutil
import sys
import time


def bar(done: float, total: float, width: int = 20) -> str:
    """'[######..............]'"""
    frac = 0.0 if total <= 0 else max(0.0, min(1.0, done / total))
    fill = int(round(width * frac))
    return "[" + "#" * fill + "." * (width - fill) + "]"


class Status:
    """A block of status lines on stderr; on a terminal it is redrawn in place."""

    def __init__(self, stream=None, min_interval: float = 0.0):
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.shown = 0                       # lines currently drawn (terminal only)
        self.min_interval = min_interval
        self.last = 0.0

    def update(self, *lines: str, force: bool = False) -> None:
        """Show these lines (replacing the previous ones on a terminal)."""
        now = time.monotonic()
        if not force and now - self.last < self.min_interval:
            return
        self.last = now
        if self.tty:
            width = max(20, shutil.get_terminal_size((100, 20)).columns - 1)
            up = f"\x1b[{self.shown}F" if self.shown else ""
            text = "".join(f"\x1b[2K{ln[:width]}\n" for ln in lines)
            self.stream.write(up + text)
            self.shown = len(lines)
        else:
            self.stream.write(" | ".join(lines) + "\n")
        self.stream.flush()

    def clear(self) -> None:
        """Remove the drawn lines (terminal only)."""
        if self.tty and self.shown:
            self.stream.write(f"\x1b[{self.shown}F" + "\x1b[2K\n" * self.shown + f"\x1b[{self.shown}F")
            self.stream.flush()
        self.shown = 0


class Steps:
    """A counted bar for a loop of known length: `with Steps("compiling", n) as p: p.step(name)`."""

    def __init__(self, label: str, total: int, stream=None):
        self.label, self.total, self.done = label, total, 0
        self.status = Status(stream)
        self.t0 = time.time()

    def __enter__(self):
        self.show("")
        return self

    def step(self, what: str = "", done: int | None = None) -> None:
        self.done = self.done + 1 if done is None else done
        self.show(what)

    def show(self, what: str) -> None:
        if not self.total or (not self.status.tty and 0 < self.done < self.total):
            return                           # in a log file: the first and the last line only
        el = time.time() - self.t0
        self.status.update(f"{self.label} {bar(self.done, self.total)} {self.done}/{self.total} "
                           f"{el:4.0f}s {what}".rstrip())

    def __exit__(self, *exc):
        self.status.clear()
