"""Shared tuning logs: find them, validate them, and keep the records this CPU can use.

Logs are shared between people and machines, so a log from elsewhere is checked before any
record of it reaches a build: every line must be a record of this format version, carry a
well-formed target (ISA key and target string), name a known template, and hold a config
that fits that template's space.  A log with a bad line is reported with its file and line
and skipped as a whole (a cut-off last line, the trace of an interrupted writer, is only
noted); nothing here raises on a bad log, so a build never crashes because of one.

Where shared logs live:
  * `tuning_logs/` at the top of the repository (shipped with tilewise);
  * every folder listed in TILEWISE_LOGS (os.pathsep-separated).
In each folder, `*.jsonl` files directly inside it and anywhere below a sub-folder named
after this CPU's ISA key (`te.Target.isa`, e.g. `x86_64+sse4.2+avx+avx2+fma+f16c`) are read;
sub-folders named after another ISA are not.  Records are used only when their own `isa`
field equals this CPU's: the folder is a convenience, the record is the authority.
"""
from __future__ import annotations

import functools
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from . import record as rec
from .space import ConfigError, get_template
from .task import create_task

log = logging.getLogger(__name__)

ENV_VAR = "TILEWISE_LOGS"
REPO_LOGS = Path(__file__).resolve().parent.parent / "tuning_logs"
MAX_PROBLEMS = 5          # problems kept per log (the count is kept in full)


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
    """The outcome of validating one log file."""
    path: str
    records: list[rec.Record] = field(default_factory=list)   # valid records (every ISA)
    problems: list[Problem] = field(default_factory=list)     # the first MAX_PROBLEMS bad lines
    n_bad: int = 0
    truncated_tail: bool = False                               # the last line was cut off (tolerated)
    error: str = ""                                            # the file could not be read at all

    @property
    def ok(self) -> bool:
        """Usable: readable and no bad line except perhaps a cut-off last one."""
        return not self.error and self.n_bad == 0

    def usable(self, isa: str) -> list[rec.Record]:
        """The valid records measured on this ISA."""
        return [r for r in self.records if r.isa == isa]

    def summary(self) -> str:
        """One line saying why the log is skipped (or that it is fine)."""
        if self.error:
            return f"{self.path}: {self.error}"
        if self.n_bad:
            more = f" (and {self.n_bad - 1} more bad line(s))" if self.n_bad > 1 else ""
            return f"{self.problems[0]}{more}"
        return f"{self.path}: ok, {len(self.records)} record(s)"


@dataclass
class SharedLogs:
    """Logs found and validated for one ISA: which were used, which were skipped, and the records."""
    isa: str
    used: list[tuple[str, int]] = field(default_factory=list)     # (path, records for this ISA)
    skipped: list[LogCheck] = field(default_factory=list)          # bad logs, not used
    other_isa: list[tuple[str, int]] = field(default_factory=list) # (path, records of other ISAs only)
    records: list[rec.Record] = field(default_factory=list)


# ---------------------------------------------------------------- validation
@functools.lru_cache(maxsize=4096)
def _space(workload: str):
    """The config space of a workload key (cached); raises ValueError if the key is unusable."""
    try:
        name, args = json.loads(workload)
    except (ValueError, TypeError):
        raise ValueError(f"workload {workload[:80]!r} is not a JSON [template, args] pair") from None
    if not isinstance(name, str) or not isinstance(args, list):
        raise ValueError(f"workload {workload[:80]!r} is not a [template, args] pair")
    try:
        get_template(name)
    except ConfigError:
        raise ValueError(f"unknown template {name!r}") from None
    try:
        return create_task(name, args).config_space
    except Exception as e:
        raise ValueError(f"the arguments of {name} do not fit the template ({type(e).__name__}: {e})") from None


def check_record(r: rec.Record) -> str:
    """'' if the record is usable in principle, else the reason it is not."""
    if not isinstance(r.isa, str) or not r.isa.startswith("x86_64"):
        return f"target: ISA key {r.isa!r} is not a tilewise ISA key (expected 'x86_64+...')"
    if r.target and not str(r.target).startswith("llvm"):
        return f"target: {r.target!r} is not a tilewise target string (expected 'llvm -mcpu=...')"
    if r.error_no == rec.ErrorNo.NO_ERROR and not r.costs:
        return "a successful record without costs"
    try:
        space = _space(r.workload)
    except ValueError as e:
        return str(e)
    try:
        space.from_json(r.config)
    except ConfigError as e:
        if r.error_no == rec.ErrorNo.NO_ERROR or r.config:
            return f"config does not fit the template: {e}"
    return ""


