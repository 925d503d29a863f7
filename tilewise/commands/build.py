"""tilewise build: one shared library from a model and the best tuning records known."""
from __future__ import annotations

import os
import time

from . import add_parser
from ..common import (CLIError, check_output_folder, gather_logs, isa_tag, load_graph, model_tasks, refuse_foreign,
                      say, task_label)
from ..progress import Status

DESCRIPTION = """\
Build an ONNX model into one shared library for this CPU (or --target): every kernel, the
weights, a native entry point and the metadata, loadable with te.runtime.load_module (numpy
and ctypes only) or from C.  Each kernel uses the best record known for its task: from the
logs given with --log, plus the shared logs -- tuning_logs/ in the repository and the folders
in $TILEWISE_LOGS -- where their records were measured on this CPU's ISA (--no-shared-logs
turns those off).  Shared logs are validated first; a bad one is reported with its file and
line and skipped.  Tasks without a record use the default schedule.  The command says which
logs were used and how many of the model's tasks they cover."""

EXAMPLES = """\
  tilewise build resnet50.onnx -o resnet50.so
  tilewise build resnet50.onnx -o resnet50.so --log resnet50.jsonl --header resnet50.h
  tilewise build model.onnx -o model.so --no-shared-logs
  tilewise build model.onnx -o model.so --shape input=1x3x299x299
  tilewise build dynamic_batch.onnx -o model.so --max-batch 16"""


def register(sub, common) -> None:
    p = add_parser(sub, common, "build", "build a model into one shared library", DESCRIPTION, EXAMPLES)
    p.add_argument("model", metavar="MODEL.onnx", help="the ONNX model to build")
    p.add_argument("-o", "--output", metavar="LIB.so", help="the library to write (default: MODEL.so)")
    add_log_options(p)
    p.add_argument("--target", metavar="TARGET", help="target string, e.g. 'llvm -mcpu=haswell' (default: this CPU); the caches the "
                   "defaults are sized for may follow: '-l1d=32K -l2=1M -l3=4M' (without them 32K/1M/8M)")
    p.add_argument("--header", metavar="FILE.h", help="also write a C header for the library")
    p.add_argument("--shape", action="append", metavar="NAME=DIMS", help="fix an input shape, e.g. data=1x3x224x224")
    p.add_argument("--max-batch", type=int, default=None, metavar="N",
                   help="for a model whose inputs lead with a symbolic batch (['N', 3, 224, 224]): the "
                        "largest batch the library runs (default 8). The library holds static plans for the "
                        "powers of two below N and for N, and runs any batch 1..N in chunks of them "
                        "(5 = 4 + 1); N sizes the workspace (ResNet-50: 75 MiB at 8) and the "
                        "buffers the C header declares. --shape fixes the batch instead")
    p.add_argument("--print-passes", action="store_true", help="print the graph before and after each graph pass")
    p.set_defaults(run=run)


def add_log_options(p) -> None:
    """--log (repeatable) and --no-shared-logs."""
    p.add_argument("--log", action="append", metavar="FILE", default=[],
                   help="a tuning log to use (repeatable); bad lines are skipped and reported")
    p.add_argument("--no-shared-logs", action="store_true",
                   help="ignore the shared logs (tuning_logs/ and $TILEWISE_LOGS)")


def parse_target(spec: str | None):
    """A te Target from --target, with a one-line error."""
    from te.target import parse
    try:
        return parse(spec)
    except ValueError as e:
        raise CLIError(f"--target: {e}") from None


