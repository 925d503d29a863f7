"""Which algorithm computes a 3x3 stride-1 conv untuned: F(4x4, 3x3) Winograd, F(2x2, 3x3) or direct.

Each algorithm's time on the target is estimated as its multiply-adds at the share of the FMA
peak it reaches plus its weights read from memory (te.caches' cycle model, Caches.loop_cycles:
not overlapped), per core over the target's threads; the cheapest wins:

    cycles = flops / (2 * FMA_UNITS * lanes * EFFICIENCY[alg]) / threads
           + weight bytes / COLD_BYTES_PER_CYCLE / threads

* flops: the direct conv's 2*C*K*9 per output pixel; Winograd F(m)'s 2*C*K*(m+2)^2 per output
  tile of m x m, the tiles covering the map rounded up (a 14x14 map takes 16 tiles of 4x4 but 49
  of 2x2, so F(4x4) does 1.36x fewer multiply-adds than F(2x2) there, 3x fewer than direct).
  EFFICIENCY folds in what the transforms and the short batched GEMMs cost: measured on Emerald
  Rapids (bench/conv_algorithm.py, weights warm, 2 threads), the direct conv runs near the FMA
  peak, F(2x2) at ~65% of it, F(4x4) at ~50% (its 6x6 transforms cost 2.25x F(2x2)'s per tile).
* weight bytes: what the kernel reads, once per call: the direct conv's C*K*9 floats, Winograd's
  transformed C*K*(m+2)^2, 4x and 1.8x more (256 -> 256: 2.4, 9.4 and 4.2 MB).  In a model every
  call finds its weights evicted by the rest of the model's weights, which outgrow the caches'
  share on every target tilewise meets: ResNet-50's 100 MB and VGG's 550 MB against Zen 4/5's
  32 MB L3 per CCD (4 MB a core), Ice Lake server's 1.5 MB L3 a core and Emerald Rapids' 2 MB
  L2 and ~2 MB L3 a core (a VM may report a whole socket's 150 MB "per core"; the model's
  measured times say the weights come from memory there too).  No L2 holds a deep layer's
  transformed weights either (1 MB on Zen, 1.25 MB on Ice Lake, 2 MB on Emerald Rapids).  So
  each call streams its weights from memory, at COLD_BYTES_PER_CYCLE a core.
* not overlapped: measured, F(4x4) 256 -> 256 at 14x14 takes 389 us with its weights in L3 and
  698 us streaming them from memory, the whole of the 9.4 MB at ~30 GB/s added; the batched GEMM
  reads each transformed weight once per tile position, with too few tiles (16) between two
  reads for the prefetchers to hide the misses.

Picks on ResNet-50 (AVX-512, 2 threads): F(4x4) for 64 @ 56x56 and 128 @ 28x28, F(2x2) for
256 @ 14x14 (timed in the model, bench/conv_algorithm.py --models: F(2x2) ~535 us, F(4x4) ~720,
direct ~730).  In ResNet-50, Inception v2, SqueezeNet and DenseNet-121 the pick was the fastest
of the three or within 5% of it, but for DenseNet's 128 -> 32 at 14x14 and SqueezeNet's
48 -> 192 at 13x13 (F(2x2) picked, the direct conv 8-9% faster: few output channels make a
short batched GEMM).  On AVX-512 maps
under 13x13 keep the direct conv (implementations._winograd_priority): the padded tiles waste most of the work,
and the short batched GEMMs (16 tiles of 2x2 on a 7x7 map) run below the F(2x2) share above.
ResNet-50's 3x3 512@7x7 in the model's order (bench/conv_in_model.py, one thread, CPU time,
rough): F(2x2) 0.59-0.63x the direct conv, F(4x4) 0.40x, where these estimates put F(2x2) within
2% of it.
With fewer lanes (AVX2) the multiply-adds weigh more and F(4x4) wins more often; the cache
sizes do not enter (the weights miss every level).  There the direct conv reaches well under
EFFICIENCY's 0.9 on small maps (50-65% of the peak on Zen 3 at 7x7 to 12x12), so every map
chooses, and Winograd won on every one measured (_winograd_priority's docstring).  Tuning
times all three in any case.
"""
from __future__ import annotations

from enum import Enum

from te.caches import FMA_UNITS
from te.target import Target

from .conv_geometry import ConvGeometry

# Bytes a cycle one core streams from memory when it reads an array once, cold: ~20-30 GB/s per
# core at 3-3.5 GHz on Emerald Rapids (tilewise info's copy: 22 GB/s a thread; the F(4x4) weights'
# 9.4 MB cost 310 us on two threads), as on Zen 4 and Ice Lake server cores, whose outstanding
# misses (~16-48 lines) over the memory's ~100 ns latency bound one core alike.
COLD_BYTES_PER_CYCLE = 8.0


class Algorithm(Enum):
    """A 3x3 stride-1 conv's algorithm; the value is Winograd's output tile (0: direct)."""
    WINOGRAD_F4 = 4
    WINOGRAD_F2 = 2
    DIRECT = 0


# The share of the FMA peak each reaches, transforms included (measured; see the module docstring)
EFFICIENCY = {Algorithm.WINOGRAD_F4: 0.5, Algorithm.WINOGRAD_F2: 0.65, Algorithm.DIRECT: 0.9}


def work(g: ConvGeometry, alg: Algorithm) -> tuple[float, float]:
    """(flops, weight bytes read) of one call of the 3x3 conv `g` by `alg` in float32."""
    if alg is Algorithm.DIRECT:
        return g.flops, 4.0 * g.K * g.C * g.R * g.S
    m = alg.value
    taps = (m + 2) ** 2
    tiles = g.N * -(-g.OH // m) * -(-g.OW // m)
    return 2.0 * g.C * g.K * taps * tiles, 4.0 * g.C * g.K * taps


def cycles(g: ConvGeometry, alg: Algorithm, target: Target) -> float:
    """Estimated cycles of one call of `g` by `alg` on `target`, its weights read from memory."""
    flops, weight_bytes = work(g, alg)
    fma_rate = 2.0 * FMA_UNITS * target.lanes() * EFFICIENCY[alg]
    return (flops / fma_rate + weight_bytes / COLD_BYTES_PER_CYCLE) / target.threads


def choose(g: ConvGeometry, target: Target, options: tuple[Algorithm, ...] = tuple(Algorithm)) -> Algorithm:
    """The algorithm among `options` with the fewest estimated cycles (ties: the first listed)."""
    if not options:
        raise ValueError("conv_algorithm.choose: no algorithm to choose from; pass at least one Algorithm")
    return min(options, key=lambda alg: cycles(g, alg, target))
