"""tilewise bench: latency against ONNX Runtime, and a per-kernel roofline report."""
from __future__ import annotations

import importlib.util
import math
import os
import statistics

from . import add_parser
from .build import add_log_options, build_library, select_logs
from ..common import (CLIError, check_file, fmt_flops, fmt_num, fmt_time, load_graph, noise_note, note, say,
                      table)
from ..progress import Status, Steps

DESCRIPTION = """\
Benchmark a model: its latency (median, min and max over --repeat runs) and, for an .onnx
model, ONNX Runtime's latency on the same inputs, in the same run, on the same number of
threads (TILEWISE_NUM_THREADS, else the CPUs this process may use), with a check that both
give the same outputs.  An .onnx model is built first with the best tuning records known
(--log, plus the shared logs unless --no-shared-logs), exactly as 'tilewise build' would.

Then a per-kernel roofline report: every distinct kernel compiled and timed on its own, with
its FLOPs, the bytes it must move (arguments read once, output written once), its arithmetic
intensity, the GFLOP/s it achieves, and how close it comes to the ceiling that applies at its
intensity -- the fp32 peak, measured again either side of each fp32 kernel (a VM's speed drifts
between runs), or the measured memory bandwidth (see 'tilewise info').
--roofline FILE.png also draws it (needs matplotlib: pip install 'tilewise[plot]').
For a built .so, give the model with --model to get the per-kernel report."""

EXAMPLES = """\
  tilewise bench resnet50.onnx
  tilewise bench resnet50.onnx --log resnet50.jsonl --repeat 50 --roofline roofline.png
  tilewise bench resnet50.so --model resnet50.onnx
  TILEWISE_NUM_THREADS=1 tilewise bench model.onnx --compare none"""


def register(sub, common) -> None:
    p = add_parser(sub, common, "bench", "latency vs ONNX Runtime, and a per-kernel roofline", DESCRIPTION, EXAMPLES)
    p.add_argument("model", metavar="MODEL.onnx|MODEL.so", help="an ONNX model, or a library made by 'tilewise build'")
    p.add_argument("--compare", choices=("onnxruntime", "none"), default=None,
                   help="compare with ONNX Runtime (default for an .onnx model when onnxruntime is installed)")
    p.add_argument("--repeat", type=int, default=20, metavar="N", help="timed runs (default 20)")
    p.add_argument("--roofline", metavar="FILE.png", help="draw the roofline plot into this file (needs matplotlib)")
    p.add_argument("--no-kernels", action="store_true", help="skip the per-kernel report")
    p.add_argument("--model", dest="onnx", metavar="MODEL.onnx",
                   help="for a .so: the ONNX model it was built from (for the per-kernel report and ONNX Runtime)")
    add_log_options(p)
    p.add_argument("--shape", action="append", metavar="NAME=DIMS", help="fix an input shape, e.g. data=1x3x224x224")
    p.set_defaults(run=run)


