"""The fused epilogue of a model's anchor, so the tuner times a candidate as the model runs it.

A model build fuses the elementwise chain after a conv or matrix product (bias, activation,
residual add) into the anchor's kernel (te.ops.schedule), and the chain decides how the kernel
stores its tile: a candidate timed without it is not the kernel the model runs.  An epilogue is
a tuple of small JSON-able steps, the model's ops in order:

    ("bias", [64])                       the anchor's bias input (first step only)
    ("Add", ["x", [1, 64, 56, 56]])      an op of the chain: "x" is the value flowing along the
    ("Relu", ["x"])                      chain, a list is another input of that shape (random
    ("Clip", ["x", 0.0, 6.0])            values when timed), a number a constant
    ("Mul", ["x1", "x"])                 "x<k>" is the value entering step k again: a chain that
                                         reads an earlier value once more (Erf-GELU's last Mul
                                         reads the dense output, the value entering its Div)

frontends.tasks.epilogue_of reads it from a model's fused group; a Task carries it outside its
workload key (records and shipped logs stay keyed by the anchor alone), and `instantiate`
builds it with `fused=True`, which is how the measurement builders build every candidate.
"""
from __future__ import annotations

import functools
from typing import Callable

import te
from te import ops

# ONNX op -> te.ops function of (chain value, operands...): the ops an epilogue may hold, each
# the function frontends' lowering of that op calls (broadcasting as numpy does)
EPILOGUE_OPS: dict[str, Callable] = {
    "Add": ops.add, "Sub": ops.subtract, "Mul": ops.multiply,
    "Sum": lambda *v: functools.reduce(ops.add, v),
    "Max": lambda *v: functools.reduce(ops.maximum, v),
    "Min": lambda *v: functools.reduce(ops.minimum, v),
    "Div": ops.trunc_divide, "Erf": ops.erf,
    "Relu": ops.relu, "Sigmoid": ops.sigmoid, "Tanh": ops.tanh,
    "Clip": lambda x, lo=None, hi=None: ops.clip(x, lo, hi),
}
MAX_STEPS = 8           # more than any fused chain of the model zoo; a log's longer one is refused


def check_epilogue(epilogue) -> tuple:
    """The epilogue as a tuple of (op, operands) tuples; ValueError naming the step that is malformed."""
    if not isinstance(epilogue, (list, tuple)) or len(epilogue) > MAX_STEPS:
        raise ValueError(f"epilogue {str(epilogue)[:80]}: expected a list of at most {MAX_STEPS} steps")
    out = []
    lowest = 0          # after a bias step "x0" would be the product without its bias: not a value
    for k, step in enumerate(epilogue):
        ok = isinstance(step, (list, tuple)) and len(step) == 2 and isinstance(step[1], (list, tuple))
        op = step[0] if ok else None
        if not ok or not (op in EPILOGUE_OPS or (op == "bias" and k == 0)):
            raise ValueError(f"epilogue step {k} {str(step)[:60]}: expected (op, operands) with op 'bias' "
                             f"(first only) or one of {', '.join(EPILOGUE_OPS)}")
        for o in step[1]:
            if not (o == "x" or _is_number(o) or _is_shape(o) or _earlier(o, lowest, k)):
                raise ValueError(f"epilogue step {k} ({op}): operand {str(o)[:40]} is not 'x', 'x<j>' "
                                 f"({lowest} <= j < {k}: the value entering step j), a number or a shape")
        out.append((op, tuple(tuple(o) if isinstance(o, (list, tuple)) else o for o in step[1])))
        lowest = 1 if op == "bias" else lowest
    return tuple(out)


def _earlier(o, lowest: int, k: int) -> bool:
    """Is o "x<j>", the value entering an earlier step j (lowest <= j < k)?"""
    return isinstance(o, str) and o[:1] == "x" and o[1:].isdigit() and lowest <= int(o[1:]) < k


def _is_number(o) -> bool:
    return isinstance(o, (int, float)) and not isinstance(o, bool)


def _is_shape(o) -> bool:
    return isinstance(o, (list, tuple)) and len(o) <= 8 and all(
        isinstance(d, int) and not isinstance(d, bool) and 1 <= d <= 1 << 20 for d in o)


def instantiate_fused(impl, wl, cfg, target, epilogue: tuple):
    """(schedule, tensors) of implementation `impl`'s kernel for wl under cfg, its weight prepacked,
    with the epilogue fused and scheduled as a model build does (te.ops.schedule with the
    implementation's schedule as the anchor's); tensors: the template's inputs, then the
    epilogue's, then the output."""
    impl.space(cfg, wl, target)
    inputs = impl.placeholders(wl, cfg, target, True)
    extra: list[te.Tensor] = []
    anchor_inputs = list(inputs)
    first = 0
    if epilogue and epilogue[0][0] == "bias":
        first = 1
        if len(inputs) == 2:        # data and weight only; a dense template's inputs hold its bias
            bias = te.placeholder(tuple(epilogue[0][1]), wl.dtype, name="bias")
            extra.append(bias)
            anchor_inputs.append(bias)
    out = impl.compute(anchor_inputs, wl, cfg, target, True)
    entering = [out] * (first + 1)          # step k -> the value entering it ("x<k>")
    for k, (op, operands) in enumerate(epilogue[first:], first):
        vals = []
        for o in operands:
            if o == "x":
                vals.append(out)
            elif isinstance(o, str):
                vals.append(entering[int(o[1:])])
            elif _is_number(o):
                vals.append(float(o))
            else:
                extra.append(te.placeholder(tuple(o), wl.dtype, name=f"epilogue{k}.{len(vals)}"))
                vals.append(extra[-1])
        out = EPILOGUE_OPS[op](*vals)
        entering.append(out)
    s = ops.schedule([out], target, anchor_schedule=lambda s, y, final: impl.schedule(s, y, final, cfg, target))
    return s, [*inputs, *extra, out]
