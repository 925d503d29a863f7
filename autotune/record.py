"""Tuning records: one JSON object per line, versioned; load, save, best, merge, stats.

A record says: on this target (ISA features + CPU name), this workload with this config ran
in these times (or failed with this error).  Writing appends whole lines and flushes them, so
an interrupted tuner loses at most the batch in flight.  Logs are shared between people and
machines, so every reader goes through one loader (`read_log`) that checks every field of
every line: the types, the ISA key and target string, the workload's arguments (before any
config space is built from them) and that the config fits its template.  A bad line is
skipped and counted, a cut-off last line (an interrupted writer) is noted, a line longer
than MAX_LINE_BYTES is skipped without being read whole, and a file that is not a regular
file (a FIFO, a device) is refused before it is read.
"""
from __future__ import annotations

import enum
import functools
import json
import logging
import math
import os
import re
import stat
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass, field
from typing import BinaryIO, Iterable, Iterator

from te.target import for_isa

from .task import create_task, parse_workload

log = logging.getLogger(__name__)

RECORD_VERSION = 1
# The longest line a log may hold.  A record is about 1 KiB (a merged one with pooled timings a
# few); a longer line is no record of this format and is skipped unread, so a log that is really
# a binary file cannot make a reader hold it in memory whole.
MAX_LINE_BYTES = 64 * 1024
MAX_PROBLEMS = 5          # bad lines described per log (all of them are counted)

_ISA_KEY = re.compile(r"x86_64(\+[a-z0-9_.-]{1,32}){0,64}")
_TARGET = re.compile(r"llvm( -mcpu=[A-Za-z0-9_.-]{1,64}| -mattr=[A-Za-z0-9_.,+-]{1,2000}){0,2}")


class LogError(ValueError):
    """A file that cannot serve as a tuning log: missing, unreadable, not a regular file, or not a log."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path, self.reason = os.fspath(path), reason
        super().__init__(f"tuning log {self.path}: {reason}")


class ErrorNo(enum.IntEnum):
    """Why a measurement has no valid cost."""
    NO_ERROR = 0
    INSTANTIATION_ERROR = 1     # the template raised for this config (e.g. ScheduleError)
    COMPILE_ERROR = 2           # lowering, codegen or LLVM failed
    RUNTIME_ERROR = 3           # the kernel crashed or returned an error
    WRONG_ANSWER = 4            # the result differs from the reference
    BUILD_TIMEOUT = 5
    RUN_TIMEOUT = 6


@dataclass
class Record:
    """One measurement of one config."""
    workload: str                       # autotune.task.workload_key
    config: dict                        # {knob: value}
    costs: list[float]                  # seconds per run (empty on error)
    error_no: int = 0
    error_msg: str = ""
    isa: str = ""                       # te.Target.isa: the features the record is valid for
    cpu: str = ""                       # human-readable CPU name
    target: str = ""                    # full target string
    build_time: float = 0.0
    run_time: float = 0.0
    timestamp: float = field(default_factory=time.time)
    tilewise_version: str = ""
    checked: bool = False               # measured by a tuner's final check (side by side with the default)
    # final check only: the default config's time in the same round over this config's (1.0 for
    # the default itself, above 1 when this one ran faster); 0 when not known
    vs_default: float = 0.0
    host: str = ""                      # the machine that timed it, when not the one tuning (a cluster's)
    # timed by `tilewise tune`'s model check: the kernel as the model built it, beside the untuned
    # model's kernel (vs_default: that kernel's time over this one's); it judges the config alone
    in_model: bool = False
    version: int = RECORD_VERSION

    @property
    def ok(self) -> bool:
        return self.error_no == ErrorNo.NO_ERROR and bool(self.costs)

    @property
    def cost(self) -> float:
        """The median cost in seconds (inf for errors)."""
        return statistics.median(self.costs) if self.ok else float("inf")

    @property
    def config_key(self) -> str:
        return json.dumps(self.config, sort_keys=True, separators=(",", ":"))

    def to_json(self) -> str:
        d = asdict(self)
        if not d["host"]:          # optional: a local run's records read as before, in any tilewise
            del d["host"]
        if not d["in_model"]:
            del d["in_model"]
        return json.dumps(d, separators=(",", ":"))

    @classmethod
    def from_json(cls, line: str) -> "Record":
        """Parse one line and check every field's type and form; raises ValueError on anything malformed."""
        try:
            d = json.loads(line)
        except RecursionError:          # nested deeper than the parser goes: no record
            raise ValueError("not a JSON record (nested too deep)") from None
        if not isinstance(d, dict):
            raise ValueError("a record must be a JSON object")
        if type(d.get("version")) is not int or d["version"] != RECORD_VERSION:
            raise ValueError(f"record version {d.get('version')!r} (this tilewise reads {RECORD_VERSION})")
        known = cls.__dataclass_fields__
        for key in ("workload", "config", "costs"):
            if key not in d:
                raise ValueError(f"field {key!r} missing")
        for key, value in d.items():
            why = _FIELD_CHECKS[key](value) if key in _FIELD_CHECKS else ""
            if why:
                raise ValueError(_field_problem(key, value, why))
        return cls(**{k: v for k, v in d.items() if k in known})


