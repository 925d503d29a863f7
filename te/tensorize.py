"""Tensor intrinsics: loop nests that code generation replaces by the CPU's int8 dot-product
instructions (TVM's `s[C].tensorize(axis, intrin)`).

    s[acc].tensorize(j16, "vpdpbusd")       # the nest headed by loop j16 becomes one vpdpbusd

The schedule marks the loop (a pragma, so the step replays like any other); `check` runs after
lowering and proves that the nest the loop heads computes exactly what the intrinsic computes,
C[c] += int32(A[a]) * int32(B[b]) with uint8 A, int8 B (or the factor types the intrinsic
names) and int32 C, reading its operands at the strides the instruction reads them (otherwise a
ScheduleError names the loop and the reason); code generation then calls the intrinsic's `emit`
instead of emitting the loops.  The zero-fill nest that lowering puts before a reduction
carries the same mark; it is emitted as a plain vector store.

Intrinsics (`INTRINSICS`; `dot_intrinsic(target)` picks one from the target's features):

* `vpdpbusd` / `vpdpbusd.256` (AVX-512 VNNI / AVX-VNNI): a nest lanes x 4, the loop of lanes with
  C stride 1 and B stride 4, the loop of 4 with A and B stride 1; B is laid out K/4 x N x 4.
* `pmaddwd` / `pmaddwd.256` (AVX-512BW / AVX2, no VNNI): a nest lanes x 2, B laid out K/2 x N x 2,
  of 8-bit factors or of factors the kernel widened to int16 beforehand (the int8 kernels do, so
  that the loop is vpmaddwd + vpaddd alone; tensorize_dot.py says why that is exact and fast).
* `amx` (AMX-INT8, `amx.py`): a nest rows (16 or 32) x column blocks (1 or 2) x 16 columns x
  K/64 x 16 x 4 (the whole reduction), kept in up to four accumulator tiles.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .expr import Const, Expr, Load, free_vars, substitute, const, INDEX_DTYPE
from .schedule import ForKind, ScheduleError
from .simplify import linear, simplify
from .stmt import Buffer, For, LoweredFunc, Seq, Store, walk_stmt

PRAGMA = "tensorize"


class Mismatch(Exception):
    """Why a loop nest is not the nest an intrinsic computes (becomes a ScheduleError)."""


@dataclass
class Loop:
    """One loop of a tensorized nest: its variable, extent and the strides of C, A and B in it."""
    var: object
    extent: int
    c: int
    a: int
    b: int

    @property
    def strides(self) -> tuple[int, int, int]:
        return (self.c, self.a, self.b)


@dataclass
class DotNest:
    """A matched nest C[c] += int32(A[a]) * int32(B[b]): buffers, base indices (every nest loop at
    0), the nest's loops, and whether it starts by zeroing C (an init store inside the nest)."""
    c: Buffer
    a: Buffer
    b: Buffer
    c_base: Expr
    a_base: Expr
    b_base: Expr
    loops: list[Loop]
    init: bool = False
    vector_a: bool = False          # set by the vector intrinsics: A (uint8) is the vector operand
    roles: dict = field(default_factory=dict)   # set by an intrinsic's match: role -> Loop


class TensorIntrin:
    """An intrinsic: its name, the CPU features it needs, `match` (a nest -> DotNest or Mismatch)
    and `emit` (code for a DotNest, in a CodeGenLLVM)."""
    name: str = ""
    features: tuple[str, ...] = ()

    def match(self, loop: For) -> DotNest:
        raise NotImplementedError

    def emit(self, cg, nest: DotNest) -> None:
        raise NotImplementedError


# ---------------------------------------------------------------- reading a nest

def intrin_of(loop: For) -> str | None:
    """The intrinsic a loop is marked with by tensorize, or None."""
    for key, value in loop.pragmas:
        if key == PRAGMA:
            return value
    return None


