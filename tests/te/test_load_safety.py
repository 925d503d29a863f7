"""Loading hostile or damaged libraries: every one ends in a LoadError, never a signal, and the
loader checks the file before dlopen runs any of its code."""
from __future__ import annotations

import io
import os
import subprocess
import sys
import tempfile
import textwrap

import numpy as np
import pytest

import te
from te import export, runtime
from te.runtime import LoadError

from ..fuzz import seeds
from ..fuzz.mutators import elf_layout
from .export_helpers import REPO, add_relu_func, check_mm, matmul_kernel


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Every test gets its own compile cache."""
    monkeypatch.setenv("TILEWISE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("TILEWISE_CACHE", raising=False)
    monkeypatch.delenv("TILEWISE_NUM_THREADS", raising=False)


def load_each(paths) -> list[str]:
    """Load each path in a fresh interpreter; returns one line per path (a signal fails the test)."""
    script = textwrap.dedent("""
        import sys
        import te.runtime as r
        for p in sys.argv[1:]:
            try:
                r.load_module(p)
                print("LOADED", p)
            except r.LoadError as e:
                print("LoadError", e)
    """)
    env = dict(os.environ, PYTHONPATH=REPO)
    p = subprocess.run([sys.executable, "-c", script, *map(str, paths)], capture_output=True,
                       text=True, env=env, timeout=120)
    assert p.returncode == 0, f"the loader died (code {p.returncode}): {p.stderr[-2000:]}"
    return p.stdout.splitlines()


def c_library(tmp_path, name: str, source: str) -> str:
    src = tmp_path / f"{name}.c"
    src.write_text(textwrap.dedent(source))
    out = str(tmp_path / f"{name}.so")
    subprocess.run([export.find_cc()[0], "-shared", "-fPIC", "-o", out, str(src)], check=True,
                   capture_output=True)
    return out


def rewrite_metadata(data: bytes, old: bytes, new: bytes, fix_checksum: bool) -> bytes:
    """The library bytes with old replaced by new (same length) in the metadata JSON; with
    fix_checksum, the file's digest is recomputed, as a deliberate forger would."""
    assert len(old) == len(new)
    start = data.index(runtime.METADATA_MAGIC)
    end = data.index(b"\0", start + runtime.METADATA_HEADER)
    body = data[start + runtime.METADATA_HEADER:end]
    assert old in body
    out = data[:start + runtime.METADATA_HEADER] + body.replace(old, new, 1) + data[end:]
    if not fix_checksum:
        return out
    at = start + len(runtime.METADATA_MAGIC)
    return out[:at] + runtime.file_digest(io.BytesIO(out), at) + out[at + runtime.DIGEST_SIZE:]


