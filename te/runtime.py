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
import hashlib
import platform
import shutil
import struct
import tempfile
from typing import NamedTuple

import numpy as np

log = logging.getLogger(__name__)

# What the library's metadata JSON says about itself; bump FORMAT_VERSION when the ABI changes.
FORMAT = "tilewise-library"
FORMAT_VERSION = 3
SUPPORTED_FORMAT_VERSIONS = (3,)
METADATA_SYMBOL = "tilewise_metadata"
METADATA_SECTION = ".tilewise_metadata"     # holds METADATA_MAGIC, the file's digest, the JSON, NUL
MAGIC_PREFIX = b"TWMETA"
METADATA_MAGIC = MAGIC_PREFIX + b"%02d" % FORMAT_VERSION
DIGEST_SIZE = 32                            # the sha256 of the whole file, its own bytes as zeros
METADATA_HEADER = len(METADATA_MAGIC) + DIGEST_SIZE
SET_THREADS_SYMBOL = "tilewise_set_num_threads"
GET_THREADS_SYMBOL = "tilewise_get_num_threads"
MODEL_ENTRY_SYMBOL = "tilewise_run"          # i32 tilewise_run(void **io, const void *params, void *ws)
MODEL_BATCH_ENTRY_SYMBOL = "tilewise_run_batch"   # ... (io, params, ws, int64 batch): a dynamic batch
BATCH_ERROR = -22                            # what tilewise_run_batch returns for a batch outside 1..max
PARAMS_SYMBOL = "tilewise_params"            # the weights blob of a model library
ALIGN = 64

# LLVM feature name -> the flag /proc/cpuinfo shows for it, where the kernel's name differs; any
# other feature is looked for under its own name (with '.' and '-' as '_'), and one that is not
# found counts as missing: an instruction the loader cannot vouch for would be a SIGILL later.
CPUINFO_FLAGS = {
    "64bit": "lm", "x87": "fpu", "sahf": "lahf_lm", "sse3": "pni", "sse4.1": "sse4_1",
    "sse4.2": "sse4_2", "crc32": "sse4_2", "lzcnt": "abm", "prfchw": "3dnowprefetch", "bmi": "bmi1",
    "pclmul": "pclmulqdq", "sha": "sha_ni", "rdrnd": "rdrand", "evex512": "avx512f",
    "avx512vnni": "avx512_vnni", "avx512bf16": "avx512_bf16", "avx512fp16": "avx512_fp16",
    "avx512vbmi2": "avx512_vbmi2", "avx512bitalg": "avx512_bitalg",
    "avx512vpopcntdq": "avx512_vpopcntdq", "avx512vp2intersect": "avx512_vp2intersect",
    "avxvnni": "avx_vnni", "avxifma": "avx_ifma", "avxvnniint8": "avx_vnni_int8",
    "avxvnniint16": "avx_vnni_int16", "avxneconvert": "avx_ne_convert",
}
# Parallel loops start one OpenMP thread per count, and libgomp crashes the process when it cannot
# create them (99999 does that); 1024 is more than the CPUs of any machine this runs on, so no
# useful setting is refused.
MAX_THREADS = 1024
# Byte-coded types: the formats narrower than a byte or without arithmetic in te (float8, float4,
# int4, int2...), one element per byte holding its bit pattern (ml_dtypes' layout, numpy's dtype
# names); te/expr.py says what te does with them.  Defined here, as this file loads alone.
BYTE_CODED = ("float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2", "float8_e5m2fnuz", "float8_e8m0fnu",
              "float4_e2m1fn", "int4", "uint4", "int2", "uint2")
# te dtypes whose numpy dtype is ml_dtypes'
ML_DTYPES = frozenset({"bfloat16", *BYTE_CODED})


class LoadError(RuntimeError):
    """A file cannot be loaded as a tilewise library (not ours, wrong version, wrong CPU)."""


# ---------------------------------------------------------------- arguments, shared with the JIT
class ArgSpec(NamedTuple):
    """One kernel argument: its name, shape, dtype and whether the kernel writes it."""
    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    written: bool


def np_dtype(dtype) -> np.dtype:
    """numpy's dtype of a te dtype name; bfloat16 and the byte-coded types (float8_e4m3fn, int4...)
    are ml_dtypes' (which onnx depends on), imported only when one is met: it takes seconds, and
    most libraries have none."""
    if str(dtype) in ML_DTYPES:
        try:
            import ml_dtypes
        except ImportError:
            raise LoadError(f"{dtype} arrays need the ml_dtypes package: pip install ml_dtypes") from None
        return np.dtype(getattr(ml_dtypes, str(dtype)))
    return np.dtype(dtype)


