"""tilewise demo: build a built-in model, tune it briefly, and compare with the untuned build and ONNX Runtime."""
from __future__ import annotations

import os
import tempfile
import time

from . import add_parser
from ..common import CLIError, fmt_flops, fmt_time, load_graph, model_tasks, noise_note, note, say, table
from ..progress import Status

DEFAULT_MODEL = "squeezenet"
BUILTIN = {"mobilenet-block": "a MobileNetV2 inverted-residual block (1x32x56x56)",
           "encoder-layer": "a BERT-base-like encoder layer (128x768)"}

DESCRIPTION = f"""\
The whole of tilewise in about a minute, with no files: take a built-in example model
({DEFAULT_MODEL} from the ONNX package's light models, with seeded random weights), build it with
default schedules and time it; time ONNX Runtime on the same inputs and threads; tune the
model's heaviest tasks briefly with the task scheduler; build it again with what was found
(plus the shared logs for this CPU) and print the speed-up over the untuned build and the
comparison with ONNX Runtime.  Give an .onnx file or --model to use another model, and
--trials / --time-budget to tune longer or shorter."""

EXAMPLES = """\
  tilewise demo
  tilewise demo --time-budget 5                  # tune for five minutes
  tilewise demo --model mobilenet-block --trials 16
  tilewise demo my_model.onnx --max-tasks 6 --log my_model.jsonl"""


def register(sub, common) -> None:
    from .tune import _positive_float, _positive_int
    p = add_parser(sub, common, "demo", "build, tune briefly and benchmark an example model", DESCRIPTION, EXAMPLES)
    p.add_argument("file", nargs="?", metavar="MODEL.onnx", help="an ONNX model instead of the built-in one")
    p.add_argument("--model", default=None, metavar="NAME",
                   help=f"a built-in model: {DEFAULT_MODEL} (default), another light model of the onnx package "
                        f"(resnet50, vgg19, ...), {', '.join(BUILTIN)}")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--trials", type=_positive_int, metavar="N", help="tune N trials in total")
    budget.add_argument("--time-budget", type=_positive_float, metavar="MIN",
                        help="tune for this many minutes (default 1)")
    p.add_argument("--max-tasks", type=_positive_int, default=4, metavar="K",
                   help="tune the K heaviest tasks (default 4)")
    p.add_argument("--tuner", choices=("xgb", "random", "grid"), default="xgb", help="search strategy (default xgb)")
    p.add_argument("--log", metavar="FILE", help="keep the tuning log here (default: a temporary file)")
    p.add_argument("--repeat", type=_positive_int, default=10, metavar="N", help="timed runs per build (default 10)")
    p.add_argument("--no-shared-logs", action="store_true", help="use only what this demo tunes")
    p.add_argument("--no-int8", action="store_true",
                   help="skip the int8 rows (the model quantised and timed against ONNX Runtime int8)")
    p.add_argument("--seed", type=int, default=0, help="seed of the weights, the inputs and the search")
    p.set_defaults(run=run)


def _load(args):
    import frontends
    from frontends import zoo
    if args.file and args.model:
        raise CLIError("give either MODEL.onnx or --model, not both")
    if args.file:
        return load_graph(args.file), args.file, os.path.basename(args.file), os.path.basename(args.file)
    name = args.model or DEFAULT_MODEL
    if name == "mobilenet-block":
        proto, what = zoo.mobilenet_block(args.seed), BUILTIN[name]
    elif name == "encoder-layer":
        proto, what = zoo.encoder_layer(args.seed), BUILTIN[name]
    else:
        known = zoo.light_models()
        if name not in known:
            raise CLIError(f"--model {name}: unknown; built-in models are {', '.join(known + list(BUILTIN))}")
        # with its logits as a second output: the comparison with ONNX Runtime then checks more
        # than a saturated (one-hot) softmax
        proto = zoo.light_model(name, args.seed, logits=True)
        what = f"{name} (ONNX light model, seeded random weights; outputs softmax and logits)"
    try:
        return frontends.from_onnx(proto), proto, name, what
    except frontends.ModelError as e:
        raise CLIError(str(e)) from None