def _field_problem(key: str, value, why: str) -> str:
    """'costs ["x"]: not a list of ...': the field, its value (shortened) and why it is malformed."""
    shown = json.dumps(value)
    label = {"isa": "target: ISA key", "target": "target: string"}.get(key, key)    # both say where it ran
    return f"{label} {shown if len(shown) <= 40 else shown[:37] + '...'}: {why}"


def _number(v) -> bool:
    # a JSON integer may be too large for a float: finite here means it converts
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        return False
    try:
        return math.isfinite(v) and v >= 0
    except OverflowError:
        return False


def _text(limit: int):
    return lambda v: "" if isinstance(v, str) and len(v) <= limit else f"not a string of at most {limit} characters"


def _knob_value(v) -> bool:
    """A knob's value in JSON: a plain value (option knobs) or a flat list of whole numbers (splits, orders)."""
    if isinstance(v, list):
        return len(v) <= 16 and all(isinstance(x, int) and not isinstance(x, bool) for x in v)
    return v is None or isinstance(v, (bool, int, str)) or (isinstance(v, float) and math.isfinite(v))


def _steps_problem(v) -> str:
    """Why a config is not an auto-scheduled schedule ({"steps": [...]}); '' when it is one."""
    from .auto_scheduler.space import steps_problem
    return steps_problem(v)


_FIELD_CHECKS = {       # field -> why its value is malformed ('' when it is fine)
    "workload": _text(4096),
    "config": lambda v: "" if isinstance(v, dict) and len(v) <= 64 and all(
        isinstance(k, str) and _knob_value(x) for k, x in v.items()) else _steps_problem(v) and
        "not an object of knob values (a number, a string, or a list of whole numbers each) "
        "nor an auto-scheduled schedule's steps",
    "costs": lambda v: "" if isinstance(v, list) and len(v) <= 4096 and all(map(_number, v)) else
        "not a list of non-negative finite numbers",
    "error_no": lambda v: "" if isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 1000 else
        "not an error number (autotune.ErrorNo)",
    "error_msg": _text(4096), "cpu": _text(128), "tilewise_version": _text(64), "host": _text(255),
    "isa": lambda v: "" if isinstance(v, str) and _ISA_KEY.fullmatch(v) else
        "not a tilewise ISA key (expected 'x86_64+feature+...')",
    "target": lambda v: "" if isinstance(v, str) and (v == "" or _TARGET.fullmatch(v)) else
        "not a tilewise target string (expected 'llvm -mcpu=NAME')",
    "build_time": lambda v: "" if _number(v) else "not a non-negative finite number",
    "run_time": lambda v: "" if _number(v) else "not a non-negative finite number",
    "timestamp": lambda v: "" if _number(v) else "not a Unix time (a non-negative number)",
    "vs_default": lambda v: "" if _number(v) else "not a non-negative finite number",
    "checked": lambda v: "" if isinstance(v, bool) else "not true or false",
    "in_model": lambda v: "" if isinstance(v, bool) else "not true or false",
}


