"""NCHW rows from vectors of channels, for the LLVM code generator: transposed loads, and rows
shorter than a register as masked full-register accesses.

A conv whose accumulators are vectors of output channels (`acc[pixel, channel]`) writes NCHW
rows of pixels: its output stage is an unrolled loop over the tile's channels `u` around a
vectorized loop over its pixels `l`, reading `acc[base + u + S*l]` (S the channel block).  Each
such vector picks lane u of L accumulator vectors; emitted lane by lane, LLVM builds every one of
the A vectors from L sources, about L - 1 two-source shuffles each (a 14-pixel x 32-channel tile:
~470 shuffles, all on one port).  Emitted here instead (`_transposed_loads`): the L rows as
contiguous loads of A elements (registers, once LLVM has promoted the accumulators), then a
butterfly transpose in blocks of n x n (n = L rounded up to a power of two): log2(n) stages of n
two-source shuffles per block, one block of columns used before the next is made.  The tile's
output stage takes about half the cycles (llvm-mca, Sapphire Rapids: 557 -> 280 for that tile).

Those rows are 14 or 7 pixels on ResNet's 14x14 and 7x7 maps: LLVM legalises a <14 x float> load
or store as pieces of 8, 4 and 2 lanes put together by inserts and extracts.  With AVX-512's mask
registers, a contiguous access of a row that is not a power of two of lanes, to memory off the
stack, is emitted here as one masked access of the next power of two (`_short_lanes`); a stack
buffer keeps plain accesses, which LLVM can promote to registers.  `RowAccess` is a mixin of
`codegen_llvm.CodeGenLLVM`.
"""
from __future__ import annotations

from llvmlite import ir

from .expr import Const, Load, free_vars, walk
from .llvm_types import ELEM_BYTES, I1, I32, I64, MEM_TYPES
from .schedule import ForKind
from .simplify import Linear, linear, skey
from .stmt import For, Store

MAX_BLOCK_BITS = 512        # a transpose block's vectors at most one AVX-512 register wide
# element types whose short rows become masked accesses (no conversion between memory and registers)
REGISTER_DTYPES = frozenset({"float32", "float64", "int32", "int64"})


def butterfly_masks(n: int) -> list[tuple[int, list[int], list[int]]]:
    """The stages of an n x n transpose (n a power of two) as (h, mask of row i, mask of row i + h):
    stage h swaps bit h of the row index with bit h of the lane index, for rows i with i & h == 0,
    each new row one two-source shuffle of rows i and i + h (lanes n.. name the second)."""
    stages = []
    h = 1
    while h < n:
        lo = [c if not c & h else n + (c ^ h) for c in range(n)]
        hi = [(c ^ h) if not c & h else n + c for c in range(n)]
        stages.append((h, lo, hi))
        h *= 2
    return stages


