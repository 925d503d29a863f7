"""LLVM types of tilewise dtypes, shared by the code generator and its vector-access mixin."""
import struct

from llvmlite import ir
from llvmlite.ir import types as _types

from .expr import BYTE_CODED

I1, I8, I32, I64 = ir.IntType(1), ir.IntType(8), ir.IntType(32), ir.IntType(64)
PTR = ir.PointerType()


class BFloatType(_types._BaseFloatType):
    """LLVM's `bfloat`, which llvmlite.ir lacks: fpext/fptrunc to float become shifts and
    AVX512-BF16's vcvtneps2bf16."""
    null = "0.0"
    intrinsic_name = "bf16"

    def __str__(self) -> str:
        return "bfloat"

    def format_constant(self, value) -> str:
        # LLVM spells bfloat constants as 0xR and the 16 bits, rounded to nearest even
        bits = struct.unpack("<I", struct.pack("<f", float(value)))[0]
        if value != value:                           # NaN: keep it a NaN after truncation
            return "0xR7FC0"
        return f"0xR{(bits + 0x7FFF + ((bits >> 16) & 1)) >> 16 & 0xFFFF:04X}"


BFloatType._create_instance()

LLVM_TYPES = {
    "float32": ir.FloatType(), "float64": ir.DoubleType(), "bool": I1,
    "int8": I8, "uint8": I8, "int16": ir.IntType(16), "uint16": ir.IntType(16),
    "int32": I32, "uint32": I32, "int64": I64, "uint64": I64,
    "float16": ir.HalfType(), "bfloat16": BFloatType(), **{t: I8 for t in BYTE_CODED},
}
# How a dtype is laid out in memory (bool is a byte, as in numpy).
MEM_TYPES = {**LLVM_TYPES, "bool": I8}
ELEM_BYTES = {"float32": 4, "float64": 8, "bool": 1, "int8": 1, "uint8": 1, "int16": 2,
              "uint16": 2, "int32": 4, "uint32": 4, "int64": 8, "uint64": 8, "float16": 2,
              "bfloat16": 2, **{t: 1 for t in BYTE_CODED}}


def scalar_suffix(t: ir.Type) -> str:
    """The type suffix of an LLVM intrinsic's name: f32, f64, f16, bf16, i8..."""
    return t.intrinsic_name
