"""What one fuzz case runs, in a fresh interpreter: `python -m tests.fuzz.child KIND FILE`.

Run from the repository root.  It feeds the file to tilewise the way a user would (KIND onnx:
frontends.from_onnx + build + run, checked against ONNX Runtime where it runs the model; log:
autotune.record.load, best, stats, merge and `tilewise logs stats`; lib:
te.runtime.load_module and a call of every kernel, checked against numpy), prints a
`FUZZ-STAGE name` line before each step and one `FUZZ-RESULT {json}` line at the end: the
outcome ("ok", "error" or "wrong"), the exception's type, whether tilewise defines that type,
and its message.  fuzzing.judge turns that (or a signal, a hang) into a verdict.
"""
from __future__ import annotations

import contextlib
import faulthandler
import io
import json
import os
import resource
import sys
import tempfile
import traceback

import numpy as np

from . import seeds

PROJECT_PACKAGES = ("te", "autotune", "frontends", "tilewise")
# Address space a child may use: an input that asks for absurd memory meets a MemoryError here
# instead of taking the machine's memory (the compiler and ONNX Runtime need more than the rest).
MEMORY_LIMITS = {"onnx": 4 << 30}
DEFAULT_MEMORY_LIMIT = 2 << 30


class WrongAnswer(Exception):
    """The input was accepted, but what came out is wrong (or damage went unnoticed)."""


def stage(name: str) -> None:
    """Say which step runs now, so a crash or a hang is placed."""
    print(f"FUZZ-STAGE {name}", flush=True)


def project_type(e: BaseException) -> bool:
    """Whether tilewise defines the exception's class or one of its bases."""
    return any(c.__module__.split(".")[0] in PROJECT_PACKAGES for c in type(e).__mro__)


def report(outcome: str, e: BaseException | None = None) -> None:
    """Print the FUZZ-RESULT line."""
    res = {"outcome": outcome}
    if e is not None:
        res.update(type=f"{type(e).__module__}.{type(e).__qualname__}", project=project_type(e),
                   message=str(e))
    print("FUZZ-RESULT " + json.dumps(res), flush=True)


# ---------------------------------------------------------------- ONNX models
def run_onnx(path: str) -> None:
    """Import, build and run the model; compare with ONNX Runtime where it runs the model too."""
    import frontends
    outside = _external_outside(path)
    defects = _graph_defects(path)
    stage("import")
    graph = frontends.from_onnx(path)
    if defects:
        raise WrongAnswer(f"an invalid graph was imported: {defects}")
    stage("build")
    lib = frontends.build(graph)
    inputs = dict(zip(lib.input_names, seeds.make_inputs(
        [(s["name"], s["shape"], s["dtype"]) for s in lib.plan.inputs])))
    stage("run")
    outs = lib.run(**inputs)
    if outside:
        raise WrongAnswer(f"the model was imported with external data outside its folder: {outside}")
    stage("reference")
    ref = _onnxruntime(path, inputs, lib.output_names)
    if ref is not None:
        for name, got, want in zip(lib.output_names, outs, ref):
            _compare(name, got, np.asarray(want))


def _external_outside(path: str) -> str:
    """The external-data locations of the model that resolve outside its folder ('' if none)."""
    import onnx
    folder = os.path.realpath(os.path.dirname(os.path.abspath(path)))
    try:
        m = onnx.load(path, load_external_data=False)
    except Exception:
        return ""
    bad = []
    for t in m.graph.initializer:
        for e in t.external_data:
            if e.key == "location":
                real = os.path.realpath(os.path.join(folder, e.value))
                if os.path.commonpath([folder, real]) != folder:
                    bad.append(e.value)
    return ", ".join(bad)


def _graph_defects(path: str) -> str:
    """What makes the graph invalid in ONNX's terms ('' if nothing): a value written twice, a
    cycle, a node input or graph output that nothing produces."""
    import onnx
    try:
        g = onnx.load(path, load_external_data=False).graph
    except Exception:
        return ""
    given = {v.name for v in g.input} | {t.name for t in g.initializer}
    writer: dict[str, int] = {}
    found = []
    for k, n in enumerate(g.node):
        for o in filter(None, n.output):
            if o in writer or o in given:
                found.append(f"'{o}' written twice")
            writer.setdefault(o, k)
    known = given | set(writer)
    found += [f"node {k} reads '{x}', which nothing produces" for k, n in enumerate(g.node)
              for x in n.input if x and x not in known]
    found += [f"graph output '{o.name}' is not produced" for o in g.output if o.name not in known]
    if _has_cycle(g.node, writer):
        found.append("a cycle")
    return "; ".join(found[:3])


def _has_cycle(nodes, writer: dict[str, int]) -> bool:
    """Whether some node depends on itself through the values it reads."""
    deps = [{writer[x] for x in n.input if x in writer} for n in nodes]
    state = [0] * len(nodes)             # 0 unvisited, 1 on the path, 2 done
    for start in range(len(nodes)):
        stack = [(start, iter(deps[start]))]
        if state[start]:
            continue
        state[start] = 1
        while stack:
            k, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                state[k] = 2
                stack.pop()
            elif state[nxt] == 1:
                return True
            elif state[nxt] == 0:
                state[nxt] = 1
                stack.append((nxt, iter(deps[nxt])))
    return False


