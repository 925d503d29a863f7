"""tilewise logs show|best|merge|stats: inspect, summarise and merge tuning logs."""
from __future__ import annotations

import functools
import json
import math
import os

from . import add_parser
from ..common import CLIError, check_output_folder, fmt_num, fmt_time, isa_tag, note, say, table, workload_label

DESCRIPTION = """\
Inspect tuning logs (JSON lines, one record per measurement; see tuning_logs/README.md).

  show   records per workload and target (ISA): how many, how many failed, the best time
         and GFLOP/s; --records lists every record
  best   the best config of each workload for this CPU's ISA (--all-isas: for every ISA)
  merge  merge logs into one compact log holding the best record per workload and ISA,
         ready to share (--all-records keeps every distinct record instead); the output
         must not be one of the inputs (that is refused: the merge would replace its
         records), and an existing output is replaced only if it is a tuning log
  stats  per log: lines, records, bad lines, ISAs; per workload: errors by kind and the
         machines that timed the records (those measured on a Dask cluster name theirs)
  pretrain  train the cost model every search starts from (autotune.pretrained) on full
         tuning logs (every trial: the logs 'tilewise tune --log' writes, not merged best-only
         ones) and write it (-o, default tuning_logs/cost_model.json, which ships)

Every log is validated as it is read (format version, the type of every field, target,
workload arguments, configs that fit their template); bad lines, and lines longer than
64 KiB, are reported with their file and line and left out.  A log must be a regular file."""

EXAMPLES = """\
  tilewise logs show resnet50.jsonl
  tilewise logs best resnet50.jsonl other.jsonl
  tilewise logs merge a.jsonl b.jsonl -o tuning_logs/resnet50.jsonl
  tilewise logs stats resnet50.jsonl
  tilewise logs pretrain resnet50-full.jsonl encoder-full.jsonl"""


def register(sub, common) -> None:
    p = add_parser(sub, common, "logs", "inspect, merge and summarise tuning logs", DESCRIPTION, EXAMPLES)
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    for name, summary in (("show", "records per workload and target"), ("best", "best config per workload"),
                          ("merge", "merge logs into a compact best-only log"), ("stats", "counts and errors"),
                          ("pretrain", "train the cost model searches start from")):
        a = actions.add_parser(name, parents=[common], help=summary, description=summary,
                               epilog="example:\n  " + next(e.strip() for e in EXAMPLES.splitlines()
                                                            if f"logs {name}" in e),
                               formatter_class=p.formatter_class)
        a.add_argument("files", nargs="+", metavar="FILE", help="tuning logs (JSON lines)")
        a.add_argument("--workload", metavar="TEXT", help="only workloads whose key or name contains TEXT")
        if name == "show":
            a.add_argument("--records", action="store_true", help="list every record")
        if name == "best":
            a.add_argument("--all-isas", action="store_true", help="the best per ISA, for every ISA in the logs")
        if name == "merge":
            a.add_argument("-o", "--output", required=True, metavar="OUT.jsonl",
                           help="the merged log to write; it must not be one of the inputs (that is "
                                "refused: the merge would replace its records), and an existing OUT is "
                                "replaced only if it is a tuning log")
            a.add_argument("--all-records", action="store_true", help="keep every distinct record, not only the best")
        if name == "pretrain":
            a.add_argument("-o", "--output", metavar="MODEL.json",
                           help="where to write the model (default: tuning_logs/cost_model.json)")
            a.add_argument("--caches", metavar="SIZES",
                           help="cache sizes of the machine that measured the logs, for records whose "
                                "target names none, e.g. '-l1d=48K -l2=2M -l3=150M' (default: this "
                                "machine's): the features of a config depend on them")
        a.set_defaults(run=globals()[f"_{name}"])