def _perfect_nest(loop: For) -> tuple[list[For], Store | None, list[Store]]:
    """The loops of a nest down to its update store, and the init stores found on the way.

    An init store may sit beside the inner loop (Seq [init, For]); anything else is a mismatch."""
    loops, inits = [loop], []
    body = loop.body
    while True:
        if isinstance(body, Seq):
            stores = [s for s in body.stmts if isinstance(s, Store)]
            fors = [s for s in body.stmts if isinstance(s, For)]
            if len(fors) != 1 or len(stores) + 1 != len(body.stmts) or body.stmts[-1] is not fors[0]:
                raise Mismatch("the nest holds more than its loops and one update (a guard of a split "
                               "that does not divide, or another stage computed inside it)")
            inits += stores
            body = fors[0]
        if isinstance(body, For):
            if not isinstance(body.extent, Const):
                raise Mismatch(f"loop {body.var.name} has no constant extent")
            loops.append(body)
            body = body.body
            continue
        if isinstance(body, Store):
            return loops, body, inits
        raise Mismatch(f"the nest ends in {type(body).__name__}, not in one store")


def is_fill(loop: For) -> bool:
    """Is the nest a constant fill (the init of the reduction whose update is tensorized)?"""
    stores = [s for s in walk_stmt(loop) if isinstance(s, Store)]
    return bool(stores) and all(isinstance(s.value, Const) for s in stores)


# the factor types an intrinsic multiplies, uint8 first: the 8-bit dot products take uint8 x int8;
# vpmaddwd also takes factors already widened to int16 (exact: see tensorize_dot.py)
U8_S8 = frozenset({("uint8", "int8")})


def _operands(store: Store, factors: frozenset = U8_S8) -> tuple[Load, Load, Load]:
    """(C, A, B) of an update C[i] = C[i] + int32(A) * int32(B), (A, B) of types in factors."""
    from .expr import BinOp, BinOpKind, Cast
    v = store.value
    if store.buffer.dtype != "int32" or not (isinstance(v, BinOp) and v.op is BinOpKind.ADD):
        raise Mismatch(f"the update of {store.buffer.name} is not an int32 sum")
    acc, prod = (v.a, v.b) if isinstance(v.a, Load) and v.a.buffer is store.buffer else (v.b, v.a)
    if not (isinstance(acc, Load) and acc.buffer is store.buffer):
        raise Mismatch(f"the update of {store.buffer.name} does not add to its own value")
    if not (isinstance(prod, BinOp) and prod.op is BinOpKind.MUL):
        raise Mismatch(f"the update of {store.buffer.name} does not add a product")
    ops = []
    for x in (prod.a, prod.b):
        if not (isinstance(x, Cast) and isinstance(x.value, Load)):
            raise Mismatch("a factor of the product is not a widened load of an 8-bit tensor")
        ops.append(x.value)
    ops.sort(key=lambda ld: ld.dtype != "uint8")
    if (ops[0].dtype, ops[1].dtype) not in factors:
        raise Mismatch(f"the product is {ops[0].dtype} x {ops[1].dtype}; the instruction takes "
                       + " or ".join(f"{a} x {b}" for a, b in sorted(factors)))
    return acc, ops[0], ops[1]


def _stride(index: Expr, var) -> int:
    """The constant step of index per iteration of loop var (Mismatch if not affine in it)."""
    stride = 0
    for atom, coeff in linear(simplify(index)).terms.values():
        if atom is var:
            stride = coeff
        elif var in free_vars(atom):
            raise Mismatch(f"the index {index} is not affine in loop {var.name}")
    return stride


