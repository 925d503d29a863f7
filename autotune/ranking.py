"""Ranking tuning records: which config of a workload a build takes, pooled over its timings.

Three kinds of timing judge a config, each closer to what a model run meets than the one before:
the tuner's (alone, the search's batch), its final check's (alone, side by side with the
default config in alternating rounds: `checked`, `vs_default`), and `tilewise tune`'s model
check's (the kernel as the model built it, in the model's order, beside the untuned model's
kernel for the same nodes: `in_model`).  A config is judged by the closest kind it has
(pooled_costs), and once the model check has judged a workload's configs, those it has not
judged rank below them (below_default), so a build with the log runs only configs the model
has timed (or the default).  `record` re-exports these functions: every reader of a log ranks
as they do.
"""
from __future__ import annotations

import statistics
from dataclasses import replace
from typing import TYPE_CHECKING, Iterable

if TYPE_CHECKING:               # record imports this module at its end: no import cycle at run time
    from .record import Record


def pooled(records: Iterable[Record]) -> list[Record]:
    """One record per (workload, ISA, config): the latest, carrying the costs of its valid measurements.

    A config measured more than once (a resumed run) is judged by the median over all its
    timings, so one lucky batch on a noisy machine does not make it best.  A config that a
    tuner's final check re-timed is judged by the check's timings alone, one the model check
    re-timed by the model check's (see pooled_costs).
    """
    groups: dict[tuple, list[Record]] = {}
    for r in records:
        if r.ok:
            groups.setdefault((r.workload, r.isa, r.config_key), []).append(r)
    out = []
    for rs in groups.values():
        latest = max(rs, key=lambda r: r.timestamp)
        judges = [r for r in rs if r.in_model] or [r for r in rs if r.checked]
        ratios = [r.vs_default for r in judges if r.vs_default > 0]
        out.append(latest if len(rs) == 1 else replace(
            latest, costs=pooled_costs(rs), checked=any(r.checked for r in rs),
            in_model=any(r.in_model for r in rs),
            vs_default=statistics.median(ratios) if ratios else 0.0))
    return out


def pooled_costs(records: Iterable[Record]) -> list[float]:
    """The timings that judge one config: those the model check took of it if any (the kernel as
    the model runs it), else those of its checked records, else all of them.

    The tuning-time timing of a config that made it into the final check is the one that put it
    there, so it is the luckiest of its kind on a noisy machine (the winner's curse); the check
    timed the candidates side by side, and only those timings compare them fairly.
    """
    records = list(records)
    in_model = [c for r in records if r.in_model for c in r.costs]
    checked = [c for r in records if r.checked for c in r.costs]
    return in_model or checked or [c for r in records for c in r.costs]


# How much faster than the default, timed beside it, a config must run to be preferred to it: a
# config that only ties with the default is no gain, and ties are won by the noise.
DEFAULT_MARGIN = 0.02


def check_score(vs_default: float) -> float:
    """How a config the final check re-timed ranks, from its median speed-up over the default in
    the same rounds: less DEFAULT_MARGIN, except for the default itself (exactly 1.0)."""
    if vs_default <= 0:                 # not known (a log written before the check recorded it)
        return 1.0 - DEFAULT_MARGIN
    return vs_default if vs_default == 1.0 else vs_default - DEFAULT_MARGIN


def judging_times(records: Iterable[Record]) -> dict[tuple[str, str], float]:
    """(workload, ISA) -> when the model check last judged a config of that workload (the newest
    of its in_model records).  Read from the records as logged, not pooled: a pooled record
    carries the time of its newest timing, which may be a later tune's."""
    out: dict[tuple[str, str], float] = {}
    for r in records:
        if r.in_model and r.ok:
            key = (r.workload, r.isa)
            out[key] = max(out.get(key, 0.0), r.timestamp)
    return out


def slower_in_model(r: Record) -> bool:
    """Whether the model check timed config r slower than the untuned kernel it replaced (by more
    than DEFAULT_MARGIN: a tie is no verdict on a noisy machine)."""
    return r.in_model and 0 < r.vs_default < 1 - DEFAULT_MARGIN


def is_default(r: Record) -> bool:
    """Whether r is the record of the config a check timed the others against (vs_default exactly
    1.0): the default config, which a build runs when no record may win over it."""
    return (r.checked or r.in_model) and r.vs_default == 1.0


