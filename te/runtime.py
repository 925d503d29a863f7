"""The runtime: load an exported tilewise library and call its kernels with numpy arrays.

    m = te.runtime.load_module("mm.so")
    m(a, b, c)                  # the library's only kernel
    m["mm"](a, b, c)            # one of several, by name
    print(m.metadata)           # kernels, argument shapes/dtypes, target, records, versions

This module needs numpy and the standard library only -- never llvmlite, never another te
module -- so a deployed library loads without the compiler.  It can even be copied next to the
.so and imported on its own.  The JIT'd `te.build` Kernel shares the argument checks below.
The C ABI that libraries follow is documented in docs/c_abi.md.
"""
from __future__ import annotations

import ctypes
import json
import logging
import os
import platform
import shutil
import tempfile
from typing import NamedTuple

import numpy as np

log = logging.getLogger(__name__)

# What the library's metadata JSON says about itself; bump FORMAT_VERSION when the ABI changes.
FORMAT = "tilewise-library"
FORMAT_VERSION = 1
SUPPORTED_FORMAT_VERSIONS = (1,)
METADATA_SYMBOL = "tilewise_metadata"
SET_THREADS_SYMBOL = "tilewise_set_num_threads"
GET_THREADS_SYMBOL = "tilewise_get_num_threads"
MODEL_ENTRY_SYMBOL = "tilewise_run"          # i32 tilewise_run(void **io, const void *params, void *ws)
PARAMS_SYMBOL = "tilewise_params"            # the weights blob of a model library
ALIGN = 64

# LLVM feature name -> the flag /proc/cpuinfo shows for it (where they differ, the kernel's name).
CPUINFO_FLAGS = {
    "sse2": "sse2", "sse3": "pni", "ssse3": "ssse3", "sse4.1": "sse4_1", "sse4.2": "sse4_2",
    "popcnt": "popcnt", "avx": "avx", "avx2": "avx2", "fma": "fma", "f16c": "f16c",
    "bmi": "bmi1", "bmi2": "bmi2", "lzcnt": "abm", "movbe": "movbe",
    "avx512f": "avx512f", "avx512bw": "avx512bw", "avx512dq": "avx512dq", "avx512vl": "avx512vl",
    "avx512cd": "avx512cd", "avx512vnni": "avx512_vnni", "avx512bf16": "avx512_bf16",
    "avx512fp16": "avx512_fp16", "avx512ifma": "avx512ifma", "avx512vbmi": "avx512vbmi",
    "avx512vbmi2": "avx512_vbmi2", "avx512bitalg": "avx512_bitalg",
    "avx512vpopcntdq": "avx512_vpopcntdq", "avxvnni": "avx_vnni",
    "amx-tile": "amx_tile", "amx-int8": "amx_int8", "amx-bf16": "amx_bf16",
}


class LoadError(RuntimeError):
    """A file cannot be loaded as a tilewise library (not ours, wrong version, wrong CPU)."""


# ---------------------------------------------------------------- arguments, shared with the JIT
class ArgSpec(NamedTuple):
    """One kernel argument: its name, shape, dtype and whether the kernel writes it."""
    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    written: bool


class Pointers(list):
    """Data pointers of checked arguments; holds the arrays, so they live as long as the pointers."""

    def __init__(self, ptrs, arrays):
        super().__init__(ptrs)
        self.arrays = tuple(arrays)


def check_args(fname: str, specs: list[ArgSpec], arrays) -> Pointers:
    """Validate numpy arguments against a kernel's specs; returns their data pointers (a list that
    keeps the arrays alive: a pointer to a freed array would let the kernel write into the heap)."""
    if len(arrays) != len(specs):
        names = ", ".join(s.name for s in specs)
        raise ValueError(f"{fname} takes {len(specs)} arrays ({names}), got {len(arrays)}")
    ptrs = []
    for a, (name, shape, dtype, written) in zip(arrays, specs):
        if not isinstance(a, np.ndarray):
            raise ValueError(f"argument {name}: expected a numpy array of shape {shape} and dtype "
                             f"{dtype}, got {type(a).__name__}")
        if a.shape != shape:
            raise ValueError(f"argument {name}: expected shape {shape}, got {a.shape}")
        if a.dtype != dtype:
            raise ValueError(f"argument {name}: expected dtype {dtype}, got {a.dtype}")
        if not a.flags.c_contiguous:
            raise ValueError(f"argument {name}: the array must be C-contiguous "
                             "(use numpy.ascontiguousarray)")
        if written and not a.flags.writeable:
            raise ValueError(f"argument {name}: the kernel writes it, but the array is read-only")
        ptrs.append(a.ctypes.data)
    return Pointers(ptrs, arrays)


