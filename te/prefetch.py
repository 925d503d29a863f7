"""Software prefetch of a model kernel's weights, a little ahead of where its threads read them.

A model reads its weights once per inference, in call order, and in a model's order they arrive
from memory: ResNet-50 reads 112 MiB of fp32 weights per image (Winograd's transformed ones
included), and Intel's non-inclusive L3 keeps little of a stream read once per inference (lines
go from memory into the L2, and into the L3 only if the L2's victim is predicted to be reused).
Timed in the model's order on Emerald Rapids, its layer-3 and layer-4 convs ran as slowly as
with their weights flushed from every cache (frontends.profile.time_steps, orders "model" and
"weights_cold"): 3.7 of the 5.6 ms between the kernels' sum alone and in the model's order
(most of the rest: early kernels' input activations, cold where the residual comes from far back).  The kernel's own
stream does not hide it: a direct conv re-reads a channel block's weight panel from L2 at every
tile row, so only its first row waits for memory, at a demand (a vector of weights per 7 FMAs)
above what one core's outstanding misses fetch (about 25 GB/s), while the other rows compute
with the bus idle.  So each thread prefetches its own share of the kernel's weights into its L2
(`prefetcht1`) an eighth of its share ahead of a uniform walk over its work: the next panels
arrive while the current one computes from L2.

Prefetching the NEXT kernel's weights instead (`ranges(ahead="next")`) measured slower: in the
late layers every kernel is waiting on memory already, so the prefetches took the bandwidth the
running kernel's own cold weights needed (each kernel slower by what the next one gained; only
the FC after the average pool gained).  Kernels whose weights are small (under a quarter of the
cores' L2s together, `MIN_SHARE`) gained nothing measurable and are left alone, and so are those
that use each weight only once or twice (`reuses`: a dense layer at batch 1 streams its weights
with no FMAs to hide them behind; ResNet-50's FC ran 6% slower prefetching).  Re-measured later
(ResNet-50's 0.25-0.56 MiB kernels, whose weights come cold in its order; a loaded machine, rough,
bench/model_gap.py --variant, one thread's CPU time and both threads'): the small kernels prefetching
their own (MIN_SHARE 8 or 16, leads 0-2; every thread all of them within the first eighth, a
codegen trial) saved 0-20 us per call, the calls they touch 0-1.5% faster, the whole model
0-0.4% (in the longest runs, 100 rounds, as many rounds faster as slower); the kernel before prefetching the next one's small weights
(`next_small`) and a residual input or a call's output prefetched (`input_*`, `output_*`) gained
nothing.  So MIN_SHARE stays.  Their gap lies mostly elsewhere: much of it is there already after
their producer alone (its split leaves their input on the other core), and stores into evicted
lines cost the Winograd 64 -> 64 at 56x56 more than its cold weights (+130 against +25 us).

How, in the generated code (`PrefetchStream`, a mixin of codegen_llvm.CodeGenLLVM):

* the model's entry point stores (address, bytes, lead) of the call's range in the module's
  global `__tilewise_prefetch` before each call (`te.export.add_model_entry`; the ranges come
  from `ranges`); a kernel called on its own (te.build, the tuner) finds bytes 0 and prefetches
  nothing.  The global is only a hint: concurrent calls of one model that race on it prefetch
  the wrong lines, which costs bandwidth but never a result (a prefetch does not fault);
* in each parallel region, thread t of T takes the t-th of T equal slices of the range (the
  static share te/codegen_parallel.py gives it first: in a conv split by output channel blocks,
  the panels it reads), starts `lead` eighths into it, and a per-thread cursor walks the rest:
  every iteration of one serial loop of the region's main loop (`stream_loop`: the least
  frequent one that still runs `MIN_ITERATIONS` times, so a burst is a few lines between many
  FMAs; not a pad stage's) prefetches the next `step` bytes, step = the rest / the loop's
  iterations per thread, so the lead shrinks from an eighth of the slice to nothing by the
  walk's end.  A cursor that keeps its lead instead (one parallel iteration ahead, in a conv
  split by output channel blocks one panel, walking at the rate the slice is read) measured no
  faster in ResNet-50's order: slower on one thread for a 1x1 conv 2048 -> 512 at 7x7 (8 panels),
  mixed on two; on one thread leads of 2 or 4 eighths measured slower than 1, and 0 as 1
  (bench/model_gap.py --variant lead=N): the panel being prefetched competes for the L2 with the
  one the kernel re-reads, so a short lead serves best.

Why it holds beyond this machine: the lead is an eighth of a thread's share (one of its
TASKS_PER_THREAD chunks), a few hundred KiB at most for ResNet-50's largest layers (9.4 MB
over 2 threads: 590 KB), which fits beside the running panel in a 1 MiB L2 (Zen 4/5) or 1.25 MiB
(Ice Lake) as in Emerald Rapids' 2 MiB; more threads make the shares and the lead smaller.  Zen's
L3 is a victim cache of the L2s as Intel's is, and Zen 4/5's per-core memory stream is limited by
outstanding misses the same way, so a model's weights come from memory there too (a CCD's 32 MiB
holds a third of ResNet-50's) and the idle bus during a panel's L2-resident rows is there to use.
Where the weights fit in the cores' L2s (`pays`) they stay there between inferences and nothing
is prefetched.  The cost is a few instructions per iteration of the stream loop.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from llvmlite import ir

from .expr import Const
from .llvm_types import I32, I64, PTR
from .schedule import ForKind
from .runtime import np_dtype
from .stmt import Allocate, For, IfThenElse, LoweredFunc, Seq, Stmt
from .tensorize import intrin_of

PREFETCH_GLOBAL = "__tilewise_prefetch"     # {i64 address, i64 bytes, i64 lead}: what the running kernel prefetches
LEAD_PARTS = 8              # the lead is counted in these parts of a thread's slice
LINE = 64
LOCALITY = 2                # llvm.prefetch locality 2: prefetcht1, into the L2
MIN_ITERATIONS = 4096       # the stream loop runs at least this often over the whole parallel loop
MIN_SHARE = 4               # a kernel prefetches where its constants exceed the cores' L2s / MIN_SHARE
MIN_REUSE = 4               # ... and it uses each weight at least this often (outputs per weight)


@dataclass
class Stream:
    """The loop that carries the prefetches in the region being emitted, and its cursor."""
    var: object                 # the stream loop's variable
    cursor: ir.Value            # i64* : this thread's next address to prefetch
    end: ir.Value               # i64 : the end of this thread's slice
    step: ir.Value              # i64 : bytes per iteration of the stream loop


def _count(e, default: int = 1) -> int:
    """A loop extent as a number (a symbolic one counts as `default`)."""
    return e.value if isinstance(e, Const) else default


def stream_loop(loops: list[For]) -> tuple[For, int] | None:
    """The serial loop that carries the prefetches, and how often it runs over its whole
    parallel loop: in the parallel loop with the most work (the conv after its pad or pack
    stage), the least frequent serial loop that runs at least MIN_ITERATIONS times (else the
    most frequent); None if that parallel loop has no serial loop."""
    def walk(s: Stmt, times: int, found: list) -> int:
        """Append (runs, loop) of the serial loops in s to found; the most runs of any loop."""
        if isinstance(s, Seq):
            return max((walk(x, times, found) for x in s.stmts), default=times)
        if isinstance(s, Allocate):
            return walk(s.body, times, found)
        if isinstance(s, IfThenElse):
            return max(walk(s.then, times, found), walk(s.orelse, times, found) if s.orelse is not None else 0)
        if isinstance(s, For) and intrin_of(s) is None:     # a tensorized nest is one instruction
            n = times * _count(s.extent)
            if s.kind is ForKind.SERIAL:
                found.append((n, s))
            return max(n, walk(s.body, n, found))
        return times

    best: tuple[int, list] | None = None
    for p in loops:
        found: list[tuple[int, For]] = []
        work = walk(p.body, _count(p.extent), found)
        if best is None or work > best[0]:
            best = (work, found)
    found = best[1] if best else []
    if not found:
        return None
    enough = [x for x in found if x[0] >= MIN_ITERATIONS]
    n, loop = min(enough, key=lambda x: x[0]) if enough else max(found, key=lambda x: x[0])
    return loop, n


def arg_bytes(func: LoweredFunc) -> list[int]:
    """The bytes of each argument of a lowered function."""
    return [int(np.prod(b.shape, dtype=np.int64)) * np_dtype(b.dtype).itemsize for b in func.args]


def constant_spans(steps: list, funcs: list[LoweredFunc]) -> list[tuple[int, int] | None]:
    """Per model step, the params range (offset, bytes) of its kernel's constants (they are
    adjacent in the params blob), or None."""
    sizes = {f.name: arg_bytes(f) for f in funcs}
    out: list[tuple[int, int] | None] = []
    for st in steps:
        spans = [(v, n) for (space, v), n in zip(st.args, sizes.get(st.kernel, [])) if space == "param"]
        lo = min((v for v, _ in spans), default=0)
        out.append((lo, max(v + n for v, n in spans) - lo) if spans else None)
    return out


def ranges(steps: list, funcs: list[LoweredFunc], target, ahead: str = "own") -> list[tuple[int, int, int] | None]:
    """Per model step, what its kernel prefetches, (params offset, bytes, lead in eighths of a
    thread's slice), or None: with ahead="own" its own constants where they exceed the target's
    L2s together / MIN_SHARE, each thread an eighth of its slice ahead (lead 1); with
    ahead="next" the constants of the next step that has any (lead 0; measured slower)."""
    own = constant_spans(steps, funcs)
    kernels = {f.name for f in funcs}
    if ahead == "own":
        return [(s[0], s[1], 1) if s and large(target, s[1]) and st.kernel in kernels else None
                for st, s in zip(steps, own)]
    if ahead != "next":
        raise ValueError(f"prefetch ranges: ahead={ahead!r}; use 'own' or 'next'")
    out: list[tuple[int, int, int] | None] = [None] * len(steps)
    nxt = None
    for k in range(len(steps) - 1, -1, -1):
        out[k] = (nxt[0], nxt[1], 0) if nxt and steps[k].kernel in kernels else None
        if own[k] is not None:
            nxt = own[k]
    return out


class PrefetchStream:
    """Codegen mixin: the prefetch cursor of a parallel region (see the module docstring).
    `prefetch_global` is None unless the module is a model's (codegen(..., prefetch=True))."""
    prefetch_global = None
    _stream: Stream | None = None

    def _prefetch_setup(self, loops: list[For]) -> None:
        """At the start of an outlined region: this thread's slice of the range and its cursor."""
        self._stream = None
        if self.prefetch_global is None:
            return
        chosen = stream_loop(loops)
        if chosen is None:
            return
        loop, iterations = chosen
        b = self.builder
        g = self.prefetch_global
        base = b.load(b.gep(g, [ir.Constant(I32, 0), ir.Constant(I32, 0)]), typ=I64)
        size = b.load(b.gep(g, [ir.Constant(I32, 0), ir.Constant(I32, 1)]), typ=I64)
        lead = b.load(b.gep(g, [ir.Constant(I32, 0), ir.Constant(I32, 2)]), typ=I64)
        nth = b.sext(b.call(self._libc("omp_get_num_threads", I32, []), []), I64)
        tid = b.sext(b.call(self._libc("omp_get_thread_num", I32, []), []), I64)
        line = ir.Constant(I64, -LINE)
        lo = b.add(base, b.and_(b.sdiv(b.mul(size, tid), nth), line))
        hi = b.add(base, b.sdiv(b.mul(size, b.add(tid, ir.Constant(I64, 1))), nth))
        lo = b.add(lo, b.and_(b.sdiv(b.mul(b.sub(hi, lo), lead), ir.Constant(I64, LEAD_PARTS)), line))
        per_thread = b.sdiv(b.add(ir.Constant(I64, iterations), b.sub(nth, ir.Constant(I64, 1))), nth)
        step = b.sdiv(b.sub(hi, lo), per_thread)
        step = b.and_(b.add(step, ir.Constant(I64, 2 * LINE - 1)), line)      # at least a line
        cursor = self._alloca(I64, 1, "prefetch_cursor")
        b.store(lo, cursor)
        self._stream = Stream(loop.var, cursor, hi, step)

    def _prefetch_step(self) -> None:
        """At the top of the stream loop's body: prefetch this thread's next `step` bytes."""
        st = self._stream
        b = self.builder
        fn = self._libc("llvm.prefetch.p0", ir.VoidType(), [PTR, I32, I32, I32])
        start = b.load(st.cursor, typ=I64)
        stop = b.add(start, st.step)
        stop = b.select(b.icmp_signed("<", stop, st.end), stop, st.end)
        pre = b.block
        head = b.append_basic_block("prefetch.head")
        body = b.append_basic_block("prefetch.line")
        done = b.append_basic_block("prefetch.done")
        b.branch(head)
        b.position_at_end(head)
        at = b.phi(I64, "prefetch.at")
        at.add_incoming(start, pre)
        b.cbranch(b.icmp_signed("<", at, stop), body, done)
        b.position_at_end(body)
        b.call(fn, [b.inttoptr(at, PTR), ir.Constant(I32, 0), ir.Constant(I32, LOCALITY), ir.Constant(I32, 1)])
        at.add_incoming(b.add(at, ir.Constant(I64, LINE)), body)
        b.branch(head)
        b.position_at_end(done)
        b.store(stop, st.cursor)


def add_global(module: ir.Module) -> ir.GlobalVariable:
    """The module's {i64 address, i64 bytes, i64 lead} prefetch range, zero (nothing) until set."""
    ty = ir.LiteralStructType([I64, I64, I64])
    g = ir.GlobalVariable(module, ty, PREFETCH_GLOBAL)
    g.initializer = ir.Constant(ty, [0, 0, 0])
    return g


def reuses(flops: float, weight_bytes: int) -> bool:
    """Whether a kernel of `flops` uses each of its fp32 weights at least MIN_REUSE times (a
    conv: once per output pixel), so that there is compute to hide its prefetches behind."""
    return flops >= 2.0 * MIN_REUSE * weight_bytes / 4


def kernel_prefetches(target, weight_bytes: int, flops: float, model_weight_bytes: int) -> bool:
    """Whether a kernel of a model whose weights take `model_weight_bytes` prefetches its own
    weight of `weight_bytes` as frontends.build has it do (`pays` for the model, `ranges` with
    ahead="own" and `reuses` for the kernel).  The tuner's candidates of such a model's task are
    timed prefetching so (autotune.measure_jobs): timed without it, ResNet-50's 20-minute tune
    took configs of its 7x7 and strided 1x1 convs that ran 1.15-1.34x faster than the defaults
    with the prefetch off, and 0.79-0.81x as fast with it on, as the model runs them."""
    return pays(target, model_weight_bytes) and large(target, weight_bytes) and reuses(flops, weight_bytes)


def large(target, constant_bytes: int) -> bool:
    """Whether a kernel's constants are large enough to prefetch: over the cores' L2s together
    / MIN_SHARE (smaller ones gained nothing measurable, the module docstring)."""
    return constant_bytes > target.threads * target.caches.l2 // MIN_SHARE


def pays(target, weight_bytes: int) -> bool:
    """Whether a model's kernels prefetch their weights: where the weights outgrow the cores'
    L2s together (smaller ones stay there from one inference to the next)."""
    return weight_bytes > target.threads * target.caches.l2
