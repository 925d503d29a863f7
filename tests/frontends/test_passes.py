"""Graph passes: each on a small graph, checked for structure and (with numpy) for meaning."""
import numpy as np
from onnx import TensorProto, helper, numpy_helper

import frontends
from frontends import passes


def conv_bn_model(rng):
    w = rng.standard_normal((8, 4, 3, 3)).astype(np.float32)
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
    g = helper.make_graph(nodes, "cbn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 6, 6])],
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
    """The build stores the direct conv's weights in the kernel's layout; no packing runs per call."""
    import onnxruntime as ort

    import te
    from frontends.compile import plan
    from te.printer import func_str
    m, _ = conv_bn_model(rng)
    g = frontends.from_onnx(m)
    mp, pg, param_off = plan(g, te.target.host(), 13)
    packed = [v for v in param_off if "::oc" in v]
    assert len(packed) == 1 and pg.constants[packed[0]].ndim == 5
    # the OIHW original is not shipped, and the kernel does not pack
    assert not [v for v in param_off if pg.constants[v].shape == (8, 4, 3, 3)]
    assert "wpack" not in func_str(mp.funcs[0]) and "in1.packed" in func_str(mp.funcs[0])
    x = rng.standard_normal((1, 4, 6, 6)).astype(np.float32)
    want = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    lib = frontends.build(g)
    np.testing.assert_allclose(lib.run(x=x)[0], want, rtol=1e-4, atol=1e-4)
    lib.export_library(tmp_path / "cbn.so")
    np.testing.assert_allclose(te.runtime.load_module(tmp_path / "cbn.so").run(x=x)[0], want, rtol=1e-4, atol=1e-4)
