"""The int8 matmul/dense implementations (AMX, VNNI, vpmaddwd): u8 x s8 -> s32 equal to numpy's
int64 matmul, weights packed by pack_weight or inside the kernel, a float epilogue ending in a
uint8 cast fused into the anchor's tile and vectorised."""
from __future__ import annotations

import numpy as np
import pytest

import te
from te import ops, tensorize
from te.ops import registry
from te.stmt import For, walk_stmt
from te.schedule import ForKind
from te.target import Target, host, parse

HOST = host()
# a CPU each int8 instruction family runs on: AMX and VNNI pinned (their code is built on every
# CPU and run where the CPU has them), vpmaddwd this host's
ISA_TARGETS = {"amx": "llvm -mcpu=sapphirerapids", "vnni": "llvm -mcpu=cascadelake", "pmaddwd": None}


def target_for(name: str) -> Target:
    """A target the int8 implementation or template `name` (..._amx, ..._vnni, ..._pmaddwd) applies to."""
    return parse(ISA_TARGETS[name.rsplit("_", 1)[-1]])


def impls(op: str, target: Target):
    wl = registry.MatmulWorkload(64, 48, 128, "uint8", op == "dense")
    return [impl.name for _, impl in registry.candidates(wl, target)
            if "int8" in impl.name and impl.template is not None]    # the reference one: qnn.py's tests


def run(impl, wl, target, rng, prepacked: bool):
    cfg = impl.config(wl, target)
    s, args = impl.instantiate(cfg, impl.args(wl), target, prepacked=prepacked)
    f = te.build(s, args, target=target)
    a = rng.integers(0, 256, (wl.M, wl.K)).astype(np.uint8)
    w = rng.integers(-128, 128, impl.weight_shape(wl)).astype(np.int8)
    a[0], w[..., 0] = 255, -128                      # the extreme products too
    c = np.zeros((wl.M, wl.N), np.int32)
    f(a, impl.pack_weight(w, wl, cfg, target) if prepacked else w, c)
    b = w.T if wl.transpose_b else w
    return c, a.astype(np.int64) @ b.astype(np.int64)


@pytest.mark.parametrize("op", ["matmul", "dense"])
@pytest.mark.parametrize("prepacked", [True, False])
def test_every_int8_implementation_of_the_host_matches_numpy(rng, op, prepacked):
    names = impls(op, HOST)
    assert names, "no int8 implementation applies on this host"
    for name in names:
        impl = registry.IMPLEMENTATIONS[name]
        wl = registry.MatmulWorkload(64, 48, 128, "uint8", op == "dense")
        c, ref = run(impl, wl, HOST, rng, prepacked)
        np.testing.assert_array_equal(c, ref, err_msg=name)


def test_avx2_target_runs_the_vpmaddwd_implementation(rng):
    tgt = Target("haswell")
    wl = registry.MatmulWorkload(10, 24, 36, "uint8", True)       # rows padded, columns padded
    impl = registry.select(wl, tgt)
    assert impl.name == "dense.int8_pmaddwd"
    c, ref = run(impl, wl, tgt, rng, prepacked=True)
    np.testing.assert_array_equal(c, ref)


@pytest.mark.skipif("avx2" not in HOST.feature_set, reason="this CPU lacks AVX2")
@pytest.mark.parametrize("op", ["matmul", "dense"])
@pytest.mark.parametrize("prepacked", [True, False])
def test_avx2_int8_matmuls_take_int16_weights_and_match_numpy(rng, op, prepacked):
    # vpmaddwd's weights widened once, when packed (or in the kernel's own pack): no sign
    # extension of them left in the inner loop
    tgt = Target("haswell")
    wl = registry.MatmulWorkload(7, 20, 34, "uint8", op == "dense")      # rows and columns padded
    impl = registry.select(wl, tgt)
    assert impl.name == f"{op}.int8_pmaddwd"
    cfg = impl.config(wl, tgt)
    assert impl.pack_weight(np.zeros(impl.weight_shape(wl), np.int8), wl, cfg, tgt).dtype == np.int16
    assert impl.placeholders(wl, cfg, tgt, True)[1].dtype == "int16"
    c, ref = run(impl, wl, tgt, rng, prepacked)
    np.testing.assert_array_equal(c, ref)


def test_priorities_amx_then_vnni_then_vpmaddwd():
    wl = registry.MatmulWorkload(64, 64, 128, "uint8", False)
    order = [i.name for _, i in registry.candidates(wl, Target("sapphirerapids"))
             if "int8" in i.name and i.template is not None]
    assert order == ["matmul.int8_amx", "matmul.int8_vnni", "matmul.int8_pmaddwd"]
    assert impls("matmul", Target("cascadelake")) == ["matmul.int8_vnni", "matmul.int8_pmaddwd"]
    # AMX needs a whole tile of rows (K is padded to whole tiles)
    amx = registry.IMPLEMENTATIONS["matmul.int8_amx"]
    assert amx.match(registry.MatmulWorkload(40, 64, 96, "uint8", False), Target("sapphirerapids")) is not None
    assert amx.match(registry.MatmulWorkload(8, 64, 128, "uint8", False), Target("sapphirerapids")) is None


