"""The AMX-INT8 intrinsic (te/tensorize.py): a block of C up to 32 x 32 int32 accumulated over
the whole reduction in tile registers by `tdpbusd`.

A tile is 16 rows of 64 bytes.  tdpbusd C[16 x 16 int32] += A[16 x 64 u8] . B[16 x 64 s8], where
B's row q holds, for 16 columns, 4 consecutive k each (the VNNI layout K/4 x N x 4): so the nest
this intrinsic takes, with its (C, A, B) strides, is

    rows   16 or 32      (ldc, lda, 0)       two A tiles and two C tiles when 32
    ib     1 or 2        (any, any, 0)       optional, with rows 16: two A and two C tiles
    jb     1 or 2        (16, 0, any)        optional: two B tiles and two C tiles
    j16    16            (1, 0, 4)
    steps  any           (0, any, any)       optional, any number: the reduction's tile steps
    kq     16            (0, 4, ldb)         a B tile's rows
    k4     4             (0, 1, 1)

with an init store (C = 0) between the data loops and the reduction loops or none (C loaded).
The operands may swap parts: int8 rows and uint8 in the VNNI layout become `tdpbsud` (a 1x1
conv: weights as the rows, the packed input as the columns, C in NCHW order).
The code: C tiles zeroed or loaded, a loop over ko loading the A and B tiles and multiplying
every A tile by every B tile, C tiles stored.  The tile state belongs to the thread: the
function (or the body of a parallel loop, which every thread runs) that holds the region
configures it at its entry (ldtilecfg) and releases it at its exit (tilerelease).  Linux lets
a process use the tiles only after it asks (runtime.request_amx, which every loader of a module
built for amx-tile calls).
"""
from __future__ import annotations

from llvmlite import ir

from .llvm_types import I8, I64
from .tensorize import DotNest, Loop, Mismatch, TensorIntrin, address, declare, expect, read_nest, register

TILE_ROWS, TILE_BYTES = 16, 64
C_TILES, A_TILES, B_TILES = (0, 1, 2, 3), (4, 5), (6, 7)
CONFIG_GLOBAL = "__tilewise_amx_config"
VOID = ir.VoidType()
PTR = ir.PointerType()


def tile_config() -> bytes:
    """The 64-byte ldtilecfg block: palette 1, all eight tiles 16 rows x 64 bytes."""
    cfg = bytearray(64)
    cfg[0] = 1
    for t in range(8):
        cfg[16 + 2 * t:18 + 2 * t] = TILE_BYTES.to_bytes(2, "little")
        cfg[48 + t] = TILE_ROWS
    return bytes(cfg)


