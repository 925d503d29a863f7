"""tilewise run: run a built model library and summarise its outputs."""
from __future__ import annotations

import os
import time
import zipfile

import numpy as np

from . import add_parser
from ..common import CLIError, check_file, check_output_folder, fmt_time, note, refuse_foreign, say, table

DESCRIPTION = """\
Run a model library made by 'tilewise build' (or te.export_library) once.  Inputs come from
.npy files (--input NAME=FILE.npy; just FILE.npy when the model has one input); inputs not
given are filled with seeded random values.  Prints each output's name, shape and dtype with
min / max / mean, and the top classes (argmax) of outputs that are vectors, such as
classifier scores.  --output saves every output, by name, in one .npz file."""

EXAMPLES = """\
  tilewise run resnet50.so
  tilewise run resnet50.so --input data=image.npy --output out.npz
  tilewise run model.so --input x.npy --top 5"""


def register(sub, common) -> None:
    p = add_parser(sub, common, "run", "run a built model library", DESCRIPTION, EXAMPLES)
    p.add_argument("library", metavar="MODEL.so", help="a library made by 'tilewise build'")
    p.add_argument("--input", "-i", action="append", default=[], metavar="NAME=FILE.npy",
                   help="an input from a .npy file (repeatable)")
    p.add_argument("--output", "-o", metavar="OUT.npz", help="save the outputs in this .npz file (exactly this name)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random inputs (default 0)")
    p.add_argument("--top", type=int, default=5, metavar="K", help="classes shown for vector outputs (default 5)")
    p.add_argument("--batch", type=int, default=None, metavar="N",
                   help="batch of the random inputs of a model built with a dynamic batch (default 1)")
    p.set_defaults(run=run)


def load_library(path: str):
    """te.runtime.load_module with one-line errors; refuses kernel-only libraries."""
    from te.runtime import LoadError, load_module
    check_file(path, "library")
    try:
        m = load_module(path)
    except LoadError as e:
        if path.lower().endswith(".onnx"):
            raise CLIError(f"{path} is an ONNX model, not a library: build it first, "
                           f"'tilewise build {path} -o model.so', then 'tilewise run model.so'") from None
        raise CLIError(str(e)) from None
    if not m.is_model:
        raise CLIError(f"{path} holds kernels ({', '.join(m.names)}), not a model; "
                       "build a model with 'tilewise build MODEL.onnx'")
    return m


def read_inputs(items: list[str], specs: list[dict], seed: int,
                random_specs: list[dict] | None = None) -> dict[str, np.ndarray]:
    """Inputs from NAME=FILE.npy items; random for the rest (of the shapes random_specs give, else
    specs'); checked against the model's specs."""
    from te.runtime import random_inputs
    by_name = {s["name"]: s for s in specs}
    given: dict[str, np.ndarray] = {}
    for it in items:
        name, sep, path = it.partition("=")
        if not sep:
            if len(specs) != 1:
                raise CLIError(f"--input {it}: the model has {len(specs)} inputs "
                               f"({', '.join(by_name)}); write NAME=FILE.npy")
            name, path = specs[0]["name"], it
        if name not in by_name:
            raise CLIError(f"--input {it}: the model has no input {name!r}; its inputs are {', '.join(by_name)}")
        check_file(path, ".npy file")
        try:
            a = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as e:
            raise CLIError(f"{path}: not a readable .npy array ({e})") from None
        if isinstance(a, np.lib.npyio.NpzFile):
            raise CLIError(f"{path}: is an .npz archive; save the input with numpy.save as .npy")
        spec = by_name[name]
        want = np.dtype(spec["dtype"])
        if not fits(a.shape, spec["shape"]):
            raise CLIError(f"--input {name}: {path} has shape {list(a.shape)}, the model expects {spec['shape']}")
        if a.dtype != want:
            if not np.can_cast(a.dtype, want, "same_kind"):
                raise CLIError(f"--input {name}: {path} has dtype {a.dtype}, the model expects {want}")
            note(f"tilewise: note: input {name}: converted {a.dtype} to {want}")
            a = a.astype(want)
        given[name] = np.ascontiguousarray(a)
    missing = [s for s in random_specs or specs if s["name"] not in given]
    if missing and items:
        note(f"tilewise: note: random values for input(s) {', '.join(s['name'] for s in missing)}")
    given.update(random_inputs(missing, seed))
    return given