class NativeFunction:
    """A native kernel `int32 name(void *buf, ...)`: call it with numpy arrays in argument order.

    Subclasses set `name`, `_specs` (a list of ArgSpec) and `_cfunc` (a ctypes function).
    """
    name: str
    _specs: list[ArgSpec]
    _cfunc: ctypes._CFuncPtr

    @property
    def arg_specs(self) -> list[tuple[str, tuple, np.dtype]]:
        """(name, shape, dtype) of each argument."""
        return [(s.name, s.shape, s.dtype) for s in self._specs]

    def check(self, arrays) -> Pointers:
        """Validate the arguments; returns their data pointers, which keep the arrays alive."""
        return check_args(self.name, self._specs, arrays)

    def __call__(self, *arrays: np.ndarray) -> None:
        rc = self._cfunc(*self.check(arrays))
        if rc != 0:
            raise RuntimeError(f"kernel {self.name} failed with code {rc}")

    def call_unchecked(self, ptrs: list[int]) -> None:
        """Call with raw data pointers (for timing loops that already checked the arrays)."""
        self._cfunc(*ptrs)

    def _args_str(self) -> str:
        return ", ".join(f"{s.name}{list(s.shape)}:{s.dtype}" for s in self._specs)


def num_threads() -> int:
    """Threads for parallel loops: TILEWISE_NUM_THREADS, else the CPUs this process may use."""
    env = os.environ.get("TILEWISE_NUM_THREADS", "").strip()
    if env:
        try:
            n = int(env)
        except ValueError:
            raise ValueError(f"TILEWISE_NUM_THREADS={env!r} is not a whole number") from None
        if n < 1:
            raise ValueError(f"TILEWISE_NUM_THREADS={env!r} must be at least 1")
        return n
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


# ---------------------------------------------------------------- loading a library
class LibraryFunction(NativeFunction):
    """One kernel of a loaded library."""

    def __init__(self, module: "Module", info: dict):
        self.name = info["name"]
        self.module = module
        self._specs = [ArgSpec(a["name"], tuple(a["shape"]), np.dtype(a["dtype"]), a["written"])
                       for a in info["args"]]
        try:
            fn = getattr(module._lib, self.name)
        except AttributeError:
            raise LoadError(f"{module.path}: the metadata lists kernel {self.name}, but the library "
                            "has no such symbol (the file is damaged)") from None
        fn.restype = ctypes.c_int32
        fn.argtypes = [ctypes.c_void_p] * len(self._specs)
        self._cfunc = fn

    def __repr__(self) -> str:
        return f"LibraryFunction {self.name}({self._args_str()}) from {self.module.path}"


