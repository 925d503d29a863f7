"""The fuzz oracle and loop shared by tests/fuzz and bench/fuzz.py.

`run_case` writes a Case to a file, runs `python -m tests.fuzz.child KIND FILE` on it with a
timeout and judges what happened.  A case passes when the child answered (no signal death, no
hang, no early exit) and the input was either accepted (right answer) or refused by an error
of tilewise's own types whose message is one clear line (ModelError may list its problems on
the lines after the first).  It fails on a signal, a hang, an error of another type (a
TypeError from inside, a RecursionError...), an empty, multi-line or overlong message, a wrong
answer, or an input file that was changed.  `fuzz` runs random cases for a while and collects
the distinct failures, for bench/fuzz.py.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

from . import mutators, seeds
from .mutators import Case

ROOT = seeds.ROOT
TIMEOUTS = {"onnx": 60.0, "log": 20.0, "lib": 20.0, "selftest": 10.0}
SPECIAL_TIMEOUT = 5.0        # a FIFO or a device needs no reading to be refused
MAX_LINE = 500               # characters in one line of an error message
SUFFIX = {"onnx": ".onnx", "log": ".jsonl", "lib": ".so", "selftest": ".txt"}
MULTILINE_TYPES = ("frontends.onnx_model.ModelError",)     # lists every problem, one per line after the first


@dataclass
class Verdict:
    """How one case ended: ok, or the failure's signature (type + first line) and its detail."""
    ok: bool
    outcome: str             # "ok", "refused", "signal", "hang", "exit", "internal", "message", "wrong", "changed"
    signature: str = ""      # what failures are deduplicated by
    detail: str = ""         # the full message or the child's last stderr lines
    stage: str = ""

    def report(self, case: Case | None = None) -> str:
        """A few lines for a test failure or a reproducer: the case, the failure, the detail."""
        head = f"[{case.kind}/{case.category}] {case.note}\n" if case else ""
        return f"{head}{self.outcome} at stage {self.stage or '?'}: {self.signature}\n{self.detail}".rstrip()


# ---------------------------------------------------------------- one case
def materialise(case: Case, folder: str) -> str:
    """Write the case where the child will read it; special files are made as they say."""
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"case{SUFFIX[case.kind]}")
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.remove(path)
    if case.special == "fifo":
        os.mkfifo(path)
    elif case.special in ("dev-zero", "dev-urandom"):
        os.symlink("/dev/" + case.special[4:], path)
    elif case.special == "folder":
        os.mkdir(path)
    else:
        with open(path, "wb") as fh:
            fh.write(case.data)
    return path


def child_env(folder: str) -> dict:
    """The child's environment: this tree first on the path, one thread, private cache, no shared logs."""
    env = dict(os.environ)
    env.update(PYTHONPATH=ROOT + os.pathsep + env.get("PYTHONPATH", ""), TILEWISE_NUM_THREADS="1",
               OMP_NUM_THREADS="1", TILEWISE_CACHE_DIR=os.path.join(folder, "cache"), TILEWISE_LOGS="",
               FUZZ_TMP=folder, PYTHONFAULTHANDLER="1")
    return env


_verdicts: dict[tuple, Verdict] = {}


def run_case(case: Case, folder: str, timeout: float | None = None) -> Verdict:
    """Run one case in a fresh interpreter and judge it (once: hypothesis replays a failing
    example to report it, and a hang should not cost its timeout twice)."""
    key = (case.kind, case.category, case.special, hashlib.sha256(case.data).digest(), timeout)
    if key not in _verdicts:
        _verdicts[key] = _run(case, folder, timeout)
    return _verdicts[key]


def _run(case: Case, folder: str, timeout: float | None) -> Verdict:
    path = materialise(case, folder)
    before = _digest(path)
    timeout = timeout or (SPECIAL_TIMEOUT if case.special else TIMEOUTS[case.kind])
    proc = subprocess.Popen([sys.executable, "-m", "tests.fuzz.child", case.kind, path], cwd=ROOT,
                            env=child_env(folder), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
        timed_out = False
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)          # the child's own session: it and its threads
        out, err = proc.communicate()
        timed_out = True
    verdict = judge(proc.returncode, out.decode(errors="replace"), err.decode(errors="replace"),
                    timed_out, timeout)
    if verdict.ok and before != _digest(path):
        verdict = Verdict(False, "changed", "the input file was changed", stage=verdict.stage)
    return verdict


