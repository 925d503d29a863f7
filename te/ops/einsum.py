"""Einsum as the operators it is made of: sums, transposes, reshapes and batch_matmul.

Two operands contract through one batch_matmul: the letters both keep become the batch axis,
the letters only the left one keeps the rows, only the right one the columns, and the letters
summed away the reduction (a letter neither the other operand nor the output has is summed
first).  More operands contract left to right.  What does not fit (a letter repeated within an
operand, a diagonal; broadcasting a letter of extent 1) is refused by name.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import te
from te.target import Target

from .matmul import batch_matmul
from .reduction import sum as reduce_sum
from .transform import copy, reshape, transpose

__all__ = ["einsum", "parse_einsum", "letter_extents", "EinsumError"]


class EinsumError(ValueError):
    """An einsum equation this library does not lower (the message names it and why)."""


@dataclass(frozen=True)
class Equation:
    """An einsum equation with its ellipses spelled out as letters: one term per operand."""
    inputs: tuple[str, ...]
    output: str


def parse_einsum(equation: str, ranks: list[int]) -> Equation:
    """The equation's terms for operands of these ranks (ellipses as upper-case letters, the
    implicit output as numpy forms it: the letters seen once, in alphabetical order)."""
    eq = equation.replace(" ", "")
    lhs, arrow, rhs = eq.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(ranks):
        raise EinsumError(f"einsum '{equation}': {len(terms)} terms for {len(ranks)} operands")
    spare = [chr(c) for c in range(ord("A"), ord("Z") + 1) if chr(c) not in eq]
    dots = max((r - len(t.replace("...", "")) for t, r in zip(terms, ranks) if "..." in t), default=0)
    ell = "".join(spare[:dots])
    out_terms = []
    for t, r in zip(terms, ranks):
        n = r - len(t.replace("...", ""))
        t = t.replace("...", ell[dots - n:] if n else "")
        if len(t) != r or (t and not t.isalpha()):
            raise EinsumError(f"einsum '{equation}': term '{t}' does not fit an operand of rank {r}")
        out_terms.append(t)
    if arrow:
        out = rhs.replace("...", ell)
    else:
        seen = "".join(out_terms)
        out = ell + "".join(sorted(c for c in set(seen) if seen.count(c) == 1 and c not in ell))
    if not out.isalpha() and out:
        raise EinsumError(f"einsum '{equation}': output '{out}' is not made of letters")
    missing = set(out) - set("".join(out_terms))
    if missing or len(set(out)) != len(out):
        raise EinsumError(f"einsum '{equation}': output letters {sorted(missing) or out} are not each "
                          "in exactly one output position of some operand")
    return Equation(tuple(out_terms), out)


def letter_extents(equation: str, shapes: list[tuple]) -> tuple[Equation, dict[str, int]]:
    """The parsed equation and the extent of each letter; EinsumError where a letter has two."""
    eq = parse_einsum(equation, [len(s) for s in shapes])
    size: dict[str, int] = {}
    for shape, term in zip(shapes, eq.inputs):
        for c, n in zip(term, shape):
            if size.setdefault(c, n) != n:
                raise EinsumError(f"einsum '{equation}': letter '{c}' has extents {size[c]} and {n}; "
                                  "broadcasting an extent of 1 is not supported (Expand the operand first)")
    return eq, size


def _diagonal(x: te.Tensor, term: str, name: str) -> tuple[te.Tensor, str]:
    """x read on the diagonal of every repeated letter of term (each letter once, first place)."""
    unique = "".join(dict.fromkeys(term))
    if unique == term:
        return x, term
    shape = tuple(x.shape[term.index(c)] for c in unique)
    return te.compute(shape, lambda *i: x[tuple(i[unique.index(c)] for c in term)], name=name,
                      tag="injective"), unique


def _permute(x: te.Tensor, have: str, want: str, name: str) -> te.Tensor:
    return x if have == want else transpose(x, [have.index(c) for c in want], name=name)


def _sum_away(x: te.Tensor, have: str, keep: set, name: str) -> tuple[te.Tensor, str]:
    """x with the letters not in keep summed away."""
    gone = [k for k, c in enumerate(have) if c not in keep]
    if not gone:
        return x, have
    return reduce_sum(x, gone, name=name), "".join(c for c in have if c in keep)


def _contract(a: te.Tensor, la: str, b: te.Tensor, lb: str, keep: set, size: dict, name: str,
              target: Target | None) -> tuple[te.Tensor, str]:
    """a (letters la) times b (letters lb), summed over the shared letters not in keep."""
    batch = [c for c in la if c in lb and c in keep]
    red = [c for c in la if c in lb and c not in keep]
    left = [c for c in la if c not in lb]
    right = [c for c in lb if c not in la]
    dim = (lambda cs: math.prod(size[c] for c in cs))
    nb, m, k, n = dim(batch), dim(left), dim(red), dim(right)
    a3 = reshape(_permute(a, la, "".join(batch + left + red), f"{name}.at"), (nb, m, k), name=f"{name}.a3")
    # B as (batch, N, K) is batch_matmul's transpose_b: no transpose where b is laid out so
    trans_b = lb == "".join(batch + right + red) and lb != "".join(batch + red + right)
    order = batch + (right + red if trans_b else red + right)
    b3 = reshape(_permute(b, lb, "".join(order), f"{name}.bt"), (nb, n, k) if trans_b else (nb, k, n),
                 name=f"{name}.b3")
    y = batch_matmul(a3, b3, transpose_b=trans_b, name=f"{name}.bmm", target=target)
    letters = "".join(batch + left + right)
    return reshape(y, tuple(size[c] for c in letters), name=f"{name}.y"), letters


def einsum(equation: str, operands: list[te.Tensor], name: str = "einsum",
           target: Target | None = None) -> te.Tensor:
    """numpy.einsum(equation, *operands) for equations without broadcasting of unit extents."""
    eq, size = letter_extents(equation, [tuple(t.shape) for t in operands])
    pairs = [_diagonal(t, term, f"{name}.d{k}") for k, (t, term) in enumerate(zip(operands, eq.inputs))]
    operands, terms = [p[0] for p in pairs], [p[1] for p in pairs]

    def needed(k: int) -> set:
        """The letters that matter after operand k: the output's and the later operands'."""
        return set(eq.output).union(*terms[k + 1:])
    x, lx = _sum_away(operands[0], terms[0], needed(0) | set("".join(terms[1:2])), f"{name}.s0")
    for k in range(1, len(operands)):
        y, ly = _sum_away(operands[k], terms[k], needed(k) | set(lx), f"{name}.s{k}")
        x, lx = _contract(x, lx, y, ly, needed(k), size, f"{name}.c{k}", target)
    x, lx = _sum_away(x, lx, set(eq.output), f"{name}.sum")
    out = _permute(x, lx, eq.output, name)
    return out if out.name == name else copy(out, name=name)     # the result is the named tensor
