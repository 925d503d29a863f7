"""The auto-scheduler: tune any tensor expression without writing a template (Ansor-style).

    @autotune.register_workload
    def my_op(M, N): ...; return [A, B, C]
    task = autotune.create_task(my_op, args=(128, 256))
    autotune.AutoScheduler(task).tune(n_trial=64, callbacks=[autotune.log_to_file("my_op.jsonl")])

workload.py: the registry and the task; space.py: configs as lists of schedule steps;
sketch.py: the rules and their parameters; search.py: the search (a Tuner).
"""
from .search import AutoScheduler
from .sketch import SketchPolicy
from .space import StepConfig, StepSpace
from .workload import AutoTask, register_workload

__all__ = ["register_workload", "AutoTask", "AutoScheduler", "SketchPolicy", "StepConfig", "StepSpace"]