# ---------------------------------------------------------------- reading
def _read(files: list[str], workload: str | None = None):
    """Validated records of the files (bad lines reported, left out) and the per-file checks."""
    from autotune.record import LogError, read_log
    records, checks = [], []
    for f in files:
        if not os.path.lexists(f):
            raise CLIError(f"{f}: no such tuning log")
        try:
            chk = read_log(f)
        except (LogError, FileNotFoundError) as e:
            raise CLIError(str(e)) from None
        if chk.n_bad and not chk.records:
            raise CLIError(f"{f}: not a tuning log (none of its lines is a record: {chk.problems[0].reason} "
                           f"on line {chk.problems[0].line}); give the .jsonl files 'tilewise tune' writes")
        for pr in chk.problems:
            note(f"tilewise: warning: bad line left out: {pr}")
        if chk.n_bad > len(chk.problems):
            note(f"tilewise: warning: {f}: {chk.n_bad - len(chk.problems)} more bad line(s) left out")
        if chk.truncated_tail:
            note(f"tilewise: note: {f}: the last line is cut off (an interrupted writer); left out")
        checks.append(chk)
        records += chk.records
    if workload:
        records = [r for r in records if workload in r.workload or workload in workload_label(r.workload)]
    return records, checks


@functools.lru_cache(maxsize=None)
def _flops(workload: str) -> float:
    try:
        import autotune
        name, args = json.loads(workload)
        return autotune.create_task(name, args).flops
    except Exception:
        return math.nan


def _gflops(r) -> float:
    return _flops(r.workload) / r.cost / 1e9 if r.ok and r.cost > 0 else math.nan


def _here() -> str:
    from te.target import host
    return host().isa


def _isa_legend(isas) -> None:
    here = _here()
    for isa in sorted(isas):
        say(f"  {isa_tag(isa):<7} = {isa}" + ("   (this CPU)" if isa == here else ""))


def _error_name(code: int) -> str:
    from autotune import ErrorNo
    try:
        return ErrorNo(code).name.lower()
    except ValueError:
        return f"error{code}"


# ---------------------------------------------------------------- actions
def _show(args) -> int:
    records, _ = _read(args.files, args.workload)
    if not records:
        say("no records")
        return 0
    if args.records:
        rows = [[k + 1, workload_label(r.workload), isa_tag(r.isa),
                 fmt_time(r.cost) if r.ok else _error_name(r.error_no), fmt_num(_gflops(r), 1),
                 json.dumps(r.config, separators=(",", ":"))] for k, r in enumerate(records)]
        say(table(["#", "task", "ISA", "time", "GFLOP/s", "config"], rows, "rllrrl"))
    groups: dict[tuple, list] = {}
    for r in records:
        groups.setdefault((r.workload, r.isa), []).append(r)
    rows = []
    for (wl, isa), rs in groups.items():
        ok = [r for r in rs if r.ok]
        best = min(ok, key=lambda r: r.cost) if ok else None
        rows.append([workload_label(wl), isa_tag(isa), len(rs), len(rs) - len(ok),
                     fmt_time(best.cost) if best else "-", fmt_num(_gflops(best), 1) if best else "-",
                     ", ".join(sorted({r.cpu for r in rs if r.cpu})) or "-"])
    if args.records:
        say("")
    say(table(["task", "ISA", "records", "errors", "best time", "best GFLOP/s", "CPU"], rows, "llrrrrl"))
    say(f"{len(records)} record(s), {len({r.workload for r in records})} workload(s); ISA keys:")
    _isa_legend({r.isa for r in records})
    return 0


def _best(args) -> int:
    from autotune import best_records
    records, _ = _read(args.files, args.workload)
    here = _here()
    isas = sorted({r.isa for r in records}) if args.all_isas else [here]
    rows = []
    for isa in isas:
        for wl, r in sorted(best_records(records, isa).items(), key=lambda kv: workload_label(kv[0])):
            rows.append([workload_label(wl), isa_tag(isa), fmt_time(r.cost), fmt_num(_gflops(r), 1),
                         json.dumps(r.config, separators=(",", ":"))])
    if not rows:
        other = sorted({isa_tag(r.isa) for r in records if r.isa != here})
        say("no valid records for this CPU's ISA" + (f" (the logs hold records for: {', '.join(other)}; "
                                                      "--all-isas shows them)" if other else ""))
        return 0
    say(table(["task", "ISA", "best time", "GFLOP/s", "config"], rows, "llrrl"))
    if args.all_isas:
        _isa_legend({r.isa for r in records})
    return 0