def same_file(a: str, b: str) -> bool:
    """True when a and b name one file (another spelling of the path or a link counts)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def refuse_overwrite(outputs: list[tuple[str, str]], inputs: list[tuple[str, str]]) -> None:
    """A CLIError when an output path names one of the inputs or another output, which writing
    it would destroy; pairs are (option, path)."""
    for i, (oflag, out) in enumerate(outputs):
        for iflag, src in inputs + outputs[:i]:
            if same_file(out, src):
                raise CLIError(f"{oflag} {out}: is the same file as {iflag} {src}, which writing it "
                               "would overwrite; give the output another name")


def select_logs(args, graph, target, verbose: bool = True):
    """Gather and report the logs a build uses; returns the LogSelection."""
    sel = gather_logs(args.log, not args.no_shared_logs, target.isa)
    tasks = model_tasks(graph, target)
    covered = [t for t in tasks if sel.best_for(t.task.workload_key) is not None]
    if not verbose:
        return sel, tasks, covered
    if sel.lines:
        say("tuning logs used:")
        for line in sel.lines:
            say(f"  {line}")
    else:
        where = f" (no shared logs for {isa_tag(target.isa)} in tuning_logs/ or $TILEWISE_LOGS)"
        say("tuning logs used: none" + ("" if args.no_shared_logs else where))
    if tasks:
        kernels, tuned = {t.workload for t in tasks}, {t.workload for t in covered}
        say(f"tuned kernels: {len(tuned)} of the model's {len(kernels)} have a record for this CPU"
            + ("" if len(tuned) == len(kernels) else "; the others use the default schedule"))
        if args.verbose:
            for t in tasks:
                mark = "tuned  " if t in covered else "default"
                say(f"  {mark} {task_label(t.task.name, t.task.args)}  x{t.count}")
    return sel, tasks, covered


def build_library(graph, target, sel):
    """frontends.build with the selected logs, with a status line while it compiles."""
    import frontends
    st = Status()
    st.update(f"compiling {graph.name}...", force=True)
    t0 = time.time()
    try:
        lib = frontends.build(graph, target=target, logs=sel.paths or None)
    finally:
        st.clear()
    return lib, time.time() - t0


def output_path(args) -> str:
    """The library's path (-o, else MODEL's name in this folder), its folder and --header's
    checked, and neither overwriting an input: before the model is read, so a mistyped option
    costs no import of the compiler and ONNX (about 2 s of CPU)."""
    out = args.output or os.path.splitext(os.path.basename(args.model))[0] + ".so"
    if os.path.isdir(out):
        raise CLIError(f"-o {out}: is a folder; give the library's file name")
    check_output_folder("-o", out)
    if args.header:
        check_output_folder("--header", args.header)
    outputs = [("-o", out)] + ([("--header", args.header)] if args.header else [])
    refuse_overwrite(outputs, [("MODEL", args.model)] + [("--log", p) for p in args.log])
    refuse_foreign("-o", out, "library")
    if args.header:
        refuse_foreign("--header", args.header, "header")
    return out


def run(args) -> int:
    if args.max_batch is not None and args.max_batch < 1:
        raise CLIError(f"--max-batch {args.max_batch}: give the largest batch the library must run, 1 or more")
    target = parse_target(args.target)
    out = output_path(args)
    from frontends.batch import DEFAULT_MAX_BATCH    # the CLI imports the compiler only when it runs
    max_batch = DEFAULT_MAX_BATCH if args.max_batch is None else args.max_batch
    graph = load_graph(args.model, args.shape, max_batch=max_batch)
    if args.print_passes:
        from frontends.passes import print_passes
        print_passes(graph)
    sel, _, _ = select_logs(args, graph, target)
    t0 = time.time()
    lib, _ = build_library(graph, target, sel)
    st = Status()
    st.update(f"linking {out}...", force=True)
    try:
        lib.export_library(out, header=args.header)
    finally:
        st.clear()
    seconds = time.time() - t0
    size = os.path.getsize(out)
    say(f"built {out} ({size / 2**20:.1f} MiB) for {target.cpu} ({isa_tag(target.isa)}), "
        f"in {seconds:.1f}s")
    say(f"  {lib.summary()}")
    # a dynamic batch's dimension shows as its name: [N, 3, 224, 224]
    ins = ", ".join(f"{i['name']}: {i['dtype']}[{', '.join(map(str, i['shape']))}]" for i in lib.plan.inputs)
    outs = ", ".join(f"{o['name']}: {o['dtype']}[{', '.join(map(str, o['shape']))}]" for o in lib.plan.outputs)
    say(f"  inputs {ins}")
    if lib.plan.batch:
        say(f"  dynamic batch {lib.plan.batch['dim']}: 1 to {lib.plan.batch['max']} (--max-batch)")
    say(f"  outputs {outs}")
    if args.header:
        say(f"  C header {args.header}")
    say(f"run it:  tilewise run {out}")
    return 0
