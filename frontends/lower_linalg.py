"""Lowerings of Einsum and ConvTranspose (see lowering.py)."""
from __future__ import annotations

from .lowering import _ops, _str, checks, lowers


@lowers("Einsum")
def _einsum(node, ins, attrs, opset, out_shapes):
    return [_ops().einsum(_str(attrs.get("equation"), ""), list(ins), name=node.name)]


@checks("Einsum")
def _check_einsum(node, ins, opset):
    from te.ops.einsum import EinsumError, parse_einsum
    eq = _str(node.attrs.get("equation"), "")
    try:
        parse_einsum(eq, [len(i.shape) for i in ins])
    except EinsumError as e:
        return f"{e}; supported: contractions, transposes, sums and diagonals"
    sizes: dict[str, int] = {}
    for term, i in zip(parse_einsum(eq, [len(i.shape) for i in ins]).inputs, ins):
        for c, n in zip(term, i.shape):
            if sizes.setdefault(c, n) != n:
                return (f"einsum '{eq}': letter '{c}' has extents {sizes[c]} and {n}; broadcasting an extent "
                        "of 1 is not supported (Expand the operand first)")
    if any(i.dtype not in ("float32", "float64") for i in ins):
        return f"Einsum is supported on float32 and float64, not {', '.join(sorted({i.dtype for i in ins}))}"
    return None
