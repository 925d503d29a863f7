"""Every record of the shipped logs (tuning_logs/) is one the current templates can use: its config
fits its template's config space on a CPU of its ISA, and its workload is one the model the log is
named after still has.  A template change that orphans shipped records fails here, so the log is
refreshed with it (issue 19: a record the template no longer accepts is dead weight)."""
from __future__ import annotations

import functools
import os
from pathlib import Path

import pytest

import autotune
from autotune.auto_scheduler.workload import is_deferred
from autotune.record import read_log
from autotune.task import parse_workload
from te.target import Target

LOGS = Path(__file__).resolve().parents[2] / "tuning_logs"
SHIPPED = sorted(LOGS.glob("*/*.jsonl"))
THREADS = 2         # every shipped log was tuned on a 2-core VM (tuning_logs/README.md)
# the model each fp32 log is named after (frontends.zoo); the int8 logs' QDQ models are made by
# onnxruntime.quantization (bench/quantized.py): their workloads are checked for form only
MODELS = {"resnet50": lambda zoo: zoo.light_model("resnet50"),
          "squeezenet": lambda zoo: zoo.light_model("squeezenet"),
          "encoder_layer": lambda zoo: zoo.encoder_layer()}


def _target(isa: str, cpu: str) -> Target:
    """A CPU of this ISA key: the features the key names (caches: te.caches.CONSERVATIVE)."""
    return Target(cpu, ",".join("+" + f for f in isa.split("+")[1:]), THREADS)


@functools.lru_cache(maxsize=None)
def _model_workloads(model: str, isa: str, cpu: str, auto: bool) -> frozenset[str]:
    """The workload keys of every task `model` has on a CPU of this ISA (every implementation; with
    `auto`, the auto-scheduler's tasks of its kernels without a template too)."""
    import frontends
    from frontends import zoo
    from frontends.tasks import extract_tasks
    graph = frontends.from_onnx(MODELS[model](zoo))
    tasks = extract_tasks(graph, _target(isa, cpu), algorithms="all", auto_schedule=auto)
    return frozenset(mt.task.workload_key for mt in tasks)


def test_there_are_shipped_logs():
    assert len(SHIPPED) >= 5


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: f"{p.parent.name[-24:]}/{p.name}")
def test_every_shipped_record_fits_its_template_and_model(path):
    chk = read_log(path)
    assert chk.ok, chk.summary()            # format, fields and configs as this CPU reads them
    model = MODELS.get(path.stem)
    dead = []
    for r in chk.records:
        assert r.isa == path.parent.name, f"{path.name}: a record of {r.isa} in the folder of another ISA"
        auto = is_deferred(r.workload)      # a model kernel's auto-scheduled record: its steps read_log checked
        if not auto:
            name, args = parse_workload(r.workload)
            space = autotune.create_task(name, args, _target(r.isa, r.cpu)).config_space
            try:
                space.from_json(r.config)
            except (ValueError, TypeError) as e:
                dead.append(f"{r.workload} {r.config_key}: config does not fit the template ({e})")
                continue
        if model is not None and r.workload not in _model_workloads(path.stem, r.isa, r.cpu, auto):
            dead.append(f"{r.workload}: {path.stem} has no such task any more")
    assert not dead, f"{os.path.relpath(path, LOGS)}: {len(dead)} dead record(s): " + "; ".join(dead[:5])
