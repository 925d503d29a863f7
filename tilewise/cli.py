"""The `tilewise` command: argument parsing, logging set-up, and one place that turns errors into one line.

Each subcommand lives in tilewise/commands/<name>.py with `register(subparsers, common)` and
`run(args) -> int`.  Errors the user can fix print `tilewise: error: ...` and exit 1; a bad
invocation exits 2 (argparse); Ctrl-C exits 130; `--debug` shows the traceback instead.
"""
from __future__ import annotations

import argparse
import logging
import sys

from . import __version__
from .common import CLIError

COMMANDS = ("info", "tune", "check-log", "build", "run", "bench", "logs", "demo", "quantize", "worker")

DESCRIPTION = """\
tilewise: a tensor-expression compiler and autotuner for CPUs.

Import an ONNX model, tune its kernels for this CPU, build it into one shared library,
run it and benchmark it against ONNX Runtime and this machine's measured peak."""

EPILOG = """\
commands:
  info     this CPU, the target tilewise uses, threads, measured peak and bandwidth
  tune     tune a model's kernels, spending the trial budget where the model spends its time
  check-log  check that a tuning log makes a model faster (and drop the records that do not)
  build    build a model into one shared library from the best tuning records known
  run      run a built library (random inputs, or .npy files) and summarise its outputs
  bench    latency against ONNX Runtime, and a per-kernel roofline report
  logs     inspect, merge and summarise tuning logs
  demo     build, tune briefly and benchmark a built-in example model (about a minute)
  quantize quantise a model to int8 (a QDQ ONNX model), calibrated by tilewise's fp32 build
  worker   serve a Dask cluster as a tuning worker for this CPU (tune --cluster uses it)

examples:
  tilewise demo
  tilewise tune model.onnx --trials 400 --log model.jsonl
  tilewise build model.onnx -o model.so --log model.jsonl
  tilewise run model.so
  tilewise bench model.onnx --roofline roofline.png

Run 'tilewise COMMAND --help' for the options and an example of each command."""


def common_options() -> argparse.ArgumentParser:
    """Options every subcommand accepts (also before the subcommand)."""
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("general options")
    g.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                   help="show tracebacks and debug logging")
    g.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                   help="more detail (library log messages)")
    return p


def build_parser() -> argparse.ArgumentParser:
    """The full parser: global options and one subparser per command."""
    import importlib
    parser = argparse.ArgumentParser(prog="tilewise", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"tilewise {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logging")
    parser.add_argument("-v", "--verbose", action="store_true", help="more detail (library log messages)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    common = common_options()
    for name in COMMANDS:
        importlib.import_module(f".commands.{name.replace('-', '_')}", __package__).register(sub, common)
    return parser


def _setup_logging(debug: bool, verbose: bool) -> None:
    level = logging.DEBUG if debug else logging.INFO if verbose else logging.WARNING
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("matplotlib", "PIL"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage()
        if record.levelno >= logging.WARNING:
            return f"tilewise: {record.levelname.lower()}: {msg}"
        return f"tilewise: {msg}" if record.levelno >= logging.INFO else f"[{record.name}] {msg}"


def _bare_auto_schedule(argv: list[str]) -> list[str]:
    """'--auto-schedule' not followed by 'all' as '--auto-schedule=rest', so that argparse does not
    take the model after it (`tilewise tune --auto-schedule model.onnx`) for the option's value."""
    return [f"{a}=rest" if a == "--auto-schedule" and (i + 1 == len(argv) or argv[i + 1] != "all") else a
            for i, a in enumerate(argv)]


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(_bare_auto_schedule(list(sys.argv[1:] if argv is None else argv)))
    if not args.command:
        parser.print_help(sys.stderr)
        return 2
    debug = bool(getattr(args, "debug", False))
    _setup_logging(debug, bool(getattr(args, "verbose", False)))
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        if debug:
            raise
        print("\ntilewise: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:          # `tilewise logs show x | head`: stop quietly
        import os
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except CLIError as e:
        if debug:
            raise
        _error(str(e))
        return 1
    except Exception as e:          # noqa: BLE001  (the one place where every error becomes a line)
        if debug:
            raise
        _error(_describe(e) + "  (run with --debug for the traceback)")
        return 1


def _describe(e: BaseException) -> str:
    if isinstance(e, (*_loaded_error_types(), FileNotFoundError)):
        return str(e)
    msg = str(e).strip() or type(e).__name__
    first = msg.splitlines()[0]
    return first if isinstance(e, (ValueError, OSError)) else f"{type(e).__name__}: {first}"


def _loaded_error_types() -> tuple:
    """ModelError and LoadError, of the modules that raise them if they were imported: an error
    of a module never imported is none of these, and importing frontends' ONNX importer to ask
    costs a second (`import onnx` imports ml_dtypes) on every error of a command that never
    read a model (tilewise run of a library)."""
    found = []
    for module, name in (("frontends.onnx_model", "ModelError"), ("te.native_call", "LoadError")):
        if module in sys.modules:
            found.append(getattr(sys.modules[module], name))
    return tuple(found)


def _error(msg: str) -> None:
    print(f"tilewise: error: {msg}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
