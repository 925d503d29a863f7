"""The implementation registry: every algorithm of an anchor op (conv2d, matmul, dense, batched matmul) as one object.

TVM's op strategy without its global dispatch stack.  An `Implementation` says

* `match(workload, target)`: None where it does not apply, else its priority (the highest wins);
* `space(cfg, workload, target)`: its knobs (te.ops.knobs), declared on any config;
* `compute(inputs, workload, cfg, target, ...)` and `schedule(s, out, final, cfg, target)`: the
  kernel, with the target and the config passed in (no op reads a config from anywhere else);
* `pack_weight(w, workload, cfg, target)`: the one definition of its weight layout (numpy, at
  build time), or None where the kernel reads the weight as it is;
* `template` and `args(workload)`: its workload key, [template name, args], so the task a model
  extracts is by construction the kernel it builds.  `instantiate` is the template's body, which
  `register_template` publishes under that name (several implementations may share a template:
  the conv2d_nchw template runs the 1x1 GEMM where it applies and the direct conv elsewhere).

The model compiler asks `select(workload, target)` once per anchor, the task extractor builds the
same `choice`, and the tuner's builders and runner reach the same objects through
`resolve(template, args, target)` (autotune.Task.implementation).  The implementations
themselves live in implementations.py.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

import te
from te.target import Target

from .conv_geometry import ConvGeometry, geometry
from .knobs import ConfigError, FallbackConfig, register_template


# ---------------------------------------------------------------- workloads

def freeze(v):
    """Lists (of lists) as tuples: a workload argument as a hashable key part."""
    return tuple(freeze(x) for x in v) if isinstance(v, (list, tuple)) else v


@dataclass(frozen=True)
class ConvWorkload:
    """A 2-D convolution: logical NCHW input and OIHW weight shapes, padding (top, left, bottom, right).

    `layout` "NCHWc" (with its channel `block`) is a conv of a chain that passes.propagate_nchwc
    moved into the packed layout: its input arrives packed.  `shuffle` G > 1: the conv reads its
    input through ShuffleNet's channel shuffle of G groups (frontends/shuffle.py), its channel c
    being x's channel (c % G) * (C / G) + c // G; only implementations with `reads_shuffled` run it."""
    x_shape: tuple[int, int, int, int]
    w_shape: tuple[int, int, int, int]
    strides: tuple[int, int] = (1, 1)
    padding: tuple[int, int, int, int] = (0, 0, 0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    dtype: str = "float32"
    layout: str = "NCHW"
    block: int = 0
    shuffle: int = 0

    op = "conv2d"

    @property
    def geometry(self) -> ConvGeometry:
        """The resolved sizes (te.ops.conv_geometry)."""
        return geometry(self.x_shape, self.w_shape, self.strides, self.padding, self.dilation, self.groups)


@dataclass(frozen=True)
class MatmulWorkload:
    """C = A @ B (A (M, K), B (K, N)), or with transpose_b a dense layer: B (N, K) and a bias."""
    M: int
    N: int
    K: int
    dtype: str = "float32"
    transpose_b: bool = False

    op = "matmul"


@dataclass(frozen=True)
class BatchMatmulWorkload:
    """C[b] = A[b] @ B[b] of two activations (attention's Q.K^T and scores.V): A (batch, M, K), B
    (batch, K, N), the leading axes of a MatMul broadcast and flattened into `batch`.

    float32, or QLinearMatMul's int8 form: `dtype` A's type (uint8/int8), `b_dtype` B's,
    `out_dtype` the output's (uint8/int8 quantised, int32 exact, float32 dequantized) and
    `zero_points` the zero-point terms the kernel compensates ("none", "a", "b", "ab").  The
    layer's own scales and zero points ride along in `params` (te.ops.int8_batch_matmul), outside
    the workload's key and equality: layers alike but for them are one tuning task."""
    batch: int
    M: int
    N: int
    K: int
    dtype: str = "float32"
    b_dtype: str = "float32"
    out_dtype: str = "float32"
    zero_points: str = "none"
    params: tuple = field(default=(), compare=False)

    op = "batch_matmul"


Workload = ConvWorkload | MatmulWorkload | BatchMatmulWorkload


# ---------------------------------------------------------------- implementations

class Implementation:
    """One algorithm of an op.  Subclasses set the class attributes and the methods below."""
    name: str = ""                  # unique, e.g. "conv2d.winograd"
    op: str = ""                    # the workload kind it implements: "conv2d" | "matmul" | "batch_matmul"
    template: str | None = None     # its template (workload key) name; None: not tunable
    weight_index: int | None = 1    # which input of the template is the weight (None: it has none)
    arguments = None                # a function whose parameters are the template's arguments
    packs_weight = False            # does pack_weight lay the weight out (else the kernel reads it as it is)
    reads_shuffled = False          # can it read its input through a channel shuffle (ConvWorkload.shuffle)

    def match(self, wl: Workload, target: Target) -> int | None:
        """None where this implementation cannot run wl, else its priority (the highest wins)."""
        raise NotImplementedError

    def args(self, wl: Workload) -> tuple:
        """The template arguments of wl (the second half of its workload key)."""
        raise NotImplementedError

    def workload(self, args: tuple) -> Workload:
        """The workload of template arguments (the inverse of args)."""
        raise NotImplementedError

    def space(self, cfg, wl: Workload, target: Target) -> None:
        """Declare the knobs that decide the compute (the schedule declares its own as it runs)."""

    def compute(self, inputs: list, wl: Workload, cfg, target: Target, prepacked: bool = False,
                name: str | None = None) -> te.Tensor:
        """The output tensor from the inputs (the weight packed by pack_weight if `prepacked`)."""
        raise NotImplementedError

    def schedule(self, s: te.Schedule, out: te.Tensor, final: te.Tensor | None, cfg, target: Target) -> None:
        """Schedule out (and the elementwise ops fused after it, ending in final) with cfg."""
        raise NotImplementedError

    def weight_shape(self, wl: Workload) -> tuple:
        """The logical shape of the weight (what pack_weight takes)."""
        raise NotImplementedError

    def pack_weight(self, w: np.ndarray, wl: Workload, cfg, target: Target) -> np.ndarray | None:
        """The weight in the layout the kernel reads when prepacked, or None: it reads it as it is."""
        return None

    def placeholders(self, wl: Workload, cfg, target: Target, prepacked: bool) -> list[te.Tensor]:
        """The template's inputs (the weight as pack_weight lays it out if `prepacked`)."""
        raise NotImplementedError

    def config(self, wl: Workload, target: Target, cfg=None):
        """cfg (a tuned config of the template), or the implementation's defaults with its knobs declared."""
        if cfg is None:
            cfg = FallbackConfig()
        self.space(cfg, wl, target)
        return cfg

    def instantiate(self, cfg, args: tuple, target: Target, prepacked: bool = False):
        """The template's body: (schedule, tensors) of the kernel for args under cfg."""
        wl = self.workload(tuple(args))
        self.space(cfg, wl, target)
        inputs = self.placeholders(wl, cfg, target, prepacked)
        y = self.compute(inputs, wl, cfg, target, prepacked)
        s = te.create_schedule(y.op)
        self.schedule(s, y, None, cfg, target)
        return s, [*inputs, y]

    def __repr__(self) -> str:
        return f"<implementation {self.name}>"


IMPLEMENTATIONS: dict[str, Implementation] = {}


def register(impl: Implementation) -> Implementation:
    """Add an implementation; one with a template is also published as that template."""
    IMPLEMENTATIONS[impl.name] = impl
    if impl.template is not None and not any(o.template == impl.template and o is not impl
                                             for o in IMPLEMENTATIONS.values()):
        register_template(impl.template)(_template_view(impl.template))
    return impl


def _template_view(name: str):
    def template(cfg, *args, target: Target | None = None, prepacked: bool = False):
        from te.target import parse
        target = parse(target)
        return resolve(name, args, target).instantiate(cfg, args, target, prepacked)
    template.__doc__ = f"The {name} template: the registry's implementation of it for the arguments."
    arguments = next(i.arguments for i in IMPLEMENTATIONS.values() if i.template == name)
    if arguments is not None:       # callers that bind a template's arguments see the real ones
        import inspect
        P = inspect.Parameter
        template.__signature__ = inspect.Signature(
            [P("cfg", P.POSITIONAL_OR_KEYWORD), *inspect.signature(arguments).parameters.values(),
             P("target", P.KEYWORD_ONLY, default=None), P("prepacked", P.KEYWORD_ONLY, default=False)])
    template.__name__ = template.__qualname__ = f"{name}_template"
    return template


def candidates(wl: Workload, target: Target) -> list[tuple[int, Implementation]]:
    """(priority, implementation) of every implementation that can run wl, the preferred first."""
    found = []
    shuffled = getattr(wl, "shuffle", 0) > 1
    for impl in IMPLEMENTATIONS.values():
        if impl.op == wl.op and (impl.reads_shuffled or not shuffled):
            p = impl.match(wl, target)
            if p is not None:
                found.append((p, impl))
    return sorted(found, key=lambda pi: -pi[0])


def select(wl: Workload, target: Target) -> Implementation:
    """The implementation a model build runs wl with: the matching one of highest priority."""
    found = candidates(wl, target)
    if not found:
        raise ConfigError(f"no implementation of {wl.op} runs {wl}")
    return found[0][1]


def has_template(name: str) -> bool:
    """Is `name` the template of a registered implementation?"""
    return any(i.template == name for i in IMPLEMENTATIONS.values())


def resolve(template: str, args, target: Target) -> Implementation:
    """The implementation a task (template name + args) builds: the preferred one of that template."""
    impls = [i for i in IMPLEMENTATIONS.values() if i.template == template]
    if not impls:
        raise ConfigError(f"{template!r} is not the template of an implementation")
    wl = impls[0].workload(tuple(args))
    for _, impl in candidates(wl, target):
        if impl.template == template:
            return impl
    raise ConfigError(f"template {template!r} does not apply to {wl}; the registry runs it with "
                      f"{select(wl, target).template or select(wl, target).name}")


@dataclass
class Choice:
    """What a model build runs one anchor with: the implementation, its task and its config."""
    impl: Implementation
    workload: Workload
    target: Target
    cfg: Any = None                     # a tuned config of the template, or the defaults
    record: Any = None                  # the tuning record cfg came from
    prepacked: bool = False             # the weight input arrives as pack_weight laid it out
    task_args: tuple | None = field(default=None)

    def __post_init__(self):
        self.cfg = self.impl.config(self.workload, self.target, self.cfg)
        if self.task_args is None and self.impl.template is not None:
            self.task_args = self.impl.args(self.workload)

    @property
    def task(self) -> tuple[str, tuple] | None:
        """(template name, args) of the kernel, or None for an implementation without a template."""
        return None if self.impl.template is None else (self.impl.template, self.task_args)

    def pack_weight(self, w: np.ndarray) -> np.ndarray | None:
        """The constant weight in the layout this kernel reads (None: as it is)."""
        return self.impl.pack_weight(w, self.workload, self.cfg, self.target)

    def compute(self, inputs: list, name: str) -> te.Tensor:
        """The kernel's output for these inputs."""
        return self.impl.compute(inputs, self.workload, self.cfg, self.target, self.prepacked, name)

    def schedule(self, s: te.Schedule, out: te.Tensor, final: te.Tensor | None) -> None:
        """Schedule the kernel's output (and its fused chain) with this config."""
        self.impl.schedule(s, out, final, self.cfg, self.target)