class RowAccess:
    """Transposed loads and short rows (module docstring)."""

    _columns: dict = {}         # id(Load) -> its vector in the iteration being emitted

    def expr_Load(self, e: Load) -> ir.Value:
        if self.vec is None:
            return super().expr_Load(e)
        v = self._columns.get(id(e))
        if v is not None:
            return v
        short = self._short_lanes(e.buffer, e.index)
        if short is None:
            return super().expr_Load(e)
        ptr, vty, mask = short
        wide = self._masked_load(ptr, vty, ELEM_BYTES[e.buffer.dtype], mask, self._splat(vty, "poison"))
        lanes = self.vec.lanes
        return self.builder.shuffle_vector(wide, wide, self._mask(range(lanes)))

    def _vector_store(self, buf, index, value_expr, value) -> None:
        short = self._short_lanes(buf, index)
        if short is None:
            super()._vector_store(buf, index, value_expr, value)
            return
        ptr, vty, mask = short
        value = self._broadcast(value, self.vec.lanes)
        lanes = self.vec.lanes
        wide = self.builder.shuffle_vector(value, self._splat(value.type, "poison"), ir.Constant(
            ir.VectorType(I32, vty.count), [*range(lanes), *[lanes] * (vty.count - lanes)]))
        self._masked_store(wide, ptr, ELEM_BYTES[buf.dtype], mask)

    def _short_lanes(self, buf, index) -> tuple | None:
        """(address, vector type, constant lane mask) for a contiguous access of L lanes, L not a
        power of two and below a register's, to a buffer off the stack, outside any mask, on an
        AVX-512 target: the vector of L rounded up to a power of two, its first L lanes on.
        None for any other access (AVX2's vmaskmovps stores are slow on AMD cores)."""
        lanes = self.vec.lanes
        if self.mask is not None or lanes & (lanes - 1) == 0 or buf.dtype not in REGISTER_DTYPES \
                or "avx512f" not in self.target.feature_set or isinstance(self.bufs.get(buf), ir.AllocaInstr):
            return None
        wide = 1 << (lanes - 1).bit_length()
        if wide * 8 * ELEM_BYTES[buf.dtype] > self.target.vector_bits or not self.vec.depends(index):
            return None
        aff = self._affine(index)
        if aff is None or aff[1] != 1:
            return None
        mask = ir.Constant(ir.VectorType(I1, wide), [1] * lanes + [0] * (wide - lanes))
        return self._address(buf, self.expr_scalar(aff[0])), ir.VectorType(MEM_TYPES[buf.dtype], wide), mask

    def _transposed_loads(self, s: For) -> bool:
        """Emit `s` if it is an unrolled loop of A iterations around a vectorized loop of L lanes
        whose one store's value reads some buffer (not the one stored) at base + u + S*l (u the
        iteration, l the lane, S != 0): those reads as L row loads of A elements and a transpose,
        before the iterations.  False (nothing emitted) for any other loop."""
        body = s.body
        if not (self.vec is None and self.mask is None and isinstance(body, For)
                and body.kind is ForKind.VECTORIZED and isinstance(body.extent, Const)
                and isinstance(body.body, Store)):
            return False
        A, L, st = s.extent.value, body.extent.value, body.body
        n = 1 << (L - 1).bit_length()
        if A < 2 or L < 2:
            return False
        found = {}
        for x in walk(st.value):
            if isinstance(x, Load) and id(x) not in found and x.buffer is not st.buffer \
                    and x.buffer.dtype in MEM_TYPES and x.buffer.dtype != "bool" \
                    and n * 8 * ELEM_BYTES[x.buffer.dtype] <= MAX_BLOCK_BITS:
                rows = self._row_stride(x, s.var, body.var)
                if rows is not None:
                    found[id(x)] = (x, *rows)
        if not found:
            return False
        self.ranges[s.var], self.ranges[body.var] = (0, A - 1), (0, L - 1)
        starts = {k: self.expr_scalar(base) for k, (_, base, _) in found.items()}
        outer = self._columns
        try:
            for j in range(0, A, n):
                # one block of columns at a time, used before the next is made: fewer live registers
                blocks = {k: self._transpose_block(x, starts[k], stride, j, min(n, A - j), L)
                          for k, (x, _, stride) in found.items()}
                for u in range(j, min(j + n, A)):
                    self.vars[s.var] = self._const(I64, u)
                    self._columns = {**outer, **{k: cols[u - j] for k, cols in blocks.items()}}
                    self.stmt(body)
        finally:
            self._columns = outer
            self.vars.pop(s.var, None)
        return True

    def _row_stride(self, e: Load, u, l) -> tuple | None:
        """(base, S) when e's index is base + u + S*l with base free of u and l and S != 0."""
        lin = linear(e.index)
        coeff = {k: c for k, (_, c) in lin.terms.items()}
        keys = (skey(u), skey(l))
        stride = coeff.get(keys[1], 0)
        if coeff.get(keys[0]) != 1 or stride == 0 or any(
                k not in keys and {u, l} & free_vars(a) for k, (a, _) in lin.terms.items()):
            return None
        return Linear(lin.dtype, {k: t for k, t in lin.terms.items() if k not in keys}, lin.const).to_expr(), stride

    def _transpose_block(self, e: Load, start: ir.Value, stride: int, j: int, w: int, L: int) -> list[ir.Value]:
        """The w vectors of L lanes that e reads at u = j .. j+w-1: L rows of w elements from
        start + stride*l + j, as an n x n block (rows past L poison) transposed by butterfly_masks."""
        b, buf = self.builder, e.buffer
        ety, align = MEM_TYPES[buf.dtype], ELEM_BYTES[buf.dtype]
        n = 1 << (L - 1).bit_length()
        block = []
        for lane in range(L):
            at = b.add(start, self._const(I64, stride * lane + j))
            row = b.load(self._address(buf, at), typ=ir.VectorType(ety, w), align=align)
            if w < n:           # the last chunk of a row, widened to the block
                row = b.shuffle_vector(row, self._splat(row.type, "poison"),
                                       self._mask([*range(w), *[w] * (n - w)]))
            block.append(row)
        block += [self._splat(ir.VectorType(ety, n), "poison")] * (n - L)
        for h, lo, hi in butterfly_masks(n):
            for i in range(n):
                if not i & h:
                    x, y = block[i], block[i + h]
                    block[i] = b.shuffle_vector(x, y, self._mask(lo))
                    block[i + h] = b.shuffle_vector(x, y, self._mask(hi))
        cols = block[:w]
        if L < n:
            cols = [b.shuffle_vector(c, c, self._mask(range(L))) for c in cols]
        return [self._from_mem(c, buf.dtype) for c in cols]
