"""Vector memory access for the LLVM code generator: loads and stores inside vectorized loops.

An access whose index is affine in the lane variable with stride 1 is one vector load/store,
a loop-invariant one a scalar load and broadcast, anything else a per-lane gather, or a scatter:
`llvm.masked.scatter` into memory off the stack, per-lane stores into a stack buffer (which LLVM
can then keep in registers; gathers stay per lane for the same reason: as `llvm.masked.gather`,
a conv's register tile would stay in memory).  Under a lane mask (a
lane-dependent guard) contiguous accesses are masked loads and stores and per-lane ones stay
off the lanes that are off (vectors whose lanes are all on branch to the body unmasked; under
a nested mask a masked access branches to the plain one where every lane is on: `_every_lane_on`;
a stack buffer that holds every lane is read plainly and written by a select); a padded pack's
clamped index `min(j, N-1)`, or a pad stage's `min(max(x - 1, 0), W - 1)`, is one masked load
plus a broadcast of the edge element.  An interleaving index (lane l reads base + s*(l % A) + (l // A),
the uint8 pack that puts 4 channels side by side for vpdpbusd) is A vector loads of L/A lanes
and one byte shuffle, not L scalar loads.  An unrolled loop around a vectorized store that is
strided across the lanes but contiguous across the unrolled iterations (a conv's NCHW output
written from vectors of channels) is a register transpose and L stores of A elements, not A
scatters (`_transposed_stores`).  `VectorAccess` is a mixin of
`codegen_llvm.CodeGenLLVM`, whose state (builder, vec, mask, bufs) it uses.
"""
from __future__ import annotations

import dataclasses

from llvmlite import ir

from .expr import BinOp, BinOpKind, Const, Expr, Load, Var, const, free_vars, substitute, walk
from .llvm_types import ELEM_BYTES, I1, I32, I64, MEM_TYPES, PTR, scalar_suffix as _scalar_suffix
from .simplify import Linear, bound, linear, simplify, skey
from .schedule import ForKind
from .stmt import Buffer, For, IfThenElse, Stmt, Store


CLAMPS = (BinOpKind.MIN, BinOpKind.MAX)


