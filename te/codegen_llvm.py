"""LLVM code generation: one visitor from loop IR to llvmlite.ir.

Vectorized loops are emitted as explicit LLVM vectors: the loop variable becomes the lane
vector <0, 1, ..., L-1>, an access whose index is affine in it with stride 1 becomes one
vector load/store, a loop-invariant one a scalar load and broadcast, anything else a
per-lane gather/scatter; `a*b + c` on floats becomes `llvm.fma`.  A condition that depends on
the lane (the guard of a split that does not divide) becomes a lane mask: the stores and loads
under it are masked, and lanes that are off touch no memory.  A vectorized loop whose body
cannot be vectorized (an allocation, or a loop whose extent depends on the lane) falls back
to a serial loop (vector loads, stores and masks: codegen_vector.py).  Unrolled loops are
unrolled here, and a select whose condition is known then (constants, unrolled indices) emits
only the side taken; the integer arithmetic of the copies folds and is shared
(codegen_values.py).  Parallel loops are outlined into a function that libgomp's GOMP_parallel
runs on every thread, each claiming chunks of the iterations until none are left; consecutive
parallel loops of a kernel share one such region (codegen_parallel.py).
"""
from __future__ import annotations

import operator
from contextlib import contextmanager

from llvmlite import ir

from .expr import (BinOp, BinOpKind, Call, Cast, Cmp, CmpKind, Const, Expr, Logic, LogicKind,
                   MathFunc, Not, Select, Var, is_float, is_unsigned, free_vars)
from .schedule import ForKind
from .simplify import bound
from . import codegen_storage as storage, tensorize
from .vector_split import split_wide_vectors
from .codegen_values import ValueNumbering, vn_key
from .codegen_rows import RowAccess
from .codegen_vector import VectorAccess
from .codegen_parallel import ParallelRegions
from .prefetch import PrefetchStream, add_global
from .prefetch_ahead import PrefetchAhead
from .stmt import (Allocate, Buffer, Comment, For, IfThenElse, LoweredFunc, Seq, Stmt, Store,
                   walk_stmt)

from .llvm_types import (ELEM_BYTES, I1, I8, I32, I64, LLVM_TYPES, MEM_TYPES, PTR,  # noqa: F401
                         scalar_suffix as _scalar_suffix)

# Math functions that LLVM has intrinsics for (vector forms included).
INTRINSICS = {MathFunc.EXP: "llvm.exp", MathFunc.LOG: "llvm.log", MathFunc.SQRT: "llvm.sqrt",
              MathFunc.ABS: "llvm.fabs", MathFunc.FLOOR: "llvm.floor", MathFunc.CEIL: "llvm.ceil",
              MathFunc.ROUND: "llvm.roundeven", MathFunc.POW: "llvm.pow", MathFunc.SIN: "llvm.sin",
              MathFunc.COS: "llvm.cos"}
# Math functions taken from libm, called per lane.
LIBM = {MathFunc.TANH: {"float32": "tanhf", "float64": "tanh"},
        MathFunc.ERF: {"float32": "erff", "float64": "erf"}}

STACK_LIMIT = 64 * 1024     # larger allocations go to the heap
ALIGN = 64

FCMP = {CmpKind.EQ: "==", CmpKind.NE: "!=", CmpKind.LT: "<", CmpKind.LE: "<=", CmpKind.GT: ">",
        CmpKind.GE: ">="}
NUM_THREADS_GLOBAL = "__tilewise_num_threads"
_CMP_FOLD = {CmpKind.EQ: operator.eq, CmpKind.NE: operator.ne, CmpKind.LT: operator.lt,
             CmpKind.LE: operator.le, CmpKind.GT: operator.gt, CmpKind.GE: operator.ge}
