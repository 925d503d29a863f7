"""A template for the cluster tests with one config far faster than all others: the same sum,
computed once by config (x=4, y=2) and 48 times over by every other config."""
import te
from autotune.space import register_template

FAST = {"x": 4, "y": 2}


@register_template("test_reps")
def reps(cfg, n: int, target=None):
    """c = a + b, as the mean of r equal terms: r = 1 for FAST, 48 for the other configs."""
    a = te.placeholder((n,), name="a")
    b = te.placeholder((n,), name="b")
    cfg.define_knob("x", [1, 2, 3, 4, 5, 6], default=6)
    cfg.define_knob("y", [1, 2, 3], default=3)
    r = 1 if {"x": cfg["x"].val, "y": cfg["y"].val} == FAST else 48
    k = te.reduce_axis((0, r), name="k")
    c = te.compute((n,), lambda i: te.sum((a[i] + b[i]) * (1.0 / r), axis=k), name="c")
    s = te.create_schedule(c.op)
    outer, inner = s[c].split(c.op.axis[0], factor=16)
    s[c].reorder(k, outer, inner)        # one pass over the vectors per term
    s[c].vectorize(inner)
    return s, [a, b, c]
