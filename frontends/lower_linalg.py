"""Lowerings of Einsum and ConvTranspose (see lowering.py)."""
from __future__ import annotations

from .lowering import _ops, _str, checks, lowers, lowers_anchor


@lowers("Einsum")
def _einsum(node, ins, attrs, opset, out_shapes):
    return [_ops().einsum(_str(attrs.get("equation"), ""), list(ins), name=node.name)]


@checks("Einsum")
def _check_einsum(node, ins, opset):
    from te.ops.einsum import EinsumError, letter_extents
    try:
        letter_extents(_str(node.attrs.get("equation"), ""), [tuple(i.shape) for i in ins])
    except EinsumError as e:
        return str(e)
    other = sorted({i.dtype for i in ins} - {"float32", "float64"})
    if other:
        return f"Einsum is supported on float32 and float64, not {', '.join(other)}"
    return None


def _spatial(attrs, key: str, nd: int, default: int) -> list[int]:
    return [int(v) for v in attrs.get(key, [default] * nd)]


def conv_transpose_pads(attrs, in_shape: tuple, w_shape: tuple, out_spatial: tuple) -> list[int]:
    """The padding at the start of each spatial axis of a ConvTranspose (onnx's reference rules:
    explicit pads; else SAME_UPPER/SAME_LOWER split the total; else none)."""
    nd = len(in_shape) - 2
    if "pads" in attrs:
        return _spatial(attrs, "pads", 2 * nd, 0)[:nd]
    auto = _str(attrs.get("auto_pad"), "NOTSET")
    if auto not in ("SAME_UPPER", "SAME_LOWER"):
        return [0] * nd
    strides, dil = _spatial(attrs, "strides", nd, 1), _spatial(attrs, "dilations", nd, 1)
    out_pad = _spatial(attrs, "output_padding", nd, 0)
    pads = []
    for a in range(nd):
        total = strides[a] * (in_shape[a + 2] - 1) + out_pad[a] + (w_shape[a + 2] - 1) * dil[a] + 1 - out_spatial[a]
        pads.append(total // 2 if auto == "SAME_UPPER" else total - total // 2)
    return pads


@lowers_anchor("ConvTranspose")
def _conv_transpose(node, ins, attrs, opset, out_shapes, target, choice=None):
    x, w = ins[0], ins[1]
    bias = ins[2] if len(ins) > 2 else None
    nd = len(x.shape) - 2
    out_spatial = tuple(out_shapes[0][2:])
    return [_ops().conv_transpose(x, w, out_spatial, _spatial(attrs, "strides", nd, 1),
                                  conv_transpose_pads(attrs, tuple(x.shape), tuple(w.shape), out_spatial),
                                  _spatial(attrs, "dilations", nd, 1), int(attrs.get("group", 1)),
                                  bias=bias, name=node.name, target=target)]


@checks("ConvTranspose")
def _check_conv_transpose(node, ins, opset):
    x, w = ins[0], ins[1]
    groups = int(node.attrs.get("group", 1))
    if len(x.shape) < 3 or len(w.shape) != len(x.shape):
        return (f"weight '{node.inputs[1]}' has shape {w.shape}; it must have the data's rank {len(x.shape)} "
                "(input channels, output channels / group, kernel...)")
    if w.shape[0] != x.shape[1] or x.shape[1] % groups:
        return (f"weight '{node.inputs[1]}' has {w.shape[0]} input channels for data of {x.shape[1]} channels "
                f"in {groups} groups; they must be equal and divisible by the groups")
    if "kernel_shape" in node.attrs and [int(k) for k in node.attrs["kernel_shape"]] != list(w.shape[2:]):
        return f"kernel_shape {list(node.attrs['kernel_shape'])} differs from the weight's {list(w.shape[2:])}"
    bias = ins[2] if len(ins) > 2 else None
    if bias is not None and bias.shape != (w.shape[1] * groups,):
        return f"bias '{node.inputs[2]}' has shape {bias.shape}; it must be ({w.shape[1] * groups},)"
    other = sorted({i.dtype for i in ins if i is not None} - {"float32"})
    if other:       # its phases run as conv2d, which is float32 (as Conv)
        return f"ConvTranspose is supported on float32 only, not {', '.join(other)}"
    return None
