"""Graph passes: each on a small graph, checked for structure and (with numpy) for meaning."""
import numpy as np
from onnx import TensorProto, helper, numpy_helper

import frontends
from frontends import passes
from frontends.profile import onnxruntime_session


def conv_bn_model(rng, C: int = 4):
    w = rng.standard_normal((8, C, 3, 3)).astype(np.float32)
    b = rng.standard_normal(8).astype(np.float32)
    scale, beta, mean = (rng.standard_normal(8).astype(np.float32) for _ in range(3))
    var = rng.uniform(0.5, 1.5, 8).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c", "s", "be", "m", "v"], ["bn"], epsilon=1e-3),
             helper.make_node("Identity", ["bn"], ["i"]),
             helper.make_node("Relu", ["i"], ["y"]),
             helper.make_node("Relu", ["x"], ["dead"])]
    inits = [numpy_helper.from_array(a, n) for a, n in
             ((w, "w"), (b, "b"), (scale, "s"), (beta, "be"), (mean, "m"), (var, "v"))]
    g = helper.make_graph(nodes, "cbn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, C, 6, 6])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 6, 6])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), (w, b, scale, beta, mean, var)


def test_dead_nodes_are_removed(rng):
    m, _ = conv_bn_model(rng)
    g = frontends.from_onnx(m)
    assert "dead" not in {o for n in g.nodes for o in n.outputs}


def test_batchnorm_folds_into_conv(rng):
    m, (w, b, scale, beta, mean, var) = conv_bn_model(rng)
    g = passes.run_passes(frontends.from_onnx(m))
    assert [n.op for n in g.nodes] == ["Conv", "Relu"]
    conv = g.nodes[0]
    s = scale / np.sqrt(var + 1e-3)
    np.testing.assert_allclose(g.constants[conv.inputs[1]], w * s[:, None, None, None], rtol=1e-5)
    np.testing.assert_allclose(g.constants[conv.inputs[2]], (b - mean) * s + beta, rtol=1e-5, atol=1e-6)


def test_per_channel_mul_add_fold(rng):
    w = rng.standard_normal((8, 4, 1, 1)).astype(np.float32)
    sc = rng.standard_normal((8, 1, 1)).astype(np.float32)
    sh = rng.standard_normal((1, 8, 1, 1)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"]), helper.make_node("Mul", ["c", "sc"], ["m"]),
             helper.make_node("Add", ["m", "sh"], ["y"])]
    inits = [numpy_helper.from_array(a, n) for a, n in ((w, "w"), (sc, "sc"), (sh, "sh"))]
    g = helper.make_graph(nodes, "aff", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 5, 5])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 5, 5])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    out = passes.run_passes(frontends.from_onnx(m))
    assert [n.op for n in out.nodes] == ["Conv"] and out.nodes[0].outputs == ["y"]
    np.testing.assert_allclose(out.constants[out.nodes[0].inputs[2]], sh.reshape(-1), rtol=1e-6)


def test_fusion_groups_elementwise_chains(rng):
    m, _ = conv_bn_model(rng)
    g = passes.run_passes(frontends.from_onnx(m))
    groups = passes.fuse(g)
    assert len(groups) == 1 and [n.op for n in groups[0].nodes] == ["Conv", "Relu"]


def test_print_passes_shows_each_stage(rng, capsys):
    m, _ = conv_bn_model(rng)
    passes.print_passes(frontends.from_onnx(m))
    out = capsys.readouterr().out
    assert "== after fold_batchnorm" in out and "kernel 0: Conv -> Relu" in out


def test_fused_groups_run_after_all_their_inputs(rng):
    # branch A: conv -> add(branch B) ; branch B's conv comes later in node order (ResNet's shortcut)
    wa = rng.standard_normal((4, 4, 1, 1)).astype(np.float32)
    wb = rng.standard_normal((4, 4, 1, 1)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "wa"], ["a"]), helper.make_node("Conv", ["x", "wb"], ["b"]),
             helper.make_node("Sum", ["a", "b"], ["y"])]
    inits = [numpy_helper.from_array(wa, "wa"), numpy_helper.from_array(wb, "wb")]
    g = helper.make_graph(nodes, "res", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 3, 3])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 3, 3])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 9)])
    graph = passes.run_passes(frontends.from_onnx(m))
    order = [[n.op for n in grp.nodes] for grp in passes.fuse(graph)]
    assert order == [["Conv"], ["Conv", "Sum"]]
    x = rng.standard_normal((1, 4, 3, 3)).astype(np.float32)
    y, = frontends.build(frontends.from_onnx(m)).run(x=x)
    want = np.einsum("nchw,kc->nkhw", x, wa[:, :, 0, 0] + wb[:, :, 0, 0])
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)