_FLOAT_OPS = {BinOpKind.ADD: "fadd", BinOpKind.SUB: "fsub", BinOpKind.MUL: "fmul", BinOpKind.DIV: "fdiv"}
_INT_FOLD = {BinOpKind.ADD: operator.add, BinOpKind.SUB: operator.sub, BinOpKind.MUL: operator.mul,
             BinOpKind.FLOORDIV: operator.floordiv, BinOpKind.FLOORMOD: operator.mod,
             BinOpKind.MIN: min, BinOpKind.MAX: max}


class CodegenError(RuntimeError):
    """The loop IR holds something the LLVM backend cannot emit."""


class _Vec:
    """The vectorized loop being emitted: its variable and lane count.

    memo is shared by every vectorized loop of a function (an unrolled loop emits the same one
    many times): it maps (loop variable, expression) to facts about the expression, holding the
    expression so that its id cannot be reused while the entry stands.
    """

    def __init__(self, var: Var, lanes: int, memo: dict):
        self.var, self.lanes, self.memo = var, lanes, memo

    def depends(self, e: Expr) -> bool:
        hit = self.memo.get(("dep", id(self.var), id(e)))
        if hit is None:
            hit = self.memo[("dep", id(self.var), id(e))] = (e, self.var in free_vars(e))
        return hit[1]