def _pretrain(args) -> int:
    from autotune import pretrained
    records, _ = _read(args.files, args.workload)
    out = args.output or str(pretrained.MODEL_FILE)
    if os.path.isdir(out):
        raise CLIError(f"-o {out}: is a folder; give the model's file name")
    caches = _log_caches(args.caches)
    say(f"pretraining on {len(records)} record(s) (up to {pretrained.PER_TASK} per task), "
        f"caches {caches.options()}...")
    try:
        model = pretrained.train(records, caches=caches)
    except ValueError as e:
        raise CLIError(str(e)) from None
    pretrained.save(model, out)
    tasks, n = model.trained_on
    say(f"wrote {out}: a ranking model of {tasks} task(s) from {n} record(s), features {pretrained.FEATURES}")
    return 0


def _log_caches(text: str | None):
    """The caches records without sizes in their target were measured with: `text` ('-l1d=48K
    -l2=2M -l3=150M', each optional), else this machine's, the usual case of a user pretraining on
    their own logs (the shipped model was trained on Emerald Rapids' logs with its 48K/2M/150M)."""
    from te.caches import host_caches
    from te.target import parse
    if text is None:
        return host_caches()
    try:
        return parse(f"llvm {text}").caches
    except ValueError as e:
        raise CLIError(f"--caches {text!r}: {e}") from None


def _merge(args) -> int:
    from autotune import record as rec
    out = args.output
    if os.path.isdir(out):
        raise CLIError(f"-o {out}: is a folder; give the merged log's file name")
    check_output_folder("-o", out)
    try:
        rec.check_not_an_input(out, args.files)
        if os.path.lexists(out):
            rec.check_is_log(out)          # before the inputs are read, not after
        records, checks = _read(args.files, args.workload)
        chosen = rec.merged(records, best_only=not args.all_records)
        rec.write(out, chosen)
    except (rec.LogError, FileNotFoundError) as e:
        raise CLIError(f"-o {out}: {e.reason}" if isinstance(e, rec.LogError) and e.path == out else str(e)) from None
    except OSError as e:
        raise CLIError(f"-o {out}: cannot be written ({e.strerror or e})") from None
    n = len(chosen)
    kind = "distinct records" if args.all_records else "best records (one per workload and ISA)"
    say(f"merged {len(records)} record(s) from {len(checks)} log(s) into {out}: {n} {kind}")
    return 0


def _stats(args) -> int:
    records, checks = _read(args.files, args.workload)
    rows = []
    for chk in checks:
        rows.append([chk.path, len(chk.records), chk.n_bad + int(chk.truncated_tail),
                     sum(1 for r in chk.records if not r.ok),
                     ", ".join(sorted({isa_tag(r.isa) for r in chk.records})) or "-",
                     len({r.workload for r in chk.records})])
    say(table(["log", "records", "bad lines", "errors", "ISAs", "workloads"], rows, "lrrrlr"))
    if not records:
        return 0
    kinds: dict[str, int] = {}
    per: dict[str, dict] = {}
    for r in records:
        s = per.setdefault(r.workload, {"n": 0, "ok": 0, "errors": {}, "hosts": {}})
        s["n"] += 1
        where = r.host or "(here)"           # a record without a host was timed where it was tuned
        s["hosts"][where] = s["hosts"].get(where, 0) + 1
        if r.ok:
            s["ok"] += 1
        else:
            k = _error_name(r.error_no)
            s["errors"][k] = s["errors"].get(k, 0) + 1
            kinds[k] = kinds.get(k, 0) + 1
    say("")
    rows = [[workload_label(wl), s["n"], s["ok"],
             ", ".join(f"{k} {v}" for k, v in sorted(s["errors"].items())) or "-",
             ", ".join(f"{h} {v}" for h, v in sorted(s["hosts"].items()))] for wl, s in per.items()]
    say(table(["task", "records", "valid", "errors by kind", "timed on (records)"], rows, "lrrll"))
    say("")
    n_err = sum(kinds.values())
    say(f"{len(records)} record(s), {n_err} error(s)"
        + (": " + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items(), key=lambda kv: -kv[1])) if n_err else ""))
    return 0