class AmxDot(TensorIntrin):
    """tdpbusd over up to 2 x 2 tiles of C (see the module docstring)."""
    name = "amx"
    features = ("amx-tile", "amx-int8")

    def match(self, loop) -> DotNest:
        nest = read_nest(loop)
        try:
            return self._roles(nest)
        except Mismatch:
            # the int8 operand as the row tiles and the uint8 one in the VNNI layout: tdpbsud
            swapped = DotNest(nest.c, nest.b, nest.a, nest.c_base, nest.b_base, nest.a_base,
                              [Loop(lp.var, lp.extent, lp.c, lp.b, lp.a) for lp in nest.loops], nest.init)
            swapped.vector_a = True
            return self._roles(swapped)

    def _roles(self, nest: DotNest) -> DotNest:
        roles = expect(nest, {
            "columns": ((1, 0, 4), 16, True), "column blocks": ((16, 0, None), (1, 2), False),
            "groups of 4 k": ((0, 1, 1), 4, True), "tile rows of k": ((0, 4, None), 16, True),
            "rows": ((None, None, 0), (16, 32), True), "row blocks": ((None, None, 0), (1, 2), False)},
            self.name, rest=lambda lp: lp.c == 0)     # the rest: tile steps of the reduction
        rows, blocks = roles["rows"], roles["row blocks"]
        if rows.c == 0 or rows.a == 0:
            raise Mismatch(f"amx: loop {rows.var.name} must move both C and A by a row")
        if blocks is not None and (rows.extent != 16 or blocks.c == 0 or blocks.a == 0):
            raise Mismatch(f"amx: loop {blocks.var.name} of row blocks needs rows of 16 and must move C and A")
        nest.roles = roles
        return nest

    def emit(self, cg, nest: DotNest) -> None:
        b = cg.builder
        r = nest.roles
        rows, jb, kq, steps = r["rows"], r["column blocks"], r["tile rows of k"], r["rest"]
        ib = r["row blocks"]
        n_a, n_b = (ib.extent if ib else rows.extent // TILE_ROWS), jb.extent if jb else 1
        # where the second row block of C and A starts
        c_block, a_block = (ib.c, ib.a) if ib else (TILE_ROWS * rows.c, TILE_ROWS * rows.a)
        i8 = ir.IntType(8)
        load = declare(cg, "llvm.x86.tileloadd64", VOID, [i8, PTR, I64])
        store = declare(cg, "llvm.x86.tilestored64", VOID, [i8, PTR, I64])
        # vector_a: the rows (A tiles) are the int8 operand, the VNNI-laid tiles the uint8 one
        dot = declare(cg, "llvm.x86.tdpbsud" if nest.vector_a else "llvm.x86.tdpbusd", VOID, [i8, i8, i8])
        if "tilerelease" not in cg.exit_calls:
            # configured once per function (and parallel body), at its entry, released at its exit:
            # configuring again for every block costs as much as a 32 x 32 x 256 block's products
            cg.alloca_builder.call(declare(cg, "llvm.x86.ldtilecfg", VOID, [PTR]), [_config(cg)])
            cg.exit_calls["tilerelease"] = declare(cg, "llvm.x86.tilerelease", VOID, [])

        def c_tile(ai: int, bi: int) -> tuple[int, ir.Value]:
            off = ai * c_block + bi * (jb.c if jb else 0)
            return C_TILES[ai * n_b + bi], address(cg, nest.c, nest.c_base, off)
        c_stride = ir.Constant(I64, rows.c * 4)
        for ai in range(n_a):
            for bi in range(n_b):
                t, ptr = c_tile(ai, bi)
                if nest.init:
                    b.call(declare(cg, "llvm.x86.tilezero", VOID, [i8]), [ir.Constant(i8, t)])
                else:
                    b.call(load, [ir.Constant(i8, t), ptr, c_stride])

        def step(a_off: ir.Value | None, b_off: ir.Value | None) -> None:
            for ai in range(n_a):
                ptr = address(cg, nest.a, nest.a_base, ai * a_block, a_off)
                cg.builder.call(load, [ir.Constant(i8, A_TILES[ai]), ptr, ir.Constant(I64, rows.a)])
            for bi in range(n_b):
                ptr = address(cg, nest.b, nest.b_base, bi * (jb.b if jb else 0), b_off)
                cg.builder.call(load, [ir.Constant(i8, B_TILES[bi]), ptr, ir.Constant(I64, kq.b)])
            for ai in range(n_a):
                for bi in range(n_b):
                    cg.builder.call(dot, [ir.Constant(i8, C_TILES[ai * n_b + bi]), ir.Constant(i8, A_TILES[ai]),
                                          ir.Constant(i8, B_TILES[bi])])
        with cg._vn_scope():         # values made inside the loops are not reused after them
            _steps(cg, [lp for lp in steps if lp.extent > 1], None, None, step)
        for ai in range(n_a):
            for bi in range(n_b):
                t, ptr = c_tile(ai, bi)
                cg.builder.call(store, [ir.Constant(i8, t), ptr, c_stride])


def _config(cg) -> ir.Value:
    g = cg.module.globals.get(CONFIG_GLOBAL)
    if g is None:
        data = tile_config()
        ty = ir.ArrayType(I8, len(data))
        g = ir.GlobalVariable(cg.module, ty, CONFIG_GLOBAL)
        g.initializer = ir.Constant(ty, bytearray(data))
        g.global_constant = True
        g.linkage = "internal"
        g.align = 64
    return g


def _steps(cg, loops: list, a_off, b_off, step) -> None:
    """step(A offset, B offset) for every point of the tile-step loops (nested LLVM loops)."""
    if not loops:
        step(a_off, b_off)
        return
    lp, rest = loops[0], loops[1:]

    def body(k: ir.Value) -> None:
        b = cg.builder
        a = b.mul(k, ir.Constant(I64, lp.a))
        w = b.mul(k, ir.Constant(I64, lp.b))
        _steps(cg, rest, a if a_off is None else b.add(a_off, a), w if b_off is None else b.add(b_off, w), step)
    _counted_loop(cg, lp.extent, body)


def _counted_loop(cg, n: int, body) -> None:
    """for k in range(n): body(k), as an LLVM loop (k an i64 value)."""
    b = cg.builder
    pre = b.block
    head = b.append_basic_block("amx.k")
    done = b.append_basic_block("amx.k.done")
    b.branch(head)
    b.position_at_end(head)
    k = b.phi(I64, name="amx.k")
    k.add_incoming(ir.Constant(I64, 0), pre)
    body(k)
    nxt = cg.builder.add(k, ir.Constant(I64, 1))
    k.add_incoming(nxt, cg.builder.block)
    cg.builder.cbranch(cg.builder.icmp_signed("<", nxt, ir.Constant(I64, n)), head, done)
    cg.builder.position_at_end(done)


register(AmxDot())