class CodeGenLLVM(RowAccess, VectorAccess, ValueNumbering, ParallelRegions, PrefetchStream, PrefetchAhead):
    """Emits lowered functions into one llvmlite module."""
    VEC = _Vec

    def __init__(self, target, module_name: str = "tilewise"):
        from .llvm_init import llvm
        self.target = target
        self.module = ir.Module(module_name)
        self.module.triple = llvm().get_process_triple()
        self.module.data_layout = str(target.machine().target_data)
        nt = ir.GlobalVariable(self.module, I32, NUM_THREADS_GLOBAL)
        nt.initializer = ir.Constant(I32, 0)
        self.num_threads = nt
        self.uses_openmp = False
        self._n_outlined = 0
        self._consts: dict = {}

    # ------------------------------------------------------------- functions
    def add_function(self, f: LoweredFunc) -> ir.Function:
        """Emit one kernel: i32 name(ptr noalias buf0, ptr noalias buf1, ...), returning 0."""
        fnty = ir.FunctionType(I32, [PTR] * len(f.args))
        fn = ir.Function(self.module, fnty, f.name)
        fn.attributes.add("nounwind")
        for a, b in zip(fn.args, f.args):
            a.name = _ident(b.name)
            a.add_attribute("noalias")
        self._begin(fn)
        for a, b in zip(fn.args, f.args):
            self.bufs[b] = a
        self.stmt(f.body)
        self._exit()
        self.builder.ret(ir.Constant(I32, 0))
        return fn

    def _begin(self, fn: ir.Function) -> None:
        self.fn = fn
        entry = fn.append_basic_block("entry")
        self.alloca_builder = ir.IRBuilder(entry)
        body = fn.append_basic_block("body")
        self.alloca_builder.branch(body)
        self.alloca_builder.position_at_start(entry)
        self.builder = ir.IRBuilder(body)
        self.vars: dict[Var, ir.Value] = {}
        self.bufs: dict[Buffer, ir.Value] = {}
        self.ranges: dict[Var, tuple[int, int]] = {}
        self.vec: _Vec | None = None
        self.mask: ir.Value | None = None       # the lanes on, under a lane-dependent condition
        self.in_parallel = False
        self.vec_memo: dict = {}
        self.exit_calls: dict[str, ir.Function] = {}    # called before the function returns (tilerelease)
        self._vn_reset()

    def _exit(self) -> None:
        """Emit the calls registered in exit_calls (code that used AMX tiles releases them once)."""
        for fn in self.exit_calls.values():
            self.builder.call(fn, [])

    @contextmanager
    def _state(self):
        saved = (self.fn, self.alloca_builder, self.builder, self.vars, self.bufs, self.ranges,
                 self.vec, self.mask, self.in_parallel, self.vec_memo, self._vn, self._vn_scopes, self.exit_calls)
        try:
            yield
        finally:
            (self.fn, self.alloca_builder, self.builder, self.vars, self.bufs, self.ranges,
             self.vec, self.mask, self.in_parallel, self.vec_memo, self._vn, self._vn_scopes, self.exit_calls) = saved

    # ------------------------------------------------------------- statements
    def stmt(self, s: Stmt) -> None:
        method = getattr(self, "stmt_" + type(s).__name__, None)
        if method is None:
            raise CodegenError(f"no LLVM code generation for statement {type(s).__name__}")
        method(s)

    def stmt_Seq(self, s: Seq) -> None:
        if self._merged_region(s):          # consecutive parallel loops: one fork (codegen_parallel.py)
            return
        for x in s.stmts:
            self.stmt(x)

    def stmt_Comment(self, s: Comment) -> None:
        pass

    def stmt_Store(self, s: Store) -> None:
        buf = s.buffer
        value = self.expr(s.value)
        if self.vec is not None and (self.vec.depends(s.index) or self.vec.depends(s.value)):
            self._vector_store(buf, s.index, s.value, value)
            return
        ptr = self._address(buf, self.expr(s.index))
        self.builder.store(self._to_mem(value, buf.dtype), ptr, align=ELEM_BYTES[buf.dtype])

    def stmt_IfThenElse(self, s: IfThenElse) -> None:
        cond = self.expr(s.cond)
        if isinstance(cond.type, ir.VectorType):
            self._masked(cond, s.then)
            if s.orelse is not None:
                self._masked(self.builder.not_(cond), s.orelse)
            return
        if s.orelse is None:
            with self.builder.if_then(cond), self._vn_scope():
                self.stmt(s.then)
        else:
            with self.builder.if_else(cond) as (then, orelse):
                with then, self._vn_scope():
                    self.stmt(s.then)
                with orelse, self._vn_scope():
                    self.stmt(s.orelse)

    def stmt_Allocate(self, s: Allocate) -> None:
        heap = self._allocate(s.buffer)
        self.stmt(s.body)
        if heap is not None:
            self.builder.call(self._libc("free", ir.VoidType(), [PTR]), [heap])

    def _allocate(self, b: Buffer) -> ir.Value | None:
        """Give b its memory (in self.bufs): a stack slot, or a heap block, which is returned for
        the caller to free at the end of b's scope."""
        nbytes = b.size * ELEM_BYTES[b.dtype]
        if nbytes <= STACK_LIMIT:
            self.bufs[b] = self._alloca(MEM_TYPES[b.dtype], max(1, b.size), _ident(b.name))
            return None
        size = ir.Constant(I64, (nbytes + ALIGN - 1) // ALIGN * ALIGN)
        ptr = self.builder.call(self._libc("aligned_alloc", PTR, [I64, I64]),
                                [ir.Constant(I64, ALIGN), size], name=_ident(b.name))
        self.bufs[b] = ptr
        return ptr

    def stmt_For(self, s: For) -> None:
        if s.pragmas and tensorize.intrin_of(s) is not None:
            tensorize.emit(self, s)             # the nest becomes the intrinsic's instructions
            return
        extent = s.extent
        kind = s.kind
        if kind is ForKind.UNROLLED and isinstance(extent, Const):
            if not (self._transposed_stores(s) or self._transposed_loads(s)):
                self._unrolled(s)
            return
        if kind is ForKind.VECTORIZED and isinstance(extent, Const) and self.vec is None \
                and _can_vectorize(s):
            self.ranges[s.var] = (0, extent.value - 1)
            self.vec = _Vec(s.var, extent.value, self.vec_memo)
            try:
                self.stmt(s.body)
            finally:
                self.vec = None
            return
        if kind is ForKind.PARALLEL and not self.in_parallel and self.vec is None:
            self._parallel_region(s, [s])
            return
        self._serial_loop(s.var, ir.Constant(I64, 0), self.expr(extent), s.body,
                          bound(extent, self.ranges)[1], ahead=self._ahead_emitter(s) if s.pragmas else None)

    def _unrolled(self, s: For) -> None:
        """The body of s once per iteration, the loop variable a constant in each copy."""
        self.ranges[s.var] = (0, s.extent.value - 1)
        for i in range(s.extent.value):
            self.vars[s.var] = self._const(I64, i)
            self.stmt(s.body)
        del self.vars[s.var]

    def _serial_loop(self, var: Var, begin: ir.Value, end: ir.Value, body: Stmt, max_end, ahead=None) -> None:
        b = self.builder
        pre = b.block
        head = b.append_basic_block(f"{var.name}.head")
        loop = b.append_basic_block(f"{var.name}.body")
        done = b.append_basic_block(f"{var.name}.done")
        b.branch(head)
        b.position_at_end(head)
        i = b.phi(I64, name=_ident(var.name))
        i.add_incoming(begin, pre)
        b.cbranch(b.icmp_signed("<", i, end), loop, done)
        b.position_at_end(loop)
        self.vars[var] = i
        self.ranges[var] = (0, max_end - 1 if max_end != float("inf") else 2 ** 62)
        with self._vn_scope():
            if self._stream is not None and var is self._stream.var:
                self._prefetch_step()           # the next kernel's weights, a slice per iteration
            if ahead is not None:
                ahead(i)                        # te/prefetch_ahead.py: the pragma's lines
            self.stmt(body)
        nxt = self.builder.add(i, ir.Constant(I64, 1), flags=["nsw", "nuw"])
        i.add_incoming(nxt, self.builder.block)
        self.builder.branch(head)
        self.builder.position_at_end(done)
        del self.vars[var]

    # ------------------------------------------------------------- memory
    def _alloca(self, ty: ir.Type, count: int, name: str) -> ir.Value:
        """An aligned stack slot in the entry block, typed as an opaque pointer."""
        ptr = self.alloca_builder.alloca(ty, size=ir.Constant(I64, count) if count > 1 else None, name=name)
        ptr.align = ALIGN
        ptr.type = PTR      # llvmlite types allocas as typed pointers; LLVM 22 has only `ptr`
        return ptr

    def _address(self, buf: Buffer, index: ir.Value) -> ir.Value:
        ptr = self.bufs.get(buf)
        if ptr is None:
            raise CodegenError(f"buffer {buf.name} is used outside the scope that allocates it")
        return self._reuse(("gep", id(ptr), vn_key(index)), lambda: self.builder.gep(
            ptr, [index], inbounds=True, source_etype=MEM_TYPES[buf.dtype]))

    def _to_mem(self, v: ir.Value, dtype: str) -> ir.Value:
        if dtype == "bool":
            ty = ir.VectorType(I8, v.type.count) if isinstance(v.type, ir.VectorType) else I8
            return self.builder.zext(v, ty)
        return v

    def _from_mem(self, v: ir.Value, dtype: str) -> ir.Value:
        if dtype == "bool":
            return self.builder.icmp_unsigned("!=", v, self._zero(v.type))
        return v

    def expr_scalar(self, e: Expr) -> ir.Value:
        """Emit e as a scalar even inside a vectorized loop (e must not depend on the lane)."""
        saved, self.vec = self.vec, None
        try:
            return self.expr(e)
        finally:
            self.vec = saved

    def expr(self, e: Expr) -> ir.Value:
        method = getattr(self, "expr_" + type(e).__name__, None)
        if method is None:
            raise CodegenError(f"no LLVM code generation for expression {type(e).__name__} ({e})")
        return method(e)

    def _match(self, a: ir.Value, b: ir.Value) -> tuple[ir.Value, ir.Value]:
        va, vb = isinstance(a.type, ir.VectorType), isinstance(b.type, ir.VectorType)
        if va and not vb:
            b = self._broadcast(b, a.type.count)
        elif vb and not va:
            a = self._broadcast(a, b.type.count)
        return a, b

    def _ty(self, dtype: str, like: ir.Value | None = None) -> ir.Type:
        t = LLVM_TYPES[dtype]
        if like is not None and isinstance(like.type, ir.VectorType):
            return ir.VectorType(t, like.type.count)
        return t

    def expr_Const(self, e: Const) -> ir.Value:
        return self._const(LLVM_TYPES[e.dtype], e.value)

    def expr_Var(self, e: Var) -> ir.Value:
        if self.vec is not None and e is self.vec.var:
            return self._lane_ids(self.vec.lanes)
        v = self.vars.get(e)
        if v is None:
            raise CodegenError(f"variable {e.name} is used outside the loop that defines it")
        return v

    def expr_BinOp(self, e: BinOp) -> ir.Value:
        b = self.builder
        dt = e.dtype
        if is_float(dt) and e.op is BinOpKind.ADD:
            for m, c in ((e.a, e.b), (e.b, e.a)):
                if isinstance(m, BinOp) and m.op is BinOpKind.MUL:
                    return self._fma(m.a, m.b, c)
        x, y = self._match(self.expr(e.a), self.expr(e.b))
        op = e.op
        if is_float(dt):
            if op in _FLOAT_OPS:
                return getattr(b, _FLOAT_OPS[op])(x, y)
            if op in (BinOpKind.MIN, BinOpKind.MAX):
                c = b.fcmp_ordered("<" if op is BinOpKind.MIN else ">", x, y)
                return b.select(c, x, y)
            if op in (BinOpKind.FLOORDIV, BinOpKind.FLOORMOD):
                q = self._intrinsic("llvm.floor", [b.fdiv(x, y)])
                return q if op is BinOpKind.FLOORDIV else b.fsub(x, b.fmul(q, y))
            raise CodegenError(f"binary operator {op.value} on {dt}")
        return self._int_binop(e, x, y)

    def _fma(self, a: Expr, b_: Expr, c: Expr) -> ir.Value:
        x, y = self._match(self.expr(a), self.expr(b_))
        x, z = self._match(x, self.expr(c))
        x, y = self._match(x, y)
        y, z = self._match(y, z)
        return self._intrinsic("llvm.fma", [x, y, z])

    def _intrinsic(self, name: str, args: list[ir.Value], ret: ir.Type | None = None) -> ir.Value:
        ty = args[0].type
        suffix = (f"v{ty.count}{_scalar_suffix(ty.element)}" if isinstance(ty, ir.VectorType)
                  else _scalar_suffix(ty))
        full = f"{name}.{suffix}"
        fn = self.module.globals.get(full)
        if fn is None:
            fn = ir.Function(self.module, ir.FunctionType(ret or ty, [a.type for a in args]), full)
        return self.builder.call(fn, args)

    def _libc(self, name: str, ret: ir.Type, args: list[ir.Type]) -> ir.Function:
        fn = self.module.globals.get(name)
        if fn is None:
            fn = ir.Function(self.module, ir.FunctionType(ret, args), name)
        return fn

    def expr_Cmp(self, e: Cmp) -> ir.Value:
        x, y = self._match(self.expr(e.a), self.expr(e.b))
        dt = e.a.dtype
        if is_float(dt):
            if e.op is CmpKind.NE:
                return self.builder.fcmp_unordered("!=", x, y)
            return self.builder.fcmp_ordered(FCMP[e.op], x, y)
        cmp = self.builder.icmp_unsigned if is_unsigned(dt) else self.builder.icmp_signed
        return cmp(FCMP[e.op], x, y)

    def expr_Logic(self, e: Logic) -> ir.Value:
        x, y = self._match(self.expr(e.a), self.expr(e.b))
        return self.builder.and_(x, y) if e.op is LogicKind.AND else self.builder.or_(x, y)

    def expr_Not(self, e: Not) -> ir.Value:
        return self.builder.not_(self.expr(e.a))

    def expr_Select(self, e: Select) -> ir.Value:
        known = self._known(e.cond)
        if known is not None:       # decided by constants and unrolled indices: emit one side only
            return self.expr(e.t if known else e.f)
        c = self.expr(e.cond)
        t, f = self._match(self.expr(e.t), self.expr(e.f))
        if isinstance(c.type, ir.VectorType) and not isinstance(t.type, ir.VectorType):
            t, f = self._broadcast(t, c.type.count), self._broadcast(f, c.type.count)
        elif isinstance(t.type, ir.VectorType) and not isinstance(c.type, ir.VectorType):
            c = self._broadcast(c, t.type.count)
        return self.builder.select(c, t, f)

    def _known(self, e: Expr) -> int | None:
        """The integer value of e if code generation knows it (constants, unrolled loop indices)."""
        if isinstance(e, Const):
            return e.value if isinstance(e.value, (bool, int)) else None
        if isinstance(e, Var):
            v = self.vars.get(e) if self.vec is None or e is not self.vec.var else None
            return v.constant if isinstance(v, ir.Constant) and isinstance(v.constant, int) else None
        if isinstance(e, Not):
            a = self._known(e.a)
            return None if a is None else int(not a)
        if isinstance(e, (Cmp, Logic)) or (isinstance(e, BinOp) and not is_float(e.dtype)
                                           and e.op in _INT_FOLD):
            a, b = self._known(e.a), self._known(e.b)
            if a is None or b is None:
                return None
            if isinstance(e, Cmp):
                return int(_CMP_FOLD[e.op](a, b))
            if isinstance(e, Logic):
                return int(bool(a) and bool(b)) if e.op is LogicKind.AND else int(bool(a) or bool(b))
            if e.op in (BinOpKind.FLOORDIV, BinOpKind.FLOORMOD) and b == 0:
                return None
            return _INT_FOLD[e.op](a, b)
        return None

    def expr_Cast(self, e: Cast) -> ir.Value:
        v = self.expr(e.value)
        src, dst = e.value.dtype, e.dtype
        b = self.builder
        to = self._ty(dst, v)
        if dst == "bool":
            zero = self._zero(v.type)
            return b.fcmp_unordered("!=", v, zero) if is_float(src) else b.icmp_unsigned("!=", v, zero)
        if is_float(src) and is_float(dst):
            return self._float_cast(v, src, dst, to)
        if is_float(src):
            return b.fptoui(v, to) if is_unsigned(dst) else b.fptosi(v, to)
        if is_float(dst):
            return b.uitofp(v, to) if is_unsigned(src) else b.sitofp(v, to)
        sb, db = _bits(src), _bits(dst)
        if db == sb:
            return v
        if db < sb:
            return b.trunc(v, to)
        return b.zext(v, to) if is_unsigned(src) else b.sext(v, to)

    def _float_cast(self, v: ir.Value, src: str, dst: str, to: ir.Type) -> ir.Value:
        """A float -> float cast; the storage floats' conversions the target has no instruction
        for are spelled out (te/codegen_storage.py), not left to compiler-rt calls."""
        b, fs = self.builder, self.target.feature_set
        if src == "float16" and "f16c" not in fs:
            v, src = storage.half_to_float(b, v), "float32"
            if dst == "float32":
                return v
        if dst in ("bfloat16", "float16") and src != "float32" and (
                dst == "bfloat16" and "avx512bf16" not in fs or dst == "float16" and "f16c" not in fs):
            v, src = self._float_cast(v, src, "float32", self._ty("float32", v)), "float32"
        if src == "float32" and dst == "bfloat16" and "avx512bf16" not in fs:
            return storage.float_to_bfloat(b, v, to)
        if src == "float32" and dst == "float16" and "f16c" not in fs:
            return storage.float_to_half(b, v, to)
        return b.fpext(v, to) if _bits(dst) > _bits(src) else b.fptrunc(v, to)

    def expr_Call(self, e: Call) -> ir.Value:
        args = [self.expr(a) for a in e.args]
        if len(args) == 2:
            args = list(self._match(*args))
        f = e.func
        b = self.builder
        if not is_float(e.dtype):
            if f is MathFunc.ABS:
                x = args[0]
                if is_unsigned(e.dtype):
                    return x
                return b.select(b.icmp_signed("<", x, self._zero(x.type)), b.neg(x), x)
            raise CodegenError(f"{f.value} of {e.dtype}")
        if f is MathFunc.SIGMOID:
            x = args[0]
            one = ir.Constant(x.type, 1.0 if not isinstance(x.type, ir.VectorType)
                              else [1.0] * x.type.count)
            return b.fdiv(one, b.fadd(one, self._intrinsic("llvm.exp", [b.fneg(x)])))
        if f is MathFunc.LDEXP:
            return self._ldexp(*args)
        if f in INTRINSICS:
            return self._intrinsic(INTRINSICS[f], args)
        name = LIBM[f][e.dtype]
        x = args[0]
        scalar_ty = x.type.element if isinstance(x.type, ir.VectorType) else x.type
        fn = self._libc(name, scalar_ty, [scalar_ty])
        if not isinstance(x.type, ir.VectorType):
            return b.call(fn, [x])
        out = self._zero(x.type)
        for lane in range(x.type.count):
            y = b.call(fn, [b.extract_element(x, ir.Constant(I32, lane))])
            out = b.insert_element(out, y, ir.Constant(I32, lane))
        return out

    def _ldexp(self, x: ir.Value, n: ir.Value) -> ir.Value:
        """x * 2**(n - n//2) * 2**(n//2) (te.intrin.ldexp), each power built from its exponent bits."""
        b = self.builder
        scalar = x.type.element if isinstance(x.type, ir.VectorType) else x.type
        bits, bias, shift = (I64, 1023, 52) if isinstance(scalar, ir.DoubleType) else (I32, 127, 23)
        ity = storage._like(x, bits)
        k = b.fptosi(n, ity)
        lo = b.ashr(k, storage._c(ity, 1))
        out = x
        for part in (b.sub(k, lo), lo):
            exponent = b.shl(b.add(part, storage._c(ity, bias)), storage._c(ity, shift))
            out = b.fmul(out, b.bitcast(exponent, x.type))
        return out


def _can_vectorize(s: For) -> bool:
    """Can this loop's body run as lanes? (no allocation, no loop whose extent depends on the lane;
    a lane-dependent condition becomes a mask, unless a loop sits under it)."""
    var = s.var
    for x in walk_stmt(s.body):
        if isinstance(x, Allocate):
            return False
        if isinstance(x, IfThenElse) and var in free_vars(x.cond) and any(
                isinstance(y, (For, Allocate)) for y in walk_stmt(x)):
            return False
        if isinstance(x, For) and var in free_vars(x.extent):
            return False
    return True


def _bits(dtype: str) -> int:
    from .expr import DTYPE_BITS
    return DTYPE_BITS[dtype]


def _ident(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._" else "_" for c in name) or "v"


def codegen(funcs: list[LoweredFunc], target, prefetch: bool = False) -> CodeGenLLVM:
    """Emit the given lowered functions into one LLVM module; with `prefetch` (a model's module),
    their parallel regions prefetch the range the entry point names (te/prefetch.py)."""
    cg = CodeGenLLVM(target)
    if prefetch:
        cg.prefetch_global = add_global(cg.module)
    for f in funcs:
        cg.add_function(split_wide_vectors(f, target.vector_bits))
    return cg
