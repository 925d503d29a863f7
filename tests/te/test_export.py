"""Native libraries: export, load without the compiler, call from C, targets and the compile cache."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import te
from te import cache, export, runtime
from te.runtime import LoadError

from .export_helpers import REPO, K, M, N, add_relu_func, check_mm, matmul_kernel, mm_inputs


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Every test gets its own compile cache, so runs never see each other's objects."""
    monkeypatch.setenv("TILEWISE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("TILEWISE_CACHE", raising=False)


def compile_c(tmp_path, source: str, out: str, *args: str) -> str:
    src = tmp_path / (out + ".c")
    src.write_text(textwrap.dedent(source))
    exe = str(tmp_path / out)
    subprocess.run([export.find_cc()[0], "-O1", "-o", exe, str(src), *args], check=True,
                   capture_output=True, text=True)
    return exe


# ---------------------------------------------------------------- export, load, call
def test_export_load_call(tmp_path):
    f = matmul_kernel()
    path = tmp_path / "mm.so"
    f.export_library(str(path))
    m = te.runtime.load_module(path)
    assert te.load_module is runtime.load_module
    assert m.names == ["mm"] and len(m) == 1 and "mm" in m
    check_mm(m)                       # one kernel: the module itself is callable
    check_mm(m["mm"])
    assert m["mm"].arg_specs == f.arg_specs


def test_loaded_kernel_checks_arguments_like_the_jit(tmp_path):
    f = matmul_kernel()
    f.export_library(str(tmp_path / "mm.so"))
    m = te.load_module(tmp_path / "mm.so")
    a, b, _ = mm_inputs()
    bad = [(a, b), (a, b, np.zeros((M, N + 1), np.float32)), (a, b, np.zeros((M, N), np.float64)),
           (a, b, np.zeros((N, M), np.float32).T), (a.tolist(), b, np.zeros((M, N), np.float32))]
    ro = np.zeros((M, N), np.float32)
    ro.flags.writeable = False
    bad.append((a, b, ro))
    for args in bad:
        with pytest.raises(ValueError) as jit_err:
            f(*args)
        with pytest.raises(ValueError) as lib_err:
            m(*args)
        assert str(lib_err.value) == str(jit_err.value)


def test_many_kernels_in_one_library_and_metadata(tmp_path):
    mm = matmul_kernel("mm")
    relu = add_relu_func()
    rec = {"version": 1, "task": ["matmul", [M, K, N]], "config": {"tile": 4}, "costs": [1e-5]}
    meta = te.export_library([mm, relu], tmp_path / "lib.so", records=[rec, json.dumps(rec)],
                             metadata={"model": "unit-test"})
    m = te.load_module(tmp_path / "lib.so")
    assert m.metadata == meta
    assert m.names == ["mm", "add_relu"]
    check_mm(m["mm"])
    x = np.arange(35, dtype=np.int32).reshape(7, 5) - 20
    y = np.full((7, 5), 3, np.int32)
    z = np.zeros((7, 5), np.int32)
    m["add_relu"](x, y, z)
    np.testing.assert_array_equal(z, np.maximum(x + y, 0))
    with pytest.raises(TypeError, match="mm, add_relu"):
        m(x, y, z)
    with pytest.raises(KeyError, match="no kernel 'conv'"):
        m["conv"]

    md = m.metadata
    assert md["format"] == runtime.FORMAT and md["format_version"] == runtime.FORMAT_VERSION
    assert md["tilewise_version"] == te.__version__
    assert md["target"] == str(mm.target) and md["isa"] == mm.target.isa
    assert md["kernels"][0] == {"name": "mm", "args": [
        {"name": "A", "shape": [M, K], "dtype": "float32", "written": False},
        {"name": "B", "shape": [K, N], "dtype": "float32", "written": False},
        {"name": "C", "shape": [M, N], "dtype": "float32", "written": True}]}
    assert [a["dtype"] for a in md["kernels"][1]["args"]] == ["int32"] * 3
    assert md["records"] == [rec, rec]
    assert md["user"] == {"model": "unit-test"}
    assert "avx2" in md["required_features"]


def test_bad_kernel_names_are_refused(tmp_path):
    with pytest.raises(ValueError, match="unique"):
        te.export_library([add_relu_func("k"), add_relu_func("k")], tmp_path / "x.so")
    with pytest.raises(ValueError, match="C identifier"):
        te.export_library([add_relu_func("my-kernel")], tmp_path / "x.so")


def test_rebuilt_library_at_the_same_path_is_reloaded(tmp_path):
    path = tmp_path / "k.so"
    te.export_library([add_relu_func("first")], path)
    assert te.load_module(path).names == ["first"]
    te.export_library([add_relu_func("second")], path)
    m = te.load_module(path)
    assert m.names == ["second"]
    z = np.zeros((7, 5), np.int32)
    m(np.ones((7, 5), np.int32), np.ones((7, 5), np.int32), z)
    assert (z == 2).all()


def test_export_replaces_a_library_or_its_header_but_never_another_file(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes")
    with pytest.raises(ValueError, match="notes.txt exists and is not a shared library, so it is not replaced"):
        te.export_library([add_relu_func("k")], notes)
    with pytest.raises(ValueError, match="notes.txt exists and is not a C header tilewise wrote"):
        te.export_library([add_relu_func("k")], tmp_path / "k.so", header=notes)
    with pytest.raises(ValueError, match="is a folder; give the file's name"):
        te.export_library([add_relu_func("k")], tmp_path)
    assert notes.read_text() == "my notes" and not (tmp_path / "k.so").exists()
    for _ in range(2):                  # a library and a header made before are replaced
        te.export_library([add_relu_func("k")], tmp_path / "k.so", header=tmp_path / "k.h")
    assert te.load_module(tmp_path / "k.so").names == ["k"]


def test_parallel_kernel_in_a_library(tmp_path, monkeypatch):
    f = matmul_kernel(parallel=True)
    meta = f.export_library(str(tmp_path / "par.so"))
    assert meta["openmp"]
    monkeypatch.setenv("TILEWISE_NUM_THREADS", "3")
    m = te.load_module(tmp_path / "par.so")
    get = m._lib[runtime.GET_THREADS_SYMBOL]
    get.restype = runtime.ctypes.c_int32
    assert get() == 3                       # the loader sets the count like the JIT does
    check_mm(m)
    m.set_num_threads(1)
    assert get() == 1
    check_mm(m)


# ---------------------------------------------------------------- loading without llvmlite
def test_load_without_llvmlite(tmp_path):
    f = matmul_kernel(parallel=True)
    f.export_library(str(tmp_path / "mm.so"))
    a, b, ref = mm_inputs()
    np.save(tmp_path / "a.npy", a)
    np.save(tmp_path / "b.npy", b)
    np.save(tmp_path / "ref.npy", ref)
    standalone = tmp_path / "standalone"
    standalone.mkdir()
    shutil.copy(os.path.join(REPO, "te", "runtime.py"), standalone / "tilewise_runtime.py")
    shutil.copy(os.path.join(REPO, "te", "native_call.py"), standalone / "native_call.py")
    script = textwrap.dedent(f"""
        import sys

        class BlockLLVMLite:
            def find_spec(self, name, path=None, target=None):
                if name.partition(".")[0] == "llvmlite":
                    raise ModuleNotFoundError(f"No module named {{name!r}} (blocked)", name=name)

        sys.meta_path.insert(0, BlockLLVMLite())
        try:
            import llvmlite
            raise SystemExit("llvmlite was importable")
        except ImportError:
            pass
        import numpy as np
        import te.runtime
        d = {str(tmp_path)!r}
        a, b, ref = np.load(d + "/a.npy"), np.load(d + "/b.npy"), np.load(d + "/ref.npy")
        m = te.runtime.load_module(d + "/mm.so")
        c = np.zeros_like(ref)
        m(a, b, c)
        np.testing.assert_allclose(c, ref, rtol=1e-4, atol=1e-5)
        assert te.load_module is te.runtime.load_module
        try:
            te.build
            raise SystemExit("te.build should say it needs llvmlite")
        except ImportError as e:
            assert "llvmlite" in str(e)
        # the runtime's two files alone, outside the package, load it too
        sys.path.insert(0, {str(standalone)!r})
        import tilewise_runtime
        c2 = np.zeros_like(ref)
        tilewise_runtime.load_module(d + "/mm.so")(a, b, c2)
        np.testing.assert_array_equal(c, c2)
        assert not [k for k in sys.modules if k.startswith("llvmlite")]
        assert "te.build" not in sys.modules and "te.codegen_llvm" not in sys.modules
        print("OK")
    """)
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                       timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "OK", r.stdout + r.stderr


# ---------------------------------------------------------------- refusing what is not ours
def test_refuses_a_library_for_an_isa_this_cpu_lacks(tmp_path):
    flags = runtime.cpu_flags()
    lacking = [f for f in ("fma4", "avx512fp16", "amx-tile", "amx-int8", "avxvnni")
               if runtime.missing_features([f], flags)]
    if not lacking:
        pytest.skip("this CPU has every feature the test could require")
    target = f"llvm -mcpu=x86-64 -mattr=+{lacking[0]}"
    te.export_library([add_relu_func()], tmp_path / "future.so", target=target)
    with pytest.raises(LoadError, match=f"needs CPU features this CPU lacks: {lacking[0]}"):
        te.load_module(tmp_path / "future.so")


def test_refuses_an_unknown_format_version(tmp_path, monkeypatch):
    with monkeypatch.context() as mp:
        mp.setattr(runtime, "FORMAT_VERSION", 99)
        te.export_library([add_relu_func()], tmp_path / "v99.so")
    with pytest.raises(LoadError, match="format version 99"):
        te.load_module(tmp_path / "v99.so")


def test_refuses_files_that_are_not_ours(tmp_path):
    text = tmp_path / "x.so"
    text.write_text("not a library\n")
    with pytest.raises(LoadError, match="no ELF header"):
        te.load_module(text)
    with pytest.raises(LoadError, match="no .tilewise_metadata section"):
        te.load_module("/bin/ls")               # an ELF executable (position independent)
    with pytest.raises(FileNotFoundError):
        te.load_module(tmp_path / "missing.so")
    # ELF shared libraries that are not ours: no symbol, and a symbol returning something else
    for name, body, match in [
            ("plain", "int add(int a, int b) { return a + b; }", "no .tilewise_metadata section"),
            ("forged", 'const char *tilewise_metadata(void) { return "{\\"x\\": 1}"; }\n'
                       "void tilewise_set_num_threads(int n) { (void)n; }",
             "no .tilewise_metadata section")]:
        src = tmp_path / f"{name}.c"
        src.write_text(body + "\n")
        lib = tmp_path / f"{name}.so"
        subprocess.run([export.find_cc()[0], "-shared", "-fPIC", "-o", str(lib), str(src)],
                       check=True, capture_output=True)
        with pytest.raises(LoadError, match=match):
            te.load_module(lib)


def test_missing_linker_names_the_package(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("CC", raising=False)
    with pytest.raises(export.ToolchainMissingError, match="apt-get install gcc"):
        te.export_library([add_relu_func()], tmp_path / "x.so")


# ---------------------------------------------------------------- C
def test_c_program_calls_a_kernel_through_the_header(tmp_path):
    f = matmul_kernel(parallel=True)
    f.export_library(str(tmp_path / "mm.so"), header=str(tmp_path / "mm.h"))
    exe = compile_c(tmp_path, f"""
        #include <math.h>
        #include <stdio.h>
        #include <string.h>
        #include "mm.h"
        static float A[{M}][{K}], B[{K}][{N}], C[{M}][{N}];
        int main(void) {{
            for (int i = 0; i < {M}; i++) for (int k = 0; k < {K}; k++) A[i][k] = (float)(i - k) / 8;
            for (int k = 0; k < {K}; k++) for (int j = 0; j < {N}; j++) B[k][j] = (float)(k * j % 5) / 4;
            tilewise_set_num_threads(2);
            if (tilewise_get_num_threads() != 2) return 3;
            if (mm(&A[0][0], &B[0][0], &C[0][0]) != 0) return 2;
            double err = 0;
            for (int i = 0; i < {M}; i++) for (int j = 0; j < {N}; j++) {{
                double ref = 0;
                for (int k = 0; k < {K}; k++) ref += (double)A[i][k] * B[k][j];
                err = fmax(err, fabs(ref - C[i][j]));
            }}
            if (!strstr(tilewise_metadata(), "\\"format\\": \\"tilewise-library\\"")) return 4;
            printf("max error %g\\n", err);
            return err < 1e-4 ? 0 : 1;
        }}
    """, "prog", "-I", str(tmp_path), str(tmp_path / "mm.so"), f"-Wl,-rpath,{tmp_path}", "-lm")
    r = subprocess.run([exe], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.startswith("max error")
    header = (tmp_path / "mm.h").read_text()
    assert "int32_t mm(const float *TILEWISE_RESTRICT A, const float *TILEWISE_RESTRICT B, " \
           "float *TILEWISE_RESTRICT C);" in header


def test_header_sanitises_argument_names():
    meta = {"tilewise_version": "0", "target": "llvm -mcpu=x", "isa": "x86_64",
            "required_features": [], "format_version": 1,
            "kernels": [{"name": "k", "args": [
                {"name": "input.1", "shape": [2], "dtype": "bool", "written": False},
                {"name": "int", "shape": [], "dtype": "float64", "written": False},
                {"name": "input_1", "shape": [2, 3], "dtype": "uint16", "written": True}]}]}
    text = export.header_text(meta, "model.so")
    assert ("int32_t k(const uint8_t *TILEWISE_RESTRICT input_1, const double *TILEWISE_RESTRICT "
            "arg_int, uint16_t *TILEWISE_RESTRICT input_1_2);") in text


# ---------------------------------------------------------------- targets
def axpy_kernel(target=None):
    """y = 2x + 1 on 16-lane vectors: one zmm register with AVX-512, two ymm with AVX2."""
    X = te.placeholder((4, 64), name="X")
    Y = te.compute((4, 64), lambda i, j: X[i, j] * 2.0 + 1.0, name="Y")
    s = te.create_schedule(Y.op)
    jo, ji = s[Y].split(Y.op.axis[1], factor=16)
    s[Y].vectorize(ji)
    return te.build(s, [X, Y], target=target, name="axpy")


def disassemble(path) -> str:
    if not shutil.which("objdump"):
        pytest.skip("objdump is not installed")
    return subprocess.run(["objdump", "-d", str(path)], capture_output=True, text=True,
                          check=True).stdout


def test_avx2_library_runs_here(tmp_path):
    meta = axpy_kernel(target="llvm -mcpu=haswell").export_library(str(tmp_path / "avx2.so"))
    assert {"avx", "avx2", "fma"} <= set(meta["required_features"])
    assert "avx512f" not in meta["required_features"]
    x = np.linspace(-1, 1, 256, dtype=np.float32).reshape(4, 64)
    y = np.zeros_like(x)
    te.load_module(tmp_path / "avx2.so")(x, y)
    np.testing.assert_allclose(y, x * 2 + 1, rtol=1e-6)
    asm = disassemble(tmp_path / "avx2.so")
    assert "zmm" not in asm and "ymm" in asm
    if "avx512f" in runtime.cpu_flags():     # the same kernel for this CPU does use zmm
        axpy_kernel().export_library(str(tmp_path / "host.so"))
        assert "zmm" in disassemble(tmp_path / "host.so")


def test_export_retargets_a_host_kernel(tmp_path):
    f = matmul_kernel()
    meta = te.export_library([f], tmp_path / "v3.so", target="llvm -mcpu=x86-64-v3")
    assert meta["target"] == "llvm -mcpu=x86-64-v3" and "avx512f" not in meta["required_features"]
    check_mm(te.load_module(tmp_path / "v3.so"))


# ---------------------------------------------------------------- the compile cache
def test_cache_hit_skips_compilation_and_gives_the_same_bytes(tmp_path, monkeypatch):
    f = matmul_kernel()
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    f.export_library(str(tmp_path / "one" / "mm.so"))

    def no_optimise(*args):
        raise AssertionError("the cached object should have been used")

    monkeypatch.setattr(export, "optimize", no_optimise)
    f.export_library(str(tmp_path / "two" / "mm.so"))
    assert (tmp_path / "one" / "mm.so").read_bytes() == (tmp_path / "two" / "mm.so").read_bytes()
    check_mm(te.load_module(tmp_path / "two" / "mm.so"))


def test_corrupt_cache_entry_is_rebuilt(tmp_path):
    f = matmul_kernel()
    f.export_library(str(tmp_path / "a.so"))
    entries = [os.path.join(d, n) for d, _, ns in os.walk(cache.cache_dir()) for n in ns]
    assert len(entries) == 1
    good = open(entries[0], "rb").read()
    for damage in (good[: len(good) // 2], good[:-1] + bytes([good[-1] ^ 1]), b""):
        with open(entries[0], "wb") as fh:
            fh.write(damage)
        # a partly written temporary file beside it is ignored too
        with open(os.path.join(os.path.dirname(entries[0]), ".tmp-stale"), "wb") as fh:
            fh.write(good[:10])
        out = tmp_path / f"rebuilt{len(damage)}.so"
        f.export_library(str(out))
        check_mm(te.load_module(out))
        assert open(entries[0], "rb").read() == good


def test_object_cache_round_trip(tmp_path):
    c = cache.ObjectCache(str(tmp_path / "c"))
    k = cache.key("ir", "target")
    assert k != cache.key("irt", "arget") and c.get(k) is None
    c.put(k, b"\x7fELF object")
    assert c.get(k) == b"\x7fELF object" and c.hits == 1 and c.misses == 1
    with open(c.path(k), "r+b") as fh:
        fh.seek(2)
        fh.write(b"X")                      # a damaged magic number
    assert c.get(k) is None and not os.path.exists(c.path(k))