def run(args) -> int:
    import numpy as np

    from frontends import profile
    from te import machine
    from te.export import is_library_file
    from te.runtime import num_threads
    from te.target import host

    from ..ceilings import ceilings
    from .run import load_library
    if args.repeat < 1:
        raise CLIError("--repeat must be at least 1")
    check_file(args.model, "model file")
    if args.roofline:
        _check_matplotlib()
        if args.no_kernels:
            raise CLIError("--roofline needs the per-kernel report; drop --no-kernels")
    threads = num_threads()
    target = host()
    is_lib = is_library_file(args.model)
    onnx_path = args.onnx if is_lib else args.model
    if args.onnx:
        check_file(args.onnx, "model file")
    graph = load_graph(onnx_path, args.shape) if onnx_path else None
    compare = args.compare or ("onnxruntime" if onnx_path and _has_ort() else "none")
    if compare == "onnxruntime" and not onnx_path:
        raise CLIError("--compare onnxruntime needs the ONNX model: give it with --model MODEL.onnx")
    if compare == "onnxruntime" and not _has_ort():
        raise CLIError("--compare onnxruntime: onnxruntime is not installed (pip install 'tilewise[compare]')")
    c = ceilings()

    # the model under test
    sel = None
    if is_lib:
        m = load_library(args.model)
        specs, fn = m.inputs, m.run
        what = os.path.basename(args.model)
    else:
        sel, _, _ = select_logs(args, graph, target)
        lib, _ = build_library(graph, target, sel)
        specs, fn = lib.plan.inputs, lib.run
        what = f"tilewise ({os.path.basename(args.model)})"
    inputs = profile.random_inputs(specs)
    say(f"latency over {args.repeat} runs, {threads} thread(s), batch as in the model"
        + (", alternating with ONNX Runtime:" if compare == "onnxruntime" else ":"))
    st = Status()
    out_ours = fn(**inputs)
    fns = {"ours": lambda: fn(**inputs)}
    sess = feed = None
    if compare == "onnxruntime":
        sess = profile.onnxruntime_session(onnx_path, threads)     # a default session, as users run it
        feed = {k: v for k, v in inputs.items() if k in {i.name for i in sess.get_inputs()}}
        fns["ort"] = lambda: sess.run(None, feed)
        # the default session's threads spin on after its runs, longer than one settling run: the
        # engine timed next lost up to half its runs to them (session 31), so ONNX Runtime without
        # spinning runs in that place (shown too, as bench/models.py shows it)
        nospin = profile.onnxruntime_session(onnx_path, threads, spinning=False)
        fns["ort no-spin"] = lambda: nospin.run(None, feed)
    st.update("timing" + (" tilewise and ONNX Runtime in alternating rounds..." if sess else " tilewise..."),
              force=True)
    # engines alternate in blocks of runs back to back (ONNX Runtime's idle threads spin between
    # its runs, which helps it there; a settling run after each switch, and the no-spin session
    # after the default one, absorb the spinning)
    block = max(1, min(10, args.repeat // 5))
    lat = profile.time_interleaved(fns, repeat=-(-args.repeat // block), warmup=2, block=block)
    ours = lat["ours"]
    rows = [[what, fmt_time(ours.median), fmt_time(ours.min), fmt_time(ours.max), "1.00x"]]
    agree = ""
    if sess is not None:
        theirs = lat["ort"]
        ref = sess.run(None, feed)
        del sess, nospin, fns    # spinning worker threads would steal a core from the kernel timings
        rows.append([f"ONNX Runtime {_ort_version()}", fmt_time(theirs.median), fmt_time(theirs.min),
                     fmt_time(theirs.max), f"{theirs.median / ours.median:.2f}x"])
        quiet = lat["ort no-spin"]
        rows.append(["  without spinning", fmt_time(quiet.median), fmt_time(quiet.min), fmt_time(quiet.max),
                     f"{quiet.median / ours.median:.2f}x"])
        agree = output_agreement(out_ours, ref, quantized=graph is not None and _is_quantized(graph))
    st.clear()
    say(table(["", "median", "min", "max", "tilewise speed-up"], rows, "lrrrr"))
    if noise_note(list(lat.values())):
        say(noise_note(list(lat.values())))
    if agree:
        say(agree)
    if graph is not None:
        from frontends.tasks import model_flops
        fl = model_flops(graph)
        if fl:
            now = machine.peak_now(threads)     # the peak of this moment, not the cached one (peak_now says why)
            say(f"model: {fmt_flops(fl)} per run (convolutions and matrix products) -> "
                f"{fl / ours.median / 1e9:.1f} GFLOP/s, {100 * fl / ours.median / 1e9 / now:.1f}% "
                f"of the {now:.0f} GFLOP/s peak measured just after it ({c.peak_gflops:.0f} cached by 'tilewise info')")

    if args.no_kernels or graph is None:
        if graph is None and not args.no_kernels:
            say("per-kernel report: give the ONNX model with --model MODEL.onnx to get it")
        return 0
    if sel is None:
        sel, _, _ = select_logs(args, graph, target, verbose=False)
    say("")
    with Steps("timing kernels", 0) as p:
        def step(i: int, total: int, name: str) -> None:
            p.total = total
            p.step(name, done=i)
        kernels = profile.profile_kernels(graph, target, logs=sel.paths or None, progress=step,
                                          peak=lambda: machine.peak_now(threads))
    int8_peaks = ceilings(int8=True).int8_peak_gops if any(k.unit != "fp32" for k in kernels) else {}
    rows = profile.roofline(kernels, c.peak_gflops, c.bandwidth_gbs, int8_peaks)
    int8_note = "".join(f", int8 {k.upper()} {g:.0f} GOP/s" for k, g in int8_peaks.items())
    sampled = sorted(k.peak_gflops for k in kernels if k.peak_gflops > 0)
    peak = statistics.median(sampled) if sampled else c.peak_gflops
    peak_note = (f"each fp32 kernel against the peak measured either side of it, {sampled[0]:.0f}-{sampled[-1]:.0f} "
                 f"GFLOP/s" if sampled else f"peak {c.peak_gflops:.0f} GFLOP/s")
    say(f"per-kernel roofline ({peak_note}{int8_note} on {threads} thread(s), "
        f"bandwidth {c.bandwidth_gbs:.1f} GB/s, ridge at {peak / c.bandwidth_gbs:.1f} FLOP/B):")
    say(kernel_table(rows))
    if int8_peaks:
        say("int8 kernels: GFLOP/s are GOP/s, measured against the int8 peak of the unit that runs "
            "them (AMX, VNNI; an int8 kernel without a dot-product unit against VNNI's)")
    moved = [r.kernel.name for r in rows if r.kernel.in_place]
    if moved:
        say(f"timed writing their output over their residual input, as the model runs them: {', '.join(moved)}")
    if any("Winograd" in r.kernel.ops for r in rows):
        say("Conv(Winograd): FLOPs counted as the direct convolution's (as TVM counts them), so its "
            "GFLOP/s can pass the peak: Winograd F(4x4, 3x3) does 36 multiplies where the direct conv does 144")
    total = sum(r.kernel.calls * r.kernel.seconds for r in rows if r.kernel.latency)
    say(f"sum of kernel times {fmt_time(total)} per run (each kernel timed alone, warm caches) vs "
        f"{fmt_time(ours.median)} for the whole model")
    say(f"at their roofs (each kernel under its roof at 100%, the others as they run) the kernels would "
        f"take {fmt_time(profile.roof_seconds(rows))} per run: the floor for this model's kernels with these algorithms")
    for r in rows:
        if r.kernel.error:
            note(f"tilewise: warning: kernel {r.kernel.name} could not be timed alone: {r.kernel.error}")
    if args.roofline:
        try:
            profile.plot_roofline(rows, peak, c.bandwidth_gbs, args.roofline,
                                  title=f"{os.path.basename(onnx_path)} on {target.cpu}, {threads} thread(s)")
        except ImportError as e:
            raise CLIError(str(e)) from None
        say(f"roofline plot: {args.roofline}")
    return 0


def output_agreement(ours: list, ref: list, quantized: bool, vnni: bool | None = None) -> str:
    """One line on how tilewise's outputs compare with ONNX Runtime's: relative difference for
    float outputs; integer outputs of a quantised model in quantisation steps (two int8 engines
    may round a value to neighbouring steps), float outputs of one against a looser bound.

    Where a quantised model's outputs differ and the CPU lacks VNNI (`vnni`, None: this CPU's),
    the line says why they may: ONNX Runtime's u8 x s8 kernel then adds product pairs in int16
    with saturation (bench/RESULTS.md, session 29), tilewise in int32, exactly."""
    import numpy as np
    pairs = [(a, np.asarray(b)) for a, b in zip(ours, ref) if a.shape == np.shape(b) and a.size]
    if not pairs:
        return ""
    steps = [int(np.max(np.abs(a.astype(np.int64) - b.astype(np.int64))))
             for a, b in pairs if a.dtype.kind in "iu"]
    errs = [float(np.max(np.abs(a.astype(np.float64) - b))) / max(1.0, float(np.max(np.abs(b))))
            for a, b in pairs if a.dtype.kind not in "iu"]
    if quantized:
        ok = all(s <= 1 for s in steps) and all(e < 2e-2 for e in errs)
        what = ", ".join(([f"integer outputs within {max(steps)} quantisation step(s)"] if steps else [])
                         + ([f"max relative difference {max(errs):.2g}"] if errs else []))
        if ok:
            return f"outputs agree with ONNX Runtime as int8 engines do ({what})"
        if vnni is None:
            from te.target import has_vnni, host
            vnni = has_vnni(host())
        why = ("" if vnni else "; this CPU has no VNNI, where ONNX Runtime adds int8 product pairs in "
               "int16 with saturation and tilewise exactly: 'tilewise quantize --reduce-range' writes 7-bit "
               "weights, which both sum exactly")
        return f"warning: outputs differ from ONNX Runtime by more than a quantisation step ({what}){why}"
    worst = max(errs + [float(s) for s in steps])
    return (f"outputs agree with ONNX Runtime (max relative difference {worst:.2g})" if worst < 1e-3 else
            f"warning: outputs differ from ONNX Runtime (max relative difference {worst:.2g})")


def _is_quantized(graph) -> bool:
    """Does the model compute in int8 (QDQ or QOperator nodes)?"""
    from frontends.quantize import QUANTISED_OPS
    return any(n.op in QUANTISED_OPS for n in graph.nodes)


def kernel_table(rows) -> str:
    """The roofline rows as text, slowest share first."""
    order = sorted(rows, key=lambda r: -(r.share if math.isfinite(r.share) else -1))
    out = []
    for r in order:
        k = r.kernel
        out.append([k.name, k.ops if len(k.ops) <= 28 else k.ops[:25] + "...", k.calls, fmt_time(k.seconds),
                    fmt_num(100 * r.share, 1, "%"), f"{k.flops / 1e6:.2f}", f"{k.bytes / 1e6:.2f}",
                    fmt_num(k.intensity, 1), fmt_num(k.gflops, 1), fmt_num(k.gbs, 1), r.bound,
                    fmt_num(100 * r.efficiency, 0, "%")])
    return table(["kernel", "ops", "calls", "time/call", "share", "MFLOP", "MB moved", "FLOP/B",
                  "GFLOP/s", "GB/s", "bound", "of roof"], out, "llrrrrrrrrlr")


def _check_matplotlib() -> None:
    if importlib.util.find_spec("matplotlib") is None:
        raise CLIError("--roofline needs matplotlib, which is not installed: pip install 'tilewise[plot]' "
                       "(or pip install matplotlib)")


def _has_ort() -> bool:
    return importlib.util.find_spec("onnxruntime") is not None


def _ort_version() -> str:
    import onnxruntime
    return onnxruntime.__version__
