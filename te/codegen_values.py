"""Integer arithmetic for the LLVM code generator, emitted once: folding and value numbering.

Unrolling substitutes constants for loop indices, so the same index arithmetic (`oh * 224 + ...`,
the `// 4 % 14` of a fused loop) arrives once per unrolled copy and per access.  Emitted
verbatim, it doubles a large conv candidate's instructions (LLVM's own CSE removes the repeats
late), and our IR text generation and LLVM's O2 both cost in proportion to that size.  Here integer
operations on two constants fold, `x + 0`, `x * 1` and `x * 0` simplify, and a pure operation
(integer arithmetic, an address, a broadcast) whose operands were already combined the same way
reuses the earlier value, as long as that value dominates the point of use: each loop body and
each branch is a scope whose values are forgotten when it closes.  `ValueNumbering` is a mixin
of `codegen_llvm.CodeGenLLVM`, whose builder it uses.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Callable

from llvmlite import ir

from .expr import BinOp, BinOpKind, is_unsigned
from .llvm_types import I32, I64
from .simplify import bound

_PURE_FOLD = {BinOpKind.ADD: lambda a, b: a + b, BinOpKind.SUB: lambda a, b: a - b,
              BinOpKind.MUL: lambda a, b: a * b, BinOpKind.MIN: min, BinOpKind.MAX: max}
_INT_OPS = {BinOpKind.ADD: "add", BinOpKind.SUB: "sub", BinOpKind.MUL: "mul"}
_DIVISIONS = (BinOpKind.FLOORDIV, BinOpKind.DIV, BinOpKind.FLOORMOD)


def _int_const(v: ir.Value) -> int | None:
    """The value of a scalar integer constant (i2 and wider), else None."""
    if isinstance(v, ir.Constant) and isinstance(v.type, ir.IntType) and v.type.width > 1 \
            and isinstance(v.constant, int):
        return v.constant
    return None


def _wrap(value: int, width: int) -> int:
    """value as a two's-complement integer of width bits (LLVM's wrapping arithmetic)."""
    value &= (1 << width) - 1
    return value - (1 << width) if value >> (width - 1) else value


def vn_key(v: ir.Value):
    """The value-numbering key of an operand: integer constants by value, the rest by identity."""
    c = _int_const(v)
    return (v.type.width, c) if c is not None else id(v)


class _Splat(ir.Constant):
    """A vector constant with all lanes alike, printed short (`zeroinitializer`, `poison`)
    rather than lane by lane: a 16-lane zero is 200 bytes of IR text otherwise."""

    def __init__(self, ty: ir.VectorType, text: str):
        lane = 0 if isinstance(ty.element, ir.IntType) else None
        super().__init__(ty, [lane] * ty.count)
        self.text = text

    def _get_reference(self) -> str:
        return self.text


class ValueNumbering:
    """Folding and scoped reuse of pure values for the code generator (see the module docstring)."""

    def _vn_reset(self) -> None:
        self._vn: dict = {}
        self._vn_scopes: list[list] = [[]]

    def _const(self, ty: ir.Type, value) -> ir.Constant:
        """One constant object per (type, value): creating llvmlite constants is not cheap."""
        key = (str(ty), type(value), value)
        c = self._consts.get(key)
        if c is None:
            c = self._consts[key] = ir.Constant(ty, value)
        return c

    @contextmanager
    def _vn_scope(self):
        """A region whose values do not dominate what follows it (a loop body, a branch)."""
        self._vn_scopes.append([])
        try:
            yield
        finally:
            for key in self._vn_scopes.pop():
                del self._vn[key]

    def _zero(self, ty: ir.Type) -> ir.Constant:
        """The zero of ty (a vector one printed as zeroinitializer)."""
        if not isinstance(ty, ir.VectorType):
            return self._const(ty, None)
        return self._splat(ty, "zeroinitializer")

    def _splat(self, ty: ir.VectorType, text: str) -> ir.Constant:
        key = ("splat", str(ty), text)
        c = self._consts.get(key)
        if c is None:
            c = self._consts[key] = _Splat(ty, text)
        return c

    def _mask(self, lanes) -> ir.Constant:
        """The i32 vector constant of a shuffle's lane indices, one object per list: the row
        transposes of the direct convolutions ask for the same few masks thousands of times, and
        llvmlite builds a constant lane by lane (Inception-v1: 120k lane constants, 0.7 s)."""
        key = ("mask", tuple(lanes))
        c = self._consts.get(key)
        if c is None:
            c = self._consts[key] = ir.Constant(ir.VectorType(I32, len(key[1])), list(key[1]))
        return c

    def _reuse(self, key, emit: Callable[[], ir.Value]) -> ir.Value:
        """The value emitted earlier under key in a scope still open, else emit() (remembered)."""
        v = self._vn.get(key)
        if v is None:
            v = emit()
            self._vn[key] = v
            self._vn_scopes[-1].append(key)
        return v

    def _broadcast(self, v: ir.Value, lanes: int) -> ir.Value:
        if isinstance(v.type, ir.VectorType):
            return v
        vty = ir.VectorType(v.type, lanes)
        if isinstance(v, ir.Constant) and not isinstance(v.constant, (list, tuple, str)):
            if v.constant is None or (not isinstance(v.constant, bool) and v.constant == 0
                                       and str(v.constant)[0] != "-"):
                return self._zero(vty)
            return ir.Constant(vty, [v.constant] * lanes)

        def emit() -> ir.Value:
            poison = self._splat(vty, "poison")
            tmp = self.builder.insert_element(poison, v, self._const(I32, 0))
            return self.builder.shuffle_vector(tmp, poison, self._zero(ir.VectorType(I32, lanes)))
        return self._reuse(("bc", id(v), lanes), emit)

    def _lane_ids(self, lanes: int) -> ir.Constant:
        """The constant vector <0, 1, ..., lanes-1> (one object per width, so it numbers alike)."""
        return self._reuse(("lanes", lanes), lambda: ir.Constant(ir.VectorType(I64, lanes), list(range(lanes))))

    def _int_binop(self, e: BinOp, x: ir.Value, y: ir.Value) -> ir.Value:
        """e's integer operation on x and y (already of one shape): folded, reused or emitted."""
        folded = self._fold(e.op, x, y, is_unsigned(e.dtype))
        if folded is not None:
            return folded
        return self._reuse((e.op, e.dtype, vn_key(x), vn_key(y)), lambda: self._emit_int(e, x, y))

    def _fold(self, op: BinOpKind, x: ir.Value, y: ir.Value, unsigned: bool) -> ir.Value | None:
        a, b = _int_const(x), _int_const(y)
        if a is not None and b is not None:
            width = x.type.width
            if op in _PURE_FOLD:
                if unsigned and op in (BinOpKind.MIN, BinOpKind.MAX):
                    return None
                return self._const(x.type, _wrap(_PURE_FOLD[op](a, b), width))
            if op in _DIVISIONS and not (unsigned and (a < 0 or b < 0)):
                if b == 0:                   # numpy: x // 0 and x % 0 are 0
                    return self._const(x.type, 0)
                return self._const(x.type, _wrap(a % b if op is BinOpKind.FLOORMOD else a // b, width))
            return None
        if op is BinOpKind.ADD and (a == 0 or b == 0):
            return y if a == 0 else x
        if op is BinOpKind.SUB and b == 0:
            return x
        if op is BinOpKind.MUL and (a == 1 or b == 1):
            return y if a == 1 else x
        if op is BinOpKind.MUL and (a == 0 or b == 0):
            return x if a == 0 else y
        return None

    def _emit_int(self, e: BinOp, x: ir.Value, y: ir.Value) -> ir.Value:
        b = self.builder
        op = e.op
        unsigned = is_unsigned(e.dtype)
        if op in _INT_OPS:
            return getattr(b, _INT_OPS[op])(x, y)
        if op in (BinOpKind.MIN, BinOpKind.MAX):
            cmp = b.icmp_unsigned if unsigned else b.icmp_signed
            return b.select(cmp("<" if op is BinOpKind.MIN else ">", x, y), x, y)
        if op in _DIVISIONS:
            is_mod = op is BinOpKind.FLOORMOD
            lo_a = bound(e.a, self.ranges)[0]
            yc = _int_const(y)            # a divisor made constant by unrolling
            if yc == 0:
                return self._zero(x.type)
            lo_b = bound(e.b, self.ranges)[0] if yc is None else yc
            if not unsigned and yc is not None and yc < -1:     # no zero, no INT_MIN / -1
                return self._floor_divmod(x, y, is_mod)
            if lo_b > 0:          # a divisor known positive: no zero, no INT_MIN / -1
                if unsigned:
                    return b.urem(x, y) if is_mod else b.udiv(x, y)
                if lo_a >= 0:
                    return b.srem(x, y) if is_mod else b.sdiv(x, y)
                return self._floor_divmod(x, y, is_mod)
            return self._safe_divmod(x, y, is_mod, unsigned)
        from .codegen_llvm import CodegenError
        raise CodegenError(f"binary operator {op.value} on {e.dtype}")

    def _safe_divmod(self, x: ir.Value, y: ir.Value, is_mod: bool, unsigned: bool) -> ir.Value:
        """Division as numpy does it: x // 0 and x % 0 are 0, INT_MIN // -1 wraps (no trap)."""
        b = self.builder
        zero = self._zero(x.type)
        ones = (ir.Constant(x.type, [1] * x.type.count) if isinstance(x.type, ir.VectorType)
                else ir.Constant(x.type, 1))
        by_zero = b.icmp_signed("==", y, zero)
        y1 = b.select(by_zero, ones, y)
        if unsigned:
            r = b.urem(x, y1) if is_mod else b.udiv(x, y1)
            return b.select(by_zero, zero, r)
        minus1 = b.icmp_signed("==", y1, ir.Constant(x.type, [-1] * x.type.count)
                                if isinstance(x.type, ir.VectorType) else self._const(x.type, -1))
        y2 = b.select(minus1, ones, y1)          # x / -1 is -x (wrapping), x % -1 is 0
        r = self._floor_divmod(x, y2, is_mod)
        r = b.select(minus1, zero if is_mod else b.neg(x), r)
        return b.select(by_zero, zero, r)

    def _floor_divmod(self, x: ir.Value, y: ir.Value, is_mod: bool) -> ir.Value:
        b = self.builder
        zero = self._zero(x.type)
        r = b.srem(x, y)
        # the remainder and the divisor have different signs: floor semantics adjust by one
        adjust = b.and_(b.icmp_signed("!=", r, zero),
                        b.icmp_signed("!=", b.icmp_signed("<", r, zero), b.icmp_signed("<", y, zero)))
        if is_mod:
            return b.select(adjust, b.add(r, y), r)
        q = b.sdiv(x, y)
        return b.select(adjust, b.sub(q, ir.Constant(x.type, 1) if not isinstance(x.type, ir.VectorType)
                                      else ir.Constant(x.type, [1] * x.type.count)), q)
