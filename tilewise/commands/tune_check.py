"""tilewise tune's model check: the model built with the tuning log, against the untuned model.

The tuner times each task's candidates alone; the model runs them one after another, each
meeting its weights as the rest of the model leaves them and its input as its producer leaves
it.  After tuning, the model check builds the model untuned (default schedules) and tuned (the
log) and times both where they run: each build's model passes step by step, the two builds in
alternating rounds (frontends.step_timing.compare_builds, time_steps in the model's order).  Every
piece of the model the log changed (the calls of either build that compute the same graph nodes,
a layout copy or a transform kernel another algorithm adds counted with them) is judged by the
sum of its calls, and what was measured goes into the log as `in_model` records: the tuned
config with the untuned piece's time over its own (vs_default), the untuned kernel's config
with 1.0.  Records so judged rank by these timings alone (autotune.record.pooled_costs), so a
config that ran slower in the model than the kernel it replaced loses to it, and the next build
with the log takes the faster.  Once a workload (or any implementation of a node) is judged, the
configs the model has not run rank below the judged ones and below the default
(autotune.record.below_default): the next build runs only judged configs or the default, and
the check converges in one pass, the second build judging nothing.  So that a kernel whose
first config loses can still gain, check_model(runners_up=True) makes the first pass also judge
the runners-up: the configs a build with the log less the (non-default) ones the first build
took runs instead.  It is off by default: each verdict is one piece's time in the model beside
the untuned one, timed by the clock on the model's threads; on a loaded machine runners-up
that won by it ran slower timed on one thread by CPU time, and the more candidates a noisy
verdict picks from, the likelier it picks a slower one.
The check builds and judges again only for a config the first pass did not judge, such as one
a tune added after the judging (at most CHECK_PASSES builds).
Then the two builds run in alternating rounds, and the gain the model shows (the lower
quartile of each one's runs, autotune.measure.per_call) is reported beside the tuner's estimate.

`tilewise tune` runs the check in a fresh interpreter (check_model_isolated), as the tuner
measures in fresh workers: no thread of the tuning process (the cost model's) is in the
process that times the models.  On a shared machine the timings still follow its load: a
2-thread model whose OpenMP team waits for a descheduled thread at every kernel ran
SqueezeNet at 310 ms a run instead of 5 ms while other jobs held the cores.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import statistics
import time
from dataclasses import dataclass, field

log = logging.getLogger(__name__)


@dataclass
class ModelCheck:
    """What the model check found."""
    untuned: float                  # seconds per model run, default schedules
    tuned: float                    # seconds per model run, with the log (after the check's records)
    kernels: int                    # pieces of the model (calls for the same nodes) judged in it
    slower: list[str] = field(default_factory=list)    # their anchor nodes that ran slower than untuned
    records: int = 0                # in_model records appended to the log
    # seconds per model run the tuned kernels saved timed in the model (compare_builds, each
    # kernel's median over rounds x its calls; one that ran slower than untuned counts 0: the
    # tuned build goes back to the untuned kernel there)
    kernel_saving: float = 0.0
    # (workload key, ISA key, config key) of each tuned config that ran slower than the untuned kernel
    lost: list[tuple[str, str, str]] = field(default_factory=list)
    passes: int = 0                 # builds whose kernels were judged (1: converged in one pass)

    @property
    def gain(self) -> float:
        return self.untuned / self.tuned if self.tuned > 0 else math.nan


CHECK_PASSES = 6        # builds judged at most (one pass converges unless a record is newer than the judging)


def check_model(graph, log_path: str, target=None, rounds: int = 7, repeat: int = 20,
                runners_up: bool = False) -> ModelCheck:
    """Build graph untuned and with the log, judge the log's kernels in the model (appending
    in_model records) until the build with the log runs only configs so judged, then time both
    models in alternating rounds.  With runners_up, the first pass also judges the configs the
    build would take next (a build with the log less the configs it took): where the first
    config loses in the model, the second may win, and both are judged in the one pass."""
    import frontends
    from autotune import record as rec
    from autotune.call_timing import per_call
    from autotune.task import workload_key
    from frontends.profile import random_inputs, time_interleaved
    from frontends.step_timing import compare_builds
    from te.target import parse
    tgt = parse(target)
    untuned = frontends.build(graph, tgt)
    feed = random_inputs(untuned.plan.inputs)
    defaults: dict[str, dict] = {}

    def default(task: tuple) -> dict:           # a task's default config, made once
        key = workload_key(*task)
        if key not in defaults:
            defaults[key] = _default_config(task, tgt)
        return defaults[key]

    judged: set[tuple[str, str]] = set()        # (workload, config key) this check timed in the model

    def judge(tuned) -> list[tuple]:
        """(piece, the log's records behind its tuned calls) of each piece of the model the build
        with the log changed to a config not judged yet, timed beside the untuned build's."""
        used = {r.workload: r for r in tuned.records}

        def tuned_records(calls: tuple) -> list:
            """The log's records behind calls (those whose task the log covers), in their order."""
            found = (used.get(workload_key(*c.task)) for c in calls if c.task is not None)
            return [r for r in found if r is not None]

        def differs(a: tuple, b: tuple) -> bool:    # nodes the log changed, to a config not judged yet
            tasks_a, tasks_b = [c.task for c in a], [c.task for c in b]
            return any((tasks_a != tasks_b or r.config != default(c.task)) and (r.workload, r.config_key) not in judged
                       for c in b if c.task is not None for r in tuned_records((c,)))
        return [(p, tuned_records(p.b)) for p in compare_builds(untuned, tuned, feed, rounds, only=differs)]

    def runner_up(tuned):
        """The build with the log less the configs (other than defaults) the build `tuned` took."""
        defaults_run = {(workload_key(*c.task), rec.Record("", default(c.task), []).config_key)
                        for c in tuned.plan.steps if c.task is not None}
        top = {(r.workload, r.config_key) for r in tuned.records} - defaults_run
        rest = [r for r in rec.load(log_path) if (r.workload, r.config_key) not in top]
        return frontends.build(graph, tgt, logs=rest) if top else None

    latest: dict[tuple, object] = {}            # a piece's nodes -> its verdict in the last pass (KernelPair)
    records, lost, tuned, passes = 0, set(), None, 0
    for _ in range(CHECK_PASSES):
        # A config that lost drops below the default, as do the configs the model never ran
        # (record.below_default): after one pass the build takes judged configs or defaults.
        tuned = frontends.build(graph, tgt, logs=[log_path])
        builds = [tuned, runner_up(tuned) if runners_up and not passes else None]
        found, this_pass = [], {}
        now = dict(timestamp=time.time(), build_time=0.0, run_time=0.0, checked=True, in_model=True,
                   host="")         # timed here, whichever machine timed the record it copies
        for p, mine in (v for b in builds if b is not None for v in judge(b)):
            for r in mine:
                found.append(dataclasses.replace(r, costs=list(p.times_b), vs_default=p.ratio, **now))
            for c in p.a if mine else ():
                if c.task is not None:
                    found.append(dataclasses.replace(mine[0], workload=workload_key(*c.task), costs=list(p.times_a),
                                                     config=default(c.task), vs_default=1.0, **now))
            if p.nodes not in this_pass or p.ratio > this_pass[p.nodes].ratio:     # the next build takes the faster
                this_pass[p.nodes] = p
            if p.ratio < 1 - rec.DEFAULT_MARGIN:
                lost |= {(r.workload, r.isa, r.config_key) for r in mine}
        if not found:
            break
        rec.append(log_path, found)
        latest.update(this_pass)
        records, passes = records + len(found), passes + 1
        judged |= {(r.workload, r.config_key) for r in found}
        tuned = None                # the records changed the ranking: the next build goes by them
    else:
        log.warning("model check: %d builds judged; the next build with %s may still run configs "
                    "not timed in the model", CHECK_PASSES, log_path)
    if tuned is None:
        tuned = frontends.build(graph, tgt, logs=[log_path])
    verdicts = list(latest.values())
    slower = [p.nodes[0] for p in verdicts if p.ratio < 1 - rec.DEFAULT_MARGIN]
    saving = sum(p.calls * (statistics.median(p.times_a) - statistics.median(p.times_b))
                 for p in verdicts if p.nodes[0] not in slower)
    lat = time_interleaved({"untuned": lambda: untuned.run(**feed), "tuned": lambda: tuned.run(**feed)},
                           repeat=repeat, block=3)
    # runs the machine's load stretched say nothing of the schedules: as the kernels, by per_call
    return ModelCheck(per_call(lat["untuned"].times), per_call(lat["tuned"].times), len(verdicts), slower, records,
                      saving, sorted(lost), passes)


def pruned(records: list, lost: list[tuple[str, str, str]]) -> list:
    """The records of a log without those of the (workload, ISA, config) that lost in the model
    (ModelCheck.lost): every record of such a config goes, whatever timed it, so a build with
    what is left cannot take it."""
    gone = set(lost)
    return [r for r in records if (r.workload, r.isa, r.config_key) not in gone]


def projected_gain(untuned: float, estimated_saving: float) -> float:
    """The model gain the tuner's estimate amounts to: its estimated saving per run (seconds, the
    tuned kernels' default time less their best) taken off the untuned model's measured time.
    The tuner's gain over its kernels alone is not the model's: the model also runs kernels no
    task covers (pooling, concatenation, the last Softmax) and moves between kernels."""
    left = untuned - estimated_saving
    return untuned / left if untuned > 0 and left > 0 else math.nan


def check_model_isolated(graph, log_path: str) -> ModelCheck:
    """check_model for this CPU in a fresh interpreter (see the module docstring); RuntimeError
    with the child's last line of error output if it fails."""
    import os
    import pickle
    import subprocess
    import tempfile

    from autotune.measure import isolated_python
    argv, env = isolated_python("from tilewise.commands.tune_check import _child; _child(sys.argv[1])")
    with tempfile.TemporaryDirectory(prefix="tilewise-check-") as tmp:
        io = os.path.join(tmp, "check.pickle")
        with open(io, "wb") as f:
            pickle.dump((graph, log_path), f)
        proc = subprocess.run([*argv, io], env=env, stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if proc.returncode != 0:
            lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
            raise RuntimeError(lines[-1] if lines else f"the checking process ended with exit code {proc.returncode}")
        with open(io, "rb") as f:
            return pickle.load(f)


def _child(io: str) -> None:
    """The fresh interpreter's side of check_model_isolated: (graph, log) in, ModelCheck out, one file."""
    import pickle
    with open(io, "rb") as f:
        graph, log_path = pickle.load(f)
    mc = check_model(graph, log_path)
    with open(io, "wb") as f:
        pickle.dump(mc, f)


def _default_config(task: tuple, target) -> dict:
    """The JSON of the default config of task (template, args)."""
    import autotune
    space = autotune.create_task(*task, target).config_space
    return space.get(space.default_index()).to_json()