class Module:
    """A loaded library: its metadata and its kernels (m[name]; m(...) when it holds just one)."""

    def __init__(self, path: str, lib: ctypes.CDLL, metadata: dict):
        self.path = path
        self.metadata = metadata
        self._lib = lib
        self._functions = {k["name"]: LibraryFunction(self, k) for k in metadata["kernels"]}
        self._set_threads = lib[SET_THREADS_SYMBOL]
        self._set_threads.argtypes = [ctypes.c_int32]
        self._set_threads.restype = None
        self.set_num_threads(num_threads())

    @property
    def names(self) -> list[str]:
        """The kernel names, in the order they were exported."""
        return list(self._functions)

    @property
    def target(self) -> str:
        """The target string the library was built for."""
        return self.metadata["target"]

    def set_num_threads(self, n: int) -> None:
        """Threads that parallel loops of every kernel in this library use."""
        self._set_threads(int(n))

    def __getitem__(self, name: str) -> LibraryFunction:
        try:
            return self._functions[name]
        except KeyError:
            raise KeyError(f"{self.path} has no kernel {name!r}; it has: "
                           f"{', '.join(self._functions)}") from None

    def __contains__(self, name: str) -> bool:
        return name in self._functions

    def __iter__(self):
        return iter(self._functions)

    def __len__(self) -> int:
        return len(self._functions)

    # ------------------------------------------------------------- whole models
    @property
    def is_model(self) -> bool:
        """True for a library built from a whole model (frontends.build(...).export_library)."""
        return "model" in self.metadata

    def _model(self) -> dict:
        if not self.is_model:
            raise TypeError(f"{self.path} holds kernels, not a model; call a kernel with m[name](...)")
        return self.metadata["model"]

    @property
    def input_names(self) -> list[str]:
        return [i["name"] for i in self._model()["inputs"]]

    @property
    def output_names(self) -> list[str]:
        return [o["name"] for o in self._model()["outputs"]]

    @property
    def inputs(self) -> list[dict]:
        """Model inputs: name, shape, dtype."""
        return list(self._model()["inputs"])

    @property
    def outputs(self) -> list[dict]:
        """Model outputs: name, shape, dtype."""
        return list(self._model()["outputs"])

    def run(self, **inputs: np.ndarray) -> list[np.ndarray]:
        """Run the whole model natively; returns the outputs in the model's order."""
        model = self._model()
        if not hasattr(self, "_entry"):
            fn = self._lib[MODEL_ENTRY_SYMBOL]
            fn.restype = ctypes.c_int32
            fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
            params = ctypes.addressof(ctypes.c_char.in_dll(self._lib, PARAMS_SYMBOL)) \
                if model.get("param_bytes") else 0
            self._entry = (fn, params)
        fn, params = self._entry
        return run_entry(fn, model["inputs"], model["outputs"], model["workspace_bytes"], params, inputs)

    def __call__(self, *arrays: np.ndarray, **inputs: np.ndarray):
        if self.is_model:
            if arrays:
                if len(arrays) != len(self.input_names):
                    raise ValueError(f"the model takes {len(self.input_names)} inputs "
                                     f"({', '.join(self.input_names)}), got {len(arrays)}")
                inputs.update(zip(self.input_names, arrays))
            return self.run(**inputs)
        if len(self._functions) != 1:
            raise TypeError(f"{self.path} holds {len(self._functions)} kernels "
                            f"({', '.join(self._functions)}); pick one with m[name](...)")
        next(iter(self._functions.values()))(*arrays)

    def __repr__(self) -> str:
        return f"Module {self.path} ({', '.join(self._functions)}) for {self.target}"


def run_entry(fn, in_specs: list[dict], out_specs: list[dict], ws_bytes: int, params_ptr: int,
              inputs: dict) -> list[np.ndarray]:
    """Check a model's inputs, allocate its outputs and workspace, and call its entry point."""
    names = [s["name"] for s in in_specs]
    unknown = sorted(set(inputs) - set(names))
    missing = [n for n in names if n not in inputs]
    if unknown or missing:
        raise ValueError(f"the model's inputs are {names}; missing {missing}, unknown {unknown}")
    arrays = []
    for spec in in_specs:
        a = np.asarray(inputs[spec["name"]])
        dt = np.dtype(spec["dtype"] if spec["dtype"] != "bool" else np.bool_)
        if tuple(a.shape) != tuple(spec["shape"]):
            raise ValueError(f"input {spec['name']}: expected shape {tuple(spec['shape'])}, got {a.shape}")
        if a.dtype != dt:
            raise ValueError(f"input {spec['name']}: expected dtype {dt}, got {a.dtype}")
        arrays.append(np.ascontiguousarray(a))
    outs = [np.empty(spec["shape"], np.dtype(spec["dtype"] if spec["dtype"] != "bool" else np.bool_))
            for spec in out_specs]
    ws = np.empty(max(ws_bytes, 1) + ALIGN, np.uint8)
    ws_ptr = ws.ctypes.data + (-ws.ctypes.data) % ALIGN
    io = (ctypes.c_void_p * (len(arrays) + len(outs)))(*[a.ctypes.data for a in arrays + outs])
    rc = fn(ctypes.cast(io, ctypes.c_void_p), params_ptr, ws_ptr)
    if rc != 0:
        raise RuntimeError(f"the model failed with code {rc}")
    return outs


