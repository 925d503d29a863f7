"""autotune: tasks, config spaces, measurement, cost model, tuners and tuning logs."""