def _digest(path: str) -> str | None:
    if not os.path.isfile(path) or os.path.islink(path):
        return None
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def judge(returncode: int, out: str, err: str, timed_out: bool, timeout: float) -> Verdict:
    """The verdict on a child's exit: see the module docstring for what passes."""
    stages = [ln.split(" ", 1)[1] for ln in out.splitlines() if ln.startswith("FUZZ-STAGE ")]
    results = [ln.split(" ", 1)[1] for ln in out.splitlines() if ln.startswith("FUZZ-RESULT ")]
    where = stages[-1] if stages else "start"
    tail = "\n".join(err.strip().splitlines()[-12:])
    if timed_out:
        return Verdict(False, "hang", f"no answer within {timeout:g} s", tail, where)
    if returncode < 0:
        name = signal.Signals(-returncode).name if -returncode in signal.valid_signals() else str(-returncode)
        return Verdict(False, "signal", f"killed by {name}", tail, where)
    if not results:
        return Verdict(False, "exit", f"exited with code {returncode} without an answer", tail, where)
    res = json.loads(results[-1])
    if res["outcome"] == "ok":
        return Verdict(True, "ok", stage=where)
    message = res.get("message", "")
    first = message.splitlines()[0] if message.strip() else ""
    if res["outcome"] == "wrong":
        return Verdict(False, "wrong", f"wrong answer: {first}", message, where)
    if res["outcome"] == "error" and not res["project"]:
        return Verdict(False, "internal", f"{res['type']}: {first}", tail or message, where)
    lines = message.splitlines()
    if not first or "Traceback" in message or any(len(ln) > MAX_LINE for ln in lines) \
            or (len(lines) > 1 and res.get("type") not in MULTILINE_TYPES):
        why = "empty" if not first else "overlong" if any(len(ln) > MAX_LINE for ln in lines) else "multi-line"
        return Verdict(False, "message", f"{why} message from {res.get('type', 'the CLI')}: {first[:200]}",
                       message[:4000], where)
    return Verdict(True, "refused", f"{res.get('type', 'the CLI')}: {first}", stage=where)


def failure_key(kind: str, v: Verdict, path_hint: str = "") -> str:
    """What failures are deduplicated by: kind, stage, type and first line with the case's file
    name and numbers blanked, so one defect met through many inputs counts once."""
    sig = v.signature.replace(path_hint, "<input>") if path_hint else v.signature
    sig = re.sub(r"/\S*case\.\w+", "<input>", sig)
    return f"{kind}@{v.stage}: " + re.sub(r"\b\d+\b", "N", sig)


# ---------------------------------------------------------------- the long-running loop
def seed_inputs(folder: str, kinds) -> dict[str, bytes]:
    """The seed file of each kind (the library is built into folder)."""
    out = {}
    if "onnx" in kinds:
        out["onnx"] = seeds.model_bytes()
    if "log" in kinds:
        out["log"] = seeds.log_bytes()
    if "lib" in kinds:
        with open(seeds.build_library(os.path.join(folder, "seed.so")), "rb") as fh:
            out["lib"] = fh.read()
    return out


@dataclass
class KindStats:
    """What a fuzz run met for one kind of input."""
    tried: int = 0
    failed: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    distinct: dict[str, tuple[Case, Verdict, str]] = field(default_factory=dict)   # key -> case, verdict, reproducer


def fuzz(kinds, seconds: float, seed: int, out_dir: str, log=print) -> dict[str, KindStats]:
    """Run random cases of the kinds, in turn, for `seconds`; save one reproducer per distinct failure."""
    rnd = random.Random(seed)
    work = os.path.join(out_dir, "work")
    seed_data = seed_inputs(work, kinds)
    stats = {k: KindStats() for k in kinds}
    deadline = time.monotonic() + seconds
    n = 0
    while time.monotonic() < deadline:
        kind = kinds[n % len(kinds)]
        n += 1
        category = rnd.choice(sorted(mutators.MUTATORS[kind]))
        case_seed = rnd.getrandbits(64)
        case = mutators.mutate(kind, category, seed_data[kind], random.Random(case_seed))
        v = run_case(case, os.path.join(work, kind))
        st = stats[kind]
        st.tried += 1
        st.outcomes[v.outcome] = st.outcomes.get(v.outcome, 0) + 1
        if v.ok:
            continue
        st.failed += 1
        key = failure_key(kind, v)
        if key not in st.distinct:
            st.distinct[key] = (case, v, save_reproducer(case, v, case_seed, out_dir, len(st.distinct)))
            log(f"new failure [{kind}/{category}] {v.signature}")
    return stats


def save_reproducer(case: Case, v: Verdict, case_seed: int, out_dir: str, index: int) -> str:
    """The failing input and a note on how to replay it; returns the input's path."""
    folder = os.path.join(out_dir, f"{case.kind}-{index:03d}")
    path = materialise(case, folder)
    with open(os.path.join(folder, "README.txt"), "w") as fh:
        fh.write(f"{v.report(case)}\n\nmutator: {case.kind}/{case.category}, random.Random({case_seed})\n"
                 f"replay (from the repository root): python -m tests.fuzz.child {case.kind} {path}\n")
    return path
