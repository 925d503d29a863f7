"""Shared tuning logs: find them, validate them, and keep the records this CPU can use.

Logs are shared between people and machines, so a log from elsewhere is checked before any
record of it reaches a build, by the loader every reader uses (autotune.record.read_log):
every line must be a record of this format version with fields of the right types, carry a
well-formed target (ISA key and target string), name a known template with arguments that
suit it, and hold a config that fits that template's space.  A log with a bad line is reported with its file and line
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

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from . import record as rec
from .record import LogCheck, Problem, check_record  # noqa: F401  (the checks live with the loader)

log = logging.getLogger(__name__)

ENV_VAR = "TILEWISE_LOGS"
# the repository's tuning_logs/, through the autotune/tuning_logs link (a wheel holds a copy there)
REPO_LOGS = (Path(__file__).parent / "tuning_logs").resolve()


@dataclass
class SharedLogs:
    """Logs found and validated for one ISA: which were used, which were skipped, and the records."""
    isa: str
    used: list[tuple[str, int]] = field(default_factory=list)     # (path, records for this ISA)
    skipped: list[LogCheck] = field(default_factory=list)          # bad logs, not used
    other_isa: list[tuple[str, int]] = field(default_factory=list) # (path, records of other ISAs only)
    records: list[rec.Record] = field(default_factory=list)


def validate_log(path: str | os.PathLike) -> LogCheck:
    """record.read_log, with a file that cannot be read at all said in .error instead of raised."""
    try:
        return rec.read_log(path)
    except rec.LogError as e:
        return LogCheck(os.fspath(path), error=e.reason)
    except OSError as e:            # FileNotFoundError
        return LogCheck(os.fspath(path), error=f"cannot be read ({e.strerror or 'does not exist'})")


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
        chk = rec.read_log(p)           # FileNotFoundError / LogError for a file that is no log
        for pr in chk.problems:
            log.warning("skipped line %s", pr)
        if chk.n_bad > len(chk.problems):
            log.warning("%s: %d more bad line(s) skipped", chk.path, chk.n_bad - len(chk.problems))
        records += chk.records
        checks.append(chk)
    return records, checks
