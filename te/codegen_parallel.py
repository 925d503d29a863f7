"""Parallel regions for the LLVM code generator: outlining, claimed chunks and barriers.

The outermost parallel loops of a kernel run in outlined functions fn(void *captures) that
libgomp's GOMP_parallel runs on every thread.  Consecutive parallel loops joined only by
straight-line code (a conv's pack stage and its main loop) share ONE outlined region, so the
kernel forks its threads once: every thread runs the loops in order, a `GOMP_barrier` after each
(the next loop may read what the last one wrote), and statements between them that are not
parallel loops run on thread 0 alone, followed by a barrier.  A loop nested in a parallel loop
runs serially inside it.

Inside a loop each thread first runs its own share, a contiguous slice of the iterations fixed
by its thread number (as a static schedule: the same thread touches the same data in every call
and in every kernel of a model split alike, so it finds that data in its own L2), in chunks it
claims from a counter of its own; then it helps the others, claiming the chunks left in their
shares (so a thread the hypervisor or another process holds back does not keep its share to
itself).  The counters live in an array the caller allocates on its stack and zeroes before the
fork, one 64-byte line per thread and loop (no false sharing between claims).  With one thread
the caller runs the outlined function itself, without a fork.  `ParallelRegions` is a mixin of
`codegen_llvm.CodeGenLLVM`, whose state (builder, vars, bufs, ranges) it uses.
"""
from __future__ import annotations

from llvmlite import ir

from .expr import Load, free_vars
from .llvm_types import I32, I64, PTR
from .schedule import ForKind
from .simplify import bound
from . import tensorize
from .stmt import Allocate, Buffer, Comment, For, Seq, Stmt, Store, all_exprs, stmt_exprs, walk_stmt

TASKS_PER_THREAD = 8        # chunks of a thread's share of a parallel loop (_chunked_loop)
COUNTER_STRIDE = 8          # i64 per claim counter: one 64-byte cache line each