def _time_all(fns: dict, source, inputs: dict, threads: int, repeat: int) -> dict:
    """Latencies of the builds and of ONNX Runtime (key 'ort', its outputs under 'ref'), in alternating rounds."""
    from frontends import profile
    fns = dict(fns)
    sess = None
    try:
        sess = profile.onnxruntime_session(source, threads)       # a default session, as users run it
        fns["ort"] = lambda: sess.run(None, inputs)
    except ImportError:
        note("tilewise: note: onnxruntime is not installed, so no comparison with it "
             "(pip install 'tilewise[compare]')")
    block = max(1, min(10, repeat // 5))            # blocks of runs back to back, as in tilewise bench
    out: dict = profile.time_interleaved(fns, repeat=-(-repeat // block), warmup=2, block=block)
    if sess is not None:
        out["ref"] = sess.run(None, inputs)
    return out


def _int8(source, inputs: dict, threads: int, repeat: int) -> dict | None:
    """The model quantised by `tilewise quantize` (per-channel, a few seeded calibration inputs),
    built by tilewise and timed against ONNX Runtime on the same int8 model in alternating rounds;
    None (with a note) where the model cannot be quantised here (no onnxruntime, say)."""
    import frontends
    from frontends.quantize import quantize
    with tempfile.TemporaryDirectory(prefix="tilewise-demo-int8-") as tmp:
        path = os.path.join(tmp, "demo.int8.onnx")
        try:
            quantize(source, path, samples=4, per_channel=True)
            lib = frontends.build(frontends.from_onnx(path))
            lib.run(**inputs)
        except Exception as e:      # an extra row: whatever stops it (no onnxruntime, a model the
            # quantiser refuses) is said in one line, after the fp32 results it must not cost
            note(f"tilewise: note: no int8 row: {e}" if isinstance(e, (frontends.ModelError, ImportError))
                 else f"tilewise: note: no int8 row: {type(e).__name__}: {e}")
            return None
        return _time_all({"int8": lambda: lib.run(**inputs)}, path, inputs, threads, repeat)


def run(args) -> int:
    import numpy as np

    import frontends
    from frontends import profile
    from frontends.tasks import model_flops
    from te.runtime import num_threads
    from te.target import host

    from ..common import gather_logs
    from .tune import tune_model
    t_start = time.time()
    graph, source, name, what = _load(args)
    threads = num_threads()
    tasks = model_tasks(graph)
    if not tasks:
        raise CLIError(f"{what}: no tunable kernels (convolutions or matrix products) to tune")
    ins = ", ".join(f"{i.name} {'x'.join(map(str, i.shape))}" for i in graph.inputs)
    say(f"demo model: {what}")
    say(f"  input {ins}; {fmt_flops(model_flops(graph))} per run; {len(tasks)} tuning task(s); "
        f"{threads} thread(s) on {host().cpu}")

    st = Status()
    st.update("building with default schedules...", force=True)
    untuned = frontends.build(graph)
    inputs = profile.random_inputs(untuned.plan.inputs, args.seed)
    out_untuned = untuned.run(**inputs)
    st.update("timing the untuned build and ONNX Runtime...", force=True)
    first = _time_all({"untuned": lambda: untuned.run(**inputs)}, source, inputs, threads, min(args.repeat, 5))
    st.clear()
    say(f"untuned: {fmt_time(first['untuned'].median)} per run"
        + (f"; ONNX Runtime: {fmt_time(first['ort'].median)}" if "ort" in first else ""))
    say("")

    tmp = None
    log_path = args.log
    if log_path is None:
        tmp = tempfile.TemporaryDirectory(prefix="tilewise-demo-")
        log_path = os.path.join(tmp.name, "demo.jsonl")
    elif os.path.exists(log_path) and os.path.getsize(log_path) > 0:
        note(f"tilewise: note: continuing from the records already in {log_path}")
    try:
        n_trials = args.trials
        budget = None if n_trials else (args.time_budget or 1.0) * 60
        code = tune_model(graph, tasks, log_path, title=name, tuner=args.tuner, n_trials=n_trials,
                          time_budget=budget, max_tasks=args.max_tasks, shared_logs=not args.no_shared_logs,
                          repeat=2, min_repeat_ms=10.0, seed=args.seed)
        if code == 130:
            say("tuning interrupted: building with the records measured so far")
        say("")
        st.update("building with the tuned records...", force=True)
        sel = gather_logs([log_path], not args.no_shared_logs, host().isa)
        tuned = frontends.build(graph, logs=sel.paths or None)
        out_tuned = tuned.run(**inputs)
        st.update("timing the untuned build, the tuned build and ONNX Runtime in alternating rounds...", force=True)
        lat = _time_all({"untuned": lambda: untuned.run(**inputs), "tuned": lambda: tuned.run(**inputs)},
                        source, inputs, threads, args.repeat)
        if not args.no_int8:
            st.update("quantising to int8 (tilewise quantize) and timing it against ONNX Runtime int8...", force=True)
        q = None if args.no_int8 else _int8(source, inputs, threads, args.repeat)
    finally:
        st.clear()
        if tmp is not None:
            tmp.cleanup()
    lat_untuned, lat_tuned, lat_ort, ref = lat["untuned"], lat["tuned"], lat.get("ort"), lat.get("ref")
    rows = [["untuned (default schedules)", fmt_time(lat_untuned.median), fmt_time(lat_untuned.min), "1.00x"],
            ["tuned", fmt_time(lat_tuned.median), fmt_time(lat_tuned.min),
             f"{lat_untuned.median / lat_tuned.median:.2f}x"]]
    if lat_ort:
        rows.append([f"ONNX Runtime ({threads} thread(s))", fmt_time(lat_ort.median), fmt_time(lat_ort.min),
                     f"{lat_untuned.median / lat_ort.median:.2f}x"])
    if q is not None:
        rows.append(["int8 (tilewise quantize)", fmt_time(q["int8"].median), fmt_time(q["int8"].min),
                     f"{lat_untuned.median / q['int8'].median:.2f}x"])
        if "ort" in q:
            rows.append(["ONNX Runtime int8 (the same model)", fmt_time(q["ort"].median), fmt_time(q["ort"].min),
                         f"{lat_untuned.median / q['ort'].median:.2f}x"])
    say(table(["build", "median", "min", "speed-up vs untuned"], rows, "lrrr"))
    if noise_note([lat_untuned, lat_tuned, lat_ort]):
        say(noise_note([lat_untuned, lat_tuned, lat_ort]))
    say("")
    gain = lat_untuned.median / lat_tuned.median
    say(f"tuned vs untuned: {gain:.2f}x " + ("(the tuned build faster)" if gain >= 1 else
                                             "(the untuned build faster in these rounds: noise, or a tuning "
                                             "run too short to find better; --trials or --time-budget tune longer)"))
    if lat_ort:
        ratio = lat_ort.median / lat_tuned.median
        say(f"tuned vs ONNX Runtime: {ratio:.2f}x " + ("(tilewise faster)" if ratio >= 1 else "(ONNX Runtime faster)"))
    if q is not None and "ort" in q:
        ratio = q["ort"].median / q["int8"].median
        say(f"int8 vs ONNX Runtime int8: {ratio:.2f}x " + ("(tilewise faster)" if ratio >= 1 else
                                                          "(ONNX Runtime faster)"))
    if ref is not None:
        errs = [float(np.max(np.abs(a.astype(np.float64) - b))) / max(1.0, float(np.max(np.abs(b))))
                for a, b in zip(out_tuned, ref) if a.size]
        agree = max(errs) if errs else 0.0
        say(f"outputs agree with ONNX Runtime: max relative difference {agree:.2g}"
            if agree < 1e-3 else f"warning: outputs differ from ONNX Runtime (max relative difference {agree:.2g})")
    d = [float(np.max(np.abs(a - b))) for a, b in zip(out_tuned, out_untuned) if a.size]
    if d and max(d) > 1e-2 * max(1.0, max(float(np.max(np.abs(b))) for b in out_untuned if b.size)):
        say(f"warning: the tuned and untuned builds differ (max abs difference {max(d):.3g})")
    say(f"demo took {time.time() - t_start:.0f}s" + (f"; the tuning log is {args.log}" if args.log else ""))
    return 0

