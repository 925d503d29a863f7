"""Export kernels as one native shared library that te.runtime.load_module (or C) can use.

    te.export_library([k1, k2], "model.so", header="model.h")

The pipeline: codegen every kernel into one LLVM module (plus the thread-count setter) ->
optimise and emit an object file (cached on disk by a hash of the IR and the target) -> emit a
tiny object holding the metadata JSON -> link both with the system C compiler into a .so ->
seal it (write the digest of the whole file into its metadata section) -> write the C header.
The ABI is documented in docs/c_abi.md.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import re
import shlex
import shutil
import subprocess
import tempfile

from llvmlite import ir

from . import cache as cache_mod
from . import llvm_init, runtime
from .build import OPT_LEVEL, SLP_VECTORIZE, Kernel, arg_specs, optimize
from .codegen_llvm import CodeGenLLVM, codegen
from .expr import BYTE_CODED
from .files import atomic_path, atomic_write
from .llvm_types import ELEM_BYTES
from .prefetch import PREFETCH_GLOBAL
from .stmt import LoweredFunc
from .target import Target, enabled_features, parse
from .target import required_features as target_required_features

log = logging.getLogger(__name__)

I32 = ir.IntType(32)
# float16 and bfloat16 travel as their bits in a uint16_t (C has no portable half type), the
# byte-coded types (float8, int4...) as theirs in a uint8_t
C_TYPES = {"float32": "float", "float64": "double", "bool": "uint8_t", "int8": "int8_t",
           "uint8": "uint8_t", "int16": "int16_t", "uint16": "uint16_t", "int32": "int32_t",
           "uint32": "uint32_t", "int64": "int64_t", "uint64": "uint64_t", "float16": "uint16_t",
           "bfloat16": "uint16_t", **{t: "uint8_t" for t in BYTE_CODED}}
_C_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_C_KEYWORDS = frozenset("auto break case char const continue default do double else enum extern "
                        "float for goto if inline int long register restrict return short signed "
                        "sizeof static struct switch typedef union unsigned void volatile while "
                        "bool true false".split())
# The metadata function is compiled for the baseline CPU, so any CPU of the architecture can
# read a library's metadata and be told why it cannot run its kernels.
BASELINE = Target("generic", "")


class ToolchainMissingError(RuntimeError):
    """No C compiler/linker is installed to turn object files into a shared library."""


def export_library(kernels, path: str | os.PathLike, target=None, header: str | None = None,
                   metadata: dict | None = None, records=None, cache: bool = True) -> dict:
    """Compile kernels (Kernels or LoweredFuncs) into one shared library; returns its metadata.

    target: a Target or target string (default: the kernels' own target, else this CPU);
    header: also write a C header there; metadata: extra JSON-able data kept under "user";
    records: the tuning records used (Record objects, dicts or JSON lines).
    """
    funcs, tgt = _collect(kernels, target)
    _check_outputs(path, header)
    cg = codegen(funcs, tgt)                                          # loop IR -> LLVM IR
    _add_thread_setter(cg)                                            # tilewise_set_num_threads
    kernel_obj = _object(str(cg.module), tgt, cache)                  # optimised + object, cached
    meta = library_metadata(funcs, tgt, cg.uses_openmp, records, metadata)
    meta_obj = _metadata_object(json.dumps(meta, sort_keys=True))     # tilewise_metadata()
    link([kernel_obj, meta_obj], os.fspath(path), openmp=cg.uses_openmp)   # cc -shared
    if header is not None:
        write_header(meta, header, library=os.path.basename(os.fspath(path)))
    return meta


def export_model(cg: CodeGenLLVM, plan, params, path: str | os.PathLike, target: Target,
                 records=None, header: str | None = None) -> dict:
    """Link a whole model: its kernels and entry point (already in cg), the weights blob, the metadata."""
    _check_outputs(path, header)
    _add_thread_setter(cg)
    kernel_obj = _object(str(cg.module), target, True)
    meta = library_metadata(plan.funcs, target, cg.uses_openmp, records, None)
    meta["model"] = {"entry": plan.entry, "inputs": plan.inputs, "outputs": plan.outputs,
                     "workspace_bytes": int(plan.workspace_bytes), "param_bytes": int(plan.param_bytes),
                     "calls": len(plan.steps)}
    if plan.batch:
        meta["model"]["batch"] = dict(plan.batch)
    objs = [kernel_obj, _metadata_object(json.dumps(meta, sort_keys=True))]
    if plan.param_bytes:
        objs.append(_blob_object(runtime.PARAMS_SYMBOL, params.tobytes()))
    link(objs, os.fspath(path), openmp=cg.uses_openmp)
    if header is not None:
        write_header(meta, header, library=os.path.basename(os.fspath(path)))
    return meta


def is_library_file(path) -> bool:
    """Is the file at path a shared library (ELF), which an export may replace?"""
    with open(path, "rb") as f:
        return f.read(4) == b"\x7fELF"


def is_header_file(path) -> bool:
    """Is the file at path a C header tilewise wrote (HEADER_MARK on its first line)?"""
    with open(path, "rb") as f:
        return HEADER_MARK.encode() in f.readline(4096)


def _check_outputs(path, header) -> None:
    """Refuse outputs whose writing would destroy something else: a folder, an existing file that
    is not what the export writes (a user's notes named model.so), a header path that is the
    library it describes."""
    if header is not None and os.path.realpath(os.fspath(header)) == os.path.realpath(os.fspath(path)):
        raise ValueError(f"export: the header and the library are the same file ({os.fspath(path)}); "
                         "give the header its own name, e.g. model.h")
    outputs = [(path, "a shared library", is_library_file, "model.so")]
    if header is not None:
        outputs.append((header, "a C header tilewise wrote", is_header_file, "model.h"))
    for p, kind, is_kind, example in outputs:
        p = os.fspath(p)
        if os.path.isdir(p):
            raise ValueError(f"export: {p} is a folder; give the file's name, e.g. {os.path.join(p, example)}")
        if os.path.lexists(p) and not is_kind(p):
            raise ValueError(f"export: {p} exists and is not {kind}, so it is not replaced; give another "
                             "name (or remove the file first)")


def _blob_object(symbol: str, data: bytes) -> bytes:
    """An object file with `data` as a 64-byte-aligned read-only symbol (assembled with .incbin)."""
    cc = find_cc()
    with tempfile.TemporaryDirectory(prefix="tilewise-blob-") as tmp:
        blob, asm, obj = (os.path.join(tmp, n) for n in ("blob.bin", "blob.S", "blob.o"))
        with open(blob, "wb") as fh:
            fh.write(data)
        with open(asm, "w") as fh:
            fh.write(f'.section .rodata\n.balign 64\n.globl {symbol}\n.type {symbol}, @object\n'
                     f'{symbol}:\n.incbin "{blob}"\n.size {symbol}, {len(data)}\n'
                     '.section .note.GNU-stack,"",@progbits\n')
        r = subprocess.run([*cc, "-c", asm, "-o", obj], capture_output=True, text=True, timeout=300)
        if r.returncode != 0:
            raise RuntimeError(f"assembling the weights of the model failed:\n{r.stderr}")
        with open(obj, "rb") as fh:
            return fh.read()


def _collect(kernels, target) -> tuple[list[LoweredFunc], Target]:
    """The lowered functions to export and the target to build them for."""
    if isinstance(kernels, (Kernel, LoweredFunc)):
        kernels = [kernels]
    kernels = list(kernels)
    if not kernels:
        raise ValueError("export_library: no kernels given")
    funcs, targets = [], set()
    for k in kernels:
        if isinstance(k, Kernel):
            funcs.append(k.func)
            targets.add(k.target)
        elif isinstance(k, LoweredFunc):
            funcs.append(k)
        else:
            raise TypeError(f"export_library: expected Kernels or lowered functions, got "
                            f"{type(k).__name__} (build with te.build or lower with te.lower first)")
    if target is None and len(targets) > 1:
        raise ValueError("export_library: the kernels were built for different targets "
                         f"({', '.join(sorted(map(str, targets)))}); pass target=")
    tgt = parse(target if target is not None else (targets.pop() if targets else None))
    seen = set()
    for f in funcs:
        if not _C_IDENT.match(f.name) or f.name in _C_KEYWORDS or f.name.startswith("tilewise_"):
            raise ValueError(f"export_library: kernel name {f.name!r} must be a C identifier not "
                             "starting with 'tilewise_' (pass name= to te.build / te.lower)")
        if f.name in seen:
            raise ValueError(f"export_library: two kernels are named {f.name!r}; names must be unique")
        seen.add(f.name)
    return funcs, tgt


def _add_thread_setter(cg: CodeGenLLVM) -> None:
    """Make the thread-count global private to the library, behind a setter and a getter."""
    cg.num_threads.linkage = "internal"
    setter = ir.Function(cg.module, ir.FunctionType(ir.VoidType(), [I32]), runtime.SET_THREADS_SYMBOL)
    b = ir.IRBuilder(setter.append_basic_block("entry"))
    n = setter.args[0]
    b.store(b.select(b.icmp_signed("<", n, ir.Constant(I32, 0)), ir.Constant(I32, 0), n), cg.num_threads)
    b.ret_void()
    getter = ir.Function(cg.module, ir.FunctionType(I32, []), runtime.GET_THREADS_SYMBOL)
    b = ir.IRBuilder(getter.append_basic_block("entry"))
    b.ret(b.load(cg.num_threads, typ=I32))


def _object(llvm_ir: str, tgt: Target, use_cache: bool) -> bytes:
    """The optimised object file for llvm_ir, from the compile cache when it holds it."""
    from . import __version__
    c = cache_mod.default() if use_cache else None
    k = cache_mod.key(llvm_ir, str(tgt), __version__,
                      ".".join(map(str, llvm_init.llvm().llvm_version_info)), f"O{OPT_LEVEL} slp={SLP_VECTORIZE} pic")
    obj = c.get(k) if c else None
    if obj is None:
        obj = tgt.machine().emit_object(optimize(llvm_ir, tgt))
        if c:
            c.put(k, obj)
    else:
        log.debug("compile cache hit %s", k[:16])
    return obj


def library_metadata(funcs: list[LoweredFunc], tgt: Target, openmp: bool, records=None,
                     user: dict | None = None) -> dict:
    """The JSON-able description that travels inside the library (see docs/c_abi.md)."""
    from . import __version__
    triple = llvm_init.llvm().get_process_triple()
    return {
        "format": runtime.FORMAT,
        "format_version": runtime.FORMAT_VERSION,
        "tilewise_version": __version__,
        "llvm_version": ".".join(map(str, llvm_init.llvm().llvm_version_info)),
        "target": str(tgt),
        "isa": tgt.isa,
        "arch": triple.split("-")[0],
        "triple": triple,
        "features": sorted(enabled_features(tgt)),
        "required_features": target_required_features(tgt),
        "openmp": openmp,
        "kernels": [{"name": f.name,
                     "args": [{"name": s.name, "shape": list(s.shape), "dtype": str(s.dtype),
                               "written": s.written} for s in arg_specs(f)]}
                    for f in funcs],
        "records": [_record_json(r) for r in (records or [])],
        "user": user or {},
    }


def _record_json(r) -> dict:
    if isinstance(r, dict):
        return r
    if isinstance(r, str):
        return json.loads(r)
    for attr in ("to_dict", "to_json"):
        if hasattr(r, attr):
            v = getattr(r, attr)()
            return json.loads(v) if isinstance(v, str) else v
    if dataclasses.is_dataclass(r):
        return dataclasses.asdict(r)
    raise TypeError(f"export_library: cannot store a tuning record of type {type(r).__name__}")


def _metadata_object(text: str) -> bytes:
    """An object file defining `const char *tilewise_metadata(void)` that returns text.

    The text sits in its own section behind a magic number and a slot for the digest of the
    whole file (zeros until `seal` fills it in after linking), so the loader can find and check
    both by reading the file, before dlopen runs any of the library's code.
    """
    llvm = llvm_init.llvm()
    mod = ir.Module("tilewise_metadata")
    mod.triple = llvm.get_process_triple()
    machine = BASELINE.machine()
    mod.data_layout = str(machine.target_data)
    body = text.encode("utf-8")
    data = bytearray(runtime.METADATA_MAGIC + bytes(runtime.DIGEST_SIZE) + body + b"\0")
    g = ir.GlobalVariable(mod, ir.ArrayType(ir.IntType(8), len(data)), "tilewise.metadata.json")
    g.initializer = ir.Constant(g.value_type, data)
    g.global_constant = True
    g.linkage = "private"
    g.section = runtime.METADATA_SECTION
    fn = ir.Function(mod, ir.FunctionType(ir.PointerType(), []), runtime.METADATA_SYMBOL)
    fn.attributes.add("nounwind")
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    b.ret(b.gep(g, [ir.Constant(I32, 0), ir.Constant(I32, runtime.METADATA_HEADER)], inbounds=True))
    parsed = llvm.parse_assembly(str(mod))
    parsed.verify()
    return machine.emit_object(parsed)


# ---------------------------------------------------------------- linking
def find_cc() -> list[str]:
    """The C compiler driver used to link: $CC, else cc, gcc or clang on the PATH."""
    env = os.environ.get("CC", "").strip()
    if env:
        cmd = shlex.split(env)
        if shutil.which(cmd[0]):
            return cmd
        log.warning("CC=%r is not an executable; looking for cc, gcc, clang", env)
    for name in ("cc", "gcc", "clang"):
        p = shutil.which(name)
        if p:
            return [p]
    raise ToolchainMissingError("no C compiler/linker found (looked for $CC, cc, gcc, clang) to link "
                                "the shared library; install one: apt-get install gcc")


@functools.lru_cache(maxsize=None)
def _gomp_flag(cc: tuple[str, ...]) -> str:
    """How to link libgomp: -lgomp where the driver has the development link, else its soname."""
    try:
        out = subprocess.run([*cc, "-print-file-name=libgomp.so"], capture_output=True, text=True,
                             timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        out = ""
    return "-lgomp" if os.path.isabs(out) and os.path.exists(out) else "-l:libgomp.so.1"


def link(objects: list[bytes], path: str, openmp: bool) -> None:
    """Link object files into the shared library path, sealed (written atomically)."""
    cc = find_cc()
    out_dir = os.path.dirname(os.path.abspath(path))
    os.makedirs(out_dir, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="tilewise-link-") as tmp:
        names = []
        for n, obj in enumerate(objects):
            names.append(os.path.join(tmp, f"part{n}.o"))
            with open(names[-1], "wb") as fh:
                fh.write(obj)
        libs = ([_gomp_flag(tuple(cc))] if openmp else []) + ["-lm"]
        with atomic_path(path, ".so", permissions=0o755) as tmp_out:
            cmd = [*cc, "-shared", "-fPIC", "-o", tmp_out, *names, *libs, "-Wl,--no-undefined",
                   "-Wl,-z,noexecstack", f"-Wl,-soname,{os.path.basename(path)}"]
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
            if r.returncode != 0:
                hint = " (parallel loops need libgomp: apt-get install libgomp1)" if \
                    openmp and "gomp" in r.stderr else ""
                raise RuntimeError(f"linking {path} failed{hint}:\n$ {shlex.join(cmd)}\n{r.stderr}")
            seal(tmp_out)


def seal(path: str) -> None:
    """Write the digest of the whole linked library into its metadata section's slot, where the
    loader checks it (runtime.check_digest): any byte damaged afterwards is refused before dlopen."""
    digest_at = runtime.read_elf(path).digest_at
    with open(path, "r+b") as fh:
        digest = runtime.file_digest(fh, digest_at)
        fh.seek(digest_at)
        fh.write(digest)


# ---------------------------------------------------------------- the C header
HEADER_MARK = "C interface generated by tilewise"     # the first line's words (tilewise build replaces such a file)


def header_text(meta: dict, library: str = "the library") -> str:
    """A C header declaring the library's kernels and its interface functions."""
    guard = "TILEWISE_" + re.sub(r"\W", "_", os.path.splitext(library)[0]).upper() + "_H_"
    lines = [
        f"/* {library}: {HEADER_MARK} {meta['tilewise_version']} -- do not edit.",
        f" * Built for: {meta['target'].split(' -mattr=')[0]} ({meta['isa']})",
        f" * Needs CPU features: {', '.join(meta['required_features']) or '(baseline x86-64)'}",
        " * ABI (docs/c_abi.md): each kernel takes one pointer per argument, to a C-contiguous",
        " * (row-major) buffer of exactly the shape and element type shown; buffers must not",
        " * overlap; a kernel returns 0 on success. */",
        f"#ifndef {guard}", f"#define {guard}", "", "#include <stdint.h>", "",
        "#ifndef TILEWISE_RESTRICT",
        "#ifdef __cplusplus", "#define TILEWISE_RESTRICT __restrict", "#else",
        "#define TILEWISE_RESTRICT restrict", "#endif", "#endif", "",
        "#ifdef __cplusplus", 'extern "C" {', "#endif", "",
        f"#define TILEWISE_FORMAT_VERSION {meta['format_version']}", "",
        "/* The library's metadata as a NUL-terminated JSON string (static; do not free). */",
        "const char *tilewise_metadata(void);",
        "/* Threads for parallel loops; 0 (the initial value) lets OpenMP decide (OMP_NUM_THREADS,",
        " * else every core). Not thread-safe against kernels running at the same time. */",
        "void tilewise_set_num_threads(int32_t n);",
        "int32_t tilewise_get_num_threads(void);",
    ]
    for k in meta["kernels"]:
        used: set[str] = set()
        params, doc = [], []
        for a in k["args"]:
            name = _c_param(a["name"], used)
            ctype = C_TYPES[a["dtype"]]
            dims = "".join(f"[{d}]" for d in a["shape"]) or "[1]"
            params.append(f"{'' if a['written'] else 'const '}{ctype} *TILEWISE_RESTRICT {name}")
            doc.append(f" *   {name}: {a['dtype']}{dims}{', written' if a['written'] else ''}")
        lines += ["", f"/* {k['name']}", *doc, " * Returns 0 on success. */",
                  f"int32_t {k['name']}({', '.join(params) or 'void'});"]
    if "model" in meta:
        lines += _model_header(meta["model"])
    lines += ["", "#ifdef __cplusplus", "}", "#endif", f"#endif /* {guard} */", ""]
    return "\n".join(lines)


def _model_header(model: dict) -> list[str]:
    """The header lines of a model library: its entry point, weights and workspace, and each
    input and output as constants (TILEWISE_INPUT0_NAME, _DTYPE, _CTYPE, _RANK, _SHAPE, _SIZE, _BYTES)."""
    ws, pb = int(model["workspace_bytes"]), int(model.get("param_bytes", 0))
    batch = model.get("batch")
    if batch:
        return _batch_model_header(model, batch, ws, pb)
    lines = [
        "", "/* ---- the model (docs/c_abi.md, 'Model libraries') ----",
        " * tilewise_run(io, params, workspace) runs the whole model:",
        " *   io: one pointer per input, then one per output, in the order below, each to a",
        " *       C-contiguous buffer of that tensor's shape and type (outputs are written);",
        " *   params: TILEWISE_PARAMS (the weights inside the library);",
        " *   workspace: TILEWISE_WORKSPACE_BYTES of memory aligned to TILEWISE_WORKSPACE_ALIGN bytes,",
        " *       used for intermediates; one workspace per concurrent call.",
        " * Returns 0 on success, else the code of the kernel that failed. */",
        "int32_t tilewise_run(void *const *io, const void *params, void *workspace);",
        f"#define TILEWISE_NUM_INPUTS {len(model['inputs'])}",
        f"#define TILEWISE_NUM_OUTPUTS {len(model['outputs'])}",
        f"#define TILEWISE_WORKSPACE_BYTES {ws}",
        f"#define TILEWISE_WORKSPACE_ALIGN {runtime.ALIGN}",
        f"#define TILEWISE_PARAM_BYTES {pb}",
    ]
    return lines + _params_and_io_header(model, pb, None)


def _batch_model_header(model: dict, batch: dict, ws: int, pb: int) -> list[str]:
    """The header lines of a dynamic-batch model library: tilewise_run_batch, the maximum batch,
    and each input and output with its sizes at that maximum and per image."""
    lines = [
        "", "/* ---- the model, with a dynamic batch (docs/c_abi.md, 'Model libraries') ----",
        " * tilewise_run_batch(io, params, workspace, batch) runs the whole model on `batch` images,",
        f" * 1 <= batch <= TILEWISE_MAX_BATCH ({batch['max']}); any other batch returns TILEWISE_BATCH_ERROR:",
        " *   io: one pointer per input, then one per output, in the order below; a tensor whose",
        f" *       TILEWISE_..._BATCHED is 1 leads with the batch ({batch['dim']}): `batch` images of",
        " *       TILEWISE_..._IMAGE_BYTES each, one after another (the _SHAPE/_SIZE/_BYTES below are",
        " *       for TILEWISE_MAX_BATCH images); the others have their shape as given;",
        " *   params: TILEWISE_PARAMS (the weights inside the library);",
        " *   workspace: TILEWISE_WORKSPACE_BYTES aligned to TILEWISE_WORKSPACE_ALIGN bytes, for any",
        " *       batch (a batch runs in chunks, one after another); one workspace per concurrent call.",
        " * Returns 0 on success, else the code of the kernel that failed. */",
        "int32_t tilewise_run_batch(void *const *io, const void *params, void *workspace, int64_t batch);",
        f"#define TILEWISE_MAX_BATCH {int(batch['max'])}",
        f"#define TILEWISE_BATCH_DIM {_c_string(batch['dim'])}",
        f"#define TILEWISE_BATCH_ERROR ({runtime.BATCH_ERROR})",
        f"#define TILEWISE_NUM_INPUTS {len(model['inputs'])}",
        f"#define TILEWISE_NUM_OUTPUTS {len(model['outputs'])}",
        f"#define TILEWISE_WORKSPACE_BYTES {ws}",
        f"#define TILEWISE_WORKSPACE_ALIGN {runtime.ALIGN}",
        f"#define TILEWISE_PARAM_BYTES {pb}",
    ]
    return lines + _params_and_io_header(model, pb, batch)


def _params_and_io_header(model: dict, pb: int, batch: dict | None) -> list[str]:
    """The weights' declaration, then each input's and output's constants; a batch-carrying one's
    shape at the maximum batch, with _BATCHED and _IMAGE_BYTES."""
    lines = []
    if pb:
        lines += [f"extern const unsigned char {runtime.PARAMS_SYMBOL}[{pb}];",
                  f"#define TILEWISE_PARAMS ((const void *){runtime.PARAMS_SYMBOL})"]
    else:
        lines += ["#define TILEWISE_PARAMS ((const void *)0)    /* the model has no weights */"]
    for kind, specs in (("INPUT", model["inputs"]), ("OUTPUT", model["outputs"])):
        for i, t in enumerate(specs):
            batched = bool(batch) and bool(t["shape"]) and t["shape"][0] == batch["dim"]
            shape = [int(batch["max"]) if batched and k == 0 else int(d) for k, d in enumerate(t["shape"])]
            size = 1
            for d in shape:
                size *= d
            p = f"TILEWISE_{kind}{i}"
            name = t["name"].replace("*/", "* /")           # it stands in a comment
            dims = "".join(f"[{batch['dim'] if batched and k == 0 else d}]" for k, d in enumerate(shape))
            lines += [
                "", f"/* {kind.lower()} {i}: {name}, {t['dtype']}{dims} */",
                f"#define {p}_NAME {_c_string(t['name'])}",
                f"#define {p}_DTYPE \"{t['dtype']}\"",
                f"#define {p}_CTYPE {C_TYPES[t['dtype']]}",
                f"#define {p}_RANK {len(shape)}",
                # C before C23 has no empty initializer: a scalar's shape is {1} (its rank is 0)
                f"#define {p}_SHAPE {{{', '.join(map(str, shape)) or '1'}}}",
                f"#define {p}_SIZE {size}",
                f"#define {p}_BYTES {size * ELEM_BYTES[t['dtype']]}",
            ]
            if batch:
                image = size // shape[0] if batched and shape[0] else size
                lines += [f"#define {p}_BATCHED {int(batched)}",
                          f"#define {p}_IMAGE_BYTES {image * ELEM_BYTES[t['dtype']]}"]
    return lines


def _c_string(text: str) -> str:
    """text as a C string literal: printable ASCII as it is, every other byte of its UTF-8 in octal."""
    out = []
    for b in text.encode("utf-8"):
        out.append(chr(b) if 0x20 <= b < 0x7F and chr(b) not in '"\\?' else f"\\{b:03o}")
    return '"' + "".join(out) + '"'


def _c_param(name: str, used: set[str]) -> str:
    c = re.sub(r"\W", "_", name)
    if not c or c[0].isdigit() or c in _C_KEYWORDS:
        c = "arg_" + c
    base, n = c, 1
    while c in used:
        n += 1
        c = f"{base}_{n}"
    used.add(c)
    return c


def write_header(meta: dict, path: str | os.PathLike, library: str = "the library") -> None:
    """Write the C header for a library's metadata (atomically: a reader never sees half of it)."""
    with atomic_write(path, "w", ".h") as fh:
        fh.write(header_text(meta, library))


# ---------------------------------------------------------------- a model's entry point

PTR = ir.PointerType()
MEMCPY = "memcpy"          # the kernel name of a model step that copies bytes instead of calling a kernel


def add_model_entry(cg: CodeGenLLVM, steps: list, funcs: list[LoweredFunc], batch: dict | None = None,
                    io_strides: list[int] | None = None, variants: list | None = None) -> None:
    """Emit a model's entry point into the codegen's module: `i32 tilewise_run(ptr io, ptr params,
    ptr workspace)` running `steps`; or, with a dynamic batch, `i32 tilewise_run_batch(ptr io,
    ptr params, ptr workspace, i64 batch)`, which checks 1 <= batch <= batch["max"] (else returns
    runtime.BATCH_ERROR) and runs the images in chunks: each time the steps of the largest
    compiled batch in `variants` ((size, steps), one has size 1) that fits the images left, with
    io slot k offset by the images done * io_strides[k] bytes. The chunks share the workspace.

    Steps are frontends.compile KernelCalls: a kernel name (or MEMCPY) and its arguments as
    (space, value): ("io", slot) | ("param", offset) | ("ws", offset) | ("bytes", count)."""
    i64 = ir.IntType(64)
    name = runtime.MODEL_BATCH_ENTRY_SYMBOL if batch else runtime.MODEL_ENTRY_SYMBOL
    fn = ir.Function(cg.module, ir.FunctionType(I32, [PTR, PTR, PTR] + ([i64] if batch else [])), name)
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    if not batch:
        _emit_steps(b, cg.module, steps, funcs, fn.args, None, [])
        b.ret(ir.Constant(I32, 0))
        return
    n = fn.args[3]
    bad = b.or_(b.icmp_signed("<", n, ir.Constant(i64, 1)), b.icmp_signed(">", n, ir.Constant(i64, int(batch["max"]))))
    with b.if_then(bad, likely=False):
        b.ret(ir.Constant(I32, runtime.BATCH_ERROR))
    pre = b.block
    head, done_bb = fn.append_basic_block("chunk"), fn.append_basic_block("done")
    b.branch(head)
    b.position_at_end(head)
    done = b.phi(i64, "images_done")
    done.add_incoming(ir.Constant(i64, 0), pre)
    left = b.sub(n, done)
    order = sorted(variants, key=lambda v: -v[0])
    for k, (size, vsteps) in enumerate(order):
        run = fn.append_basic_block(f"batch{size}")
        nxt = fn.append_basic_block(f"not_batch{size}") if k + 1 < len(order) else None
        if nxt is None:                      # the smallest, size 1, always fits
            b.branch(run)
        else:
            b.cbranch(b.icmp_signed(">=", left, ir.Constant(i64, size)), run, nxt)
        b.position_at_end(run)
        _emit_steps(b, cg.module, vsteps, funcs, fn.args, done, io_strides or [])
        after = b.add(done, ir.Constant(i64, size))
        done.add_incoming(after, b.block)
        b.cbranch(b.icmp_signed("<", after, n), head, done_bb)
        if nxt is not None:
            b.position_at_end(nxt)
    b.position_at_end(done_bb)
    b.ret(ir.Constant(I32, 0))


def _emit_steps(b: ir.IRBuilder, mod: ir.Module, steps: list, funcs: list[LoweredFunc], args, image,
                io_strides: list[int]) -> None:
    """The calls of every step; an io pointer is offset by image * io_strides[slot] bytes."""
    io, params, ws = args[:3]
    i64 = ir.IntType(64)
    kernels = {f.name: mod.get_global(f.name) for f in funcs}
    hint = mod.globals.get(PREFETCH_GLOBAL)          # te/prefetch.py: what each kernel prefetches
    for st in steps:
        ptrs = []
        for space, v in st.args:
            if space == "bytes":
                ptrs.append(ir.Constant(i64, v))
                continue
            if space == "io":
                slot = b.gep(io, [ir.Constant(i64, v)], source_etype=PTR)
                ptr = b.load(slot, typ=PTR)
                if image is not None and io_strides[v]:
                    ptr = b.gep(ptr, [b.mul(image, ir.Constant(i64, io_strides[v]))], source_etype=ir.IntType(8))
                ptrs.append(ptr)
            else:
                base = params if space == "param" else ws
                ptrs.append(b.gep(base, [ir.Constant(i64, v)], source_etype=ir.IntType(8)))
        if st.kernel == MEMCPY:
            memcpy = mod.globals.get("llvm.memcpy.p0.p0.i64") or ir.Function(
                mod, ir.FunctionType(ir.VoidType(), [PTR, PTR, i64, ir.IntType(1)]),
                "llvm.memcpy.p0.p0.i64")
            b.call(memcpy, [ptrs[1], ptrs[0], ptrs[2], ir.Constant(ir.IntType(1), 0)])
            continue
        if hint is not None:
            span = st.prefetch
            at = b.ptrtoint(b.gep(params, [ir.Constant(i64, span[0])], source_etype=ir.IntType(8)), i64) \
                if span else ir.Constant(i64, 0)
            b.store(at, b.gep(hint, [ir.Constant(I32, 0), ir.Constant(I32, 0)]))
            for k in (1, 2):
                b.store(ir.Constant(i64, span[k] if span else 0), b.gep(hint, [ir.Constant(I32, 0), ir.Constant(I32, k)]))
        rc = b.call(kernels[st.kernel], ptrs)
        fail = b.icmp_signed("!=", rc, ir.Constant(I32, 0))
        with b.if_then(fail, likely=False):
            b.ret(rc)
