"""The vector int8 dot-product intrinsics (te/tensorize.py): VNNI `vpdpbusd` and its exact
fallback through `vpmaddwd`, each at 512 and 256 bits.

Each computes, for L lanes, C[l] += sum_{g < G} int32(A[g]) * int32(B[G*l + g]): A's G bytes are
broadcast to every lane, B's L*G bytes are one vector load, C is one int32 vector.  The nest is
L x G: the loop of L lanes has C stride 1, A stride 0 and B stride G; the loop of G has C stride
0 and A and B stride 1.
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
        expect(nest, {"lanes": ((1, 0, G), L, True), "group": ((0, 1, 1), G, True)}, self.name)
        return nest

    def emit(self, cg, nest: DotNest) -> None:
        b, L, G = cg.builder, self.lanes, self.group
        vi32 = ir.VectorType(I32, L)
        c_ptr = address(cg, nest.c, nest.c_base)
        acc = b.load(c_ptr, typ=vi32, align=4)
        a_ptr = address(cg, nest.a, nest.a_base)
        w = b.load(address(cg, nest.b, nest.b_base), typ=ir.VectorType(I8, L * G), align=1)
        if G == 4:
            a = b.bitcast(cg._broadcast(b.load(a_ptr, typ=I32, align=1), L), ir.VectorType(I8, 4 * L))
            fn = declare(cg, self.llvm, vi32, [vi32, a.type, w.type])
            out = b.call(fn, [acc, a, w])
        else:
            # u8 pair -> two zero-extended i16 in one i32, broadcast; s8 weights sign-extended
            pair = b.zext(b.load(a_ptr, typ=ir.VectorType(I8, 2), align=1), ir.VectorType(I16, 2))
            a = b.bitcast(cg._broadcast(b.bitcast(pair, I32), L), ir.VectorType(I16, 2 * L))
            w16 = b.sext(w, ir.VectorType(I16, 2 * L))
            fn = declare(cg, self.llvm, vi32, [a.type, w16.type])
            out = b.add(acc, b.call(fn, [a, w16]))
        b.store(out, c_ptr, align=4)


for _intrin in (
        VectorDot("vpdpbusd", 16, 4, ("avx512vnni",), "llvm.x86.avx512.vpdpbusd.512"),
        VectorDot("vpdpbusd.256", 8, 4, ("avxvnni",), "llvm.x86.avx512.vpdpbusd.256"),
        VectorDot("vpdpbusd.256vl", 8, 4, ("avx512vnni", "avx512vl"), "llvm.x86.avx512.vpdpbusd.256"),
        VectorDot("pmaddwd", 16, 2, ("avx512bw",), "llvm.x86.avx512.pmaddw.d.512"),
        VectorDot("pmaddwd.256", 8, 2, ("avx2",), "llvm.x86.avx2.pmadd.wd")):
    register(_intrin)