def _onnxruntime(path: str, inputs: dict, names: list[str]):
    """ONNX Runtime's outputs, or None when it is not installed or refuses the model."""
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    try:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = opts.inter_op_num_threads = 1
        opts.log_severity_level = 4
        sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        return sess.run(names, inputs)
    except Exception:
        return None


def _compare(name: str, got: np.ndarray, want: np.ndarray) -> None:
    if got.shape != want.shape:
        raise WrongAnswer(f"output {name}: shape {got.shape}, ONNX Runtime gives {want.shape}")
    if got.dtype.kind != "f" or want.dtype.kind != "f":
        if not np.array_equal(got, want):
            raise WrongAnswer(f"output {name}: values differ from ONNX Runtime's")
        return
    finite = np.isfinite(want)
    scale = float(np.max(np.abs(want[finite]), initial=1.0))
    if not np.array_equal(np.isnan(got), np.isnan(want)) or not np.array_equal(np.isinf(got), np.isinf(want)) \
            or not np.allclose(got[finite], want[finite], rtol=1e-3, atol=1e-4 * scale):
        nan_got, nan_want = int(np.isnan(got).sum()), int(np.isnan(want).sum())
        raise WrongAnswer(f"output {name}: values differ from ONNX Runtime's "
                          f"(NaNs: {nan_got} here, {nan_want} there)")


# ---------------------------------------------------------------- tuning logs
def run_log(path: str) -> None:
    """Load the log, pick the best records, summarise and merge it, then `tilewise logs stats` it."""
    from autotune import record
    stage("load")
    recs = record.load(path)
    stage("best")
    record.best(recs)
    stage("stats")
    record.stats(recs)
    stage("merge")
    with tempfile.TemporaryDirectory(dir=os.environ.get("FUZZ_TMP")) as tmp:
        record.merge([path], os.path.join(tmp, "merged.jsonl"))
    stage("cli")
    _cli(["logs", "stats", path])


def _cli(argv: list[str]) -> None:
    """Run the command line in this process; its failure must be one line of tilewise's own."""
    from tilewise.cli import main
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = main(argv)
    if code == 0:
        return
    lines = [ln for ln in err.getvalue().splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("tilewise: error:")]
    line = errors[0] if errors else (lines[-1] if lines else "")
    internal = ("TypeError", "AttributeError", "KeyError", "IndexError", "RecursionError",
                "OverflowError", "MemoryError", "UnicodeDecodeError", "ZeroDivisionError")
    text = line.removeprefix("tilewise: error: ")
    if len(errors) != 1 or code != 1 or text.startswith(internal) or "Traceback" in err.getvalue():
        raise CLIFailure(f"tilewise {' '.join(argv[:2])} exited {code}: {text or '(no message)'}")
    raise CLIRefusal(text)


class CLIFailure(Exception):
    """The command line failed without one clear line of its own."""


class CLIRefusal(Exception):
    """The command line refused the input with one line (an accepted outcome)."""


# ---------------------------------------------------------------- libraries
def run_lib(path: str) -> None:
    """Load the library; it must still be the seed library, and every kernel must answer right."""
    from te import runtime
    stage("load")
    m = runtime.load_module(path)
    stage("check")
    got = {k["name"]: [(a["name"], tuple(a["shape"]), a["dtype"], a["written"]) for a in k["args"]]
           for k in m.metadata["kernels"]}
    if got != seeds.LIB_KERNELS:
        raise WrongAnswer(f"a damaged library was loaded: its kernels are {got}")
    stage("call")
    for name, specs in seeds.LIB_KERNELS.items():
        args = seeds.make_inputs(specs)
        m[name](*args)
        want = seeds.LIB_REFERENCES[name](*args[:-1])
        if not np.allclose(args[-1], want, rtol=1e-4, atol=1e-5):
            raise WrongAnswer(f"kernel {name} of a damaged library gives wrong values")


# ---------------------------------------------------------------- the oracle's own checks
def run_selftest(path: str) -> None:
    """Misbehave as the file says, so the tests can show that the oracle sees each failure."""
    with open(path) as fh:
        action = fh.read().strip()
    stage(action)
    if action == "segv":
        import ctypes
        ctypes.string_at(0)
    elif action == "hang":
        import time
        time.sleep(3600)
    elif action == "internal":
        {}["missing"]
    elif action == "project":
        from te.runtime import LoadError
        raise LoadError(f"{path} is not a tilewise library")
    elif action == "multiline":
        from te.runtime import LoadError
        raise LoadError("first line\nsecond line")
    elif action == "wrong":
        raise WrongAnswer("the answer is wrong")
    elif action == "exit":
        os._exit(3)
    elif action == "touch":
        with open(path, "a") as fh:
            fh.write("changed")


RUNNERS = {"onnx": run_onnx, "log": run_log, "lib": run_lib, "selftest": run_selftest}


def main(argv: list[str]) -> int:
    """Run one case; the outcome goes to stdout as FUZZ-RESULT."""
    kind, path = argv
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))              # no core files in the repo
    limit = MEMORY_LIMITS.get(kind, DEFAULT_MEMORY_LIMIT)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    faulthandler.enable()
    try:
        RUNNERS[kind](path)
    except CLIRefusal as e:
        report("refused", e)
    except WrongAnswer as e:
        report("wrong", e)
    except BaseException as e:        # noqa: BLE001 -- every exception is the verdict's material
        traceback.print_exc()         # where it came from, for the verdict's detail and a replay
        report("error", e)
    else:
        report("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
