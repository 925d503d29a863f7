"""The runtime: load an exported tilewise library and call its kernels or its model with numpy arrays.

    m = te.runtime.load_module("mm.so")
    m(a, b, c)                  # the library's only kernel
    m["mm"](a, b, c)            # one of several, by name
    print(m.metadata)           # kernels, argument shapes/dtypes, target, records, versions

This module loads: it checks a file before dlopen runs any of it (the ELF structure, the checksum,
the metadata, the symbols, the CPU features).  The calls -- one kernel's argument checks, shared
with the JIT'd `te.build` Kernel, and a whole model's call -- are te/native_call.py's, re-exported
here.  Both need numpy and the standard library only -- never llvmlite, never another te module --
so a deployed library loads without the compiler: the two files copied side by side next to the
.so work on their own.  The C ABI that libraries follow is documented in docs/c_abi.md.
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

# LLVM features that name a set of others and add no instruction of their own: a CPU whose
# /proc/cpuinfo shows every one of the set has the feature, whatever the kernel calls it (AVX10.1
# is AVX-512 as Sapphire Rapids has it; LLVM reports it on such CPUs, kernels before 6.x do not).
CPUINFO_SETS = {
    "avx10.1": ("avx512f", "avx512cd", "avx512vl", "avx512dq", "avx512bw", "avx512ifma", "avx512vbmi",
                "avx512_vbmi2", "avx512_vnni", "avx512_bf16", "avx512_bitalg", "avx512_vpopcntdq",
                "avx512_fp16"),
}

# te.runtime is the API the JIT, frontends and deployed code import, calls included; copied out of
# the package (docs/c_abi.md), this file imports native_call.py from beside it.
if __package__:
    from .native_call import (ALIGN, BYTE_CODED, HUGE_MIN, HUGE_PAGE, MAX_THREADS, ML_DTYPES, SPIN_COUNT, ArgSpec,
                              LoadError, ModelCall, NativeFunction, NodeArg, Pointers, aligned_copy, aligned_zeros,
                              batch_of, check_args, check_num_threads, concrete_shape, data_address, huge_page_bytes,
                              node_args, np_dtype, num_threads, openmp_wait_policy, positional_feed, random_array,
                              random_inputs, select_outputs)
else:
    from native_call import (ALIGN, BYTE_CODED, HUGE_MIN, HUGE_PAGE, MAX_THREADS, ML_DTYPES, SPIN_COUNT, ArgSpec,
                             LoadError, ModelCall, NativeFunction, NodeArg, Pointers, aligned_copy, aligned_zeros,
                             batch_of, check_args, check_num_threads, concrete_shape, data_address, huge_page_bytes,
                             node_args, np_dtype, num_threads, openmp_wait_policy, positional_feed, random_array,
                             random_inputs, select_outputs)
# the API's name for the error (te.runtime.LoadError), as error reports and tracebacks print it
LoadError.__module__ = __name__


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
        self._params: np.ndarray | None = None      # its weights copied onto huge pages, if the OS gives them

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
            pb = model.get("param_bytes", 0)
            params = ctypes.addressof(ctypes.c_char.in_dll(self._lib, PARAMS_SYMBOL)) if pb else 0
            blob = huge_page_bytes(pb) if pb >= HUGE_MIN else None
            if blob is not None:        # the weights copied onto huge pages, as a JIT'd model holds them
                ctypes.memmove(blob.ctypes.data, params, pb)
                self._params, params = blob, blob.ctypes.data
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


class CPULacksFeatures(LoadError):
    """Code built for a target whose features this CPU lacks was called (it would die of SIGILL)."""


def lacks_message(what: str, target, missing: list[str]) -> str:
    """One line: what was built for target, which needs these features this CPU lacks, and the fix."""
    return (f"{what} was built for '{target}', which needs CPU features this CPU lacks: "
            f"{', '.join(missing)}; running it would crash the process. Build it for this machine "
            "(the default target) or run it on a CPU that has them")


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
    return [f for f in required if cpuinfo_flag(f) not in flags
            and not (f in CPUINFO_SETS and flags.issuperset(CPUINFO_SETS[f]))]


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