# ---------------------------------------------------------------- damaged files (item 2)
def test_cut_short_or_grown_library_is_refused_not_a_signal(tmp_path):
    matmul_kernel(parallel=True).export_library(str(tmp_path / "mm.so"))
    good = (tmp_path / "mm.so").read_bytes()
    n = len(good)
    variants = {"half": good[: n // 2], "all-but-one": good[:-1], "header-only": good[:100]}
    for pos in (64, 200, n // 4, n // 2, 3 * n // 4):
        variants[f"insert{pos}"] = good[:pos] + b"\0" + good[pos:]
    paths = []
    for name, data in variants.items():
        (tmp_path / f"{name}.so").write_bytes(data)
        paths.append(tmp_path / f"{name}.so")
    lines = load_each(paths + [tmp_path / "mm.so"])
    for line in lines[:-1]:
        assert line.startswith("LoadError") and "damaged (cut short or modified)" in line, line
    assert lines[-1].startswith("LOADED")


def test_a_flipped_byte_anywhere_is_refused_before_dlopen(tmp_path):
    # the fuzzer's finds: a flip in .rodata crashed a kernel, in .dynamic ld.so exited with 127,
    # in .rela.plt dlopen crashed; one in machine code could do anything
    seeds.build_library(str(tmp_path / "seed.so"))
    good = (tmp_path / "seed.so").read_bytes()
    sections = elf_layout(good).sections
    names = [".dynamic", ".rela.plt", ".text", ".comment", runtime.METADATA_SECTION]
    # .rodata where the kernels keep constants in memory (AVX-512 code: gather indices; the AVX2
    # code of these kernels has none)
    names += [".rodata"] if ".rodata" in sections else []
    paths = []
    for name in names:
        lo, hi = sections[name]
        for pos in (lo, (lo + hi) // 2, hi - 1):
            data = bytearray(good)
            data[pos] ^= 0xFF
            paths.append(tmp_path / f"{name[1:]}-{pos}.so")
            paths[-1].write_bytes(data)
    lines = load_each(paths + [tmp_path / "seed.so"])
    checksum = "is damaged or modified: its checksum does not match its contents; rebuild it"
    magic = "does not start with the tilewise magic number"     # the section's first byte
    for path, line in zip(paths, lines):
        assert line.startswith(f"LoadError {path} ") and (checksum in line or magic in line), line
    assert lines[-1].startswith("LOADED")


def test_a_library_of_the_previous_format_is_told_to_rebuild(tmp_path):
    te.export_library([add_relu_func()], tmp_path / "k.so")
    data = (tmp_path / "k.so").read_bytes().replace(runtime.METADATA_MAGIC, b"TWMETA02")
    (tmp_path / "old.so").write_bytes(data)
    with pytest.raises(LoadError, match="has library format version 2, but this runtime reads "
                                        f"version\\(s\\) {runtime.FORMAT_VERSION}; rebuild"):
        te.load_module(tmp_path / "old.so")


def test_constructors_do_not_run_before_the_checks(tmp_path):
    marker = tmp_path / "constructor-ran"
    lib = c_library(tmp_path, "evil", f"""
        #include <stdio.h>
        __attribute__((constructor)) static void ran(void) {{
            FILE *f = fopen("{marker}", "w"); if (f) fclose(f);
        }}
        const char *tilewise_metadata(void) {{ return "{{}}"; }}
        void tilewise_set_num_threads(int n) {{ (void)n; }}
    """)
    with pytest.raises(LoadError, match="no .tilewise_metadata section"):
        te.load_module(lib)
    assert not marker.exists()


# ---------------------------------------------------------------- patched metadata (item 10)
def test_patched_metadata_is_refused(tmp_path):
    matmul_kernel().export_library(str(tmp_path / "mm.so"))
    good = (tmp_path / "mm.so").read_bytes()
    # an output shape made larger than the buffer the kernel writes: the heap would be corrupted
    (tmp_path / "shape.so").write_bytes(rewrite_metadata(good, b"[24, 20]", b"[24, 90]", False))
    with pytest.raises(LoadError, match="damaged or modified: its checksum does not match"):
        te.load_module(tmp_path / "shape.so")
    # a forger who fixes the checksum still cannot name a kernel the library does not have
    (tmp_path / "name.so").write_bytes(rewrite_metadata(good, b'"name": "mm"', b'"name": "mx"', True))
    with pytest.raises(LoadError, match="needs a function mx"):
        te.load_module(tmp_path / "name.so")


def test_model_weights_size_must_match_the_metadata(tmp_path):
    import frontends

    from ..tiny_models import tiny_model
    lib = frontends.build(frontends.from_onnx(tiny_model(tmp_path / "tiny.onnx")))
    lib.export_library(str(tmp_path / "tiny.so"))
    m = te.load_module(tmp_path / "tiny.so")
    nbytes = m.metadata["model"]["param_bytes"]
    good = (tmp_path / "tiny.so").read_bytes()
    old = f'"param_bytes": {nbytes}'.encode()
    forged = f'"param_bytes": {nbytes + 4:0{len(str(nbytes))}d}'.encode()
    (tmp_path / "forged.so").write_bytes(rewrite_metadata(good, old, forged[:len(old)], True))
    with pytest.raises(LoadError, match=f"needs a {int(forged[15:])}-byte data symbol tilewise_params"):
        te.load_module(tmp_path / "forged.so")


# ---------------------------------------------------------------- CPU features (item 3)
def test_library_records_every_feature_of_its_target(tmp_path):
    meta = te.export_library([add_relu_func()], tmp_path / "fma4.so",
                             target="llvm -mcpu=x86-64 -mattr=+fma4")
    assert {"fma4", "avx", "sse4a", "sse2"} <= set(meta["required_features"])
    meta = te.export_library([add_relu_func()], tmp_path / "bdver2.so", target="llvm -mcpu=bdver2")
    assert {"xop", "fma4", "tbm", "avx", "fma"} <= set(meta["required_features"])
    assert {"xop", "fma4"} <= set(meta["features"])
    if not runtime.missing_features(["fma4"], runtime.cpu_flags()):
        pytest.skip("this CPU has FMA4")
    for name in ("fma4.so", "bdver2.so"):
        with pytest.raises(LoadError, match=r"needs CPU features this CPU lacks: .*fma4"):
            te.load_module(tmp_path / name)


def test_a_feature_the_loader_cannot_check_counts_as_missing():
    meta = {"target": "llvm -mcpu=x86-64", "required_features": ["sse2", "made-up.feature"]}
    with pytest.raises(LoadError, match=r"lacks: made-up.feature \(flag made_up_feature\)"):
        runtime._check_cpu("x.so", meta)


# ---------------------------------------------------------------- bad targets (item 4)
def test_unknown_cpu_or_feature_is_an_error_not_the_end_of_python(tmp_path):
    script = textwrap.dedent("""
        import sys
        import te
        A = te.placeholder((8,), name="A")
        B = te.compute((8,), lambda i: A[i] * 2.0, name="B")
        for t in sys.argv[1:]:
            try:
                te.build(te.create_schedule(B.op), [A, B], target=t)
                print("BUILT", t)
            except ValueError as e:
                print("ValueError", e)
    """)
    targets = ["llvm -mcpu=nonsense", "llvm -mcpu=x86-64 -mattr=+nonsense",
               "llvm -mcpu=x86-64 -mattr=avx2", "llvm -mcpu=x86-64 -mattr=-sse2", "llvm -mcpu=i686"]
    p = subprocess.run([sys.executable, "-c", script, *targets], capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=REPO), timeout=120)
    assert p.returncode == 0 and "LLVM ERROR" not in p.stderr, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0].startswith("ValueError") and "unknown CPU -mcpu='nonsense'" in lines[0]
    assert "tilewise info --targets" in lines[0]
    assert "unknown CPU feature '+nonsense'" in lines[1] and "unknown CPU feature 'avx2'" in lines[2]
    assert "lacks SSE2" in lines[3]
    assert lines[4] == "BUILT llvm -mcpu=i686"       # a 32-bit CPU name only tunes 64-bit code
    assert "bdver2" in te.target.known_cpus() and "fma4" in te.target.known_features()


# ---------------------------------------------------------------- threads (item 5)
@pytest.mark.parametrize("value", ["99999", "0", "-2", "two", "2.5"])
def test_thread_count_out_of_range_is_refused(monkeypatch, value):
    monkeypatch.setenv("TILEWISE_NUM_THREADS", value)
    with pytest.raises(ValueError, match=f"TILEWISE_NUM_THREADS='{value}' .*give 1 to 1024"):
        runtime.num_threads()


def test_module_and_kernel_thread_counts_are_bounded(tmp_path, monkeypatch):
    f = matmul_kernel(parallel=True)
    f.export_library(str(tmp_path / "par.so"))
    m = te.load_module(tmp_path / "par.so")
    for bad in (99999, 0, 2.5):
        with pytest.raises(ValueError, match="give 1 to 1024"):
            m.set_num_threads(bad)
        with pytest.raises(ValueError, match="give 1 to 1024"):
            f.set_num_threads(bad)
    monkeypatch.setenv("TILEWISE_NUM_THREADS", "99999")
    with pytest.raises(ValueError, match="TILEWISE_NUM_THREADS"):
        te.load_module(tmp_path / "par.so")
    m.set_num_threads(runtime.MAX_THREADS // 256)
    check_mm(m)


# ---------------------------------------------------------------- aliased arguments (item 17)
def test_overlapping_written_arguments_are_refused(tmp_path):
    f = te.build(add_relu_func("add_relu"))
    te.export_library([add_relu_func("add_relu")], tmp_path / "k.so")
    m = te.load_module(tmp_path / "k.so")
    x = np.arange(35, dtype=np.int32).reshape(7, 5)
    y = np.ones((7, 5), np.int32)
    buf = np.zeros(70, np.int32)
    for fn in (f, m):
        with pytest.raises(ValueError, match="arguments Z and X overlap in memory"):
            fn(x, y, x)
        with pytest.raises(ValueError, match="arguments Z and Y overlap"):
            fn(x, buf[:35].reshape(7, 5), buf[30:65].reshape(7, 5))
        z = np.zeros((7, 5), np.int32)
        fn(x, x, z)                         # inputs may share memory: the kernel only reads them
        np.testing.assert_array_equal(z, 2 * x)


# ---------------------------------------------------------------- temporary copies, odd paths
def test_rebuilt_library_leaves_no_temporary_copy(tmp_path):
    def copies():
        return {n for n in os.listdir(tempfile.gettempdir()) if n.startswith("tilewise-lib-")}

    before = copies()
    path = tmp_path / "k.so"
    te.export_library([add_relu_func("first")], path)
    first = te.load_module(path)
    te.export_library([add_relu_func("second")], path)
    second = te.load_module(path)           # loaded from a private copy, removed once loaded
    assert copies() <= before
    z = np.zeros((7, 5), np.int32)
    second(np.ones((7, 5), np.int32), np.ones((7, 5), np.int32), z)
    assert second.names == ["second"] and (z == 2).all() and first.names == ["first"]
    assert te.load_module(path)._lib is second._lib


def test_things_that_are_not_libraries(tmp_path):
    with pytest.raises(LoadError, match="is a folder, not a library"):
        te.load_module(tmp_path)
    (tmp_path / "empty.so").write_bytes(b"")
    with pytest.raises(LoadError, match="no ELF header"):
        te.load_module(tmp_path / "empty.so")
    src = tmp_path / "obj.c"
    src.write_text("int f(void) { return 1; }\n")
    subprocess.run([export.find_cc()[0], "-c", "-o", str(tmp_path / "obj.o"), str(src)], check=True)
    with pytest.raises(LoadError, match="is an object file, not a shared library"):
        te.load_module(tmp_path / "obj.o")
    with pytest.raises(FileNotFoundError, match="no such library"):
        te.load_module(tmp_path / "missing.so")
    if os.geteuid() != 0:                   # root reads any file
        (tmp_path / "secret.so").write_bytes(b"\x7fELF")
        os.chmod(tmp_path / "secret.so", 0)
        with pytest.raises(LoadError, match="cannot be read: Permission denied"):
            te.load_module(tmp_path / "secret.so")


def test_avx10_1_is_checked_as_the_avx512_set_it_names():
    """LLVM reports avx10.1 on Sapphire Rapids-class CPUs whose kernel shows no avx10 flag: a
    library built for such a machine loads there (every AVX-512 flag it names is shown), and is
    refused where one of them is missing."""
    avx512 = set(runtime.CPUINFO_SETS["avx10.1"])
    assert runtime.missing_features(["avx10.1", "avx512f"], avx512) == []
    assert runtime.missing_features(["avx10.1"], {"avx10_1"}) == []
    assert runtime.missing_features(["avx10.1"], avx512 - {"avx512_fp16"}) == ["avx10.1"]
    assert runtime.missing_features(["avx10.2"], avx512) == ["avx10.2"]      # new instructions: strict
