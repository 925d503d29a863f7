"""What the subcommands share: the user-facing error, model loading, log gathering, formatting."""
from __future__ import annotations

import json
import math
import os
import sys
from dataclasses import dataclass, field


class CLIError(Exception):
    """A problem the user can fix; printed as one line, exit code 1."""


# ---------------------------------------------------------------- output
def say(msg: str = "") -> None:
    """A line of the command's report (stdout)."""
    print(msg, flush=True)


def note(msg: str) -> None:
    """A status line (stderr), kept apart from the report."""
    print(msg, file=sys.stderr, flush=True)


def fmt_time(seconds: float) -> str:
    """'1.23 ms', '45.6 us', '2.10 s'."""
    if seconds is None or not math.isfinite(seconds):
        return "-"
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds * 1e6:.1f} us"


def fmt_duration(seconds: float) -> str:
    """'42s', '3m05s', '1h02m'."""
    if not math.isfinite(seconds):
        return "?"
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def fmt_flops(flops: float) -> str:
    """'1.23 GFLOP', '45.6 MFLOP'."""
    if flops >= 1e9:
        return f"{flops / 1e9:.2f} GFLOP"
    if flops >= 1e6:
        return f"{flops / 1e6:.1f} MFLOP"
    return f"{flops / 1e3:.1f} kFLOP"


def fmt_num(x: float, digits: int = 1, suffix: str = "") -> str:
    """A number, or '-' when it is missing."""
    if x is None or not math.isfinite(x):
        return "-"
    return f"{x:.{digits}f}{suffix}"


def table(headers: list[str], rows: list[list], align: str | None = None) -> str:
    """A plain-text table; align is one letter per column, 'l' or 'r' (numbers right by default)."""
    cells = [[str(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[k]) for r in cells)) if cells else len(h) for k, h in enumerate(headers)]
    align = align or "l" + "r" * (len(headers) - 1)

    def line(vals):
        return "  ".join(v.ljust(w) if a == "l" else v.rjust(w) for v, w, a in zip(vals, widths, align)).rstrip()
    out = [line(headers), line(["-" * w for w in widths])]
    out += [line(r) for r in cells]
    return "\n".join(out)


def noise_note(latencies) -> str:
    """A note when runs vary a lot (median far above min): the machine is probably busy."""
    worst = max((lat.median / lat.min for lat in latencies if lat and lat.min > 0), default=1.0)
    if worst < 1.5:
        return ""
    return (f"note: timings vary a lot between runs (a median up to {worst:.1f}x the min): the machine looks "
            "busy; compare the min column, or run again on an idle machine")


# ---------------------------------------------------------------- names
def _dims(v) -> str:
    if isinstance(v, (list, tuple)):
        return "x".join(_dims(x) for x in v)
    return str(v)


def task_label(name: str, args) -> str:
    """A short readable name of a workload: 'conv2d 1x64x56x56 w64x64x3x3 s1 p1'."""
    args = list(args)
    if name in ("conv2d_nchw", "conv2d_1x1_gemm", "conv2d_nchw_winograd", "conv2d_nchw_winograd_f2",
                "depthwise_conv2d_nchw") and len(args) >= 4:
        x, w, strides, pads = args[:4]
        kind = "dwconv" if name.startswith("depthwise") else "conv2d"
        s = strides[0] if len(set(strides)) == 1 else _dims(strides)
        p = pads[0] if len(set(pads)) == 1 else _dims(pads)
        groups = args[5] if not name.startswith("depthwise") and len(args) > 5 else 1
        g = f" g{groups}" if groups != 1 else ""
        how = {"conv2d_1x1_gemm": " (gemm)", "conv2d_nchw_winograd": " (winograd)",
               "conv2d_nchw_winograd_f2": " (winograd F2)"}.get(name, "")
        return f"{kind} {_dims(x)} w{_dims(w)} s{s} p{p}{g}{how}"
    if name in ("matmul", "dense", "matmul_rows", "matmul_splitk", "dense_dot") and len(args) >= 3:
        m, n, k = args[:3]
        return f"{name} {m}x{n}x{k}"
    shown = [a for a in args if a != "float32"]
    return f"{name} " + " ".join(_dims(a) for a in shown)


def workload_label(key: str) -> str:
    """task_label of a workload key; the key itself when it does not parse."""
    try:
        name, args = json.loads(key)
        return task_label(name, args)
    except (ValueError, TypeError):
        return key if len(key) < 60 else key[:57] + "..."


_TAGS = ("avx512f", "avx2", "avx", "sse4.2")


def isa_tag(isa: str) -> str:
    """A short name for an ISA key: 'avx512', 'avx2', 'avx', 'sse4.2' or 'x86_64'."""
    feats = set(isa.split("+")[1:])
    for t in _TAGS:
        if t in feats:
            return "avx512" if t == "avx512f" else t
    return isa.split("+")[0] or "?"


# ---------------------------------------------------------------- models
def parse_shapes(items: list[str] | None) -> dict[str, list[int]]:
    """--shape NAME=1x3x224x224 (repeatable) -> {NAME: [1, 3, 224, 224]}."""
    out: dict[str, list[int]] = {}
    for it in items or []:
        name, sep, dims = it.partition("=")
        try:
            if not sep or not name:
                raise ValueError
            out[name] = [int(d) for d in dims.lower().replace(",", "x").split("x")]
        except ValueError:
            raise CLIError(f"--shape {it!r}: expected NAME=DIMS, e.g. data=1x3x224x224") from None
    return out


