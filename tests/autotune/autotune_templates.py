"""Templates used by the autotune tests: a small vector add whose configs can misbehave on purpose."""
import te
from autotune.space import register_template


@register_template("test_vadd")
def vadd(cfg, n: int, target=None):
    """c = a + b, with a 'mode' knob: ok, crash (reads far out of bounds at an index built from
    loaded data, which lowering's bounds check cannot see), hang, invalid schedule."""
    a = te.placeholder((n,), name="a")
    b = te.placeholder((n,), name="b")
    cfg.define_split("tile", n, num_outputs=2, default=[-1, 16])
    cfg.define_knob("mode", ["ok", "crash", "hang", "invalid", "wrong"], default="ok")
    mode = cfg["mode"].val
    if mode == "crash":
        c = te.compute((n,), lambda i: a[i * (1 << 40) + te.cast("int64", b[i] * 0.0)] + b[i], name="c")
    elif mode == "hang":
        k = te.reduce_axis((0, 1 << 50), name="k")
        c = te.compute((n,), lambda i: te.sum(a[i] * 0.0 + b[i] * 0.0, axis=k), name="c")
    elif mode == "wrong":
        c = te.compute((n,), lambda i: a[i] - b[i], name="c")
    else:
        c = te.compute((n,), lambda i: a[i] + b[i], name="c")
    s = te.create_schedule(c.op)
    outer, inner = cfg["tile"].apply(s, c, c.op.axis[0])
    if mode == "invalid":
        s[c].fuse(inner, outer)           # not adjacent in order: ScheduleError
    elif mode == "ok":
        s[c].vectorize(inner)
    return s, [a, b, c]