@pytest.mark.parametrize("M,N", [(40, 24), (72, 80)])
def test_amx_pads_rows_and_columns_to_whole_tiles(rng, M, N):
    wl = registry.MatmulWorkload(M, N, 128, "uint8", True)
    impl = registry.IMPLEMENTATIONS["dense.int8_amx"]
    target = target_for(impl.name)
    assert impl.match(wl, target) is not None
    c, ref = run(impl, wl, target, rng, prepacked=True)
    np.testing.assert_array_equal(c, ref)


def test_int8_implementations_do_not_take_float_workloads():
    wl = registry.MatmulWorkload(64, 64, 128, "float32", False)
    assert not [i for _, i in registry.candidates(wl, HOST) if "int8" in i.name]


@pytest.mark.parametrize("name", ["dense.int8_amx", "dense.int8_vnni", "dense.int8_pmaddwd"])
def test_a_float_requantising_epilogue_fuses_and_vectorises(rng, name):
    impl = registry.IMPLEMENTATIONS[name]
    target = target_for(name)
    M, N, K = 32, 32, 64
    wl = registry.MatmulWorkload(M, N, K, "uint8", True)
    assert impl.match(wl, target) is not None
    cfg = impl.config(wl, target)
    x = te.placeholder((M, K), "uint8", name="x")
    packed = impl.placeholders(wl, cfg, target, True)[1]
    wp = te.placeholder(packed.shape, packed.dtype, name="wp")
    scale = te.placeholder((N,), "float32", name="scale")
    acc = impl.compute([x, wp], wl, cfg, target, prepacked=True, name="qdense")
    # int32 -> float * scale[j] + 3.5, rounded half to even, saturated to uint8 (QuantizeLinear)
    f32 = te.compute(acc.shape, lambda i, j: acc[i, j].astype("float32") * scale[j] + 3.5, tag="elemwise")
    q = te.compute(acc.shape, lambda i, j: te.min_of(te.max_of(te.round(f32[i, j]), 0.0), 255.0), tag="elemwise")
    y = ops.cast(q, "uint8")
    s = ops.schedule([y], target, anchor_schedule=lambda s, out, final: impl.schedule(s, out, final, cfg, target))
    func = te.lower(s, [x, wp, scale, y])
    stores = {st.buffer.name for st in walk_stmt(func.body) if hasattr(st, "buffer")}
    assert y.name in stores and f32.op.name not in stores and q.op.name not in stores   # fused
    assert any(isinstance(st, For) and st.kind is ForKind.VECTORIZED and y.name in str(st)
               for st in walk_stmt(func.body))
    f = te.build(func, target=target)
    a = rng.integers(0, 256, (M, K)).astype(np.uint8)
    w = rng.integers(-128, 128, (N, K)).astype(np.int8)
    sc = rng.uniform(1e-4, 3e-3, N).astype(np.float32)
    out = np.zeros((M, N), np.uint8)
    f(a, impl.pack_weight(w, wl, cfg, target), sc, out)
    acc_ref = a.astype(np.int64) @ w.T.astype(np.int64)
    ref = np.clip(np.round(acc_ref.astype(np.float32) * sc + np.float32(3.5)), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(out, ref)


def test_dot_intrinsic_family_of_the_host_is_used():
    wl = registry.MatmulWorkload(64, 64, 128, "uint8", False)
    impl = registry.IMPLEMENTATIONS["matmul.int8_vnni"]
    if impl.match(wl, HOST) is None:
        pytest.skip("no VNNI here")
    s, args = impl.instantiate(impl.config(wl, HOST), impl.args(wl), HOST, prepacked=True)
    assert f"tensorize={tensorize.dot_intrinsic(HOST)}" in str(te.lower(s, args))


@pytest.mark.parametrize("template", ["matmul_int8_amx", "dense_int8_vnni", "dense_int8_pmaddwd"])
def test_tuning_tasks_of_the_int8_templates_build_every_sampled_config(rng, template):
    import random

    import autotune
    target = target_for(template)
    task = autotune.create_task(template, (32, 32, 128, "uint8"), target)
    impl = task.implementation
    sp = task.config_space
    assert len(sp) > 1
    wl = impl.workload(task.args)
    cfgs = [sp.get(i) for i in {sp.sample(random.Random(s)) for s in range(3)}]
    built = []
    for cfg in cfgs:            # every one built before any runs (a run is refused on a CPU without the ISA)
        s, args = impl.instantiate(cfg, task.args, target, prepacked=True)
        built.append(te.build(s, args, target=target))
    for cfg, f in zip(cfgs, built):
        a = rng.integers(0, 256, (32, 128)).astype(np.uint8)
        w = rng.integers(-128, 128, impl.weight_shape(wl)).astype(np.int8)
        c = np.zeros((32, 32), np.int32)
        f(a, impl.pack_weight(w, wl, cfg, target), c)
        b = w.T if wl.transpose_b else w
        np.testing.assert_array_equal(c, a.astype(np.int64) @ b.astype(np.int64), err_msg=str(cfg))