def below_default(r: Record, judged_at: float | None = None) -> bool:
    """Whether pooled record r may not win over the default config: the model check timed it
    slower than the untuned kernel, or it was never timed in the model although its workload's
    configs were since r was made (judged_at: judging_times of its workload).

    Why an unjudged config ranks below the judged ones: the tuner timed it alone, and a config
    that beat the default alone often does not in the model, where its weights come cold from
    memory and its input as the producer left it.  Ranked above the judged ones (as the tuner's
    check_score may rank it), the next build takes it untimed in the model, the check needs
    another build to judge it, and another for the config after it.  Ranked below them, the
    build runs only configs the model has judged, or the default, and the check converges in
    one pass.  A record newer than the judging (a tune after the check) ranks as before: the
    check has not seen it, and judges it when it next runs."""
    return slower_in_model(r) or (judged_at is not None and not r.in_model and r.timestamp <= judged_at)


def rank_key(r: Record, judged_at: float | None = None) -> tuple[bool, bool, bool, float, float]:
    """Sort key of pooled records of one workload, best first (judged_at: judging_times of it).

    First the records that may win over the default (below_default), and the default's own
    (is_default): with no model check of the workload, every record.  Then a config that passed a final check before one that did
    not (single timings on a noisy machine are optimistic); among checked configs the higher
    check_score (round by round against the default, which cancels the machine's changes of
    speed: the model check's score where it judged the config); then the lower cost.  Among
    those below the default, a config judged in the model first, so that a merged log keeps
    the verdict that sends the build back to the default."""
    below = below_default(r, judged_at) and not is_default(r)
    return (below, below and not r.in_model, not r.checked,
            -check_score(r.vs_default) if r.checked else 0.0, r.cost)


def better(a: Record, b: Record | None, judged_at: float | None = None) -> bool:
    """Whether pooled record a should be preferred to b, of the same workload (see rank_key)."""
    return b is None or rank_key(a, judged_at) < rank_key(b, judged_at)


def model_better(a: Record, b: Record) -> bool:
    """Whether pooled record a should be preferred to b where they are the best records of two
    implementations of one node (direct, GEMM, Winograd: frontends.compile.choose).

    Like with like: when the model check judged both, by their check_score, the speed-up each
    showed over the same untuned kernel of the node in the model's order.  The ratio, not the
    in-model cost: the two may have been judged in different builds, and the ratio is taken
    round by round beside the untuned kernel, which cancels the machine's changes of speed in
    between.  Otherwise by cost, each as it was timed, as before the model check: choose sets
    an unjudged record against a judged one only when it is newer than the node's judging
    (below_default), a rough comparison that lasts until the next check judges the newer one."""
    if a.in_model and b.in_model:
        return (-check_score(a.vs_default), a.cost) < (-check_score(b.vs_default), b.cost)
    return a.cost < b.cost


def preferred(candidates: list[tuple[object, Record]], judged_at: float | None = None) -> tuple | None:
    """Of (item, record) pairs, the best records of the implementations of one node, the pair to
    build (model_better), or None for the default: once the model check judged any of them
    (judged_at: the newest of their judging_times), a record it has not judged since ranks below
    the judged ones and the default (below_default), as within one workload."""
    best = None
    for item, r in candidates:
        if not below_default(r, judged_at) and (best is None or model_better(r, best[1])):
            best = (item, r)
    return best


def _best_per(records: Iterable[Record], key) -> dict:
    """The best pooled record per key(r) (records whose key is None left out), as rank_key ranks
    the records of one workload on one ISA."""
    records = list(records)
    judged = judging_times(records)
    out: dict = {}
    for r in pooled(records):
        k = key(r)
        if k is not None and better(r, out.get(k), judged.get((r.workload, r.isa))):
            out[k] = r
    return out


def best(records: Iterable[Record], isa: str | None = None) -> dict[str, Record]:
    """The best config per workload (only records of `isa` when given), its timings pooled, as
    rank_key ranks them (the best may be below_default: a build then runs the default config)."""
    return _best_per(records, lambda r: r.workload if isa is None or r.isa == isa else None)


def merged(records: Iterable[Record], best_only: bool = True) -> list[Record]:
    """The records a merged log holds: the best per (workload, ISA) (pooled), or every distinct record."""
    if best_only:
        return list(_best_per(records, lambda r: (r.workload, r.isa)).values())
    seen, chosen = set(), []
    for r in records:
        k = (r.workload, r.isa, r.config_key, tuple(r.costs), r.error_no)
        if k not in seen:
            seen.add(k)
            chosen.append(r)
    return chosen
