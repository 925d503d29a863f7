"""te.ops: the operator library (what TVM calls TOPI).

Every operator is a compute, a default schedule that is fast without tuning, and (for the
compute-heavy ones) a tunable template whose knobs the autotuner searches.
"""
from .matmul import batch_matmul, dense, matmul, schedule_matmul
from .schedule import schedule

__all__ = ["matmul", "dense", "batch_matmul", "schedule", "schedule_matmul"]