def random_array(rng: np.random.Generator, shape, dtype) -> np.ndarray:
    """Random input values of a te dtype: floats ~ N(0, 1), fair bools, integers in [0, 3).

    The one input maker of the tuner's runner, the kernel profile and `tilewise run`: small
    integers stay inside most index ranges (a gather's, a one-hot's depth)."""
    dt = np_dtype(dtype)
    if dt.kind == "f" or dt.name == "bfloat16":         # ml_dtypes' bfloat16 is of kind 'V'
        return rng.standard_normal(shape).astype(dt)
    if dt.kind == "b":
        return rng.random(shape) < 0.5
    return rng.integers(0, 3, shape).astype(dt)


def aligned_copy(a: np.ndarray, align: int = ALIGN) -> np.ndarray:
    """a, C-contiguous, in memory that starts on an `align`-byte boundary (numpy puts large arrays
    16 bytes past a page): a kernel's 64-byte row and tile loads of it then never split a cache line."""
    raw = np.empty(a.nbytes + align, np.uint8)
    off = (-raw.ctypes.data) % align
    out = raw[off:off + a.nbytes].view(a.dtype).reshape(a.shape)
    out[...] = a
    return out


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
        ptrs.append(data_address(a))
    for i, (a, spec) in enumerate(zip(arrays, specs)):
        for b, other in zip(arrays[i + 1:], specs[i + 1:]):
            # every pointer is noalias: a written array that overlaps another gives garbage
            if (spec.written or other.written) and np.may_share_memory(a, b):
                w, o = (spec, other) if spec.written else (other, spec)
                raise ValueError(f"arguments {w.name} and {o.name} overlap in memory, and the kernel "
                                 f"writes {w.name}; pass separate arrays (e.g. {o.name}.copy())")
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


def check_num_threads(n, what: str = "the thread count") -> int:
    """n as a thread count, or a ValueError naming what and the valid range 1..MAX_THREADS."""
    try:
        count = int(n)
    except (TypeError, ValueError):
        count = None
    if count is None or (not isinstance(n, str) and count != n):
        raise ValueError(f"{what}={n!r} is not a whole number; give 1 to {MAX_THREADS}")
    if count < 1:
        raise ValueError(f"{what}={n!r} must be at least 1; give 1 to {MAX_THREADS}")
    if count > MAX_THREADS:
        raise ValueError(f"{what}={n!r} is too many (libgomp crashes when it cannot start them); "
                         f"give 1 to {MAX_THREADS} (this machine has {os.cpu_count()} CPUs)")
    return count


# How long an idle OpenMP thread spins before it sleeps, in libgomp's pause-instruction loops
# (GOMP_SPINCOUNT), unless the user chose (GOMP_SPINCOUNT or OMP_WAIT_POLICY set).  libgomp's own
# default, 300000, spins about 20 ms on cores whose pause takes ~140 cycles (Intel since
# Skylake): when another process shares the cores, a thread waiting at a barrier burns the time
# slice its partner needs, and on Emerald Rapids ResNet-50 took 416-896 ms beside one busy
# process against 179 ms with 30000 (bench/RESULTS.md, session 12).  30000 is about 2 ms there
# and 1 ms on AMD Zen (shorter pause): still longer than the gap between two kernels of a model
# or two runs back to back, so an idle machine keeps its threads awake.
SPIN_COUNT = 30000


def openmp_wait_policy() -> None:
    """Set libgomp's spin count (SPIN_COUNT) before libgomp loads, unless the user set one."""
    if "GOMP_SPINCOUNT" not in os.environ and "OMP_WAIT_POLICY" not in os.environ:
        os.environ["GOMP_SPINCOUNT"] = str(SPIN_COUNT)


