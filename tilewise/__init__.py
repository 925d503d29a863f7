"""tilewise: the command line of the tilewise compiler (`tilewise ...` or `python -m tilewise ...`).

Subcommands: info, tune, build, run, bench, logs, demo; `tilewise COMMAND --help` explains
each with an example.  The command line only wires together what the packages expose:
`te` (compiler, runtime, machine ceilings), `autotune` (tasks, tuners, the task scheduler,
records and shared logs) and `frontends` (ONNX import, model compilation, profiling).
"""
__version__ = "0.1.0"

__all__ = ["__version__"]
