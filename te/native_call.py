"""Calling native code with numpy arrays: the argument checks of one kernel, shared by JIT'd
kernels (te.build) and loaded libraries (te.runtime), and the call of a whole model (ModelCall)
in ONNX Runtime's calling convention, shared by a JIT'd model (frontends GraphLibrary) and a
loaded one (te.runtime.Module.run).

    ptrs = check_args("mm", specs, (a, b, c))    # one-line errors for a wrong array; its pointers
    call = ModelCall(entry, in_specs, out_specs, workspace_bytes, params_ptr)
    outputs = call({"x": x})                     # fresh output arrays every call

Like te/runtime.py, which re-exports every name here, this module needs numpy and the standard
library only -- never llvmlite, never another te module -- so a deployed library runs without
the compiler.  The C ABI of a model's entry is documented in docs/c_abi.md.
"""
from __future__ import annotations

import ctypes
import os
from typing import NamedTuple

import numpy as np

ALIGN = 64                  # bytes: the alignment of a model's workspace (docs/c_abi.md)

# Parallel loops start one OpenMP thread per count, and libgomp crashes the process when it cannot
# create them (99999 does that); 1024 is more than the CPUs of any machine this runs on, so no
# useful setting is refused.
MAX_THREADS = 1024
# Byte-coded types: the formats narrower than a byte or without arithmetic in te (float8, float4,
# int4, int2...), one element per byte holding its bit pattern (ml_dtypes' layout, numpy's dtype
# names); te/expr.py says what te does with them.  Defined here, as the runtime loads alone.
BYTE_CODED = ("float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2", "float8_e5m2fnuz", "float8_e8m0fnu",
              "float4_e2m1fn", "int4", "uint4", "int2", "uint2")
# te dtypes whose numpy dtype is ml_dtypes'
ML_DTYPES = frozenset({"bfloat16", *BYTE_CODED})


class LoadError(RuntimeError):
    """A file cannot be loaded as a tilewise library (not ours, wrong version, wrong CPU), or
    an array type it needs cannot be (ml_dtypes missing)."""


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


def random_inputs(specs: list[dict], seed: int = 0) -> dict[str, np.ndarray]:
    """Random arrays (random_array) for inputs given as {name, shape, dtype}: a model's inputs for
    the profile, the model check and `tilewise run`.  Here, not in frontends, so that running a
    built library imports no ONNX: `import onnx` imports ml_dtypes, 1.1 s of CPU on this VM
    (ml_dtypes 0.7, numpy 2.4), which was most of a `tilewise run` (1.0-1.2 -> 0.25 s)."""
    rng = np.random.default_rng(seed)
    return {s["name"]: random_array(rng, tuple(s["shape"]), s["dtype"]) for s in specs}


HUGE_PAGE = 2 << 20         # bytes: an x86-64 huge page, as Linux's transparent huge pages give them
HUGE_MIN = HUGE_PAGE // 2   # bytes: buffers from this size on are put on huge pages (huge_page_bytes)


def huge_page_bytes(nbytes: int) -> np.ndarray | None:
    """`nbytes` zeroed bytes starting on a HUGE_PAGE boundary, which Linux is asked to back with
    huge pages (madvise MADV_HUGEPAGE: honoured where transparent huge pages are "madvise", the
    common default, or "always"; ignored where "never"); None where the OS has no such advice.

    A model's weights walk through memory once per run: ResNet-50's 112 MiB are 28,700 pages of
    4 KiB, against the 2,048 entries of the second-level TLB of Intel's server cores since Sapphire
    Rapids (Zen 4: 3,072, Ice Lake: 2,048), so every weight stream misses the TLB at each page
    and walks the page table; on 2 MiB pages 57 entries cover them (the same on every x86-64
    server core this project meets). ResNet-50 ran 1.012-1.016x faster with its weights and
    workspace on huge pages (Emerald Rapids, 2 threads, paired runs: bench/RESULTS.md, session 26)."""
    import mmap
    if not hasattr(mmap, "MADV_HUGEPAGE"):
        return None
    size = -(-max(nbytes, 1) // HUGE_PAGE) * HUGE_PAGE
    m = mmap.mmap(-1, size + HUGE_PAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    raw = np.frombuffer(m, np.uint8)            # holds the mapping as long as a view of it lives
    off = (-raw.ctypes.data) % HUGE_PAGE
    try:
        m.madvise(mmap.MADV_HUGEPAGE, off, size)
    except OSError:                             # a kernel without transparent huge pages
        pass
    return raw[off:off + nbytes]


def aligned_zeros(shape, dtype, align: int = ALIGN, slack: int = 0) -> np.ndarray:
    """A zeroed C-contiguous array that starts on an `align`-byte boundary, with `slack` bytes of
    (zeroed) memory after its end, as a model's weights blob and workspace hold an argument; from
    HUGE_MIN bytes on, on huge pages where the OS gives them (huge_page_bytes)."""
    dt = np.dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dt.itemsize
    raw = huge_page_bytes(nbytes + slack) if nbytes + slack >= HUGE_MIN and align <= HUGE_PAGE else None
    if raw is None:
        raw = np.zeros(nbytes + align + slack, np.uint8)
    off = (-raw.ctypes.data) % align
    return raw[off:off + nbytes].view(dt).reshape(shape)


def aligned_copy(a: np.ndarray, align: int = ALIGN) -> np.ndarray:
    """a, C-contiguous, in memory that starts on an `align`-byte boundary (numpy puts large arrays
    16 bytes past a page): a kernel's 64-byte row and tile loads of it then never split a cache line."""
    out = aligned_zeros(a.shape, a.dtype, align)
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
        ws = aligned_zeros((self._ws_bytes,), np.uint8, slack=ALIGN)
        io = (ctypes.c_void_p * (len(self._in_shapes) + len(self._out_shapes)))()
        return ws, ws.ctypes.data, io

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