def fits(shape: tuple, spec_shape: list) -> bool:
    """shape matches a spec's shape; a dynamic batch's dimension (a name) matches any size, which
    the run then checks against the library's maximum."""
    return len(shape) == len(spec_shape) and all(isinstance(d, str) or d == s for s, d in zip(shape, spec_shape))


def batch_specs(m, batch: int | None) -> list[dict]:
    """The model's input specs with a dynamic batch's dimension set to --batch (default 1)."""
    top = m.metadata["model"].get("batch", {}).get("max")
    if top is None:
        if batch is not None:
            raise CLIError(f"--batch {batch}: {m.path} was built for fixed shapes; build the model with "
                           "a dynamic batch (an input declared with a symbolic first dimension) to choose one")
        return m.inputs
    n = 1 if batch is None else batch
    if not 1 <= n <= top:
        raise CLIError(f"--batch {n}: give 1 to {top}, the maximum batch {m.path} was built for "
                       "(tilewise build --max-batch)")
    return [{**s, "shape": [n if isinstance(d, str) else d for d in s["shape"]]} for s in m.inputs]


def summarize(names: list[str], outputs: list[np.ndarray], top: int = 5) -> str:
    """A table of outputs (shape, dtype, min/max/mean) and the top classes of vector outputs."""
    rows, extra = [], []
    for n, a in zip(names, outputs):
        f = a.astype(np.float64) if a.size else a
        kind = "f" if a.dtype.name == "bfloat16" else a.dtype.kind     # ml_dtypes' bfloat16 is kind 'V'
        stats = ([f"{f.min():.4g}", f"{f.max():.4g}", f"{f.mean():.4g}"] if a.size and kind in "fiub"
                 else ["-", "-", "-"])
        rows.append([n, "x".join(map(str, a.shape)) or "scalar", str(a.dtype), *stats])
        flat = np.squeeze(a if kind == a.dtype.kind else f)
        if flat.ndim == 1 and flat.size > 1 and top > 0 and kind in "fiu":
            k = min(top, flat.size)
            idx = np.argsort(-flat, kind="stable")[:k]
            extra.append(f"{n}: argmax {int(idx[0])}; top {k}: "
                         + ", ".join(f"{int(i)} ({flat[i]:.4g})" for i in idx))
    text = table(["output", "shape", "dtype", "min", "max", "mean"], rows, "lllrrr")
    return text + ("\n" + "\n".join(extra) if extra else "")


def save_outputs(path: str, arrays: dict[str, np.ndarray]) -> None:
    """Write arrays to the .npz file path, exactly that name, atomically (temp file + rename)."""
    from te.files import atomic_write
    # what numpy.savez writes, without its keyword arguments: an output may be named "file"
    with atomic_write(path, "wb", ".npz") as fh, zipfile.ZipFile(fh, "w") as zf:
        for name, a in arrays.items():
            with zf.open(name + ".npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, a, allow_pickle=False)


def run(args) -> int:
    if args.output:
        from .build import refuse_overwrite
        if os.path.isdir(args.output):
            raise CLIError(f"--output {args.output}: is a folder; give the .npz file's name")
        check_output_folder("--output", args.output)
        refuse_overwrite([("--output", args.output)], [("MODEL.so", args.library)]
                         + [("--input", it.partition("=")[2] or it) for it in args.input])
        refuse_foreign("--output", args.output, "npz")
    m = load_library(args.library)
    inputs = read_inputs(args.input, m.inputs, args.seed, batch_specs(m, args.batch))
    given = {it.partition("=")[0] if "=" in it else m.input_names[0] for it in args.input}
    for s in m.inputs:
        src = "file" if s["name"] in given else f"random (seed {args.seed})"
        say(f"input {s['name']}: {s['dtype']}{list(inputs[s['name']].shape)} from {src}")
    t = time.perf_counter()
    try:
        outs = m.run(**inputs)
    except ValueError as e:             # a file's batch above the maximum, batches that differ
        raise CLIError(str(e)) from None
    dt = time.perf_counter() - t
    calls = m.metadata.get("model", {}).get("calls", "?")
    say(f"ran {os.path.basename(args.library)} in {fmt_time(dt)} (first run, {calls} kernel calls)")
    say(summarize(m.output_names, outs, args.top))
    if args.output:
        save_outputs(args.output, dict(zip(m.output_names, outs)))
        say(f"saved {len(outs)} output(s) to {args.output}")
    return 0
