"""Whole-model latency, batch 1, 2 threads (or --threads): tilewise (untuned, and tuned with logs) vs ONNX Runtime.

    python bench/models.py                                  # the default model list, untuned
    python bench/models.py --models resnet50 --logs tuning_logs/   # plus a tuned column
    python bench/models.py --check                          # also compare outputs with ONNX Runtime
    python bench/models.py --models bvlc_alexnet --bandwidth   # AlexNet's FC layers against the bandwidth
    python bench/models.py --models shufflenet --threads 1    # both engines on one thread (scaling)

Every model is one of the onnx package's light models with seeded random weights (or a
built-in encoder layer / MobileNetV2 block), run by both engines in the same process, in
alternating blocks of runs, medians quoted.  ONNX Runtime runs as users run it, a default session
(its idle threads spin between runs), and without spinning beside it.
"""
from __future__ import annotations

import argparse
import functools
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import frontends                                          # noqa: E402
from frontends import zoo                                 # noqa: E402
from frontends.profile import onnxruntime_session, random_inputs, time_interleaved  # noqa: E402
from common import env_note, log_paths, table, time_call  # noqa: E402

MODELS = ["resnet50", "squeezenet", "vgg19", "inception_v1", "inception_v2", "bvlc_alexnet", "zfnet512", "densenet121",
          "shufflenet", "mobilenet_block", "mlp", "encoder_layer"]


def load(name: str):
    if name == "encoder_layer":
        return zoo.encoder_layer()
    if name == "mobilenet_block":
        return zoo.mobilenet_block()
    if name == "mlp":
        return zoo.mlp()
    return zoo.light_model(name, logits=True)     # logits too: a saturated softmax checks nothing


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join(MODELS), help="comma list (default: %(default)s)")
    ap.add_argument("--logs", nargs="*", default=None, help="tuning logs (files or folders) for a tuned column")
    ap.add_argument("--check", action="store_true", help="compare outputs with ONNX Runtime")
    ap.add_argument("--layout", default=None, choices=["NCHW", "NCHWc"],
                    help="NCHWc: chains of direct convs in the packed layout (frontends.passes.propagate_nchwc)")
    ap.add_argument("--seconds", type=float, default=3.0, help="about how long each engine is timed per model")
    ap.add_argument("--threads", type=int, default=None,
                    help="both engines on this many threads (default: tilewise on 2, ONNX Runtime's default "
                         "session, one per core); 1 against the default shows how each engine scales")
    ap.add_argument("--bandwidth", action="store_true",
                    help="also time AlexNet's fully connected layers (batch 1, bandwidth-bound) against the "
                         "machine's measured memory bandwidth and numpy's matrix-vector product")
    a = ap.parse_args()
    if a.threads is not None:
        if a.threads < 1:
            ap.error(f"--threads {a.threads}: give at least 1")
        os.environ["TILEWISE_NUM_THREADS"] = str(a.threads)
    os.environ.setdefault("TILEWISE_NUM_THREADS", "2")
    threads = int(os.environ["TILEWISE_NUM_THREADS"])
    logs = log_paths(a.logs)
    print(env_note())
    rows = []
    for name in a.models.split(","):
        model = load(name)
        g = frontends.from_onnx(model)
        feed = random_inputs([{"name": i.name, "shape": i.shape, "dtype": i.dtype} for i in g.inputs[:1]])
        # ONNX Runtime as users run it: a default session (one thread per core, idle threads
        # spinning between runs), and beside it the same without spinning
        sess = onnxruntime_session(model, threads=a.threads)
        nospin = onnxruntime_session(model, threads=a.threads, spinning=False)
        fns = {"ort": lambda: sess.run(None, feed), "ort no-spin": lambda: nospin.run(None, feed)}
        builds = {}
        variants = [("untuned", None)] + ([("tuned", logs)] if logs else [])
        for label, lg in variants:
            t0 = time.perf_counter()
            lib = frontends.build(g, logs=lg, layout=a.layout)
            lib.run(**feed)                                   # compiles (JIT) and warms up
            builds[label] = (time.perf_counter() - t0, lib)
            fns[label] = functools.partial(lib.run, **feed)
            if a.check:
                for got, want in zip(lib.run(**feed), sess.run(None, feed)):
                    err = float(np.abs(got - want).max() / max(np.abs(want).max(), 1e-30))
                    if err > 1e-3:
                        print(f"WARNING {name} {label}: relative error {err:.2e} against ONNX Runtime")
        # alternating rounds: a change in the machine's load hits every engine alike
        # engines alternate in blocks of runs back to back (about 0.2 s each), each block after a
        # settling run
        t_once = time_call(fns["ort"], min_repeats=1, min_seconds=0)["median"]
        block = max(1, min(50, int(0.2 / max(t_once, 1e-6))))
        rounds = max(5, min(100, int(a.seconds / max(t_once * block, 1e-6))))
        med = {k: v.median for k, v in time_interleaved(fns, repeat=rounds, block=block).items()}
        t_ort = med["ort"]
        un_s, un_lib = builds["untuned"]
        row = [name, f"{t_ort * 1e3:.2f}", f"{med['ort no-spin'] * 1e3:.2f}", f"{med['untuned'] * 1e3:.2f}",
               f"{med['untuned'] / t_ort:.2f}x"]
        if logs:
            row += [f"{med['tuned'] * 1e3:.2f}", f"{med['tuned'] / t_ort:.2f}x"]
        row += [f"{un_s:.1f}", f"{un_lib.plan.workspace_bytes / 2**20:.1f}", f"{un_lib.plan.param_bytes / 2**20:.1f}"]
        rows.append(row)
        print(f"  {name}: onnxruntime {t_ort * 1e3:.2f} ms (no spin {med['ort no-spin'] * 1e3:.2f}), tilewise "
              f"{med['untuned'] * 1e3:.2f} ms" + (f" untuned, {med['tuned'] * 1e3:.2f} ms tuned" if logs else "")
              + f" ({rounds} blocks of {block})", flush=True)
    heads = ["model", "onnxruntime ms", "ort no-spin ms", "untuned ms", "untuned / ort"]
    if logs:
        heads += ["tuned ms", "tuned / ort"]
    heads += ["build s", "peak workspace MiB", "weights MiB"]
    ort_threads = f"{a.threads} thread(s)" if a.threads is not None else "its default session"
    print(f"\nbatch 1, tilewise on {threads} thread(s), ONNX Runtime on {ort_threads}; median latency (lower is "
          "better; a ratio < 1 means faster than ONNX Runtime)")
    print(table(heads, rows))
    ratios = [float(r[4][:-1]) for r in rows]
    print(f"\ngeometric mean untuned / onnxruntime: {np.exp(np.mean(np.log(ratios))):.2f}x")
    if logs:
        tr = [float(r[6][:-1]) for r in rows]
        print(f"geometric mean tuned / onnxruntime: {np.exp(np.mean(np.log(tr))):.2f}x")
    if a.bandwidth:
        fc_bandwidth()


