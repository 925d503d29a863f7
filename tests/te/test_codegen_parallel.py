"""Parallel regions (te/codegen_parallel.py): consecutive parallel loops of a kernel fork once."""
from __future__ import annotations

import numpy as np
import pytest

import te
from te.codegen_llvm import codegen
from te.expr import Const, Load, Var
from te.schedule import ForKind
from te.stmt import Buffer, Comment, For, LoweredFunc, Seq, Store

N = 1000


def _forks(func: LoweredFunc) -> tuple[int, int, int]:
    """(GOMP_parallel calls, GOMP_barrier calls, outlined functions) in func's LLVM IR."""
    text = str(codegen([func], te.target.host()).module)
    calls = [ln for ln in text.splitlines() if " call " in ln]
    return (sum("GOMP_parallel\"(" in ln for ln in calls), sum("GOMP_barrier\"(" in ln for ln in calls),
            text.count("define internal void @"))


def _stages(threads: int):
    """B = A * 2, C = B + A, D = C * C: three stages, each its own parallel loop."""
    A = te.placeholder((N,), name="A")
    B = te.compute((N,), lambda i: A[i] * 2.0, name="B")
    C = te.compute((N,), lambda i: B[i] + A[i], name="C")
    D = te.compute((N,), lambda i: C[i] * C[i], name="D")
    s = te.create_schedule(D.op)
    for t in (B, C, D):
        s[t].parallel(t.op.axis[0])
    return te.lower(s, [A, D], f"stages{threads}")


@pytest.mark.parametrize("threads", [1, 2])
def test_three_parallel_stages_fork_once_and_match_numpy(threads, rand):
    func = _stages(threads)
    assert _forks(func) == (1, 2, 1)        # one region, a barrier between each two loops
    k = te.build(func)
    k.set_num_threads(threads)
    a = rand(N)
    d = np.zeros(N, np.float32)
    for _ in range(3):                      # each call starts its claim counters from 0
        d[:] = 0
        k(a, d)
        np.testing.assert_allclose(d, (3 * a) ** 2, rtol=1e-6)


def _hand_kernel(body_of, name: str) -> LoweredFunc:
    """A LoweredFunc over X (input), Y and Z (outputs), all of N float32, with body_of(X, Y, Z)."""
    X, Y, Z = (Buffer(n, (N,), "float32") for n in "XYZ")
    return LoweredFunc(name, [X, Y, Z], body_of(X, Y, Z))


def _ld(buf: Buffer, index) -> Load:
    return Load(buf, index, buf.dtype)


def _run(func: LoweredFunc, threads: int, rand):
    """(x, y, z) after one call of func with a random X and zeroed Y and Z."""
    k = te.build(func)
    k.set_num_threads(threads)
    x = rand(N)
    y, z = np.zeros(N, np.float32), np.zeros(N, np.float32)
    k(x, y, z)
    return x, y, z


def _loop(var: str, kind: ForKind, body_of, extent: int = N) -> For:
    v = Var(var, "int64")
    return For(v, Const(extent, "int64"), kind, body_of(v))


def _serial_between(name: str) -> LoweredFunc:
    """Y[i] = X[i] + 1 (parallel); Y[0] = Y[0] * 10 + Y[N-1] (serial: run twice, it would give
    another Y[0]); Z[i] = Y[i] + Y[0] (parallel: every iteration reads what the serial step wrote)."""
    def body(X, Y, Z):
        first = _loop("i", ForKind.PARALLEL, lambda i: Store(Y, i, _ld(X, i) + Const(1.0, "float32")))
        serial = Store(Y, Const(0, "int64"),
                       _ld(Y, Const(0, "int64")) * Const(10.0, "float32") + _ld(Y, Const(N - 1, "int64")))
        second = _loop("j", ForKind.PARALLEL,
                       lambda j: Store(Z, j, _ld(Y, j) + _ld(Y, Const(0, "int64"))))
        return Seq([Comment("first"), first, serial, Comment("second"), Seq([second])])
    return _hand_kernel(body, name)


@pytest.mark.parametrize("threads", [1, 2])
def test_a_serial_statement_between_parallel_loops_runs_once_between_them(threads, rand):
    func = _serial_between(f"serial_between{threads}")
    assert _forks(func) == (1, 2, 1)
    x, y, z = _run(func, threads, rand)
    want_y = x + 1
    want_y[0] = want_y[0] * 10 + want_y[-1]
    np.testing.assert_allclose(y, want_y, rtol=1e-6)
    np.testing.assert_allclose(z, want_y + want_y[0], rtol=1e-6)