# ---------------------------------------------------------------- checking against templates
@functools.lru_cache(maxsize=4096)
def _space(workload: str, isa: str, cpu: str):
    """The config space of a workload key on a CPU of the record's ISA key (cached: a record tuned
    on another CPU is judged by that CPU's space); raises ValueError if the key is unusable."""
    name, args = parse_workload(workload)      # arguments checked before a space is built from them
    try:
        return create_task(name, args, for_isa(isa, cpu)).config_space
    except Exception as e:
        raise ValueError(f"the arguments of {name} do not fit the template ({type(e).__name__}: {e})") from None


def check_record(r: Record) -> str:
    """'' if a record is usable in principle (its workload and config fit their template), else why not."""
    if r.error_no == ErrorNo.NO_ERROR and not r.costs:
        return "a successful record without costs"
    try:
        space = _space(r.workload, r.isa, r.cpu)
    except ValueError as e:
        from .auto_scheduler.space import steps_problem
        from .auto_scheduler.workload import is_deferred
        if is_deferred(r.workload):          # a model kernel: its schedule is checked once the model is
            return steps_problem(r.config) if r.config else ""      # lowered (dispatch replays it)
        return str(e)
    try:
        space.from_json(r.config)
    except (ValueError, TypeError) as e:       # ConfigError, or a knob value of the wrong kind
        if r.error_no == ErrorNo.NO_ERROR or r.config:
            return f"config does not fit the template: {e}"
    return ""


# ---------------------------------------------------------------- reading
@dataclass
class Problem:
    """Why a line of a log cannot be used."""
    path: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.reason}"


@dataclass
class LogCheck:
    """One log file read and checked line by line."""
    path: str
    records: list[Record] = field(default_factory=list)     # valid records (every ISA)
    problems: list[Problem] = field(default_factory=list)   # the first MAX_PROBLEMS bad lines
    n_bad: int = 0
    truncated_tail: bool = False                             # the last line was cut off (tolerated)
    error: str = ""                                          # the file could not be read at all

    @property
    def ok(self) -> bool:
        """Usable: readable and no bad line except perhaps a cut-off last one."""
        return not self.error and self.n_bad == 0

    def usable(self, isa: str) -> list[Record]:
        """The valid records measured on this ISA."""
        return [r for r in self.records if r.isa == isa]

    def bad(self, line: int, reason: str) -> None:
        """Count a bad line (and keep its reason if it is one of the first few)."""
        self.n_bad += 1
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(Problem(self.path, line, reason))

    def summary(self) -> str:
        """One line saying why the log is skipped (or that it is fine)."""
        if self.error:
            return f"{self.path}: {self.error}"
        if self.n_bad:
            more = f" (and {self.n_bad - 1} more bad line(s))" if self.n_bad > 1 else ""
            return f"{self.problems[0]}{more}"
        return f"{self.path}: ok, {len(self.records)} record(s)"


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "is a folder, not a tuning log"
    what = ("a FIFO" if stat.S_ISFIFO(mode) else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
            else "a socket" if stat.S_ISSOCK(mode) else "not a file")
    return f"is {what}, not a regular file (a tuning log must be one)"


