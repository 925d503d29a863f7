"""The vector int8 dot-product intrinsics (te/tensorize.py): VNNI `vpdpbusd` and its exact
fallback through `vpmaddwd`, each at 512 and 256 bits.

Each computes, for L lanes, C[l] += sum_{g < G} int32(A[g]) * int32(B[G*l + g]) (A uint8, B int8):
B's L*G bytes are one vector load, A's G bytes are broadcast to every lane, C is one int32
vector.  The nest is L x G: the loop of L lanes has C stride 1, A stride 0 and B stride G; the
loop of G has C stride 0 and A and B stride 1.  The operands may also swap parts, the uint8 one
the vector (A stride G, B stride 0 in the lanes): a conv with pixel vectors reads its packed
input that way.

`pmaddwd` (G = 2) multiplies 16-bit factors: 8-bit ones are widened in the loop (zero- or
sign-extended), factors of int16 (uint8 and int8 values the kernel widened once, in its input
pack and its weight pack) are used as they are.  It is exact for any int16 factors: each of
the two products fits in int32, and their sum wraps only for (-32768)^2 * 2 = 2^31, to the
value int32 arithmetic wraps to, as the vpaddd into C does.  With widened operands the loop is
one vpmaddwd and one vpaddd per vector (the vector load folded into vpmaddwd, the pair a
vpbroadcastd from memory: load ports only); widening in the loop costs a vpmovzxbw per vector
and four instructions per broadcast pair, all on the shuffle port (port 5 on Intel), which
bounds the loop below the fp32 FMA rate.  A vpmaddwd ymm does 16 multiply-adds, an fp32 FMA 8.
Haswell and Zen 2 issue vpmaddwd on one pipe (p0; FP0) and FMAs on two, so there the integer
loop's multiply rate equals fp32's and int8 gains only by moving half the bytes; Skylake and
later Intel cores (this machine too) issue it on p0 and p1 with vpaddd on p5, up to 1.5x the
fp32 rate; the AVX-512BW zmm form doubles both.  vpmaddubsw (u8 x s8 pairs into int16) would
do 32 per instruction but saturates its pair sums (255 * 127 * 2 > 32767): it is not used,
results must equal integer arithmetic.
"""
from __future__ import annotations

from llvmlite import ir

from .llvm_types import I8, I32
from .tensorize import U8_S8, DotNest, Mismatch, TensorIntrin, address, declare, expect, read_nest, register

I16 = ir.IntType(16)
ELEMENT = {"uint8": I8, "int8": I8, "int16": I16}
# vpmaddwd's factors: 8-bit ones widened in the loop, int16 ones as they are
WORD_FACTORS = frozenset((a, b) for a in ELEMENT for b in ELEMENT)


class VectorDot(TensorIntrin):
    """An L-lane, G-deep u8 x s8 -> s32 dot product into one vector of C."""

    def __init__(self, name: str, lanes: int, group: int, features: tuple[str, ...], llvm: str):
        self.name, self.lanes, self.group, self.features, self.llvm = name, lanes, group, features, llvm
        self.factors = U8_S8 if group == 4 else WORD_FACTORS

    def match(self, loop) -> DotNest:
        nest = read_nest(loop, self.factors)
        if nest.init:
            raise Mismatch(f"{self.name} adds to C; zero it outside the nest (a reduction's own init)")
        L, G = self.lanes, self.group
        group = {"group": ((0, 1, 1), G, True)}
        try:            # B the vector (weights packed K/G x N x G), A's G bytes broadcast
            expect(nest, {"lanes": ((1, 0, G), L, True), **group}, self.name)
            nest.vector_a = False
        except Mismatch:
            # or A the vector (the input packed as C/G x pixels x G), B's G values broadcast
            expect(nest, {"lanes": ((1, G, 0), L, True), **group}, self.name)
            nest.vector_a = True
        return nest

    def emit(self, cg, nest: DotNest) -> None:
        b, L, G = cg.builder, self.lanes, self.group
        vi32 = ir.VectorType(I32, L)
        c_ptr = address(cg, nest.c, nest.c_base)
        acc = b.load(c_ptr, typ=vi32, align=4)
        a_ptr, b_ptr = address(cg, nest.a, nest.a_base), address(cg, nest.b, nest.b_base)
        vec_ptr, bc_ptr = (a_ptr, b_ptr) if nest.vector_a else (b_ptr, a_ptr)
        vec_buf, bc_buf = (nest.a, nest.b) if nest.vector_a else (nest.b, nest.a)
        vec = b.load(vec_ptr, typ=ir.VectorType(ELEMENT[vec_buf.dtype], L * G), align=1)
        if G == 4:
            # the G bytes of the broadcast operand as one i32 in every lane
            bc = b.bitcast(cg._broadcast(b.load(bc_ptr, typ=I32, align=1), L), ir.VectorType(I8, 4 * L))
            u8, s8 = (vec, bc) if nest.vector_a else (bc, vec)
            fn = declare(cg, self.llvm, vi32, [vi32, u8.type, s8.type])
            out = b.call(fn, [acc, u8, s8])
        else:
            # the pair of the broadcast operand as two 16-bit values in one i32, in every lane
            if bc_buf.dtype == "int16":
                pair = b.load(bc_ptr, typ=I32, align=2)
            else:
                pair = b.bitcast(_widen(b, b.load(bc_ptr, typ=ir.VectorType(I8, 2), align=1), bc_buf.dtype), I32)
            bc = b.bitcast(cg._broadcast(pair, L), ir.VectorType(I16, 2 * L))
            fn = declare(cg, self.llvm, vi32, [bc.type, bc.type])
            out = b.add(acc, b.call(fn, [bc, _widen(b, vec, vec_buf.dtype)]))
        b.store(out, c_ptr, align=4)


def _widen(b, v, dtype: str):
    """A vector of 8-bit values as 16-bit ones (uint8 zero-extended, int8 sign-extended); int16 as it is."""
    if dtype == "int16":
        return v
    wide = ir.VectorType(I16, v.type.count)
    return b.zext(v, wide) if dtype == "uint8" else b.sext(v, wide)


for _intrin in (
        VectorDot("vpdpbusd", 16, 4, ("avx512vnni",), "llvm.x86.avx512.vpdpbusd.512"),
        VectorDot("vpdpbusd.256", 8, 4, ("avxvnni",), "llvm.x86.avx512.vpdpbusd.256"),
        VectorDot("vpdpbusd.256vl", 8, 4, ("avx512vnni", "avx512vl"), "llvm.x86.avx512.vpdpbusd.256"),
        VectorDot("pmaddwd", 16, 2, ("avx512bw",), "llvm.x86.avx512.pmaddw.d.512"),
        VectorDot("pmaddwd.256", 8, 2, ("avx2",), "llvm.x86.avx2.pmadd.wd")):
    register(_intrin)