class VectorAccess:
    """Masks, vector loads and stores of the code generator (see the module docstring)."""

    def _masked(self, cond: ir.Value, body: Stmt) -> None:
        """Emit body for the lanes where cond holds (and the enclosing mask), if any lane does.

        Inside, contiguous accesses become masked loads and stores, per-lane ones are kept off
        the lanes that are off, and lane-independent loads are safe: some lane is on, and the
        serial loop would have made the same access for it.
        """
        outer = self.mask
        mask = cond if outer is None else self.builder.and_(outer, cond)
        if outer is None:
            # a split that does not divide is off only in its last vector: the others run the
            # body unmasked (plain loads and stores, which a masked access each step cost twice over)
            all_on = self._every_lane_on(mask)
            with self.builder.if_else(all_on) as (full, partial):
                with full, self._vn_scope():
                    self.stmt(body)
                with partial:
                    self._masked_body(mask, body)
            return
        self._masked_body(mask, body)

    def _masked_body(self, mask: ir.Value, body: Stmt) -> None:
        """Emit body under mask, if any lane is on."""
        outer = self.mask
        any_on = self._intrinsic("llvm.vector.reduce.or", [mask], ret=I1)
        with self.builder.if_then(any_on), self._vn_scope():
            self.mask = mask
            try:
                self.stmt(body)
            finally:
                self.mask = outer

    def _lane_on(self, last: bool = False) -> ir.Value:
        """The index (i32) of the lowest (or highest) lane that is on; some lane is."""
        n = self.mask.type.count
        ity = ir.IntType(n)
        bits = self.builder.bitcast(self.mask, ity)
        if last:
            lead = self._intrinsic("llvm.ctlz", [bits, ir.Constant(I1, 1)])
            k = self.builder.sub(ir.Constant(ity, n - 1), lead)
        else:
            k = self._intrinsic("llvm.cttz", [bits, ir.Constant(I1, 1)])
        if n > 32:
            return self.builder.trunc(k, I32)
        return self.builder.zext(k, I32) if n < 32 else k

    def _safe_lanes(self, idx: ir.Value) -> ir.Value:
        """Per-lane indices with the lanes that are off moved to the first lane that is on."""
        if self.mask is None:
            return idx
        first = self.builder.extract_element(idx, self._lane_on())
        return self.builder.select(self.mask, idx, self._broadcast(first, idx.type.count))

    def _affine(self, index: Expr) -> tuple[Expr, int] | None:
        """(base, stride) when index = base + stride * lane_var with base free of the lane var."""
        key = ("affine", id(self.vec.var), id(index))
        hit = self.vec.memo.get(key)
        if hit is None:
            hit = self.vec.memo[key] = (index, self._find_affine(index))
        return hit[1]

    def _find_affine(self, index: Expr) -> tuple[Expr, int] | None:
        vec = self.vec
        lin = linear(index)
        key = skey(vec.var)
        stride = 0
        for k, (atom, c) in lin.terms.items():
            if k == key:
                stride = c
            elif vec.var in free_vars(atom):
                return None
        # the other terms are already simplified atoms: the base is the form without the lane term
        rest = Linear(lin.dtype, {k: t for k, t in lin.terms.items() if k != key}, lin.const)
        return rest.to_expr(), stride

    def expr_Load(self, e: Load) -> ir.Value:
        buf = e.buffer
        align = ELEM_BYTES[buf.dtype]
        if self.vec is not None and self.vec.depends(e.index):
            lanes = self.vec.lanes
            vty = ir.VectorType(MEM_TYPES[buf.dtype], lanes)
            aff = self._affine(e.index)
            if aff is not None and aff[1] == 1:
                ptr = self._address(buf, self.expr_scalar(aff[0]))
                if self.mask is not None and not self._holds_vector(buf, aff[0], lanes):
                    v = self._masked_load(ptr, vty, align, self.mask, self._zero(vty))
                else:
                    v = self.builder.load(ptr, typ=vty, align=align)
                return self._from_mem(v, buf.dtype)
            clamped = self._clamped(e.index)
            if clamped is not None:
                return self._from_mem(self._clamped_load(buf, *clamped, vty, align), buf.dtype)
            inter = self._interleaved(e.index)
            if inter is not None:
                return self._interleaved_load(e, *inter)
            idx = self._safe_lanes(self._broadcast(self.expr(e.index), lanes))
            out = self._zero(vty)
            for lane in range(lanes):
                i = self.builder.extract_element(idx, ir.Constant(I32, lane))
                x = self.builder.load(self._address(buf, i), typ=MEM_TYPES[buf.dtype], align=align)
                out = self.builder.insert_element(out, x, ir.Constant(I32, lane))
            return self._from_mem(out, buf.dtype)
        v = self.builder.load(self._address(buf, self.expr(e.index)), typ=MEM_TYPES[buf.dtype],
                              align=align)
        return self._from_mem(v, buf.dtype)

    def _interleaved(self, index: Expr) -> tuple[int, Var, list[Expr]] | None:
        """(A, q, [index of lane q*A + r for r < A]) when, for every r, the lanes r, r + A, ...
        read contiguously (or clamped: _clamped) in q, a lane variable of L/A lanes."""
        key = ("interleave", id(self.vec.var), id(index))
        hit = self.vec.memo.get(key)
        if hit is None:
            hit = self.vec.memo[key] = (index, self._find_interleaved(index))
        return hit[1]

    def _find_interleaved(self, index: Expr) -> tuple[int, Var, list[Expr]] | None:
        var, lanes = self.vec.var, self.vec.lanes
        divisors = sorted({x.b.value for x in walk(index) if isinstance(x, BinOp) and x.op in (
            BinOpKind.FLOORDIV, BinOpKind.FLOORMOD) and isinstance(x.b, Const) and var in free_vars(x.a)})
        for A in divisors:
            if A < 2 or A & (A - 1) or lanes % A or lanes // A < 2:
                continue
            q = Var(f"{var.name}.q", var.dtype)
            parts = [simplify(substitute(index, {var: BinOp(BinOpKind.ADD, BinOp(
                BinOpKind.MUL, q, const(A, var.dtype), var.dtype), const(r, var.dtype), var.dtype)}),
                {q: (0, lanes // A - 1)}) for r in range(A)]
            outer, self.vec = self.vec, type(self.vec)(q, lanes // A, self.vec.memo)
            try:
                ok = all(var not in free_vars(p) and ((self._affine(p) or (None, 0))[1] == 1 or self._clamped(p))
                         for p in parts)
            finally:
                self.vec = outer
            if ok:
                return A, q, parts
        return None

    def _interleaved_load(self, e: Load, A: int, q: Var, parts: list[Expr]) -> ir.Value:
        """A loads of L/A lanes (under the matching lanes of the mask), shuffled into lane order."""
        b, lanes = self.builder, self.vec.lanes
        m = lanes // A
        outer_vec, outer_mask = self.vec, self.mask
        pieces = []
        try:
            self.vec = type(outer_vec)(q, m, outer_vec.memo)
            for r, index in enumerate(parts):
                if outer_mask is not None:
                    self.mask = b.shuffle_vector(outer_mask, outer_mask, ir.Constant(
                        ir.VectorType(I32, m), [r + A * i for i in range(m)]))
                pieces.append(self.expr_Load(dataclasses.replace(e, index=index)))
        finally:
            self.vec, self.mask = outer_vec, outer_mask
        cat = self._concat(pieces)         # piece r at lanes r*m ...
        return b.shuffle_vector(cat, cat, ir.Constant(ir.VectorType(I32, lanes),
                                                       [(l % A) * m + l // A for l in range(lanes)]))

    def _concat(self, pieces: list[ir.Value]) -> ir.Value:
        """Vectors of one type (a power of two of them) joined in order into one vector."""
        b = self.builder
        while len(pieces) > 1:
            n = 2 * pieces[0].type.count
            pieces = [b.shuffle_vector(x, y, self._mask(range(n)))
                      for x, y in zip(pieces[::2], pieces[1::2])]
        return pieces[0]

    def _transposed_stores(self, s: For) -> bool:
        """Emit `s` if it is an unrolled loop of A iterations around a vectorized loop of L lanes
        whose one store writes lane l of iteration u to base + u + S*l (S >= A, the buffer not
        on the stack and not read by the value): the A vectors, shuffled into L runs of A
        elements, each one contiguous store.  A guard of the iterations (a partial tile's edge)
        sends the calls where any of them is off to the loop as written.  False (nothing
        emitted) for any other loop."""
        body, guard = s.body, None
        if isinstance(body, IfThenElse) and body.orelse is None:
            body, guard = body.then, body.cond
        if not (self.vec is None and self.mask is None and isinstance(body, For)
                and body.kind is ForKind.VECTORIZED and isinstance(body.extent, Const)
                and isinstance(body.body, Store) and (guard is None or body.var not in free_vars(guard))):
            return False
        A, L, st = s.extent.value, body.extent.value, body.body
        if A < 2 or A & (A - 1) or L < 2 or isinstance(self.bufs.get(st.buffer), ir.AllocaInstr) \
                or any(isinstance(x, Load) and x.buffer is st.buffer for x in walk(st.value)):
            return False
        lin = linear(st.index)
        keys = (skey(s.var), skey(body.var))
        coeff = {k: c for k, (_, c) in lin.terms.items()}
        stride = coeff.get(keys[1], 0)
        if coeff.get(keys[0]) != 1 or stride < A or any(
                k not in keys and {s.var, body.var} & free_vars(a) for k, (a, _) in lin.terms.items()):
            return False
        base = Linear(lin.dtype, {k: t for k, t in lin.terms.items() if k not in keys}, lin.const).to_expr()
        if guard is None:
            self._transpose_store(s.var, A, body.var, L, st, base, stride)
            return True
        b = self.builder
        self.ranges[s.var] = (0, A - 1)
        every = None
        for u in range(A):
            self.vars[s.var] = self._const(I64, u)
            c = self.expr(guard)
            every = c if every is None else b.and_(every, c)
        del self.vars[s.var]
        with b.if_else(every) as (then, orelse):
            with then, self._vn_scope():
                self._transpose_store(s.var, A, body.var, L, st, base, stride)
            with orelse, self._vn_scope():
                self._unrolled(s)
        return True

    def _transpose_store(self, u_var: Var, A: int, var: Var, L: int, st: Store, base: Expr,
                         stride: int) -> None:
        """st's A vectors of L lanes (u_var = 0 .. A-1), stored as L runs of A at base + stride*l."""
        b, dtype = self.builder, st.buffer.dtype
        self.ranges[u_var], self.ranges[var] = (0, A - 1), (0, L - 1)
        self.vec = type(self).VEC(var, L, self.vec_memo)
        try:
            pieces = []
            for u in range(A):
                self.vars[u_var] = self._const(I64, u)
                pieces.append(self._to_mem(self._broadcast(self.expr(st.value), L), dtype))
            start = self.expr_scalar(base)
        finally:
            self.vec = None
            del self.vars[u_var]
        cat = self._concat(pieces)         # iteration u at lanes u*L ...
        for lane in range(L):
            run = b.shuffle_vector(cat, cat, ir.Constant(ir.VectorType(I32, A), [u * L + lane for u in range(A)]))
            at = b.add(start, self._const(I64, stride * lane)) if lane else start
            b.store(run, self._address(st.buffer, at), align=ELEM_BYTES[dtype])

    def _vector_store(self, buf: Buffer, index: Expr, value_expr: Expr, value: ir.Value) -> None:
        lanes = self.vec.lanes
        align = ELEM_BYTES[buf.dtype]
        value = self._broadcast(value, lanes)
        aff = self._affine(index)
        if aff is not None and aff[1] == 1:
            ptr = self._address(buf, self.expr_scalar(aff[0]))
            if self.mask is not None and self._holds_vector(buf, aff[0], lanes):
                # the lanes that are off store back what they hold: plain accesses, which LLVM
                # keeps in registers (a masked store pins the buffer in memory)
                mem = self._to_mem(value, buf.dtype)
                old = self.builder.load(ptr, typ=mem.type, align=align)
                self.builder.store(self.builder.select(self.mask, mem, old), ptr, align=align)
            elif self.mask is not None:
                self._masked_store(self._to_mem(value, buf.dtype), ptr, align, self.mask)
            else:
                self.builder.store(self._to_mem(value, buf.dtype), ptr, align=align)
            return
        mem = self._to_mem(value, buf.dtype)
        idx = self._broadcast(self.expr(index), lanes)
        if not isinstance(self.bufs.get(buf), ir.AllocaInstr):
            self._scatter(buf, idx, mem, align)
            return
        # a stack buffer: per-lane stores, which LLVM can still promote to registers (a scatter
        # would pin the buffer in memory); under a mask, the lanes that are off repeat the last
        # lane-on's store, which leaves every address with the value the serial loop would leave
        if self.mask is not None:
            last = self._lane_on(last=True)
            idx = self.builder.select(self.mask, idx, self._broadcast(
                self.builder.extract_element(idx, last), lanes))
            mem = self.builder.select(self.mask, mem, self._broadcast(
                self.builder.extract_element(mem, last), lanes))
        for lane in range(lanes):
            i = self.builder.extract_element(idx, ir.Constant(I32, lane))
            x = self.builder.extract_element(mem, ir.Constant(I32, lane))
            self.builder.store(x, self._address(buf, i), align=align)

    def _holds_vector(self, buf: Buffer, base: Expr, lanes: int) -> bool:
        """Whether buf is a stack buffer of this function holding every lane of a vector at base,
        the lanes a mask turns off included (a rows rule's partial lanes, a split's padded row):
        no other thread writes it (a parallel region reaches its parent's buffers as pointers)."""
        if not isinstance(self.bufs.get(buf), ir.AllocaInstr):
            return False
        lo, hi = bound(base, self.ranges)
        return lo >= 0 and hi + lanes <= buf.size

    def _masked_load(self, ptr: ir.Value, vty: ir.VectorType, align: int, mask: ir.Value,
                     passthru: ir.Value) -> ir.Value:
        """llvm.masked.load, or a plain load where every lane is on (_every_lane_on says why)."""
        b = self.builder
        name = f"llvm.masked.load.v{vty.count}{_scalar_suffix(vty.element)}.p0"
        fn = self.module.globals.get(name) or ir.Function(
            self.module, ir.FunctionType(vty, [PTR, I32, mask.type, vty]), name)
        with b.if_else(self._every_lane_on(mask)) as (then, orelse):
            with then:
                plain = b.load(ptr, typ=vty, align=align)
                plain_block = b.block
            with orelse:
                masked = b.call(fn, [ptr, ir.Constant(I32, align), mask, passthru])
                masked_block = b.block
        out = b.phi(vty)
        out.add_incoming(plain, plain_block)
        out.add_incoming(masked, masked_block)
        return out

    def _every_lane_on(self, mask: ir.Value) -> ir.Value:
        """Is every lane of mask on?  A guard that does not divide the vectors (a partial tile's
        store, a pack's edge) is off only in the last vector of a row, and a masked load or store
        of bytes or int16 has no instruction on AVX2 (nor of bytes on AVX-512 without BW): LLVM
        runs it lane by lane, a branch per lane, so every other vector takes the plain access."""
        return self._intrinsic("llvm.vector.reduce.and", [mask], ret=I1)

    def _scatter(self, buf: Buffer, idx: ir.Value, mem: ir.Value, align: int) -> None:
        """llvm.masked.scatter of mem's lanes to buf[idx] (lanes in order, so on a repeated address
        the last lane's value stays, as in the serial loop); lanes that are off store nothing.

        One intrinsic instead of a store per lane: with a store per lane, LLVM's optimisation of a
        candidate whose output stage scatters 256 lanes spends most of its time in dead-store
        elimination, for no faster kernel."""
        lanes = mem.type.count
        ptrs = self.builder.gep(self.bufs[buf], [idx], inbounds=True, source_etype=MEM_TYPES[buf.dtype])
        ptrs.type = ir.VectorType(PTR, lanes)      # llvmlite types a GEP as one pointer
        mty = ir.VectorType(I1, lanes)
        name = f"llvm.masked.scatter.v{lanes}{_scalar_suffix(mem.type.element)}.v{lanes}p0"
        fn = self.module.globals.get(name) or ir.Function(
            self.module, ir.FunctionType(ir.VoidType(), [mem.type, ptrs.type, I32, mty]), name)
        mask = self.mask if self.mask is not None else ir.Constant(mty, [1] * lanes)
        self.builder.call(fn, [mem, ptrs, self._const(I32, align), mask])

    def _masked_store(self, value: ir.Value, ptr: ir.Value, align: int, mask: ir.Value) -> None:
        """llvm.masked.store, or a plain store where every lane is on (_every_lane_on says why)."""
        b = self.builder
        vty = value.type
        name = f"llvm.masked.store.v{vty.count}{_scalar_suffix(vty.element)}.p0"
        fn = self.module.globals.get(name) or ir.Function(
            self.module, ir.FunctionType(ir.VoidType(), [vty, PTR, I32, mask.type]), name)
        with b.if_else(self._every_lane_on(mask)) as (then, orelse):
            with then:
                b.store(value, ptr, align=align)
            with orelse:
                b.call(fn, [value, ptr, ir.Constant(I32, align), mask])

    def _clamped(self, index: Expr) -> tuple[Expr, Expr, Expr | None, Expr | None] | None:
        """(rest, base, lo, hi) when index = rest + min(max(base + lane, lo), hi), the two the
        other way round or one alone (the other None), rest, base, lo and hi lane-free.

        The padded lanes of a pack that does not divide (`min(j, N - 1)` under a guard) read the
        last element again, and a pad stage's lanes outside its input (`min(max(x - 1, 0), W - 1)`
        under the select that zeroes them) its first or last: one masked vector load and a
        broadcast of the edge element, not a gather.
        """
        key = ("clamped", id(self.vec.var), id(index))
        hit = self.vec.memo.get(key)
        if hit is None:
            hit = self.vec.memo[key] = (index, self._find_clamped(index))
        return hit[1]

    def _find_clamped(self, index: Expr) -> tuple[Expr, Expr, Expr | None, Expr | None] | None:
        vec = self.vec
        lin = linear(index)
        hit = None
        for k, (atom, c) in lin.terms.items():
            if vec.var not in free_vars(atom):
                continue
            if hit is not None or c != 1 or not (isinstance(atom, BinOp) and atom.op in CLAMPS):
                return None
            hit = k
        if hit is None:
            return None
        a, bounds = lin.terms[hit][0], {}
        while isinstance(a, BinOp) and a.op in CLAMPS and a.op not in bounds:
            inner, edge = (a.a, a.b) if vec.var in free_vars(a.a) else (a.b, a.a)
            if vec.var in free_vars(edge):
                return None
            bounds[a.op], a = edge, inner
        aff = self._affine(a)
        if aff is None or aff[1] != 1:
            return None
        rest = Linear(lin.dtype, {k: t for k, t in lin.terms.items() if k != hit}, lin.const).to_expr()
        return rest, aff[0], bounds.get(BinOpKind.MAX), bounds.get(BinOpKind.MIN)

    def _clamped_load(self, buf: Buffer, rest: Expr, base: Expr, lo: Expr | None, hi: Expr | None,
                      vty: ir.VectorType, align: int) -> ir.Value:
        b = self.builder
        lanes = vty.count
        r, first = self.expr_scalar(rest), self.expr_scalar(base)
        pos = b.add(self._broadcast(first, lanes), ir.Constant(ir.VectorType(I64, lanes), list(range(lanes))))
        edges = []              # (the lanes past an edge, the edge's element index)
        if lo is not None:
            bottom = self.expr_scalar(lo)
            edges.append((b.icmp_signed("<", pos, self._broadcast(bottom, lanes)), bottom))
        if hi is not None:
            top = self.expr_scalar(hi)
            edges.append((b.icmp_signed(">", pos, self._broadcast(top, lanes)), top))
        outside = edges[0][0] if len(edges) == 1 else b.or_(edges[0][0], edges[1][0])
        inside = b.not_(outside)
        mask = inside if self.mask is None else b.and_(inside, self.mask)
        passthru = None
        for past, at in reversed(edges):
            # an edge element is read only if some lane (that is on) reads it, as in the loop
            need = past if self.mask is None else b.and_(past, self.mask)
            pre = b.block
            with b.if_then(self._intrinsic("llvm.vector.reduce.or", [need], ret=I1)), self._vn_scope():
                loaded = b.load(self._address(buf, b.add(r, at)), typ=vty.element, align=align)
                then = b.block
            edge = b.phi(vty.element)
            edge.add_incoming(loaded, then)
            edge.add_incoming(self._zero(vty.element), pre)
            edge = self._broadcast(edge, lanes)
            passthru = edge if passthru is None else b.select(past, edge, passthru)
        return self._masked_load(self._address(buf, b.add(r, first)), vty, align, mask, passthru)

    # ------------------------------------------------------------- expressions