def read_nest(loop: For, factors: frozenset = U8_S8) -> DotNest:
    """The DotNest a marked loop heads (strides of every loop), or Mismatch saying why not;
    factors: the (A, B) types the intrinsic multiplies."""
    loops, store, inits = _perfect_nest(loop)
    acc, a, b = _operands(store, factors)
    if not _same_index(acc.index, store.index):
        raise Mismatch(f"the update reads {store.buffer.name} at another element than it writes")
    if any(s.buffer is not store.buffer or not _same_index(s.index, store.index) for s in inits):
        raise Mismatch("an init store inside the nest writes another element than the update")
    if inits and not all(isinstance(s.value, Const) and s.value.value == 0 for s in inits):
        raise Mismatch("the init store inside the nest does not write zero")
    zero = {lp.var: const(0, INDEX_DTYPE) for lp in loops}
    rows = [Loop(lp.var, lp.extent.value, _stride(store.index, lp.var), _stride(a.index, lp.var),
                 _stride(b.index, lp.var)) for lp in loops]
    if inits:
        # the loops outside the init store must be the data loops (C moves), those inside the
        # reduction loops (C stays): then "zero, then accumulate" is what the nest does per element
        depth = next(i for i, lp in enumerate(loops) if any(s in _direct(lp.body) for s in inits))
        if any(r.c == 0 for r in rows[:depth + 1]) or any(r.c != 0 for r in rows[depth + 1:]):
            raise Mismatch("the init store does not separate the data loops from the reduction loops")
    return DotNest(store.buffer, a.buffer, b.buffer, simplify(substitute(store.index, zero)),
                   simplify(substitute(a.index, zero)), simplify(substitute(b.index, zero)), rows,
                   bool(inits))


def _direct(s) -> list:
    return s.stmts if isinstance(s, Seq) else [s]


def _same_index(x: Expr, y: Expr) -> bool:
    d = linear(simplify(x)).add(linear(simplify(y)), -1)
    return not d.terms and d.const == 0


def expect(nest: DotNest, roles: dict[str, tuple], name: str, rest=None) -> dict:
    """Find each role's loop by its (C, A, B) strides and extent ((strides, extent, required));
    every loop of the nest must have a role, or be one for which rest(loop) holds: those are
    found["rest"], outermost first."""
    found, used = {}, set()
    for role, (strides, extent, required) in roles.items():
        lp = next((lp for lp in nest.loops if id(lp) not in used
                   and all(s is None or s == v for s, v in zip(strides, lp.strides))
                   and (extent is None or lp.extent in (extent if isinstance(extent, tuple) else (extent,)))),
                  None)
        if lp is None and required:
            raise Mismatch(f"{name} needs a loop of {extent} iterations over the {role} with strides "
                           f"C {_s(strides[0])}, A {_s(strides[1])}, B {_s(strides[2])}; the nest has "
                           + ", ".join(f"{x.var.name} ({x.extent}: C {x.c}, A {x.a}, B {x.b})"
                                       for x in nest.loops))
        if lp is not None:
            used.add(id(lp))
        found[role] = lp
    extra = [lp for lp in nest.loops if id(lp) not in used]
    if rest is not None:
        found["rest"] = [lp for lp in extra if rest(lp)]
        extra = [lp for lp in extra if not rest(lp)]
    if extra:
        raise Mismatch(f"loop {extra[0].var.name} ({extra[0].extent} iterations, strides C {extra[0].c}, "
                       f"A {extra[0].a}, B {extra[0].b}) is not part of what {name} computes")
    return found


def _s(v) -> str:
    return "any" if v is None else str(v)


# ---------------------------------------------------------------- the registry, checks, dispatch

INTRINSICS: dict[str, TensorIntrin] = {}


def register(intrin: TensorIntrin) -> TensorIntrin:
    """Add an intrinsic under its name."""
    INTRINSICS[intrin.name] = intrin
    return intrin


def get(name: str) -> TensorIntrin:
    """The intrinsic of this name, or a ScheduleError listing the known ones."""
    _load()
    intrin = INTRINSICS.get(name)
    if intrin is None:
        raise ScheduleError(f"tensorize: unknown intrinsic {name!r}; known: {', '.join(sorted(INTRINSICS))}")
    return intrin


