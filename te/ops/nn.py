"""Normalisations: softmax, log_softmax, layer_norm, instance_norm, batch_norm (inference), LRN;
and the negative log-likelihood loss.

Softmax and layer norm over the innermost axes are row operations: the schedule computes
each row's statistics inside the output's row loop, so a row is read from memory once and
its later passes hit L1.  Softmax keeps the row's exp(x - max) (a stage of its own, EXP_TAG)
for the sum and the output: each exponential and the row max once.  Layer norm's output reads
its own copy of the mean (a second pass over a row in L1 costs far less than a second pass
over memory).  Over other axes every statistic is a whole tensor at the root.
"""
from __future__ import annotations

import math

import te
from te.target import Target, parse
from te.tensor import IterKind

from .common import tagged
from .elementwise import broadcast_at
from .fastmath import exp_poly
from .injective import inline_injective, parallel_outer, schedule_injective, vectorize_inner
from .knobs import register_template
from .reduction import (normalize_axes, partial_of, reduce_over, rfactor_lanes,
                        schedule_reduce_stage)

EXP_TAG = "softmax_exp"     # softmax's exp(x - max): computed once, read by the sum and the output
STAT_TAG = "layer_norm_stat"  # a stage of a layer norm's row statistics in ONNX Runtime's order
ORT_MIN_ROW = 8             # shorter rows ONNX Runtime normalizes by another (scalar) kernel
MEAN_LANES = 4              # float64 lanes of ONNX Runtime's row sum
VAR_LANES = 8               # float32 lanes of its sum of squared deviations
STAT_ROWS = 8               # rows whose statistics are computed together (their serial sums overlap)


def _drop(idx: tuple, axes: tuple) -> tuple:
    return tuple(v for d, v in enumerate(idx) if d not in axes)


def _trailing(axes: tuple, ndim: int) -> bool:
    return bool(axes) and axes == tuple(range(ndim - len(axes), ndim))


def _exp_shifted(v: te.Expr, keep_nan: bool = False) -> te.Expr:
    # x - max(x) <= 0 (NaN where x is NaN: the max reduction may skip a NaN, the subtraction
    # cannot); the polynomial is a float32 one: float64 keeps libm's accuracy (elementwise._fast)
    if v.dtype == "float64":
        return te.exp(v)
    return exp_poly(v, nonpositive=True, keep_nan=keep_nan)


def _softmax(x: te.Tensor, axis: int, log: bool, name: str, lanes: int | None) -> te.Tensor:
    axes = normalize_axes(axis, x.ndim)
    ax = axes[0]
    shape = x.shape
    mx = reduce_over(shape, axes, lambda i: x[i], "max", f"{name}.max", lanes=lanes)
    # the sum keeps a NaN term (a NaN or +inf in the row), so the whole row is NaN as in ONNX
    # Runtime; the output pass needs no such care, it multiplies by 1 / the sum
    if log:
        ssum = reduce_over(shape, axes, lambda i: _exp_shifted(x[i] - mx[_drop(i, axes)], keep_nan=True),
                           "sum", f"{name}.sum", lanes=lanes)

        def body(*i):
            r = _drop(i, axes)
            return x[i] - mx[r] - te.log(ssum[r])
    else:
        # exp(x - max) once, kept for the sum and the output (a row of it in L1, see the docstring)
        ex = te.compute(shape, lambda *i: _exp_shifted(x[i] - mx[_drop(i, axes)], keep_nan=True),
                        name=f"{name}.exp", tag=EXP_TAG)
        ssum = reduce_over(shape, axes, lambda i: ex[i], "sum", f"{name}.sum", lanes=lanes)

        def body(*i):
            return ex[i] * (1.0 / ssum[_drop(i, axes)])
    tag = "log_softmax" if log else "softmax"
    return te.compute(shape, body, name=name, tag=tag,
                      attrs={"axis": ax})


def softmax(x: te.Tensor, axis: int = -1, name: str = "softmax", lanes: int | None = None) -> te.Tensor:
    """exp(x - max) / sum(exp(x - max)) along axis (numerically stable); `lanes` sets the
    vector width of the row reductions over the innermost axis (a tuning knob)."""
    return _softmax(x, axis, False, name, lanes)


