"""tilewise check-log: does a tuning log make a model faster?  The model check of `tilewise tune`
(tune_check.py) run on an existing log, and the log written without the records that lost."""
from __future__ import annotations

import os
import shutil
import tempfile

from . import add_parser
from ..common import CLIError, check_output_folder, load_graph, note, say

DESCRIPTION = """\
Check a tuning log against the model it is for: the model is built untuned (default schedules)
and with the log, every kernel the log changed is timed beside the untuned kernels for the same
nodes where each model runs them (the model's passes step by step), and the two models are
timed in alternating rounds.  This is the check `tilewise tune` ends with, for a log made earlier: a
shipped log after the templates or their defaults changed, or a log from another machine of
the same ISA.  The log itself is never changed.  With --prune OUT, the log's records are written
to OUT without those of the configs that ran slower in the model than the kernel they replaced,
and with the check's timings of the others (so a build with OUT ranks them by those)."""

EXAMPLES = """\
  tilewise check-log resnet50.onnx --log resnet50.jsonl
  tilewise check-log resnet50.onnx --log resnet50.jsonl --prune resnet50.checked.jsonl"""


def register(sub, common) -> None:
    p = add_parser(sub, common, "check-log", "check that a tuning log makes a model faster", DESCRIPTION, EXAMPLES)
    p.add_argument("model", metavar="MODEL.onnx", help="the ONNX model the log is for")
    p.add_argument("--log", required=True, metavar="FILE", help="the tuning log to check (not changed)")
    p.add_argument("--prune", metavar="OUT.jsonl",
                   help="write the log without the records that lost in the model to OUT (not the log itself; "
                        "an existing OUT is replaced only if it is a tuning log)")
    p.add_argument("--shape", action="append", metavar="NAME=DIMS", help="fix an input shape, e.g. data=1x3x224x224")
    p.set_defaults(run=run)


def check_paths(log: str, out: str | None) -> None:
    """CLIError unless `log` is a readable tuning log with records and `out` (if given) is another
    file that may be written: a new file or an existing tuning log, in a folder that exists."""
    from autotune.record import LogError, check_is_log, read_log
    if not os.path.exists(log):
        raise CLIError(f"--log {log}: no such tuning log")
    if os.path.isdir(log):
        raise CLIError(f"--log {log}: is a folder, not a tuning log")
    try:
        check_is_log(log)
        chk = read_log(log)
    except (LogError, OSError) as e:
        raise CLIError(f"--log {log}: {getattr(e, 'reason', e)}") from None
    if chk.error:
        raise CLIError(f"--log {log}: {chk.error}")
    if not chk.records:
        raise CLIError(f"--log {log}: holds no usable tuning record; nothing to check")
    if out is None:
        return
    if os.path.exists(out) and os.path.samefile(out, log):
        raise CLIError(f"--prune {out}: is the checked log itself; write the pruned log to another file")
    if os.path.isdir(out):
        raise CLIError(f"--prune {out}: is a folder, not a file")
    check_output_folder("--prune", out)
    if os.path.exists(out) and not os.access(out, os.W_OK):
        raise CLIError(f"--prune {out}: cannot be written (no permission)")
    if os.path.exists(out):
        try:
            check_is_log(out)
        except (LogError, OSError) as e:
            raise CLIError(f"--prune {out}: {getattr(e, 'reason', e)}; choose another file") from None


def run(args) -> int:
    from autotune import record as rec

    from .tune_report import report_model_check
    from .tune_check import check_model_isolated, pruned
    check_paths(args.log, args.prune)
    graph = load_graph(args.model, args.shape)
    if graph.batch is not None:
        raise CLIError(f"{args.model}: the model has a dynamic batch; fix it with --shape NAME=DIMS to check a log")
    say(f"model check of {args.log}: building {os.path.basename(args.model)} untuned and with the log, "
        "timing the kernels the log changed...")
    with tempfile.TemporaryDirectory(prefix="tilewise-check-log-") as tmp:
        work = os.path.join(tmp, os.path.basename(args.log))
        shutil.copyfile(args.log, work)             # the check appends its verdict: to a copy
        try:
            mc = check_model_isolated(graph, work)
        except RuntimeError as e:
            raise CLIError(f"model check of {args.log} failed: {e}") from None
        original = rec.read_log(args.log).records
        verdict = rec.read_log(work).records[len(original):]        # what the check appended
    then = "--prune OUT writes the log without them" if args.prune is None else "left out of the pruned log"
    report_model_check(mc, then=then)
    if not mc.kernels:
        note(f"tilewise: note: the log changed no kernel of {os.path.basename(args.model)} on this CPU "
             "(its records are of other workloads or of another ISA): nothing was judged")
    if args.prune is None:
        return 0
    kept, added = pruned(original, mc.lost), pruned(verdict, mc.lost)
    rec.write(args.prune, kept + added)
    say(f"wrote {args.prune}: {len(kept) + len(added)} record(s); {len(original) - len(kept)} record(s) of "
        f"{len(mc.lost)} config(s) that ran slower in the model left out, {len(added)} in-model record(s) of the "
        "check added")
    return 0
