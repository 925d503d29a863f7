"""autotune: tasks, config spaces, measurement, the XGBoost cost model, tuners and tuning logs.

    import autotune
    task = autotune.create_task("matmul", args=(1024, 1024, 1024, "float32"))
    tuner = autotune.XGBTuner(task)
    tuner.tune(n_trial=64, callbacks=[autotune.log_to_file("mm.jsonl"), autotune.progress_bar()])
    with autotune.apply_history_best("mm.jsonl"):
        f = task.build()
"""
from .auto_scheduler import AutoScheduler, AutoTask, register_workload
from .callback import early_stopping, log_to_file, progress_bar
from .dispatch import apply_history_best
from .measure import MeasureOption, Measurer, measure_option
from .record import ErrorNo, LogError, Record
from .record import best as best_records
from .record import load as load_records
from .record import merge as merge_logs
from .record import stats as log_stats
from .space import (ConfigEntity, ConfigError, ConfigSpace, FallbackConfig, get_template,
                    register_template)
from .task import Task, create_task
from .tuner import GridSearchTuner, RandomTuner, Tuner, XGBTuner

__all__ = ["create_task", "register_workload", "AutoTask", "AutoScheduler", "Task", "XGBTuner", "RandomTuner", "GridSearchTuner", "Tuner",
           "log_to_file", "progress_bar", "early_stopping", "apply_history_best", "measure_option",
           "MeasureOption", "Measurer", "Record", "ErrorNo", "LogError", "load_records", "best_records",
           "merge_logs", "log_stats", "ConfigSpace", "ConfigEntity", "FallbackConfig", "ConfigError",
           "register_template", "get_template"]