def log_softmax(x: te.Tensor, axis: int = -1, name: str = "log_softmax",
                lanes: int | None = None) -> te.Tensor:
    """x - max - log(sum(exp(x - max))) along axis (numerically stable)."""
    return _softmax(x, axis, True, name, lanes)


def layer_norm(x: te.Tensor, gamma: te.Tensor | None = None, beta: te.Tensor | None = None,
               axis=-1, epsilon: float = 1e-5, name: str = "layer_norm") -> te.Tensor:
    """(x - mean) / sqrt(var + epsilon) * gamma + beta over `axis` (an int or a list of axes).

    gamma and beta have the shape of the normalized axes (or broadcast to it, ONNX-style).
    Over the last axis alone (float32), the statistics and the output are computed in ONNX
    Runtime's order and precision, so the result is its CPU kernel's bit for bit (see
    _ort_row_stats); over other axes, two-pass statistics.
    """
    axes = normalize_axes(axis, x.ndim)
    norm_shape = tuple(x.shape[d] for d in axes)
    for p, pname in ((gamma, "gamma"), (beta, "beta")):
        if p is not None and (len(p.shape) > len(norm_shape) or any(
                a not in (1, b) for a, b in zip(reversed(p.shape), reversed(norm_shape)))):
            raise ValueError(f"{name}: {pname} of shape {p.shape} does not broadcast to the "
                             f"normalized shape {norm_shape}")

    def affine(v, i, rounded: bool = False):
        sub = tuple(i[d] for d in axes)
        if gamma is not None:
            g = broadcast_at(gamma, norm_shape, sub)
            # rounded: the product rounded before beta is added (else the two fuse into one FMA)
            v = _rounded_mul(v, g) if rounded and beta is not None else v * g
        if beta is not None:
            v = v + broadcast_at(beta, norm_shape, sub)
        return v
    if axes == (x.ndim - 1,) and x.dtype == "float32":
        attrs = {"axes": axes, "row_stats": "ort"}
        if x.shape[-1] >= ORT_MIN_ROW:
            mean, inv = _ort_row_stats(x, epsilon, name)
            return te.compute(x.shape, lambda *i: affine((x[i] - mean[i[:-1]]) * inv[i[:-1]], i),
                              name=name, tag="layer_norm", attrs=attrs)
        mean, std = _ort_short_row_stats(x, epsilon, name)
        return te.compute(x.shape, lambda *i: affine((x[i] - mean[i[:-1]]) / std[i[:-1]], i, rounded=True),
                          name=name, tag="layer_norm", attrs=attrs)
    return _normalize(x, axes, epsilon, affine, name)


def _rounded_mul(a: te.Expr, b: te.Expr) -> te.Expr:
    """a * b (float32) rounded on its own: the float64 product of two float32s is exact, so its
    rounding is the float32 product's, and the code generator does not fuse it into an FMA."""
    return (a.astype("float64") * b.astype("float64")).astype("float32")


