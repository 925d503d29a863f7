"""LLVM types of tilewise dtypes, shared by the code generator and its vector-access mixin."""
from llvmlite import ir

I1, I8, I32, I64 = ir.IntType(1), ir.IntType(8), ir.IntType(32), ir.IntType(64)
PTR = ir.PointerType()

LLVM_TYPES = {
    "float32": ir.FloatType(), "float64": ir.DoubleType(), "bool": I1,
    "int8": I8, "uint8": I8, "int16": ir.IntType(16), "uint16": ir.IntType(16),
    "int32": I32, "uint32": I32, "int64": I64, "uint64": I64,
}
# How a dtype is laid out in memory (bool is a byte, as in numpy).
MEM_TYPES = {**LLVM_TYPES, "bool": I8}
ELEM_BYTES = {"float32": 4, "float64": 8, "bool": 1, "int8": 1, "uint8": 1, "int16": 2,
              "uint16": 2, "int32": 4, "uint32": 4, "int64": 8, "uint64": 8}


def scalar_suffix(t: ir.Type) -> str:
    """The type suffix of an LLVM intrinsic's name: f32, f64, i8..."""
    if isinstance(t, ir.FloatType):
        return "f32"
    if isinstance(t, ir.DoubleType):
        return "f64"
    return f"i{t.width}"