def load_module(path: str | os.PathLike) -> Module:
    """Load a library made by export_library; refuses files that are not ours or not for this CPU."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such library: {path}")
    with open(path, "rb") as fh:
        if fh.read(4) != b"\x7fELF":
            raise LoadError(f"{path} is not a tilewise library: it is not a shared library "
                            "(no ELF header)")
    lib = _dlopen(path)
    try:
        meta_fn = lib[METADATA_SYMBOL]
        lib[SET_THREADS_SYMBOL]
    except AttributeError:
        raise LoadError(f"{path} is not a tilewise library: it has no {METADATA_SYMBOL}() "
                        "symbol (build libraries with te.export_library)") from None
    meta_fn.restype = ctypes.c_char_p
    meta_fn.argtypes = []
    meta = _parse_metadata(path, meta_fn())
    _check_cpu(path, meta)
    return Module(path, lib, meta)


# Libraries this process has loaded: realpath -> {file identity: the path dlopen was given}.
# dlopen hands back the library already loaded for a path it knows, even after the file was
# rebuilt, so a rebuilt file is loaded from a private copy.
_loaded: dict[str, dict[tuple, str]] = {}


def _dlopen(path: str) -> ctypes.CDLL:
    real = os.path.realpath(path)
    st = os.stat(real)
    ident = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    seen = _loaded.setdefault(real, {})
    target = seen.get(ident)
    if target is None:
        target = real
        if seen:
            target = os.path.join(tempfile.mkdtemp(prefix="tilewise-lib-"), os.path.basename(real))
            shutil.copyfile(real, target)
        seen[ident] = target
    try:
        return ctypes.CDLL(target, mode=os.RTLD_NOW | os.RTLD_LOCAL)
    except OSError as e:
        hint = ""
        if "libgomp" in str(e):
            hint = (" -- the library has parallel loops and needs the GNU OpenMP runtime: "
                    "install it with 'apt-get install libgomp1'")
        raise LoadError(f"{path} cannot be loaded as a shared library: {e}{hint}") from None


def _parse_metadata(path: str, raw: bytes | None) -> dict:
    try:
        meta = json.loads(raw.decode("utf-8"))
    except (AttributeError, UnicodeDecodeError, ValueError):
        meta = None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise LoadError(f"{path} is not a tilewise library: its {METADATA_SYMBOL}() does not "
                        "return tilewise metadata")
    version = meta.get("format_version")
    if version not in SUPPORTED_FORMAT_VERSIONS:
        raise LoadError(f"{path} has library format version {version!r}, but this runtime reads "
                        f"version(s) {', '.join(map(str, SUPPORTED_FORMAT_VERSIONS))}; rebuild the "
                        "library with this tilewise, or load it with the tilewise that made it")
    return meta


def cpu_flags() -> set[str] | None:
    """The feature flags /proc/cpuinfo lists for this CPU (None where it cannot be read)."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return None


def missing_features(required: list[str], flags: set[str]) -> list[str]:
    """The LLVM feature names in required that a CPU with these cpuinfo flags lacks."""
    return [f for f in required
            if CPUINFO_FLAGS.get(f, f.replace(".", "_").replace("-", "_")) not in flags]


def _check_cpu(path: str, meta: dict) -> None:
    arch = meta.get("arch")
    here = platform.machine()
    if arch and here and arch != here:
        raise LoadError(f"{path} was built for {arch}, but this machine is {here}")
    flags = cpu_flags()
    if flags is None:
        log.warning("cannot read /proc/cpuinfo; loading %s without checking its CPU features", path)
        return
    missing = missing_features(meta.get("required_features", []), flags)
    if missing:
        raise LoadError(f"{path} was built for '{meta.get('target')}', which needs CPU features this "
                        f"CPU lacks: {', '.join(missing)}. Rebuild it for this machine (the default "
                        "target) or for a lower level, e.g. 'llvm -mcpu=haswell' for AVX2")