def num_threads() -> int:
    """Threads for parallel loops: TILEWISE_NUM_THREADS, else the CPUs this process may use."""
    env = os.environ.get("TILEWISE_NUM_THREADS", "").strip()
    if env:
        return check_num_threads(env, "TILEWISE_NUM_THREADS")
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
        self._specs = [ArgSpec(a["name"], tuple(a["shape"]), np_dtype(a["dtype"]), a["written"])
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
        self._call: ModelCall | None = None        # a model's entry, set up by its first run

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
        self._set_threads(check_num_threads(n))

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

    def get_inputs(self) -> list["NodeArg"]:
        """The model's inputs as ONNX Runtime's InferenceSession.get_inputs() gives them."""
        return node_args(self._model()["inputs"])

    def get_outputs(self) -> list["NodeArg"]:
        """The model's outputs as ONNX Runtime's InferenceSession.get_outputs() gives them."""
        return node_args(self._model()["outputs"])

    def run(self, *args, **inputs) -> list[np.ndarray]:
        """Run the whole model natively.

        As ONNX Runtime: run(output_names, input_feed) returns the outputs named (None: all) in
        that order; as before: run(x=...) returns every output in the model's order."""
        model = self._model()
        return select_outputs(args, inputs, model["inputs"], model["outputs"], self._run_all)

    def _run_all(self, inputs: dict) -> list[np.ndarray]:
        if self._call is None:
            model = self._model()
            fn = self._lib[model.get("entry", MODEL_ENTRY_SYMBOL)]
            fn.restype = ctypes.c_int32
            fn.argtypes = [ctypes.c_void_p] * 3 + ([ctypes.c_int64] if model.get("batch") else [])
            params = ctypes.addressof(ctypes.c_char.in_dll(self._lib, PARAMS_SYMBOL)) \
                if model.get("param_bytes") else 0
            self._call = ModelCall(fn, model["inputs"], model["outputs"], model["workspace_bytes"], params,
                                   model.get("batch"))
        return self._call(inputs)

    def __call__(self, *arrays: np.ndarray, **inputs: np.ndarray):
        if self.is_model:
            return self._run_all(positional_feed(arrays, inputs, self.input_names))
        if len(self._functions) != 1:
            raise TypeError(f"{self.path} holds {len(self._functions)} kernels "
                            f"({', '.join(self._functions)}); pick one with m[name](...)")
        next(iter(self._functions.values()))(*arrays)

    def __repr__(self) -> str:
        return f"Module {self.path} ({', '.join(self._functions)}) for {self.target}"


# ---------------------------------------------------------------- ONNX Runtime's calling convention
# numpy dtype name -> ONNX Runtime's NodeArg.type
ORT_TYPES = {"float32": "tensor(float)", "float64": "tensor(double)", "float16": "tensor(float16)",
             "bfloat16": "tensor(bfloat16)", "bool": "tensor(bool)", "int8": "tensor(int8)",
             "uint8": "tensor(uint8)", "int16": "tensor(int16)", "uint16": "tensor(uint16)",
             "int32": "tensor(int32)", "uint32": "tensor(uint32)", "int64": "tensor(int64)",
             "uint64": "tensor(uint64)", "float8_e4m3fn": "tensor(float8e4m3fn)",
             "float8_e4m3fnuz": "tensor(float8e4m3fnuz)", "float8_e5m2": "tensor(float8e5m2)",
             "float8_e5m2fnuz": "tensor(float8e5m2fnuz)", "float8_e8m0fnu": "tensor(float8e8m0)",
             "float4_e2m1fn": "tensor(float4e2m1)", "int4": "tensor(int4)", "uint4": "tensor(uint4)",
             "int2": "tensor(int2)", "uint2": "tensor(uint2)"}


class NodeArg(NamedTuple):
    """A model input or output as ONNX Runtime's NodeArg shows it: name, shape, type."""
    name: str
    shape: list
    type: str

    def __repr__(self) -> str:
        return f"NodeArg(name={self.name!r}, type={self.type!r}, shape={self.shape!r})"


def node_args(specs: list[dict]) -> list[NodeArg]:
    """NodeArgs of a model's input or output specs ({name, shape, dtype})."""
    return [NodeArg(s["name"], list(s["shape"]), ORT_TYPES.get(s["dtype"], f"tensor({s['dtype']})"))
            for s in specs]


def positional_feed(arrays: tuple, inputs: dict, names: list[str]) -> dict:
    """The feed of a model called as m(x, y) (inputs in the model's order) or m(x=..., y=...)."""
    if arrays and len(arrays) != len(names):
        raise ValueError(f"the model takes {len(names)} inputs ({', '.join(names)}), got {len(arrays)}")
    return {**inputs, **dict(zip(names, arrays))}


def select_outputs(args: tuple, kwargs: dict, in_specs: list[dict], out_specs: list[dict],
                   run_all) -> list[np.ndarray]:
    """A model's run() in both conventions: ONNX Runtime's run(output_names, input_feed[,
    run_options]) -- positionally or by those keywords -- and run(**inputs); `run_all(feed)`
    runs the model and returns every output in the model's order."""
    if len(args) == 2 and not kwargs and args[0] is None and type(args[1]) is dict:
        return run_all(args[1])         # run(None, feed), the usual call: nothing to sort out
    in_names = [s["name"] for s in in_specs]
    ort_keywords = {"output_names", "input_feed", "run_options"}
    if args or (kwargs and set(kwargs) <= ort_keywords and "input_feed" in kwargs
                and "input_feed" not in in_names):
        if len(args) > 3:
            raise TypeError(f"run(output_names, input_feed, run_options=None) takes at most 3 "
                            f"arguments, got {len(args)}")
        given = dict(zip(("output_names", "input_feed", "run_options"), args))
        for k, v in kwargs.items():
            if k not in ort_keywords or k in given:
                raise TypeError(f"run(): unexpected or repeated argument {k!r}; call run(output_names, "
                                "input_feed) or run(**inputs), not both")
            given[k] = v
        feed = given.get("input_feed")
        if not isinstance(feed, dict):
            raise TypeError(f"run(output_names, input_feed): input_feed must be a dict of input name -> "
                            f"array (inputs: {', '.join(in_names)}), got {type(feed).__name__}")
        wanted = given.get("output_names")
    else:
        feed, wanted = kwargs, None
    out_names = [s["name"] for s in out_specs]
    if wanted is not None:
        if isinstance(wanted, str):
            raise TypeError(f"run(): output_names must be a list of names, e.g. [{wanted!r}], or None")
        wanted = list(wanted)
        unknown = [n for n in wanted if n not in out_names]
        if unknown:
            raise ValueError(f"run(): unknown output name(s) {unknown}; the model's outputs are {out_names}")
    outs = run_all(feed)
    if wanted is None:
        return outs
    return [outs[out_names.index(n)] for n in wanted]


class ModelCall:
    """A model's entry point with what every call needs worked out once: call(feed) checks the
    inputs, allocates fresh outputs and runs the model.

    The per-call Python work is a few attribute compares per input, one output allocation each
    and the native call: the specs' dtypes and shapes are built here, and the workspace and the
    pointer array are reused (kept for the model's life, as ONNX Runtime keeps its arena).
    Outputs are never reused: an array returned by one call is not written by the next.  With a
    dynamic batch ({"dim", "max"}), the specs that lead with the dimension's name take any batch
    1..max, the same for every such input."""

    def __init__(self, fn, in_specs: list[dict], out_specs: list[dict], ws_bytes: int,
                 params_ptr: int, batch: dict | None = None):
        self._fn, self._params, self._batch = fn, params_ptr, batch
        self._in_specs = in_specs
        self.in_names = [s["name"] for s in in_specs]
        self._in_checks = [(s["name"], np_dtype(s["dtype"])) for s in in_specs]
        self._in_shapes = [tuple(s["shape"]) for s in in_specs]
        self._out_shapes = [tuple(s["shape"]) for s in out_specs]
        self._out_dtypes = [np_dtype(s["dtype"]) for s in out_specs]
        self._ws_bytes = max(ws_bytes, 1)
        # free (workspace, its aligned address, io pointer array) sets: the native call releases
        # the GIL, so calls from several threads each take their own (list.pop/append are atomic)
        self._scratch: list[tuple[np.ndarray, int, ctypes.Array]] = []

    def _new_scratch(self) -> tuple[np.ndarray, int, ctypes.Array]:
        ws = np.empty(self._ws_bytes + ALIGN, np.uint8)
        io = (ctypes.c_void_p * (len(self._in_shapes) + len(self._out_shapes)))()
        return ws, ws.ctypes.data + (-ws.ctypes.data) % ALIGN, io

    def _feed_error(self, inputs: dict) -> ValueError:
        names = self.in_names
        unknown = sorted(set(inputs) - set(names))
        missing = [n for n in names if n not in inputs]
        return ValueError(f"the model's inputs are {names}; missing {missing}, unknown {unknown}")

    def __call__(self, inputs: dict) -> list[np.ndarray]:
        try:
            arrays = [inputs[name] for name in self.in_names]
        except KeyError:
            raise self._feed_error(inputs) from None
        if len(inputs) != len(arrays):
            raise self._feed_error(inputs)
        if self._batch:
            arrays = [np.asarray(a) for a in arrays]
            n = batch_of(self._in_specs, arrays, self._batch)
            in_shapes = [concrete_shape(shape, n) for shape in self._in_shapes]
            out_shapes = [concrete_shape(shape, n) for shape in self._out_shapes]
        else:
            n, in_shapes, out_shapes = None, self._in_shapes, self._out_shapes
        scratch = self._scratch.pop() if self._scratch else self._new_scratch()
        ws, ws_ptr, io = scratch
        try:
            for i, ((name, dt), want, a) in enumerate(zip(self._in_checks, in_shapes, arrays)):
                if type(a) is not np.ndarray:
                    a = np.asarray(a)
                if a.shape != want:
                    raise ValueError(f"input {name}: expected shape {want}, got {a.shape}")
                if a.dtype != dt:
                    raise ValueError(f"input {name}: expected dtype {dt}, got {a.dtype}")
                # arrays holds a copy made here until the call returns
                arrays[i] = a = a if a.flags.c_contiguous else np.ascontiguousarray(a)
                io[i] = data_address(a)
            outs = [np.empty(shape, dt) for shape, dt in zip(out_shapes, self._out_dtypes)]
            for i, out in enumerate(outs, len(arrays)):
                io[i] = data_address(out)
            rc = self._fn(io, self._params, ws_ptr, *([n] if n is not None else []))
        finally:
            self._scratch.append(scratch)
        if rc != 0:
            raise RuntimeError(f"the model failed with code {rc}")
        return outs


def data_address(a: np.ndarray) -> int:
    """The address of a C-contiguous array's data.  A ctypes view of its buffer costs a third of
    a.ctypes.data, which stays for the arrays that do not export a writable buffer (read-only,
    empty, or of an ml_dtypes type)."""
    try:
        return ctypes.addressof(ctypes.c_char.from_buffer(a))
    except (TypeError, ValueError, BufferError):
        return a.ctypes.data


def concrete_shape(shape: list, n: int | None) -> tuple[int, ...]:
    """A spec's shape with its batch dimension (a name) set to n."""
    return tuple(d if isinstance(d, int) else n for d in shape)


def batch_of(in_specs: list[dict], arrays: list, batch: dict) -> int:
    """The batch of a dynamic-batch model's inputs: one leading size for every input that leads
    with the batch dimension, 1..batch["max"], the other dimensions as the spec says; else a
    ValueError naming the input, the batch given and the maximum."""
    dim, top = batch["dim"], int(batch["max"])
    n = None
    for spec, a in zip(in_specs, arrays):
        shape = spec["shape"]
        if not shape or isinstance(shape[0], int):
            continue
        want = f"({dim}, {', '.join(map(str, shape[1:]))}) with {dim} from 1 to {top}"
        if a.ndim != len(shape) or tuple(a.shape[1:]) != tuple(shape[1:]):
            raise ValueError(f"input {spec['name']}: expected shape {want}, got {a.shape}")
        if not 1 <= a.shape[0] <= top:
            raise ValueError(f"input {spec['name']}: batch {a.shape[0]} is outside 1..{top}, the maximum this "
                             f"model was built for; rebuild it with --max-batch {a.shape[0]} (max_batch= in Python)")
        if n is not None and a.shape[0] != n:
            raise ValueError(f"input {spec['name']}: batch {a.shape[0]}, but the inputs before it have "
                             f"batch {n}; give every input the same batch")
        n = a.shape[0]
    return n


def load_module(path: str | os.PathLike) -> Module:
    """Load a library made by export_library; refuses files that are not ours or not for this CPU.

    Everything is checked by reading the file before dlopen, which runs the library's code:
    the ELF structure, the checksum of the whole file, the metadata, the symbols it names, the CPU.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        raise LoadError(f"{path} is a folder, not a library; give the .so file")
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such library: {path}")
    try:
        elf = read_elf(path)
        check_digest(path, elf)
    except OSError as e:
        raise LoadError(f"{path} cannot be read: {e.strerror or e}") from None
    meta = _parse_metadata(path, elf.metadata)
    _check_symbols(path, meta, elf.symbols)
    _check_cpu(path, meta)
    if "amx-tile" in meta.get("required_features", []):
        request_amx(path)
    lib = _dlopen(path)
    meta_fn = lib[METADATA_SYMBOL]
    meta_fn.restype = ctypes.c_void_p
    meta_fn.argtypes = []
    text = meta_fn()
    # the file changed between the checks and dlopen: another digest or other metadata is mapped
    if ctypes.string_at(text - DIGEST_SIZE, DIGEST_SIZE) != elf.digest or ctypes.string_at(text) != elf.metadata:
        raise LoadError(f"{path} changed while it was being loaded; load it again")
    return Module(path, lib, meta)


# Libraries this process has loaded: realpath -> {file identity: the library}.  dlopen hands
# back the library already loaded for a path it knows, even after the file was rebuilt, so a
# rebuilt file is loaded from a private copy, which is removed once loaded (the mapping stays).
_loaded: dict[str, dict[tuple, ctypes.CDLL]] = {}


def _dlopen(path: str) -> ctypes.CDLL:
    real = os.path.realpath(path)
    st = os.stat(real)
    ident = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    seen = _loaded.setdefault(real, {})
    if ident in seen:
        return seen[ident]
    copy_dir = tempfile.mkdtemp(prefix="tilewise-lib-") if seen else None
    target = real
    try:
        if copy_dir:
            target = os.path.join(copy_dir, os.path.basename(real))
            shutil.copyfile(real, target)
        openmp_wait_policy()                # libgomp reads it when the library brings it in
        lib = ctypes.CDLL(target, mode=os.RTLD_NOW | os.RTLD_LOCAL)
    except OSError as e:
        hint = ""
        if "libgomp" in str(e):
            hint = (" -- the library has parallel loops and needs the GNU OpenMP runtime: "
                    "install it with 'apt-get install libgomp1'")
        raise LoadError(f"{path} cannot be loaded as a shared library: {e}{hint}") from None
    except UnicodeDecodeError:      # dlerror's message quotes bytes of a damaged file
        raise LoadError(f"{path} cannot be loaded as a shared library: the dynamic loader refused "
                        "it (the file is damaged); rebuild it") from None
    finally:
        if copy_dir:
            shutil.rmtree(copy_dir, ignore_errors=True)
    seen[ident] = lib
    return lib


# ---------------------------------------------------------------- reading the ELF file itself
_EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
_PHDR = struct.Struct("<IIQQQQQQ")
_SHDR = struct.Struct("<IIQQQQIIQQ")
_SYM = struct.Struct("<IBBHQQ")
ELF_MACHINES = {"x86_64": 62, "aarch64": 183, "ppc64le": 21, "riscv64": 243}
PT_LOAD, PF_X, SHF_ALLOC, SHT_NOBITS, SHT_DYNSYM = 1, 1, 2, 8, 11
STT_OBJECT, STT_FUNC = 1, 2


class ElfFile(NamedTuple):
    """What the loader reads from a library file before it lets dlopen run anything."""
    metadata: bytes                             # the metadata JSON
    symbols: dict[str, tuple[int, int, bool]]   # defined dynamic symbols: (type, size, in code)
    digest: bytes                               # the file digest stored in the metadata section
    digest_at: int                              # the file offset of that digest


def read_elf(path: str) -> ElfFile:
    """Check that path is a whole, self-consistent 64-bit ELF shared library for this machine of
    our format; returns its metadata, dynamic symbols and stored digest (check_digest checks that).
    Reads the file; runs nothing from it."""
    with open(path, "rb") as fh:
        fd, size = fh.fileno(), os.fstat(fh.fileno()).st_size

        def damaged(what: str) -> LoadError:
            return LoadError(f"{path} is damaged (cut short or modified): {what}; rebuild it")

        def read(off: int, n: int, what: str) -> bytes:
            if off + n > size:
                raise damaged(f"its {what} lies past the end of the file ({size} bytes)")
            return os.pread(fd, n, off)

        if os.pread(fd, 4, 0) != b"\x7fELF":
            raise LoadError(f"{path} is not a tilewise library: it is not a shared library "
                            "(no ELF header)")
        (ident, e_type, machine, _, _, phoff, shoff, _, ehsize, phentsize, phnum, shentsize,
         shnum, shstrndx) = _EHDR.unpack(read(0, _EHDR.size, "ELF header"))
        if ident[4:6] != b"\x02\x01":
            raise LoadError(f"{path} is not a 64-bit little-endian ELF file, so not a library for this machine")
        if e_type != 3:
            kind = {1: "an object file", 2: "an executable", 4: "a core dump"}.get(e_type, f"ELF type {e_type}")
            raise LoadError(f"{path} is {kind}, not a shared library; build libraries with te.export_library")
        want = ELF_MACHINES.get(platform.machine())
        if want is not None and machine != want:
            raise LoadError(f"{path} is for another architecture (ELF machine {machine}); "
                            f"this machine is {platform.machine()}")
        if (ehsize, phentsize, shentsize) != (64, _PHDR.size, _SHDR.size) or not shnum or shstrndx >= shnum:
            raise damaged("its ELF header is inconsistent")
        raw = read(phoff, phnum * _PHDR.size, "program header table")
        loads = []
        for i in range(phnum):
            p_type, p_flags, p_off, p_vaddr, _, p_filesz, p_memsz, _ = _PHDR.unpack_from(raw, i * _PHDR.size)
            if p_off + p_filesz > size or p_filesz > p_memsz:
                raise damaged(f"segment {i} lies past the end of the file")
            if p_type == PT_LOAD:
                loads.append((p_off, p_vaddr, p_filesz, p_memsz, p_flags))
        raw = read(shoff, shnum * _SHDR.size, "section header table")
        sections = [_SHDR.unpack_from(raw, i * _SHDR.size) for i in range(shnum)]
        for i, (_, sh_type, flags, addr, off, sz, *_rest) in enumerate(sections):
            if sh_type == SHT_NOBITS or not sz:     # nothing of it is in the file
                continue
            # a mapped section must sit in a segment at the same offset from its start in the
            # file as in memory: bytes inserted or cut before it break that
            if off + sz > size or flags & SHF_ALLOC and not any(
                    lo <= off and off + sz <= lo + fsz and addr - va == off - lo for lo, va, fsz, _, _ in loads):
                raise damaged(f"section {i} does not match the segments that map it")
        shstr = _section_data(sections[shstrndx], read)

        def name(offset: int, table: bytes) -> str:
            end = table.find(b"\0", offset)
            if end < 0:
                raise damaged("a name lies outside its string table")
            return table[offset:end].decode("utf-8", "replace")

        by_name = {name(sh[0], shstr): sh for sh in sections}
        if METADATA_SECTION not in by_name:
            raise LoadError(f"{path} is not a tilewise library of format version {FORMAT_VERSION}: it "
                            f"has no {METADATA_SECTION} section (build it, or rebuild an older one, "
                            "with te.export_library)")
        meta_sh = by_name[METADATA_SECTION]
        meta = _section_data(meta_sh, read)
        symbols = {}
        for sh in sections:
            if sh[1] != SHT_DYNSYM:
                continue
            if sh[6] >= shnum:
                raise damaged("its symbol table names no string table")
            table, strtab = _section_data(sh, read), _section_data(sections[sh[6]], read)
            for k in range(1, len(table) // _SYM.size):
                st_name, info, _, shndx, value, sz = _SYM.unpack_from(table, k * _SYM.size)
                if shndx:
                    code = any(va <= value < va + msz and fl & PF_X for _, va, _, msz, fl in loads)
                    symbols[name(st_name, strtab)] = (info & 0xF, sz, code)
        if meta.startswith(MAGIC_PREFIX) and meta[:len(METADATA_MAGIC)] != METADATA_MAGIC:
            version = meta[len(MAGIC_PREFIX):len(METADATA_MAGIC)].decode("ascii", "replace")
            raise _version_error(path, int(version) if version.isdigit() else version)
        if not meta.startswith(METADATA_MAGIC) or len(meta) < METADATA_HEADER:
            raise damaged(f"its {METADATA_SECTION} section does not start with the tilewise magic number")
    return ElfFile(meta[METADATA_HEADER:].split(b"\0", 1)[0], symbols,
                   meta[len(METADATA_MAGIC):METADATA_HEADER], meta_sh[4] + len(METADATA_MAGIC))


def file_digest(fh, digest_at: int) -> bytes:
    """The sha256 of every byte of an open library file, the DIGEST_SIZE bytes at digest_at (where
    the digest itself is stored) counted as zeros."""
    h = hashlib.sha256()
    view = memoryview(bytearray(1 << 22))
    fh.seek(0)
    pos = 0
    while n := fh.readinto(view):
        lo, hi = max(digest_at - pos, 0), min(digest_at + DIGEST_SIZE - pos, n)
        if lo < hi:
            view[lo:hi] = bytes(hi - lo)
        h.update(view[:n])
        pos += n
    return h.digest()


def check_digest(path: str, elf: ElfFile) -> None:
    """Refuse a library whose bytes (code, data, relocations, anything) differ from those the
    exporter sealed: a flipped bit anywhere could crash dlopen or a kernel."""
    with open(path, "rb") as fh:
        if file_digest(fh, elf.digest_at) != elf.digest:
            raise LoadError(f"{path} is damaged or modified: its checksum does not match its "
                            "contents; rebuild it")


def _section_data(sh: tuple, read) -> bytes:
    return read(sh[4], sh[5], f"section at offset {sh[4]}")


def _check_symbols(path: str, meta: dict, symbols: dict[str, tuple[int, int, bool]]) -> None:
    """The metadata must describe the library: its kernels are functions in it, shapes are
    shapes, and a model's weights blob has the size the metadata gives."""
    def need(symbol: str, kind: int = STT_FUNC, size: int | None = None) -> None:
        typ, sz, code = symbols.get(symbol, (None, 0, False))
        if typ != kind or (kind == STT_FUNC and not code) or (size is not None and sz != size):
            what = f"a {size}-byte data symbol" if size is not None else "a function"
            raise LoadError(f"{path} is damaged: its metadata needs {what} {symbol} that the library "
                            "does not have; rebuild it")

    def shapes(items, where: str, dim: str | None = None) -> None:
        for a in items:
            shape, dt = a["shape"], a["dtype"]
            # a dynamic batch's inputs and outputs may lead with its dimension's name
            if dim is not None and shape and shape[0] == dim:
                shape = shape[1:]
            if not isinstance(a["name"], str) or not all(type(d) is int and d >= 0 for d in shape) \
                    or dt not in DTYPES:
                raise LoadError(f"{path} is damaged: {where} {a['name']!r} has shape {shape} and dtype {dt!r}")

    need(METADATA_SYMBOL)
    need(SET_THREADS_SYMBOL)
    try:
        for k in meta["kernels"]:
            need(k["name"])
            shapes(k["args"], f"kernel {k['name']} argument")
        if "model" in meta:
            model = meta["model"]
            batch = model.get("batch")
            if batch is not None and not (isinstance(batch["dim"], str) and type(batch["max"]) is int
                                          and batch["max"] >= 1):
                raise LoadError(f"{path} is damaged: its dynamic batch is {batch!r}")
            shapes(model["inputs"] + model["outputs"], "model input/output", batch and batch["dim"])
            ws, pb = model["workspace_bytes"], model.get("param_bytes", 0)
            if not (type(ws) is int and type(pb) is int and ws >= 0 and pb >= 0):
                raise LoadError(f"{path} is damaged: its workspace/weights sizes are {ws!r}/{pb!r}")
            need(MODEL_BATCH_ENTRY_SYMBOL if batch else MODEL_ENTRY_SYMBOL)
            if pb:
                need(PARAMS_SYMBOL, STT_OBJECT, pb)
    except (KeyError, TypeError, AttributeError):
        raise LoadError(f"{path} is damaged: its metadata lacks parts a library of format version "
                        f"{FORMAT_VERSION} has; rebuild it") from None


DTYPES = frozenset({"float32", "float64", "bool", "int8", "uint8", "int16", "uint16", "int32",
                    "uint32", "int64", "uint64", "float16", "bfloat16"}) | ML_DTYPES


def _parse_metadata(path: str, raw: bytes) -> dict:
    try:
        meta = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        meta = None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise LoadError(f"{path} is not a tilewise library: its {METADATA_SECTION} section does not "
                        "hold tilewise metadata")
    version = meta.get("format_version")
    if version not in SUPPORTED_FORMAT_VERSIONS:
        raise _version_error(path, version)
    return meta


def _version_error(path: str, version) -> LoadError:
    return LoadError(f"{path} has library format version {version!r}, but this runtime reads "
                     f"version(s) {', '.join(map(str, SUPPORTED_FORMAT_VERSIONS))}; rebuild the "
                     "library with this tilewise, or load it with the tilewise that made it")


# Linux gives a process the AMX tile state only when it asks: arch_prctl(ARCH_REQ_XCOMP_PERM,
# XFEATURE_XTILEDATA); until then the first tile instruction kills it with SIGILL.
SYS_ARCH_PRCTL, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA = 158, 0x1023, 18
_amx_granted = False


def request_amx(what: str = "this module") -> None:
    """Ask Linux once per process for the AMX tile state (LoadError if the kernel refuses)."""
    global _amx_granted
    if _amx_granted:
        return
    if platform.system() != "Linux" or platform.machine() != "x86_64":
        raise LoadError(f"{what} uses AMX tiles, which tilewise enables on x86-64 Linux only; "
                        "rebuild it for a target without amx-tile (-mattr=-amx-tile)")
    err = _arch_prctl_xtiledata()
    if err:
        raise LoadError(f"{what} uses AMX tiles, but Linux refused them to this process "
                        f"(arch_prctl ARCH_REQ_XCOMP_PERM: {os.strerror(err)}); rebuild it for a target "
                        "without amx-tile (-mattr=-amx-tile,-amx-int8)")
    _amx_granted = True


def _arch_prctl_xtiledata() -> int:
    """arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA): 0, or the errno of the refusal."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    rc = libc.syscall(ctypes.c_long(SYS_ARCH_PRCTL), ctypes.c_long(ARCH_REQ_XCOMP_PERM),
                      ctypes.c_long(XFEATURE_XTILEDATA))
    return ctypes.get_errno() or 1 if rc != 0 else 0


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


def cpuinfo_flag(feature: str) -> str:
    """The /proc/cpuinfo flag that shows the LLVM feature `feature`."""
    return CPUINFO_FLAGS.get(feature, feature.replace(".", "_").replace("-", "_"))


def missing_features(required: list[str], flags: set[str]) -> list[str]:
    """The LLVM feature names in required that a CPU with these cpuinfo flags lacks (or that the
    flags do not show: those cannot be checked, so they count as missing)."""
    return [f for f in required if cpuinfo_flag(f) not in flags]


def _check_cpu(path: str, meta: dict) -> None:
    arch = meta.get("arch")
    here = platform.machine()
    if arch and here and arch != here:
        raise LoadError(f"{path} was built for {arch}, but this machine is {here}")
    required = meta.get("required_features", [])
    flags = cpu_flags()
    if flags is None and required:
        raise LoadError(f"{path} needs CPU features ({', '.join(required)}), but /proc/cpuinfo cannot "
                        "be read to check them, and running code this CPU lacks crashes the process")
    missing = missing_features(required, flags or set())
    if missing:
        shown = ", ".join(f if cpuinfo_flag(f) == f else f"{f} (flag {cpuinfo_flag(f)})" for f in missing)
        raise LoadError(f"{path} was built for '{meta.get('target')}', which needs CPU features this "
                        f"CPU lacks: {shown} (not in /proc/cpuinfo). Rebuild it for this machine (the "
                        "default target) or for a lower level, e.g. 'llvm -mcpu=haswell' for AVX2")