@pytest.mark.parametrize("threads", [1, 2])
def test_inner_parallel_loops_run_inside_the_outermost_region(threads, rand):
    # two outer parallel loops over rows, each with a parallel loop over columns inside: only
    # the outer two are outlined, into one region
    R, C = 40, N // 40

    def body(X, Y, Z):
        def rows(var, out, value):
            return _loop(var, ForKind.PARALLEL, lambda r: _loop(
                var + "c", ForKind.PARALLEL, lambda c: Store(out, r * Const(C, "int64") + c, value(r, c)), C), R)
        first = rows("r", Y, lambda r, c: _ld(X, r * Const(C, "int64") + c) * Const(2.0, "float32"))
        # reads Y transposed: another thread's rows, so the barrier between the loops matters
        second = rows("s", Z, lambda r, c: _ld(Y, (Const(R - 1, "int64") - r) * Const(C, "int64") + c))
        return Seq([first, second])
    func = _hand_kernel(body, f"nested{threads}")
    assert _forks(func) == (1, 1, 1)
    x, y, z = _run(func, threads, rand)
    np.testing.assert_allclose(y, 2 * x, rtol=1e-6)
    np.testing.assert_allclose(z, (2 * x).reshape(R, C)[::-1].reshape(-1), rtol=1e-6)


def test_parallel_loops_under_a_serial_loop_make_a_region_per_iteration(rand):
    # a serial loop around two parallel loops: the region is the loop's body, forked once per
    # iteration, its claim counters zeroed again each time
    def body(X, Y, Z):
        def step(t):
            a = _loop("i", ForKind.PARALLEL, lambda i: Store(Y, i, _ld(Y, i) + _ld(X, i)))
            b = _loop("j", ForKind.PARALLEL, lambda j: Store(Z, j, _ld(Z, j) + _ld(Y, j)))
            return Seq([a, b])
        return _loop("t", ForKind.SERIAL, step, 3)
    func = _hand_kernel(body, "under_serial")
    assert _forks(func) == (1, 1, 1)
    x, y, z = _run(func, 2, rand)
    np.testing.assert_allclose(y, 3 * x, rtol=1e-6)
    np.testing.assert_allclose(z, 6 * x, rtol=1e-6)       # x + 2x + 3x


@pytest.mark.parametrize("extent", [1, 3, 7, 1000])
def test_every_iteration_runs_once_whatever_the_split(extent, rand):
    # each thread runs its own share, then claims what is left of the others': with more threads
    # than iterations, shares of unequal length and an oversubscribed machine, still once each
    def body(X, Y, Z):
        return _loop("i", ForKind.PARALLEL, lambda i: Store(Y, i, _ld(Y, i) + _ld(X, i) + Const(1.0, "float32")),
                     extent)
    k = te.build(_hand_kernel(body, f"once{extent}"))
    x = rand(N)
    for threads in (1, 2, 3, 5):
        k.set_num_threads(threads)
        for _ in range(20):
            y, z = np.zeros(N, np.float32), np.zeros(N, np.float32)
            k(x, y, z)
            np.testing.assert_allclose(y[:extent], x[:extent] + 1, rtol=1e-6)
            assert not y[extent:].any()


def test_a_region_forked_per_serial_iteration_gives_its_stack_back():
    # the claim counters live on the caller's stack; 200000 regions without restoring it would
    # take 12.8 MB (more than a thread's 8 MB stack) and crash
    T = 200_000

    def body(X, Y, Z):
        return _loop("t", ForKind.SERIAL, lambda t: _loop(
            "i", ForKind.PARALLEL, lambda i: Store(Z, i, _ld(Z, i) + Const(1.0, "float32")), 2), T)
    k = te.build(_hand_kernel(body, "many_regions"))
    k.set_num_threads(1)
    x, y, z = (np.zeros(N, np.float32) for _ in range(3))
    k(x, y, z)
    assert z[0] == z[1] == T and not z[2:].any()


def test_a_kernel_called_from_a_callers_openmp_threads_runs_whole_on_each(tmp_path):
    # a C program's own parallel region calls the kernel on each of its threads, the library set
    # to one thread: each call must still run the serial step (thread 0's) and every iteration
    import subprocess
    import textwrap
    from te import export
    func = _serial_between("nested_caller")
    lib = tmp_path / "k.so"
    te.export_library(func, lib)
    src = tmp_path / "main.c"
    src.write_text(textwrap.dedent(f"""
        #include <stdio.h>
        #include <omp.h>
        int nested_caller(float *x, float *y, float *z);
        void tilewise_set_num_threads(int n);
        int main(void) {{
            static float x[2][{N}], y[2][{N}], z[2][{N}];
            int bad = 0;
            tilewise_set_num_threads(1);
            #pragma omp parallel num_threads(2) reduction(+:bad)
            {{
                int t = omp_get_thread_num();
                for (int i = 0; i < {N}; i++) x[t][i] = (float)(i % 7) + t;
                nested_caller(x[t], y[t], z[t]);
                float y0 = (x[t][0] + 1) * 10 + (x[t][{N - 1}] + 1);
                for (int i = 1; i < {N}; i++) bad += z[t][i] != x[t][i] + 1 + y0;
                bad += z[t][0] != 2 * y0;
            }}
            printf("%d\\n", bad);
            return bad != 0;
        }}"""))
    exe = tmp_path / "main"
    subprocess.run([export.find_cc()[0], "-O1", "-fopenmp", "-o", str(exe), str(src), str(lib),
                    f"-Wl,-rpath,{tmp_path}"], check=True, capture_output=True, text=True)
    r = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "0", (r.stdout, r.stderr)
