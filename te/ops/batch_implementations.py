"""The batched matmul of two activations (a MatMul of 3-D or more operands: attention's Q.K^T and
scores.V) in the op registry, beside conv2d and matmul:

    batch_matmul.packed    template batch_matmul        float32: matmul.batch_matmul, B packed per batch
                                                        inside the kernel, matmul.py's packed GEMM knobs
    batch_matmul.int8      template batch_matmul_int8   QLinearMatMul on vpdpbusd / vpmaddwd
    batch_matmul.int8_float                             the same where the target has no 8-bit dot
                                                        product: dequantized, the float kernel, quantised
                                                        (both int8 ones in int8_batch_matmul.py)

Neither operand is a constant, so nothing is packed at build time and the tuner's runner passes
random activations (no cold weight copies: `weight_index` None).
"""
from __future__ import annotations

import te

from .matmul import batch_matmul, define_bn, define_knobs, schedule_matmul_cfg
from .registry import BatchMatmulWorkload, Implementation, register

PRIORITY = 10


def _batch_args(batch: int, M: int, N: int, K: int, dtype: str = "float32") -> tuple:
    return batch, M, N, K, dtype


class BatchShapes(Implementation):
    """What the batched matmul implementations share: A (batch, M, K) and B (batch, K, N), no weight."""
    op = "batch_matmul"
    weight_index = None
    arguments = staticmethod(_batch_args)

    def args(self, wl):
        return (wl.batch, wl.M, wl.N, wl.K, wl.dtype)

    def workload(self, args):
        batch, M, N, K, dtype = self.arguments(*args)
        return BatchMatmulWorkload(int(batch), int(M), int(N), int(K), dtype, dtype, dtype)

    def weight_shape(self, wl):
        return (wl.batch, wl.K, wl.N)

    def placeholders(self, wl, cfg, target, prepacked):
        return [te.placeholder((wl.batch, wl.M, wl.K), wl.dtype, name="A"),
                te.placeholder((wl.batch, wl.K, wl.N), wl.b_dtype, name="B")]


class BatchMatmulPacked(BatchShapes):
    """float32: each batch's B packed into [N/bn, K, bn] panels in the kernel, a bm x bn register
    tile, the tiles of every batch one parallel loop (matmul.py's packed strategy and its knobs)."""
    name, template = "batch_matmul.packed", "batch_matmul"

    def match(self, wl, target):
        return PRIORITY if wl.dtype == wl.b_dtype == wl.out_dtype == "float32" else None

    def space(self, cfg, wl, target):
        define_bn(cfg, wl.N, target)
        define_knobs(cfg, wl.M, wl.N, wl.K, "packed", target)

    def compute(self, inputs, wl, cfg, target, prepacked=False, name=None):
        a, b = inputs[:2]
        return batch_matmul(a, b, name=name or self.template, target=target, bn=cfg["bn"].val,
                            bm=cfg["tile_y"].size[-1])

    def schedule(self, s, out, final, cfg, target):
        schedule_matmul_cfg(cfg, s, out, final, target)


register(BatchMatmulPacked())

__all__ = ["BatchShapes", "BatchMatmulPacked"]
