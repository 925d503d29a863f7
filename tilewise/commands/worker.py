"""tilewise worker: this machine as a Dask worker that builds candidates and times them for its CPU."""
from __future__ import annotations

import asyncio
import os
import signal
import socket
import time

from . import add_parser
from ..common import CLIError, isa_tag, say

DESCRIPTION = """\
Join a Dask cluster as a tuning worker.  The worker builds candidates for any target on its
threads and times candidates for this machine's CPU only: it advertises the Dask resource
isa:<this CPU's ISA key>=1, so the scheduler sends it one timing at a time, and while a timing
runs no build shares the cores.  Builds and timings run in fresh interpreters with their own
timeouts, so a candidate that crashes or hangs costs one error record, never the worker.

Start the scheduler on one machine (`dask scheduler`), a worker on each machine to tune for,
then tune from anywhere:  tilewise tune MODEL --cluster tcp://SCHED:8786
The worker restarts its process if it dies and reconnects when the scheduler restarts; Ctrl-C
stops it.  Needs the distributed extra:  pip install 'tilewise[distributed]'"""

EXAMPLES = """\
  tilewise worker tcp://sched:8786
  tilewise worker tcp://sched:8786 --nthreads 4 --name rack2-node7"""

REJOIN_FOR = 600.0         # after the scheduler closed, how long to keep trying to join it again


def register(sub, common) -> None:
    p = add_parser(sub, common, "worker", "serve a Dask cluster as a tuning worker for this CPU",
                   DESCRIPTION, EXAMPLES)
    p.add_argument("scheduler", metavar="SCHEDULER", help="the Dask scheduler's address, e.g. tcp://sched:8786")
    p.add_argument("--nthreads", type=int, metavar="N",
                   help=f"build threads (default: the CPUs this process may use, {os.cpu_count() or 1} here)")
    p.add_argument("--name", metavar="NAME", help="the worker's name in the cluster (default: this host's name)")
    p.set_defaults(run=run)


def run(args) -> int:
    try:
        import distributed  # noqa: F401
    except ImportError:
        raise CLIError("tilewise worker needs dask and distributed: pip install 'tilewise[distributed]'") from None
    import logging

    from autotune.cluster import isa_resource
    from te.target import host
    quiet = not getattr(args, "verbose", False) and not getattr(args, "debug", False)
    if quiet:       # distributed's own log (a traceback per lost connection): only with -v
        logging.getLogger("distributed").setLevel(logging.CRITICAL)
    if args.nthreads is not None and args.nthreads < 1:
        raise CLIError(f"--nthreads {args.nthreads}: give at least 1")
    address = args.scheduler if "://" in args.scheduler else f"tcp://{args.scheduler}"
    t = host()
    nthreads = args.nthreads or t.threads
    resources = {isa_resource(t.isa): 1}
    name = args.name or socket.gethostname()
    say(f"tilewise worker {name}: CPU {t.cpu} ({isa_tag(t.isa)}), {nthreads} build thread(s), "
        f"one timing at a time; resource {isa_resource(t.isa)}=1")
    try:
        asyncio.run(_serve(address, nthreads, resources, name, quiet))
    except asyncio.CancelledError:       # SIGTERM: the worker was closed cleanly
        say("stopped")
    return 0


async def _serve(address: str, nthreads: int, resources: dict, name: str, quiet: bool) -> None:
    """A Nanny (which restarts the worker process if it dies) serving the scheduler; when the
    scheduler closes, the worker joins it again once it is back (for up to REJOIN_FOR seconds)."""
    import logging

    from distributed import Nanny

    from autotune.cluster import connect_timeout
    # SIGTERM (a service manager, kill) stops the worker as Ctrl-C does: its process closed first
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, asyncio.current_task().cancel)
    joined, deadline = False, 0.0
    while True:
        try:
            nanny = Nanny(address, nthreads=nthreads, resources=resources, name=name, death_timeout=connect_timeout(),
                          silence_logs=logging.CRITICAL if quiet else logging.INFO)
            await nanny
        except Exception as e:       # noqa: BLE001  (a Nanny that did not start, whatever distributed says why)
            if _chain_says(e, "name taken"):
                raise CLIError(f"cannot join the Dask scheduler at {address}: a worker named {name!r} is in the "
                               "cluster already (one tilewise worker per machine; another needs --name)") from None
            if joined and time.monotonic() < deadline:
                await asyncio.sleep(2)
                continue
            why = (str(e).splitlines()[0] if str(e) else type(e).__name__).rstrip(".")
            why = why if isinstance(e, (OSError, TimeoutError, ValueError)) else f"{type(e).__name__}: {why}"
            raise CLIError(f"cannot join the Dask scheduler at {address}: {why}; is `dask scheduler` running there?"
                           ) from None
        say(f"{'joined' if not joined else 'joined again'} {address}; Ctrl-C stops this worker")
        joined = True
        try:
            await nanny.finished()
        finally:
            await nanny.close()
        say(f"the scheduler at {address} closed; joining it again when it is back (for up to "
            f"{REJOIN_FOR / 60:.0f} minutes)")
        deadline = time.monotonic() + REJOIN_FOR


def _chain_says(e: BaseException | None, text: str) -> bool:
    """Whether an exception or one it was raised from mentions text (distributed wraps the reason)."""
    seen = 0
    while e is not None and seen < 10:
        if text in str(e):
            return True
        e, seen = e.__cause__ or e.__context__, seen + 1
    return False