def check_file(path: str, what: str = "file") -> None:
    """A one-line error for a missing path or a folder."""
    if not os.path.exists(path):
        raise CLIError(f"{path}: no such {what}")
    if os.path.isdir(path):
        raise CLIError(f"{path}: is a folder, not a {what}")


def _is_library(path: str) -> bool:
    from te.export import is_library_file
    return is_library_file(path)


def _is_header(path: str) -> bool:
    from te.export import is_header_file
    return is_header_file(path)


def _is_onnx(path: str) -> bool:
    import onnx
    try:
        m = onnx.load(path, load_external_data=False)
    except Exception:               # noqa: BLE001 - any parse failure: not a model
        return False
    return m.ir_version > 0 and m.HasField("graph")


def _is_npz(path: str) -> bool:
    import zipfile
    return zipfile.is_zipfile(path)


# What an existing output must already be for a command to replace it: what the command writes
# (a library built before, a header, a model, an .npz of outputs), never a file of the user's.
OUTPUT_KINDS = {"library": (_is_library, "a shared library"), "header": (_is_header, "a C header tilewise wrote"),
                "onnx": (_is_onnx, "an ONNX model"), "npz": (_is_npz, "an .npz archive")}


def check_output_folder(flag: str, path: str) -> None:
    """A CLIError unless a file can be created in `path`'s folder: the folder exists, and a probe
    file made there (and removed) says it takes files (permission bits do not: root ignores them,
    and /proc refuses files whatever they say), before any work is done for the output."""
    import tempfile
    folder = os.path.dirname(path)
    if folder and not os.path.isdir(folder):
        raise CLIError(f"{flag} {path}: the folder {folder} does not exist")
    try:
        fd, probe = tempfile.mkstemp(dir=folder or ".", prefix=".tilewise-probe-")
    except OSError as e:
        raise CLIError(f"{flag} {path}: no file can be written in the folder {folder or '.'} "
                       f"({e.strerror or e}); give another folder") from None
    os.close(fd)
    os.unlink(probe)


def refuse_foreign(flag: str, path: str, kind: str) -> None:
    """A CLIError when `path` exists and is not of `kind` (OUTPUT_KINDS): writing it would destroy
    a file the user keeps for something else."""
    if not os.path.lexists(path) or os.path.isdir(path):
        return
    test, what = OUTPUT_KINDS[kind]
    try:
        ok = test(path)
    except OSError as e:
        raise CLIError(f"{flag} {path}: exists and cannot be read ({e.strerror or e}); give another name") from None
    if not ok:
        raise CLIError(f"{flag} {path}: exists and is not {what}, so it is not replaced; give another name "
                       "(or remove the file first)")


def load_graph(path: str, shapes: list[str] | None = None, max_batch: int | None = None):
    """Import an ONNX model; import problems become a CLIError with the importer's message.
    max_batch: inputs with a symbolic batch only become a dynamic batch up to it (None: refused)."""
    import frontends
    check_file(path, "model file")
    try:
        return frontends.from_onnx(path, shapes=parse_shapes(shapes) or None, advice="cli", max_batch=max_batch)
    except frontends.ModelError as e:
        raise CLIError(str(e)) from None


def model_tasks(graph, target=None, algorithms: str = "all", auto_schedule: bool | str = False):
    """The model's tuning tasks, heaviest first (frontends.tasks.extract_tasks; with auto_schedule,
    the kernels without a template too; "all": every kernel by the auto-scheduler)."""
    from frontends.tasks import extract_tasks
    return extract_tasks(graph, target, algorithms, auto_schedule)


# ---------------------------------------------------------------- tuning logs
@dataclass
class LogSelection:
    """The logs a build uses: validated files, their records, and what to tell the user."""
    isa: str
    paths: list[str] = field(default_factory=list)
    records: list = field(default_factory=list)
    lines: list[str] = field(default_factory=list)       # one per log: path and what it holds
    skipped: list[str] = field(default_factory=list)     # one per bad log

    def best_for(self, workload: str):
        """The fastest valid record of this workload on this ISA, or None."""
        best = None
        for r in self.records:
            if r.ok and r.workload == workload and r.isa == self.isa and (best is None or r.cost < best.cost):
                best = r
        return best


def gather_logs(user_logs: list[str] | None, shared: bool, isa: str) -> LogSelection:
    """The user's logs (bad lines skipped) plus, unless shared is False, the shared logs for this ISA."""
    from autotune import shared_logs
    from autotune.record import LogError
    sel = LogSelection(isa)
    try:
        records, checks = shared_logs.load_user_logs(user_logs or [])
    except (FileNotFoundError, LogError) as e:
        raise CLIError(str(e)) from None
    for chk in checks:
        mine = len(chk.usable(isa))
        extra = f", {chk.n_bad} bad line(s) skipped" if chk.n_bad else ""
        other = len(chk.records) - mine
        other_s = f", {other} for other CPUs (not used)" if other else ""
        sel.paths.append(chk.path)
        sel.lines.append(f"{chk.path}: {mine} record(s) for this CPU{other_s}{extra}")
    sel.records += records
    if shared:
        sl = shared_logs.load_shared_logs(isa)
        for path, n in sl.used:
            sel.paths.append(path)
            sel.lines.append(f"{_rel(path)}: {n} record(s) for this CPU (shared)")
        sel.records += sl.records
        for chk in sl.skipped:
            sel.skipped.append(f"{_rel(chk.path)} skipped: {chk.summary()}")
    return sel


def _rel(path: str) -> str:
    try:
        r = os.path.relpath(path)
        return r if not r.startswith("..") else path
    except ValueError:
        return path