class ParallelRegions:
    """Outlined parallel regions of the code generator (see the module docstring)."""

    def _merged_region(self, s: Seq) -> bool:
        """Emit s with its parallel loops in one region if it holds two or more joined by
        straight-line code only; False (nothing emitted) otherwise.  Statements before the first
        loop and after the last run outside the region, before the fork and after the join; so do
        the allocations whose scope holds a loop (the threads share them)."""
        if self.in_parallel or self.vec is not None:
            return False
        allocs: list[Allocate] = []
        steps = _region_steps(s, allocs)
        at = [k for k, x in enumerate(steps or []) if _is_parallel(x)]
        if len(at) < 2:
            return False
        heap = [h for h in (self._allocate(a.buffer) for a in allocs) if h is not None]
        for x in steps[:at[0]]:
            self.stmt(x)
        inside = steps[at[0]:at[-1] + 1]
        self._parallel_region(Seq(inside), _grouped(inside))
        for x in steps[at[-1] + 1:]:
            self.stmt(x)
        for h in heap:
            self.builder.call(self._libc("free", ir.VoidType(), [PTR]), [h])
        return True

    def _parallel_region(self, body: Stmt, steps: list[Stmt]) -> None:
        """Outline steps (parallel loops, and serial runs between them) into fn(void *captures)
        and run it once with GOMP_parallel (called directly when the library runs one thread)."""
        self.uses_openmp = True
        loops = [x for x in steps if _is_parallel(x)]
        used_vars = sorted({v for x in walk_stmt(body) for e in stmt_exprs(x) for v in free_vars(e)
                            if v in self.vars}, key=lambda v: v.name)
        used_bufs = _buffers_used(body, self.bufs)
        fields = [self.vars[v] for v in used_vars] + [self.bufs[b] for b in used_bufs]
        # after the captured values, the claim counters: thread t's counter of loop j at
        # (t * len(loops) + j) * COUNTER_STRIDE
        sty = ir.LiteralStructType([f.type for f in fields] + [PTR])
        cap = self._alloca(sty, 1, "captures")

        def field(base: ir.Value, k: int) -> ir.Value:
            return self.builder.gep(base, [ir.Constant(I32, 0), ir.Constant(I32, k)], source_etype=sty)
        for k, v in enumerate(fields):
            self.builder.store(v, field(cap, k))
        self._n_outlined += 1
        ofn = ir.Function(self.module, ir.FunctionType(ir.VoidType(), [PTR]),
                          f"{self.fn.name}.parallel{self._n_outlined}")
        ofn.linkage = "internal"
        ofn.attributes.add("nounwind")
        outer_ranges = dict(self.ranges)
        with self._state():
            self._begin(ofn)
            self.in_parallel = True
            self.ranges = outer_ranges
            for k, v in enumerate(used_vars):
                self.vars[v] = self.builder.load(field(ofn.args[0], k), typ=sty.elements[k])
            for k, buf in enumerate(used_bufs):
                self.bufs[buf] = self.builder.load(field(ofn.args[0], len(used_vars) + k), typ=PTR)
            counters = self.builder.load(field(ofn.args[0], len(fields)), typ=PTR)
            self._prefetch_setup(loops)     # te/prefetch.py: nothing unless a model's module
            j = 0
            for k, x in enumerate(steps):
                if _is_parallel(x):
                    self._chunked_loop(x.var, self.expr(x.extent), counters, j, len(loops), x.body,
                                       bound(x.extent, self.ranges)[1])
                    j += 1
                else:
                    self._on_thread0(x)
                if k + 1 < len(steps):      # GOMP_parallel's join ends the last step
                    self.builder.call(self._libc("GOMP_barrier", ir.VoidType(), []), [])
            self._stream = None
            self._exit()
            self.builder.ret_void()
        self._fork(ofn, cap, field(cap, len(fields)), len(loops))

    def _fork(self, ofn: ir.Function, cap: ir.Value, counters_field: ir.Value, n_loops: int) -> None:
        """Run ofn(cap) on the library's threads, with a zeroed counter array for n_loops loops
        on the stack (restored after the join: a region inside a serial loop forks per iteration)."""
        b = self.builder
        nthreads = b.load(self.num_threads, typ=I32)
        # 0 threads asks libgomp for its default team, at most omp_get_max_threads()
        most = b.call(self._libc("omp_get_max_threads", I32, []), [])
        team = b.sext(b.select(b.icmp_signed(">", nthreads, ir.Constant(I32, 0)), nthreads, most), I64)
        slots = b.mul(team, ir.Constant(I64, n_loops * COUNTER_STRIDE))
        saved = b.call(self._libc("llvm.stacksave.p0", PTR, []), [])
        arr = b.alloca(I64, size=slots, name="claims")
        arr.align = 64
        arr.type = PTR      # llvmlite types allocas as typed pointers; LLVM 22 has only `ptr`
        memset = self._libc("llvm.memset.p0.i64", ir.VoidType(), [PTR, ir.IntType(8), I64, ir.IntType(1)])
        b.call(memset, [arr, ir.Constant(ir.IntType(8), 0), b.mul(slots, ir.Constant(I64, 8)),
                        ir.Constant(ir.IntType(1), 0)])
        b.store(arr, counters_field)
        # one thread and no enclosing team (a caller's own OpenMP region would give the region
        # its thread numbers): no fork; omp_get_num_threads() is 1 and GOMP_barrier returns
        nested = b.call(self._libc("omp_in_parallel", I32, []), [])
        alone_ = b.and_(b.icmp_signed("==", nthreads, ir.Constant(I32, 1)), b.icmp_signed("==", nested, ir.Constant(I32, 0)))
        with b.if_else(alone_) as (alone, team_):
            with alone:
                b.call(ofn, [cap])
            with team_:
                gomp = self._libc("GOMP_parallel", ir.VoidType(), [PTR, PTR, I32, I32])
                b.call(gomp, [ofn, cap, nthreads, ir.Constant(I32, 0)])
        b.call(self._libc("llvm.stackrestore.p0", ir.VoidType(), [PTR]), [saved])

    def _on_thread0(self, s: Stmt) -> None:
        """Emit s so that only thread 0 of the region runs it."""
        b = self.builder
        tid = b.call(self._libc("omp_get_thread_num", I32, []), [])
        with b.if_then(b.icmp_signed("==", tid, ir.Constant(I32, 0))), self._vn_scope():
            self.stmt(s)

    def _chunked_loop(self, var, n: ir.Value, counters: ir.Value, loop: int, n_loops: int, body: Stmt,
                      max_end) -> None:
        """Run iterations [0, n) of a parallel loop on this thread: the chunks of its own share
        first, then those left in the other threads' shares (see the module docstring).

        Thread u's share is [u*n/T, (u+1)*n/T) of T threads, in TASKS_PER_THREAD chunks that
        its counter numbers; whoever claims chunk c of a share adds 1 to that share's counter.
        A claim costs one atomic add, mostly on a line only its own thread touches."""
        b = self.builder
        nth = b.sext(b.call(self._libc("omp_get_num_threads", I32, []), []), I64)
        tid = b.sext(b.call(self._libc("omp_get_thread_num", I32, []), []), I64)
        entry = b.block
        head = b.append_basic_block(f"{var.name}.share")
        share = b.append_basic_block(f"{var.name}.share.open")
        grab = b.append_basic_block(f"{var.name}.claim")
        work = b.append_basic_block(f"{var.name}.chunk")
        nxt = b.append_basic_block(f"{var.name}.share.done")
        done = b.append_basic_block(f"{var.name}.claimed")
        b.branch(head)
        b.position_at_end(head)
        v = b.phi(I64, f"{var.name}.helped")      # shares visited: own first, then tid+1, ...
        v.add_incoming(ir.Constant(I64, 0), entry)
        b.cbranch(b.icmp_signed("<", v, nth), share, done)
        b.position_at_end(share)
        u = b.add(tid, v)
        u = b.select(b.icmp_signed(">=", u, nth), b.sub(u, nth), u)
        lo = b.sdiv(b.mul(u, n), nth)
        hi = b.sdiv(b.mul(b.add(u, ir.Constant(I64, 1)), n), nth)
        chunk = b.sdiv(b.add(b.sub(hi, lo), ir.Constant(I64, TASKS_PER_THREAD - 1)), ir.Constant(I64, TASKS_PER_THREAD))
        chunk = b.select(b.icmp_signed("<", chunk, ir.Constant(I64, 1)), ir.Constant(I64, 1), chunk)
        slot = b.mul(b.add(b.mul(u, ir.Constant(I64, n_loops)), ir.Constant(I64, loop)), ir.Constant(I64, COUNTER_STRIDE))
        ctr = b.gep(counters, [slot], source_etype=I64)
        b.branch(grab)
        b.position_at_end(grab)
        c = b.atomic_rmw("add", ctr, ir.Constant(I64, 1), "monotonic")
        begin = b.add(lo, b.mul(c, chunk))
        b.cbranch(b.icmp_signed("<", begin, hi), work, nxt)
        b.position_at_end(work)
        with self._vn_scope():
            end = b.add(begin, chunk)
            end = b.select(b.icmp_signed("<", end, hi), end, hi)
            self._serial_loop(var, begin, end, body, max_end)
            self.builder.branch(grab)
        b = self.builder
        b.position_at_end(nxt)
        v.add_incoming(b.add(v, ir.Constant(I64, 1)), nxt)
        b.branch(head)
        b.position_at_end(done)


