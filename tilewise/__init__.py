"""tilewise: the command line of the tilewise compiler (`tilewise ...` or `python -m tilewise ...`),
and `tilewise.InferenceSession`, ONNX Runtime's session API over a tilewise model.

Subcommands: info, tune, build, run, bench, logs, demo; `tilewise COMMAND --help` explains
each with an example.  The command line only wires together what the packages expose:
`te` (compiler, runtime, machine ceilings), `autotune` (tasks, tuners, the task scheduler,
records and shared logs) and `frontends` (ONNX import, model compilation, profiling).
"""
__version__ = "0.1.0"

__all__ = ["InferenceSession", "__version__"]


def __getattr__(name: str):
    # the session imports the compiler; the command line should not pay for that at start-up
    if name == "InferenceSession":
        from .session import InferenceSession
        return InferenceSession
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