def test_conv_weights_are_packed_at_build_time(rng, tmp_path):
    """The build stores the direct conv's weights in the kernel's layout; no packing runs per call
    (8 input channels: with at most 4 the stem kernel, which reads its weights as they are, runs)."""
    import te
    from frontends.compile import plan_model
    from te.printer import func_str
    m, _ = conv_bn_model(rng, C=8)
    g = frontends.from_onnx(m)
    mp, pg, param_off = plan_model(g, te.target.host(), 13)
    packed = [v for v in param_off if "::conv2d.direct" in v]
    assert len(packed) == 1 and pg.constants[packed[0]].ndim == 5
    # the OIHW original is not shipped, and the kernel does not pack
    assert not [v for v in param_off if pg.constants[v].shape == (8, 8, 3, 3)]
    assert "wpack" not in func_str(mp.funcs[0]) and "in1.packed" in func_str(mp.funcs[0])
    x = rng.standard_normal((1, 8, 6, 6)).astype(np.float32)
    want = onnxruntime_session(m).run(None, {"x": x})[0]
    lib = frontends.build(g)
    np.testing.assert_allclose(lib.run(x=x)[0], want, rtol=1e-4, atol=1e-4)
    lib.export_library(tmp_path / "cbn.so")
    np.testing.assert_allclose(te.runtime.load_module(tmp_path / "cbn.so").run(x=x)[0], want, rtol=1e-4, atol=1e-4)


def conv_chain_model(rng, C=20, H=7, N=1):
    """x -> conv3x3 -> relu -> conv1x1 -> clip -> conv3x3 (+ bias) -> add x -> relu, and a side conv.

    20 channels: the 16-channel blocks of the packed layout are padded; the residual add reads
    the chain's output in NCHW; `side` reads the first conv's input only.  N = 2 images keep the
    1x1 conv a direct one on every CPU (a 16-register target runs one image's as the GEMM).
    """
    ws = {f"w{k}": (rng.standard_normal((C, C, r, r)) * 0.2).astype(np.float32) for k, r in ((1, 3), (2, 1), (3, 3))}
    ws["b3"] = rng.standard_normal(C).astype(np.float32)
    ws["ws"] = (rng.standard_normal((4, C, 1, 1)) * 0.2).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Conv", ["r1", "w2"], ["c2"]),
             helper.make_node("Clip", ["c2", "lo", "hi"], ["r2"]),
             helper.make_node("Conv", ["r2", "w3", "b3"], ["c3"], pads=[1, 1, 1, 1]),
             helper.make_node("Add", ["c3", "x"], ["a"]),
             helper.make_node("Relu", ["a"], ["y"]),
             helper.make_node("Conv", ["x", "ws"], ["side"])]
    inits = [numpy_helper.from_array(a, n) for n, a in ws.items()]
    inits += [numpy_helper.from_array(np.array(v, np.float32), n) for n, v in (("lo", 0.0), ("hi", 6.0))]
    g = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [N, C, H, H])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [N, C, H, H]),
                           helper.make_tensor_value_info("side", TensorProto.FLOAT, [N, 4, H, H])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])


def test_nchwc_layout_packs_a_chain_once(rng):
    # the chain as AVX-512 takes it (16 registers run the one-image 1x1 conv as the GEMM)
    g = passes.run_passes(frontends.from_onnx(conv_chain_model(rng)), layout="NCHWc", target="llvm -mcpu=skylake-avx512")
    ops = [n.op for n in g.nodes]
    assert ops.count(passes.PACK_NCHWC) == 1 and ops.count(passes.UNPACK_NCHWC) == 1
    chain = ops[ops.index(passes.PACK_NCHWC) + 1:ops.index(passes.UNPACK_NCHWC)]
    assert chain == ["Conv", "Relu", "Conv", "Clip", "Conv"]
    packed = [n for n in g.nodes if n.attrs.get("layout") == "NCHWc"]
    assert len(packed) == 3 and all(n.attrs["block"] == 16 for n in packed)
    for n in packed:                        # 20 channels -> 2 blocks of 16, padded
        assert g.info(n.inputs[0]).shape == (1, 2, 7, 7, 16) and g.info(n.outputs[0]).shape == (1, 2, 7, 7, 16)
    unpack = g.nodes[ops.index(passes.UNPACK_NCHWC)]
    assert unpack.outputs == ["c3"] and unpack.attrs["channels"] == 20     # the add reads NCHW as before
    side = next(n for n in g.nodes if n.outputs == ["side"])
    assert side.inputs[0] == "x" and "layout" not in side.attrs           # a chain of one conv stays NCHW
    # the default pipeline leaves the layout alone
    assert passes.PACK_NCHWC not in [n.op for n in passes.run_passes(frontends.from_onnx(conv_chain_model(rng))).nodes]


def test_nchwc_layout_builds_and_matches_onnxruntime(rng, tmp_path):
    import te
    m = conv_chain_model(rng, N=2)
    g = frontends.from_onnx(m)
    x = rng.standard_normal((2, 20, 7, 7)).astype(np.float32)
    want = onnxruntime_session(m).run(None, {"x": x})
    lib = frontends.build(g, layout="NCHWc")
    names = [f.name for f in lib.plan.funcs]
    assert sum("packnchwc" in n for n in names) == 2                  # one pack, one unpack kernel
    assert sum("packed" in str(f) and "rci" in str(f) for f in lib.plan.funcs) == 3    # conv2d_NCHWc x3
    for got, ref in zip(lib.run(x=x), want):
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)
    lib.export_library(tmp_path / "chain.so")
    for got, ref in zip(te.runtime.load_module(tmp_path / "chain.so").run(x=x), want):
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)