def _load() -> None:
    from . import tensorize_dot, amx  # noqa: F401  (they register themselves)


def supports(name: str, target) -> bool:
    """Does target have every feature the intrinsic needs?"""
    return set(get(name).features) <= target.feature_set


def dot_intrinsic(target, lanes: int = 16) -> str | None:
    """The vector dot-product intrinsic for target: VNNI where present, else vpmaddwd (None: no
    8-bit dot product with these lanes on target)."""
    _load()
    order = (["vpdpbusd", "pmaddwd"] if lanes == 16 else ["vpdpbusd.256", "vpdpbusd.256vl", "pmaddwd.256"])
    return next((n for n in order if supports(n, target)), None)


def check(func: LoweredFunc) -> None:
    """Raise ScheduleError where a tensorized loop's nest is not what its intrinsic computes."""
    for s in walk_stmt(func.body):
        if isinstance(s, For):
            name = intrin_of(s)
            if name is None or is_fill(s):
                continue
            intrin = get(name)
            if s.kind is not ForKind.SERIAL:
                raise ScheduleError(f"{func.name}: tensorize {name} at loop {s.var.name}: the loop is also "
                                    f"marked {s.kind.value}; a tensorized loop takes no other annotation")
            try:
                intrin.match(s)
            except Mismatch as e:
                raise ScheduleError(f"{func.name}: tensorize {name} at loop {s.var.name}: {e}") from None


def emit(cg, loop: For) -> None:
    """Code for a tensorized loop: its intrinsic, or for the zero fill, a vectorized loop."""
    name = intrin_of(loop)
    if is_fill(loop):
        cg.stmt(_vectorize_innermost(loop))
        return
    intrin = get(name)
    missing = [f for f in intrin.features if f not in cg.target.feature_set]
    if missing:
        raise ScheduleError(f"tensorize {name} at loop {loop.var.name}: target {cg.target} lacks "
                            f"{', '.join(missing)}; pick the intrinsic with te.tensorize.dot_intrinsic(target)")
    if cg.vec is not None:
        raise ScheduleError(f"tensorize {name} at loop {loop.var.name}: the loop is inside a vectorized "
                            "loop; tensorize a loop outside any vectorized one")
    try:
        nest = intrin.match(loop)
    except Mismatch as e:
        raise ScheduleError(f"tensorize {name} at loop {loop.var.name}: {e}") from None
    intrin.emit(cg, nest)


def _vectorize_innermost(loop: For) -> For:
    """The fill nest without its mark, the innermost loop vectorized."""
    body = loop.body
    if isinstance(body, For):
        body = _vectorize_innermost(body)
        kind = ForKind.SERIAL
    else:
        kind = ForKind.VECTORIZED
    return For(loop.var, loop.extent, kind, body, tuple(p for p in loop.pragmas if p[0] != PRAGMA))


# ---------------------------------------------------------------- emission helpers
# (llvmlite is imported where code is emitted: lowering, which checks nests, runs without it)

def address(cg, buf: Buffer, base: Expr, offset: int = 0, extra=None):
    """The address of buf[base + offset (+ extra)], in elements."""
    idx = cg.expr(simplify(base + offset) if offset else base)
    if extra is not None:
        idx = cg.builder.add(idx, extra)
    return cg.builder.gep(cg.bufs[buf], [idx], inbounds=True, source_etype=_elem(buf))


def _elem(buf: Buffer):
    from .llvm_types import MEM_TYPES
    return MEM_TYPES[buf.dtype]


def declare(cg, name: str, ret, args: list):
    """An LLVM intrinsic (or function) declared once per module (ret and args llvmlite types)."""
    from llvmlite import ir
    fn = cg.module.globals.get(name)
    if fn is None:
        fn = ir.Function(cg.module, ir.FunctionType(ret, args), name)
    return fn