def _ort_row_stats(x: te.Tensor, epsilon: float, name: str) -> tuple[te.Tensor, te.Tensor]:
    """(mean, 1 / sqrt(var + epsilon)) of each row of x's last axis (ORT_MIN_ROW or more long) as
    ONNX Runtime's CPU kernel computes them (its AVX2 kernel, read from 1.32's machine code):

        mean = float32(float64 sum / n): the sum in MEAN_LANES float64 lanes (element 4k + j in
               lane j), folded (l0 + l2) + (l1 + l3), then the n % 4 last elements in order
        var  = float32 sum of (x - mean)^2 / float32(n): VAR_LANES lanes accumulated by FMAs,
               folded ((l0 + l4) + (l2 + l6)) + ((l1 + l5) + (l3 + l7)), then the n % 8 last
               elements: four rounded squares added in order when there are four or more, the
               rest by FMAs
    """
    lead, n = x.shape[:-1], x.shape[-1]
    k4, k8 = n // MEAN_LANES * MEAN_LANES, n // VAR_LANES * VAR_LANES
    ko = te.reduce_axis(k4 // MEAN_LANES, "ko")
    lanes = te.compute(lead + (MEAN_LANES,), lambda *i: te.sum(
        x[i[:-1] + (ko * MEAN_LANES + i[-1],)].astype("float64"), axis=ko),
        name=f"{name}.sum", tag=STAT_TAG)

    def mean_body(*r):
        s = (lanes[r + (0,)] + lanes[r + (2,)]) + (lanes[r + (1,)] + lanes[r + (3,)])
        for t in range(k4, n):
            s = s + x[r + (t,)].astype("float64")
        return (s / te.const(float(n), "float64")).astype("float32")
    mean = te.compute(lead, mean_body, name=f"{name}.mean", tag=STAT_TAG)

    def dev(r, t):
        return x[r + (t,)] - mean[r]
    kv = te.reduce_axis(k8 // VAR_LANES, "kv")
    sq = te.compute(lead + (VAR_LANES,), lambda *i: te.sum(
        dev(i[:-1], kv * VAR_LANES + i[-1]) * dev(i[:-1], kv * VAR_LANES + i[-1]), axis=kv),
        name=f"{name}.sq", tag=STAT_TAG)

    def inv_body(*r):
        ln = [sq[r + (j,)] for j in range(VAR_LANES)]
        s = ((ln[0] + ln[4]) + (ln[2] + ln[6])) + ((ln[1] + ln[5]) + (ln[3] + ln[7]))
        rounded = k8 + 4 if n - k8 >= 4 else k8
        for t in range(k8, n):
            d = dev(r, t)
            s = (s + _rounded_mul(d, d)) if t < rounded else (d * d + s)    # the latter: an FMA
        var = s / te.const(float(n), "float32")
        return te.const(1.0, "float32") / te.sqrt(var + te.const(float(epsilon), "float32"))
    return mean, te.compute(lead, inv_body, name=f"{name}.inv", tag=STAT_TAG)


def _ort_short_row_stats(x: te.Tensor, epsilon: float, name: str) -> tuple[te.Tensor, te.Tensor]:
    """(mean, sqrt(var + epsilon)) of rows shorter than ORT_MIN_ROW as ONNX Runtime computes them:
    Welford's running mean and sum of squared deviations, in float32, no FMA.  One stage with two
    outputs: the sum of squares needs every running mean, the last of which is the mean, so one
    recursion per row gives both (two stages would each run it)."""
    lead, n = x.shape[:-1], x.shape[-1]

    def welford(*r):
        mu, m2 = te.const(0.0, "float32"), te.const(0.0, "float32")
        for k in range(n):
            v = x[r + (k,)]
            d = v - mu
            mu = mu + d / te.const(float(k + 1), "float32")
            m2 = m2 + _rounded_mul(d, v - mu)
        return mu, te.sqrt(m2 / te.const(float(n), "float32") + te.const(float(epsilon), "float32"))
    mean, std = te.compute(lead, welford, name=f"{name}.stats", tag=STAT_TAG)
    return mean, std


def instance_norm(x: te.Tensor, gamma: te.Tensor, beta: te.Tensor, epsilon: float = 1e-5,
                  name: str = "instance_norm") -> te.Tensor:
    """Normalize each (n, c) plane of (N, C, spatial...) data, then * gamma[c] + beta[c]
    (ONNX InstanceNormalization)."""
    C = x.shape[1]
    for p in (gamma, beta):
        if tuple(p.shape) != (C,):
            raise ValueError(f"{name}: {p.name} has shape {p.shape}, expected ({C},)")
    return _normalize(x, tuple(range(2, x.ndim)), epsilon,
                      lambda v, i: v * gamma[i[1]] + beta[i[1]], name)


def _normalize(x: te.Tensor, axes: tuple, epsilon: float, affine, name: str) -> te.Tensor:
    """affine((x - mean) / sqrt(var + epsilon), index), the statistics over `axes` (two-pass)."""
    shape = x.shape
    n = math.prod(shape[d] for d in axes)

    def kept(i):
        return _drop(i, axes)

    mean1 = reduce_over(shape, axes, lambda i: x[i], "sum", f"{name}.mean", scale=1.0 / n)
    var = reduce_over(shape, axes, lambda i: (x[i] - mean1[kept(i)]) * (x[i] - mean1[kept(i)]),
                      "sum", f"{name}.var", scale=1.0 / n)
    # the output's own copy of the mean (see the module docstring)
    mean2 = reduce_over(shape, axes, lambda i: x[i], "sum", f"{name}.mean2", scale=1.0 / n)

    def body(*i):
        r = kept(i)
        return affine((x[i] - mean2[r]) * te.rsqrt(var[r] + epsilon), i)
    return te.compute(shape, body, name=name, tag="layer_norm", attrs={"axes": axes})


def batch_norm(x: te.Tensor, gamma: te.Tensor, beta: te.Tensor, moving_mean: te.Tensor,
               moving_var: te.Tensor, axis: int = 1, epsilon: float = 1e-5,
               name: str = "batch_norm") -> te.Tensor:
    """Inference batch norm: (x - mean[c]) / sqrt(var[c] + epsilon) * gamma[c] + beta[c], c on axis."""
    ax = axis % x.ndim
    c = x.shape[ax]
    for p in (gamma, beta, moving_mean, moving_var):
        if p.shape != (c,):
            raise ValueError(f"{name}: parameter {p.name} has shape {p.shape}, expected ({c},)")

    def body(*i):
        ch = i[ax]
        scale = gamma[ch] * te.rsqrt(moving_var[ch] + epsilon)
        return (x[i] - moving_mean[ch]) * scale + beta[ch]
    return te.compute(x.shape, body, name=name, tag="broadcast")


def lrn(x: te.Tensor, size: int, alpha: float = 1e-4, beta: float = 0.75, bias: float = 1.0,
        name: str = "lrn") -> te.Tensor:
    """Local response normalization across channels of NCHW data (ONNX LRN, AlexNet/Inception)."""
    if x.ndim < 3:
        raise ValueError(f"{name}: LRN needs (N, C, spatial...) data, got shape {x.shape}")
    C = x.shape[1]
    lo = (size - 1) // 2

    def body(*i):
        # the window is a few channels: an unrolled sum, so LRN is one elementwise loop nest
        sq = None
        for j in range(size):
            c = i[1] + (j - lo)
            v = x[(i[0], te.min_of(te.max_of(c, 0), C - 1)) + i[2:]]
            term = te.if_then_else(te.all(c >= 0, c < C), v * v, 0.0)
            sq = term if sq is None else sq + term
        return x[i] * _inv_pow(sq * (alpha / size) + bias, beta)
    return te.compute(x.shape, body, name=name, tag="lrn", attrs={"size": size})


def nll_loss(x: te.Tensor, target: te.Tensor, weight: te.Tensor | None = None, reduction: str = "mean",
             ignore_index: int | None = None, name: str = "nll_loss") -> te.Tensor:
    """Negative log-likelihood loss of (N, C, d...) log-probabilities x and (N, d...) class targets
    (ONNX NegativeLogLikelihoodLoss): -x[n, target, d...] * weight[target], 0 where the target
    is ignore_index; reduction 'none', 'sum', or 'mean' (divided by the counted targets' weights)."""
    if reduction not in ("none", "sum", "mean"):
        raise ValueError(f"{name}: reduction must be 'none', 'sum' or 'mean', not {reduction!r}")
    if x.ndim < 2 or tuple(target.shape) != (x.shape[0],) + tuple(x.shape[2:]):
        raise ValueError(f"{name}: targets of shape {target.shape} do not match inputs {x.shape}")
    C = x.shape[1]

    def weight_of(i):
        t = target[i].astype("int64")
        w = weight[te.min_of(te.max_of(t, 0), C - 1)] if weight is not None else te.const(1, x.dtype)
        return w if ignore_index is None else te.if_then_else(t == ignore_index, te.const(0, x.dtype), w)

    def body(*i):
        t = te.min_of(te.max_of(target[i].astype("int64"), 0), C - 1)
        return x[(i[0], t) + tuple(i[1:])] * -weight_of(i)
    loss = te.compute(tuple(target.shape), body, name=name if reduction == "none" else f"{name}.loss",
                      tag="injective")
    if reduction == "none":
        return loss
    axes = tuple(range(target.ndim))
    total = reduce_over(target.shape, axes, lambda i: loss[i], "sum",
                        name if reduction == "sum" else f"{name}.sum")
    if reduction == "sum":
        return total
    if weight is None and ignore_index is None:
        return te.compute((), lambda: total[()] * (1.0 / math.prod(target.shape)), name=name, tag="broadcast")
    count = reduce_over(target.shape, axes, weight_of, "sum", f"{name}.weights")
    return te.compute((), lambda: total[()] / count[()], name=name, tag="broadcast")


def _inv_pow(t: te.Expr, beta: float) -> te.Expr:
    """t ** -beta, with vectorizable square roots for the betas networks use."""
    if beta == 0.75:
        s = te.sqrt(t)
        return 1.0 / (s * te.sqrt(s))
    if beta == 0.5:
        return 1.0 / te.sqrt(t)
    if beta == 1.0:
        return 1.0 / t
    return te.power(t, -beta)


# ---------------------------------------------------------------- schedules

def _stats(out: te.Tensor) -> tuple[te.Tensor, te.Tensor, te.Tensor]:
    """(first, second, own): `second` reads `first`; `second` and `own` are read by out."""
    reds = [t for t in out.op.input_tensors if getattr(t.op, "tag", "") == "reduce"]
    for second in reds:
        reader = partial_of(second) or second
        firsts = [t for t in reader.op.input_tensors if getattr(t.op, "tag", "") == "reduce"]
        if firsts:
            own = next(t for t in reds if t is not second)
            return firsts[0], second, own
    raise ValueError(f"{out.name}: not a softmax/layer_norm output")


def _data_leaves(st: te.Stage) -> list:
    return [iv for iv in st.leaf_iter_vars if iv.kind is IterKind.DATA_PAR]


def _row_schedule(s: te.Schedule, out: te.Tensor, axes: tuple, target: Target) -> None:
    """Rows in parallel; each row's statistics computed inside the row loop (trailing axes)."""
    st = s[out]
    inline_injective(s, out)
    first, second, own = _stats(out)
    ndim = out.ndim
    data = list(out.op.axis)
    total = math.prod(out.shape)
    if not _trailing(axes, ndim) or len(axes) == ndim:
        # statistics over other axes (or the whole tensor): each one at the root
        for t in (first, second, own):
            schedule_reduce_stage(s, t, target)
        n = out.shape[-1]
        outer, _ = vectorize_inner(st, data[-1], n, target, out.dtype)
        parallel_outer(st, data[:-1] + [outer], list(out.shape[:-1]) + [n], total, target)
        return
    k = ndim - len(axes)
    parallel_outer(st, data[:k], list(out.shape[:k]), total, target)
    row = _data_leaves(st)[-len(axes) - 1]
    vectorize_inner(st, data[-1], out.shape[-1], target, out.dtype)
    schedule_reduce_stage(s, own, target, parent=st, axis=row, rows_only=True)
    schedule_reduce_stage(s, second, target, parent=st, axis=row, rows_only=True)
    reader = partial_of(second) or second
    schedule_reduce_stage(s, first, target, parent=s[reader], axis=reader.op.axis[k - 1], rows_only=True)


@tagged("softmax")
def schedule_softmax(s: te.Schedule, out: te.Tensor, target: Target) -> te.Schedule:
    """Softmax/log_softmax: rows in parallel, each row's max, exponentials and sum computed in
    its loop (over another axis than the last: each a whole tensor at the root)."""
    st = s[out]
    inline_injective(s, out)
    ax = out.op.attrs["axis"]
    # by name: the input x may itself be a reduction's or another softmax's output
    ssum = next(t for t in out.op.input_tensors if t.name == f"{out.name}.sum")
    ex = next((t for t in out.op.input_tensors if t.name == f"{out.name}.exp"), None)
    mx = next(t for t in (ex or partial_of(ssum) or ssum).op.input_tensors if t.name == f"{out.name}.max")
    data = list(out.op.axis)
    total = math.prod(out.shape)
    n = out.shape[-1]
    if ax != out.ndim - 1 or out.ndim == 1:
        for t in (mx, ssum):
            schedule_reduce_stage(s, t, target)
        stages = [st] if ex is None else [s[ex], st]
        for x in stages:
            axes = list(x.op.axis)
            outer, _ = vectorize_inner(x, axes[-1], n, target, out.dtype)
            parallel_outer(x, axes[:-1] + [outer], list(out.shape[:-1]) + [n], total, target)
        return s
    parallel_outer(st, data[:-1], list(out.shape[:-1]), total, target)
    row = _data_leaves(st)[-2]
    vectorize_inner(st, data[-1], n, target, out.dtype)
    # computed at the row loop in the order they run: the max, the exponentials, the sum
    schedule_reduce_stage(s, mx, target, parent=st, axis=row, rows_only=True)
    if ex is not None:
        s[ex].compute_at(st, row)
        vectorize_inner(s[ex], ex.op.axis[-1], n, target, out.dtype)
    schedule_reduce_stage(s, ssum, target, parent=st, axis=row, rows_only=True)
    return s


tagged("log_softmax")(schedule_softmax)


@register_template("softmax")
def softmax_template(cfg, rows: int, cols: int, dtype: str = "float32", *, target: Target | None = None):
    """Tunable softmax over the last axis of a (rows, cols) tensor; the knob is the rows' vector width."""
    choices = [v for v in (8, 16, 32, 64) if cols % v == 0 and v < cols] or [None]
    target = parse(target)
    default = rfactor_lanes(cols, target, dtype)
    cfg.define_knob("lanes", choices, default=default if default in choices else choices[0])
    x = te.placeholder((rows, cols), dtype, name="x")
    y = softmax(x, lanes=cfg["lanes"].val)
    s = te.create_schedule(y.op)
    schedule_softmax(s, y, target)
    return s, [x, y]


@tagged("layer_norm")
def schedule_layer_norm(s: te.Schedule, out: te.Tensor, target: Target) -> te.Schedule:
    """Layer norm: rows in parallel, each row's mean and variance computed in its loop."""
    if out.op.attrs.get("row_stats") == "ort":
        _ort_row_schedule(s, out, target)
    else:
        _row_schedule(s, out, out.op.attrs["axes"], target)
    return s


def _ort_row_schedule(s: te.Schedule, out: te.Tensor, target: Target) -> None:
    """Blocks of rows in parallel; in each block the statistics' stages in the order they run, each
    lane stage vectorized across its lanes with the block's rows unrolled inside its reduction loop:
    a row's additions are a serial chain (their order is the op's definition), the rows' chains
    overlap."""
    st = s[out]
    inline_injective(s, out)
    data = list(out.op.axis)
    n = out.shape[-1]
    block = None
    if out.ndim > 1:
        rows = out.shape[-2]
        step = min(STAT_ROWS, rows)          # a shorter last block: its missing rows are guarded off
        ro, ri = st.split(data[-2], factor=step)
        st.reorder(*data[:-2], ro, ri, data[-1])
        parallel_outer(st, data[:-2] + [ro], list(out.shape[:-2]) + [-(-rows // step)],
                       math.prod(out.shape), target)
        block = _data_leaves(st)[-3]
    vectorize_inner(st, data[-1], n, target, out.dtype)
    for t in _stat_stages(out):
        ts = s[t]
        inline_injective(s, t)
        axes = list(t.op.axis)
        if t.op.reduce_axis:
            ts.reorder(*axes[:-2], *t.op.reduce_axis, *axes[-2:])
            ts.vectorize(axes[-1])
            if len(axes) > 1:
                ts.unroll(axes[-2])
        if block is not None:
            ts.compute_at(st, block)


def _stat_stages(out: te.Tensor) -> list[te.Tensor]:
    """The STAT_TAG stages out reads, producers before their consumers."""
    order: list[te.Tensor] = []

    def visit(t: te.Tensor) -> None:
        for p in t.op.input_tensors:
            if getattr(p.op, "tag", "") == STAT_TAG and all(p is not q for q in order):
                visit(p)
                order.append(p)
    visit(out)
    return order


tagged("lrn")(schedule_injective)


__all__ = ["softmax", "log_softmax", "layer_norm", "instance_norm", "batch_norm", "lrn", "nll_loss",
           "schedule_softmax",
           "schedule_layer_norm", "softmax_template"]