def _open(path: str, flags: int) -> int:
    """A descriptor of path, refused unless it is a regular file: a FIFO or a device such as
    /dev/zero would be read forever (opened non-blocking, so a FIFO cannot hang the open)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        if not flags & os.O_CREAT:
            raise FileNotFoundError(f"tuning log {path!r} does not exist") from None
    except OSError as e:
        raise LogError(path, f"cannot be read ({e.strerror or e})") from None
    else:
        if not stat.S_ISREG(mode):
            raise LogError(path, _kind(mode))
    try:
        fd = os.open(path, flags | os.O_NONBLOCK | os.O_CLOEXEC, 0o644)
    except OSError as e:
        raise LogError(path, f"cannot be opened ({e.strerror or e})") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):        # replaced since the check above
        os.close(fd)
        raise LogError(path, "is not a regular file (a tuning log must be one)")
    return fd


def _lines(f: BinaryIO) -> Iterator[tuple[int, bytes | None]]:
    """(line number, line) of a binary file; None for a line longer than MAX_LINE_BYTES, which is
    skipped in pieces rather than read whole."""
    lineno = 0
    while True:
        line = f.readline(MAX_LINE_BYTES + 1)
        if not line:
            return
        lineno += 1
        if len(line) > MAX_LINE_BYTES and not line.endswith(b"\n"):
            while True:
                piece = f.readline(MAX_LINE_BYTES)
                if not piece or piece.endswith(b"\n"):
                    break
            line = None
        yield lineno, line


def read_log(path: str | os.PathLike) -> LogCheck:
    """Read and check every line of a log: the one loader of tuning records.

    Bad lines are counted (with the reasons of the first few) and left out; raises LogError only
    when the file itself cannot be read (missing, a folder, a FIFO or device, no permission)."""
    path = os.fspath(path)
    out = LogCheck(path)
    with os.fdopen(_open(path, os.O_RDONLY), "rb") as f:
        try:
            pending = None                      # the last bad line, which may be a cut-off tail
            for lineno, raw in _lines(f):
                if pending is not None:
                    out.bad(*pending)
                    pending = None
                if raw is None:
                    out.bad(lineno, f"longer than {MAX_LINE_BYTES} bytes (record.MAX_LINE_BYTES): not a record")
                    continue
                text = raw.decode("utf-8", errors="replace").strip()
                if not text or text.startswith("#"):
                    continue
                try:
                    r = Record.from_json(text)
                except ValueError as e:
                    reason = "not a JSON record" if isinstance(e, json.JSONDecodeError) else str(e)
                    if raw.endswith(b"\n"):
                        out.bad(lineno, reason)
                    else:                           # no newline after it: the last line, perhaps cut off
                        pending = (lineno, reason)
                    continue
                reason = check_record(r)
                if reason:
                    out.bad(lineno, reason)
                else:
                    out.records.append(r)
            out.truncated_tail = pending is not None
        except OSError as e:
            raise LogError(path, f"cannot be read ({e.strerror or e})") from None
    return out


def load(paths: str | os.PathLike | Iterable, strict: bool = False) -> list[Record]:
    """All valid records of one or more log files, in file order (read_log); bad lines skipped with
    one warning per file, or a LogError with strict=True."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    out: list[Record] = []
    for path in paths:
        chk = read_log(path)
        out += chk.records
        n = chk.n_bad + int(chk.truncated_tail)
        if n:
            first = (f"line {chk.problems[0].line}: {chk.problems[0].reason}" if chk.problems
                     else "the last line is cut off")
            msg = f"skipped {n} unreadable line(s) (first at {first}); the rest of the log was loaded"
            if strict:
                raise LogError(path, msg)
            log.warning("%s: %s", os.fspath(path), msg)
    return out