def fc_bandwidth() -> None:
    """AlexNet's Gemm kernels at batch 1 read each weight once: GB/s of that traffic, side by side
    with numpy (OpenBLAS) computing the same matrix-vector products, against the measured bandwidth."""
    from frontends.profile import profile_kernels, time_calls
    from tilewise.ceilings import ceilings
    bw = ceilings().bandwidth_gbs
    g = frontends.from_onnx(load("bvlc_alexnet"))
    gemms = [n for n in g.nodes if n.op == "Gemm"]
    profs = [p for p in profile_kernels(g, repeat=20, min_time=0.05) if p.ops.startswith("Gemm")]
    rows = []
    rng = np.random.default_rng(0)
    for p, n in zip(profs, gemms):
        w = g.constants[n.inputs[1]]
        x = rng.standard_normal((1, w.shape[1] if n.attrs.get("transB") else w.shape[0])).astype(np.float32)
        wt = w.T if n.attrs.get("transB") else w
        lat = time_calls(lambda: x @ wt, repeat=20, warmup=2, min_time=0.05)
        np_gbs = w.nbytes / lat.median / 1e9
        rows.append([p.name, "x".join(map(str, w.shape)), f"{w.nbytes / 2**20:.1f}", f"{p.seconds * 1e3:.2f}",
                     f"{p.gbs:.1f}", f"{p.gbs / bw:.0%}", f"{np_gbs:.1f}", f"{p.gbs / np_gbs:.2f}x"])
    print(f"\nAlexNet's fully connected layers, batch 1, 2 threads; measured bandwidth {bw:.1f} GB/s "
          "(tilewise info: one-thread copy, bytes read + written)")
    print(table(["kernel", "weight", "MiB", "ms", "GB/s", "of bandwidth", "numpy GB/s", "vs numpy"], rows))


if __name__ == "__main__":
    main()
