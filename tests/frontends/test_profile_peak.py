"""The per-kernel roofline holds each fp32 kernel against the peak sampled beside it."""
import math

import onnx

import frontends
from frontends import profile
from frontends.profile import KernelProfile, Latency, roofline


def _kernel(name: str, seconds: float, unit: str = "fp32", peak: float = math.nan) -> KernelProfile:
    k = KernelProfile(name, 1, "Conv", flops=1e9, bytes=1e6, unit=unit, peak_gflops=peak)
    k.latency = Latency([seconds])
    return k


def test_a_kernel_answers_to_its_own_sampled_peak():
    # 1 GFLOP in 10 ms = 100 GFLOP/s, compute-bound (1000 FLOP/B against 20 GB/s)
    rows = roofline([_kernel("sampled", 0.01, peak=125.0), _kernel("cached", 0.01),
                     _kernel("int8", 0.01, unit="vnni", peak=125.0)],
                    peak_gflops=200.0, bandwidth_gbs=20.0, int8_peaks={"vnni": 400.0})
    eff = {r.kernel.name: r.efficiency for r in rows}
    assert math.isclose(eff["sampled"], 100 / 125)
    assert math.isclose(eff["cached"], 100 / 200)           # no sample: the peak given
    assert math.isclose(eff["int8"], 100 / 400)             # int8 answers to its unit's peak, not the fp32 sample


def test_roof_seconds_counts_slow_kernels_at_their_roof_and_fast_ones_as_they_run():
    # 1 GFLOP each against a 200 GFLOP/s roof (5 ms): 10 ms counts 5, a Winograd-like 4 ms counts 4
    rows = roofline([_kernel("slow", 0.01), _kernel("past the roof", 0.004)], peak_gflops=200.0, bandwidth_gbs=20.0)
    rows[0].kernel.calls = 3
    assert math.isclose(profile.roof_seconds(rows), 3 * 0.005 + 0.004)


def test_profile_kernels_takes_the_higher_sample_either_side(tmp_path):
    from tests.tiny_models import tiny_model
    graph = frontends.from_onnx(onnx.load(tiny_model(tmp_path / "tiny.onnx")))
    samples = iter([300.0, 100.0, 200.0, 50.0, 80.0, 10.0])
    taken = []

    def peak() -> float:
        taken.append(next(samples))
        return taken[-1]
    kernels = profile.profile_kernels(graph, repeat=1, min_time=0.0, peak=peak)
    timed = [k for k in kernels if k.latency and k.unit == "fp32"]
    assert len(timed) == 2 and len(taken) == 3              # one before the first kernel, one after each
    assert [k.peak_gflops for k in timed] == [300.0, 200.0]  # max(300, 100), max(100, 200)