def _is_parallel(s: Stmt) -> bool:
    """Is s a loop the code generator outlines (outside any parallel or vectorized loop)?"""
    return isinstance(s, For) and s.kind is ForKind.PARALLEL and \
        not (s.pragmas and tensorize.intrin_of(s) is not None)


def _region_steps(s: Stmt, allocs: list[Allocate]) -> list[Stmt] | None:
    """s flattened into its parallel loops and the statements between them (comments dropped;
    the allocations around loops appended to allocs, their bodies flattened), or None when a
    parallel loop sits under a serial loop or a condition: such a statement forks per loop."""
    steps: list[Stmt] = []
    for x in (s.stmts if isinstance(s, Seq) else [s]):
        has_loop = any(_is_parallel(y) for y in walk_stmt(x))
        if isinstance(x, Comment):
            continue
        if isinstance(x, (Seq, Allocate)) and has_loop:
            if isinstance(x, Allocate):
                allocs.append(x)
            inner = _region_steps(x.body if isinstance(x, Allocate) else x, allocs)
            if inner is None:
                return None
            steps.extend(inner)
        elif _is_parallel(x) or not has_loop:
            steps.append(x)
        else:
            return None
    return steps


def _grouped(steps: list[Stmt]) -> list[Stmt]:
    """steps with each run of consecutive serial statements made one Seq (one barrier after it)."""
    out: list[Stmt] = []
    for x in steps:
        if not _is_parallel(x) and out and not _is_parallel(out[-1]):
            out[-1] = Seq(out[-1].stmts + [x]) if isinstance(out[-1], Seq) else Seq([out[-1], x])
        else:
            out.append(x)
    return out


def _buffers_used(s: Stmt, known: dict) -> list[Buffer]:
    """The buffers of `known` that s loads or stores, by name (the captures of a region)."""
    found: dict[int, Buffer] = {}
    for x in walk_stmt(s):
        if isinstance(x, Store) and x.buffer in known:
            found.setdefault(id(x.buffer), x.buffer)
        for e in stmt_exprs(x):
            for sub in all_exprs(e):
                if isinstance(sub, Load) and sub.buffer in known:
                    found.setdefault(id(sub.buffer), sub.buffer)
    return sorted(found.values(), key=lambda b: b.name)