def test_nchwc_layout_is_shown_and_checked(rng, capsys):
    import pytest
    g = frontends.from_onnx(conv_chain_model(rng))
    passes.print_passes(g, layout="NCHWc")
    assert "== after propagate_nchwc" in capsys.readouterr().out
    with pytest.raises(ValueError, match="unknown layout 'NHWC'"):
        passes.run_passes(g, layout="NHWC")


def dw_pw_model(rng, stride=1, size=28, second_reader=False, relu=False):
    """Depthwise 3x3 (stride), Clip(0, 6) or Relu, 1x1 conv, Add of the input: MobileNetV2's block tail."""
    from frontends import zoo
    m = zoo.mobilenet_block(seed=int(rng.integers(1 << 30)), channels=8, expand=3, size=size)
    g = m.graph
    if stride != 1:
        g.node[2].attribute.append(helper.make_attribute("strides", [stride, stride]))
        g.node.remove(g.node[-1])                               # the residual no longer fits
        g.output[0].CopyFrom(helper.make_tensor_value_info("h3", TensorProto.FLOAT, None))
    if relu:
        g.node[3].CopyFrom(helper.make_node("Relu", ["h2"], ["a2"]))
    if second_reader:                                           # the activation is a model output too
        g.output.append(helper.make_tensor_value_info("a2", TensorProto.FLOAT, None))
    return m


def test_depthwise_and_pointwise_fuse_and_match_onnxruntime(rng):
    m = dw_pw_model(rng)
    g = passes.run_passes(frontends.from_onnx(m))
    assert [n.op for n in g.nodes] == ["Conv", "Clip", passes.DWPW, "Add"]
    fused = g.nodes[2]
    assert fused.attrs["act_min"] == 0.0 and fused.attrs["act_max"] == 6.0 and fused.outputs == ["h3"]
    from frontends.profile import node_flops          # the roofline counts both convs' FLOPs
    before = frontends.from_onnx(m)
    assert node_flops(fused, g) == sum(node_flops(n, before) for n in before.nodes if n.op == "Conv"
                                       and n.outputs[0] in ("h2", "h3"))
    x = rng.standard_normal((1, 8, 28, 28)).astype(np.float32)
    x[0, 3, 5, 5] = np.nan                                  # a NaN stays NaN through the fused Clip
    want = onnxruntime_session(m).run(None, {"x": x})
    assert np.isnan(want[0]).sum() == 8 * 9
    lib = frontends.build(frontends.from_onnx(m))
    assert len(lib.plan.funcs) == 2                         # expand + (depthwise, 1x1, Add)
    for got, ref in zip(lib.run(x=x), want):
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)


def test_relu_between_fuses_too(rng):
    m = dw_pw_model(rng, relu=True)
    g = passes.run_passes(frontends.from_onnx(m))
    fused = next(n for n in g.nodes if n.op == passes.DWPW)
    assert fused.attrs["act_min"] == 0.0 and fused.attrs["act_max"] is None
    x = rng.standard_normal((1, 8, 28, 28)).astype(np.float32)
    np.testing.assert_allclose(frontends.build(frontends.from_onnx(m)).run(x=x)[0],
                               onnxruntime_session(m).run(None, {"x": x})[0], rtol=1e-4, atol=1e-4)


def test_depthwise_and_pointwise_stay_apart_where_the_kernel_does_not_apply(rng):
    for m in (dw_pw_model(rng, stride=2), dw_pw_model(rng, size=14), dw_pw_model(rng, second_reader=True)):
        ops = [n.op for n in passes.run_passes(frontends.from_onnx(m)).nodes]
        assert passes.DWPW not in ops and ops.count("Conv") == 3


def test_identity_into_a_graph_output_renames_its_producer(rng):
    """Relu -> Identity -> output: the Relu writes the output (no copy kernel); an Identity of a
    graph input, or of a value read elsewhere too, stays."""
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Identity", ["r"], ["y"]),
             helper.make_node("Identity", ["x"], ["z"]), helper.make_node("Neg", ["x"], ["n"]),
             helper.make_node("Identity", ["n"], ["w"]), helper.make_node("Abs", ["n"], ["v"])]
    info = [helper.make_tensor_value_info(k, TensorProto.FLOAT, [2, 3]) for k in ("y", "z", "w", "v")]
    x_info = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])
    m = helper.make_model(helper.make_graph(nodes, "ids", [x_info], info), opset_imports=[helper.make_opsetid("", 13)])
    g = passes.run_passes(frontends.from_onnx(m))
    assert [str(n).split("  ")[0] for n in g.nodes] == ["y = Relu(x)", "z = Identity(x)", "n = Neg(x)",
                                                         "w = Identity(n)", "v = Abs(n)"]
    x = rng.standard_normal((2, 3)).astype(np.float32)
    for got, want in zip(frontends.build(frontends.from_onnx(m)).run(x=x), onnxruntime_session(m).run(None, {"x": x})):
        np.testing.assert_array_equal(got, want)
