"""Tuning records: one JSON object per line, versioned; load, save, best, merge, stats.

A record says: on this target (ISA features + CPU name), this workload with this config ran
in these times (or failed with this error).  Writing appends whole lines and flushes them, so
an interrupted tuner loses at most the batch in flight; loading skips comment lines and lines
it cannot read (a truncated last line, say) and warns once with their count.
"""
from __future__ import annotations

import enum
import json
import logging
import os
import statistics
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Iterable, Iterator

log = logging.getLogger(__name__)

RECORD_VERSION = 1


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
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, line: str) -> "Record":
        """Parse one line; raises ValueError on anything malformed."""
        d = json.loads(line)
        if not isinstance(d, dict):
            raise ValueError("a record must be a JSON object")
        if d.get("version") != RECORD_VERSION:
            raise ValueError(f"record version {d.get('version')!r} (this tilewise reads {RECORD_VERSION})")
        for key, typ in (("workload", str), ("config", dict), ("costs", list)):
            if not isinstance(d.get(key), typ):
                raise ValueError(f"field {key!r} missing or not a {typ.__name__}")
        if not all(isinstance(c, (int, float)) and c >= 0 for c in d["costs"]):
            raise ValueError("costs must be non-negative numbers")
        vs = d.get("vs_default", 0.0)
        if isinstance(vs, bool) or not isinstance(vs, (int, float)) or not vs >= 0:
            raise ValueError("vs_default must be a non-negative number")
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in d.items() if k in known})


def load(paths: str | os.PathLike | Iterable, strict: bool = False) -> list[Record]:
    """All readable records of one or more log files, in file order; bad lines skipped with one warning."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    out: list[Record] = []
    for path in paths:
        bad: list[int] = []
        for lineno, rec in _iter_file(path, bad):
            out.append(rec)
        if bad:
            msg = (f"{path}: skipped {len(bad)} unreadable line(s) (first at line {bad[0]}); "
                   "the rest of the log was loaded")
            if strict:
                raise ValueError(msg)
            log.warning(msg)
    return out


def _iter_file(path, bad: list[int]) -> Iterator[tuple[int, Record]]:
    try:
        f = open(path, encoding="utf-8", errors="replace")
    except FileNotFoundError:
        raise FileNotFoundError(f"tuning log {os.fspath(path)!r} does not exist") from None
    with f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            try:
                yield lineno, Record.from_json(line)
            except (ValueError, TypeError) as e:
                log.debug("%s:%d: %s", path, lineno, e)
                bad.append(lineno)


def append(path: str | os.PathLike, records: Iterable[Record]) -> None:
    """Append records as whole lines and flush them to disk."""
    data = "".join(r.to_json() + "\n" for r in records)
    if not data:
        return
    # a previous writer killed mid-line leaves no newline: start on a fresh line
    needs_nl = False
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            if f.tell() > 0:
                f.seek(-1, os.SEEK_END)
                needs_nl = f.read(1) != b"\n"
    except FileNotFoundError:
        pass
    with open(path, "a", encoding="utf-8") as f:
        f.write(("\n" if needs_nl else "") + data)
        f.flush()
        os.fsync(f.fileno())


def pooled(records: Iterable[Record]) -> list[Record]:
    """One record per (workload, ISA, config): the latest, carrying the costs of its valid measurements.

    A config measured more than once (a resumed run) is judged by the median over all its
    timings, so one lucky batch on a noisy machine does not make it best.  A config that a
    tuner's final check re-timed is judged by the check's timings alone (see pooled_costs).
    """
    groups: dict[tuple, list[Record]] = {}
    for r in records:
        if r.ok:
            groups.setdefault((r.workload, r.isa, r.config_key), []).append(r)
    out = []
    for rs in groups.values():
        latest = max(rs, key=lambda r: r.timestamp)
        ratios = [r.vs_default for r in rs if r.checked and r.vs_default > 0]
        out.append(latest if len(rs) == 1 else replace(
            latest, costs=pooled_costs(rs), checked=any(r.checked for r in rs),
            vs_default=statistics.median(ratios) if ratios else 0.0))
    return out


def pooled_costs(records: Iterable[Record]) -> list[float]:
    """The timings that judge one config: those of its checked records if any, else all of them.

    The tuning-time timing of a config that made it into the final check is the one that put it
    there, so it is the luckiest of its kind on a noisy machine (the winner's curse); the check
    timed the candidates side by side, and only those timings compare them fairly.
    """
    records = list(records)
    checked = [c for r in records if r.checked for c in r.costs]
    return checked or [c for r in records for c in r.costs]


# How much faster than the default, timed beside it, a config must run to be preferred to it: a
# config that only ties with the default is no gain, and ties are won by the noise.
DEFAULT_MARGIN = 0.02


def check_score(vs_default: float) -> float:
    """How a config the final check re-timed ranks, from its median speed-up over the default in
    the same rounds: less DEFAULT_MARGIN, except for the default itself (exactly 1.0)."""
    if vs_default <= 0:                 # not known (a log written before the check recorded it)
        return 1.0 - DEFAULT_MARGIN
    return vs_default if vs_default == 1.0 else vs_default - DEFAULT_MARGIN


def rank_key(r: Record) -> tuple[bool, float, float]:
    """Sort key of pooled records, best first: a config that passed a final check before one that
    did not (single timings on a noisy machine are optimistic); among checked configs the higher
    check_score (round by round against the default, which cancels the machine's changes of
    speed); then the lower cost."""
    return (not r.checked, -check_score(r.vs_default) if r.checked else 0.0, r.cost)


def better(a: Record, b: Record | None) -> bool:
    """Whether pooled record a should be preferred to b (see rank_key)."""
    return b is None or rank_key(a) < rank_key(b)


def best(records: Iterable[Record], isa: str | None = None) -> dict[str, Record]:
    """The best config per workload (only records of `isa` when given), its timings pooled:
    the fastest of those a tuner's final check re-timed, else the fastest."""
    out: dict[str, Record] = {}
    for r in pooled(records):
        if isa is not None and r.isa != isa:
            continue
        if better(r, out.get(r.workload)):
            out[r.workload] = r
    return out


def merge(paths: Iterable, out_path: str | os.PathLike, best_only: bool = True) -> int:
    """Merge logs into one: the best record per (workload, ISA), or all distinct records. Returns the count."""
    recs = load(list(paths))
    if best_only:
        keep: dict[tuple, Record] = {}
        for r in pooled(recs):
            k = (r.workload, r.isa)
            if better(r, keep.get(k)):
                keep[k] = r
        chosen = list(keep.values())
    else:
        seen, chosen = set(), []
        for r in recs:
            k = (r.workload, r.isa, r.config_key, tuple(r.costs), r.error_no)
            if k not in seen:
                seen.add(k)
                chosen.append(r)
    tmp = f"{os.fspath(out_path)}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write("".join(r.to_json() + "\n" for r in chosen))
    os.replace(tmp, out_path)
    return len(chosen)


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