def check_is_log(path: str | os.PathLike, f: BinaryIO | None = None) -> None:
    """Raise LogError unless path is missing, empty, or a regular file whose first line that is not
    a comment is a record (of any version; perhaps cut off), so that no other file (a model, a
    script) is ever appended to or replaced by a writer of records."""
    path = os.fspath(path)
    if f is None:
        if not os.path.exists(path):        # nothing there yet (or a link to nothing): a new log
            return
        with os.fdopen(_open(path, os.O_RDONLY), "rb") as own:
            return check_is_log(path, own)
    f.seek(0)
    for lineno, raw in _lines(f):
        if raw is not None:
            text = raw.strip()
            if not text or text.startswith(b"#"):
                continue
            if text.startswith(b'{"workload":') or _is_record_object(text):
                return
        raise LogError(path, f"is not a tuning log (line {lineno} is not a record); choose another file")


def _is_record_object(text: bytes) -> bool:
    try:
        d = json.loads(text)
    except (ValueError, RecursionError):
        return False
    return isinstance(d, dict) and "workload" in d


def append(path: str | os.PathLike, records: Iterable[Record]) -> None:
    """Append records as whole lines and flush them to disk; LogError if path is not a regular
    file or holds something other than records."""
    data = "".join(r.to_json() + "\n" for r in records).encode("utf-8")
    if not data:
        return
    path = os.fspath(path)
    with os.fdopen(_open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND), "r+b") as f:
        check_is_log(path, f)
        # a previous writer killed mid-line leaves no newline: start on a fresh line
        end = f.seek(0, os.SEEK_END)
        if end > 0:
            f.seek(end - 1)
            if f.read(1) != b"\n":
                data = b"\n" + data
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def write(path: str | os.PathLike, records: Iterable[Record]) -> None:
    """Write records as the whole of log `path`, atomically: a unique temporary file beside it,
    renamed over it, so an interrupted write leaves the old file, and a symlink named like the
    temporary file cannot redirect it.  LogError if path exists and is not a tuning log."""
    path = os.fspath(path)
    if os.path.lexists(path):
        check_is_log(path)
    data = "".join(r.to_json() + "\n" for r in records).encode("utf-8")
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        # mkstemp makes the file private; a log is meant to be shared as the file it replaces was
        os.chmod(tmp, stat.S_IMODE(os.stat(path).st_mode) if os.path.exists(path) else 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def merge(paths: Iterable, out_path: str | os.PathLike, best_only: bool = True) -> int:
    """Merge logs into a new log (see merged); returns the count.  LogError if out_path is one of
    the inputs: its records would be replaced by the merge's, so merge into another file."""
    paths = list(paths)
    check_not_an_input(out_path, paths)
    chosen = merged(load(paths), best_only)
    write(out_path, chosen)
    return len(chosen)


def check_not_an_input(out_path: str | os.PathLike, paths: Iterable) -> None:
    """LogError if out_path is the same file as one of paths (also through a link)."""
    for p in paths:
        try:
            same = os.path.samefile(out_path, p)
        except OSError:             # one of them does not exist: not the same file
            same = False
        if same:
            raise LogError(out_path, f"is also an input of the merge ({os.fspath(p)}); a merge replaces "
                                     "its output, so write the merged log to another file")


def stats(records: Iterable[Record]) -> dict[str, dict]:
    """Per workload: record count, errors by kind, best cost, ISAs seen."""
    out: dict[str, dict] = {}
    for r in records:
        s = out.setdefault(r.workload, {"records": 0, "errors": {}, "best_cost": float("inf"), "isas": set()})
        s["records"] += 1
        s["isas"].add(r.isa)
        if r.ok:
            s["best_cost"] = min(s["best_cost"], r.cost)
        else:
            name = ErrorNo(r.error_no).name if r.error_no in ErrorNo._value2member_map_ else str(r.error_no)
            s["errors"][name] = s["errors"].get(name, 0) + 1
    return out


# The ranking of records (which config a build takes) lives in ranking.py; it is part of this
# module's API, as every reader of a log ranks its records the same way.
from .ranking import (DEFAULT_MARGIN, below_default, best, better, check_score, is_default,  # noqa: E402
                      judging_times, merged, model_better, pooled, pooled_costs, preferred, rank_key,
                      slower_in_model)
