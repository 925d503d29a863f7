"""The vector int8 dot-product intrinsics (te/tensorize.py): VNNI `vpdpbusd` and its exact
fallback through `vpmaddwd`, each at 512 and 256 bits.

Each computes, for L lanes, C[l] += sum_{g < G} int32(A[g]) * int32(B[G*l + g]) (A uint8, B int8):
B's L*G bytes are one vector load, A's G bytes are broadcast to every lane, C is one int32
vector.  The nest is L x G: the loop of L lanes has C stride 1, A stride 0 and B stride G; the
loop of G has C stride 0 and A and B stride 1.  The operands may also swap parts, the uint8 one
the vector (A stride G, B stride 0 in the lanes): a conv with pixel vectors reads its packed
input that way.
"""
from __future__ import annotations

from llvmlite import ir

from .llvm_types import I8, I32
from .tensorize import DotNest, Mismatch, TensorIntrin, address, declare, expect, read_nest, register

I16 = ir.IntType(16)


class VectorDot(TensorIntrin):
    """An L-lane, G-deep u8 x s8 -> s32 dot product into one vector of C."""

    def __init__(self, name: str, lanes: int, group: int, features: tuple[str, ...], llvm: str):
        self.name, self.lanes, self.group, self.features, self.llvm = name, lanes, group, features, llvm

    def match(self, loop) -> DotNest:
        nest = read_nest(loop)
        if nest.init:
            raise Mismatch(f"{self.name} adds to C; zero it outside the nest (a reduction's own init)")
        L, G = self.lanes, self.group
        group = {"group": ((0, 1, 1), G, True)}
        try:            # B the vector (weights packed K/G x N x G), A's G bytes broadcast
            expect(nest, {"lanes": ((1, 0, G), L, True), **group}, self.name)
            nest.vector_a = False
        except Mismatch:
            # or A the vector (the uint8 input packed as C/G x pixels x G), B's G bytes broadcast
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
        vec = b.load(vec_ptr, typ=ir.VectorType(I8, L * G), align=1)
        if G == 4:
            # the G bytes of the broadcast operand as one i32 in every lane
            bc = b.bitcast(cg._broadcast(b.load(bc_ptr, typ=I32, align=1), L), ir.VectorType(I8, 4 * L))
            u8, s8 = (vec, bc) if nest.vector_a else (bc, vec)
            fn = declare(cg, self.llvm, vi32, [vi32, u8.type, s8.type])
            out = b.call(fn, [acc, u8, s8])
        else:
            # the pair of the broadcast operand as two 16-bit values in one i32, in every lane;
            # uint8 bytes zero-extended, int8 bytes sign-extended
            pair = b.load(bc_ptr, typ=ir.VectorType(I8, 2), align=1)
            ext_pair = b.sext if nest.vector_a else b.zext
            ext_vec = b.zext if nest.vector_a else b.sext
            pair = ext_pair(pair, ir.VectorType(I16, 2))
            bc = b.bitcast(cg._broadcast(b.bitcast(pair, I32), L), ir.VectorType(I16, 2 * L))
            v16 = ext_vec(vec, ir.VectorType(I16, 2 * L))
            fn = declare(cg, self.llvm, vi32, [bc.type, v16.type])
            out = b.add(acc, b.call(fn, [bc, v16]))
        b.store(out, c_ptr, align=4)

for _intrin in (
        VectorDot("vpdpbusd", 16, 4, ("avx512vnni",), "llvm.x86.avx512.vpdpbusd.512"),
        VectorDot("vpdpbusd.256", 8, 4, ("avxvnni",), "llvm.x86.avx512.vpdpbusd.256"),
        VectorDot("vpdpbusd.256vl", 8, 4, ("avx512vnni", "avx512vl"), "llvm.x86.avx512.vpdpbusd.256"),
        VectorDot("pmaddwd", 16, 2, ("avx512bw",), "llvm.x86.avx512.pmaddw.d.512"),
        VectorDot("pmaddwd.256", 8, 2, ("avx2",), "llvm.x86.avx2.pmadd.wd")):
    register(_intrin)