def validate_log(path: str | os.PathLike) -> LogCheck:
    """Read and check every line of a log; never raises for a bad file."""
    path = os.fspath(path)
    out = LogCheck(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        out.error = f"cannot be read ({e.strerror or e})"
        return out
    text = data.decode("utf-8", errors="replace")
    lines = text.split("\n")
    last = max((i for i, ln in enumerate(lines) if ln.strip()), default=-1)
    for i, line in enumerate(lines):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            r = rec.Record.from_json(line)
        except (ValueError, TypeError) as e:
            if i == last and not text.endswith("\n"):   # a writer cut off mid-line: tolerated
                out.truncated_tail = True
                continue
            reason = "not a JSON record" if isinstance(e, json.JSONDecodeError) else str(e)
            _bad(out, i + 1, reason)
            continue
        reason = check_record(r)
        if reason:
            _bad(out, i + 1, reason)
        else:
            out.records.append(r)
    return out


def _bad(out: LogCheck, line: int, reason: str) -> None:
    out.n_bad += 1
    if len(out.problems) < MAX_PROBLEMS:
        out.problems.append(Problem(out.path, line, reason))


# ---------------------------------------------------------------- discovery
def log_dirs(include_repo: bool = True) -> list[Path]:
    """The folders searched for shared logs: the repo's tuning_logs/, then TILEWISE_LOGS entries."""
    dirs = [REPO_LOGS] if include_repo else []
    for p in os.environ.get(ENV_VAR, "").split(os.pathsep):
        if p.strip():
            dirs.append(Path(p.strip()).expanduser())
    seen, out = set(), []
    for d in dirs:
        key = os.path.realpath(d)
        if key not in seen:
            seen.add(key)
            out.append(d)
    return out


def find_logs(isa: str, dirs: list[Path] | None = None) -> list[Path]:
    """Log files for this ISA: *.jsonl in each folder and below its sub-folder named `isa`."""
    found: list[Path] = []
    for d in (log_dirs() if dirs is None else dirs):
        if not d.is_dir():
            if d != REPO_LOGS:
                log.warning("%s (from %s) is not a folder; ignored", d, ENV_VAR)
            continue
        found += sorted(p for p in d.glob("*.jsonl") if p.is_file())
        sub = d / isa
        if sub.is_dir():
            found += sorted(p for p in sub.rglob("*.jsonl") if p.is_file())
    return found


def load_shared_logs(isa: str, dirs: list[Path] | None = None, include_repo: bool = True) -> SharedLogs:
    """Find, validate and load the shared logs for this ISA; bad logs are reported and skipped."""
    if dirs is None:
        dirs = log_dirs(include_repo)
    out = SharedLogs(isa)
    for path in find_logs(isa, dirs):
        chk = validate_log(path)
        if not chk.ok:
            log.warning("skipped tuning log %s", chk.summary())
            out.skipped.append(chk)
            continue
        mine = chk.usable(isa)
        if mine:
            out.used.append((str(path), len(mine)))
            out.records += mine
        elif chk.records:
            out.other_isa.append((str(path), len(chk.records)))
    return out


def load_user_logs(paths: list[str | os.PathLike]) -> tuple[list[rec.Record], list[LogCheck]]:
    """Logs the user named: every valid record of every ISA (dispatch picks the ISA); bad lines skipped and reported."""
    records, checks = [], []
    for p in paths:
        if not os.path.exists(p):
            raise FileNotFoundError(f"tuning log {os.fspath(p)!r} does not exist")
        chk = validate_log(p)
        if chk.error:
            raise OSError(f"tuning log {chk.summary()}")
        for pr in chk.problems:
            log.warning("skipped line %s", pr)
        if chk.n_bad > len(chk.problems):
            log.warning("%s: %d more bad line(s) skipped", chk.path, chk.n_bad - len(chk.problems))
        records += chk.records
        checks.append(chk)
    return records, checks
