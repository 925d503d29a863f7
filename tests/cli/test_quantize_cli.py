"""`tilewise quantize` as a user runs it: the QDQ model ONNX Runtime runs, the report, one-line errors."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import onnx
import pytest

pytest.importorskip("onnxruntime")

from ..frontends.onnx_helpers import ort_int8_exact, ort_qdq_run, seven_bit_weights   # noqa: E402
from ..quant_models import conv_bn_gemm, ort_run        # noqa: E402
from .cli_helpers import Result, one_line_error         # noqa: E402


@pytest.fixture(scope="module")
def fp32_onnx(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("quant") / "net.onnx"
    onnx.save(conv_bn_gemm(), str(path))
    return str(path)


@pytest.fixture(scope="module")
def calibrated(fp32_onnx, tmp_path_factory, cli_env):
    """`tilewise quantize` of the model on 5 inputs from an .npz, per channel, percentile ranges."""
    folder = tmp_path_factory.mktemp("quantised")
    x = np.random.default_rng(0).standard_normal((5, 1, 3, 12, 12)).astype(np.float32)
    np.savez(folder / "cal.npz", x=x)
    p = subprocess.run([sys.executable, "-m", "tilewise", "quantize", fp32_onnx, "-o", "net.int8.onnx",
                        "--calibration", "cal.npz", "--per-channel", "--method", "percentile"],
                       cwd=folder, env=cli_env, capture_output=True, text=True, timeout=300)
    return Result(p.returncode, p.stdout, p.stderr), folder, x


def test_quantize_writes_a_qdq_model_and_reports(calibrated, fp32_onnx):
    r, folder, x = calibrated
    assert r.code == 0, r.text
    assert "folded 1 BatchNormalization" in r.out and "wrote net.int8.onnx" in r.out and "per channel" in r.out
    assert "on cal.npz with tilewise's fp32 build" in r.out
    assert "accuracy against fp32 on 5 calibration input(s)" in r.out and "top-1" in r.out
    q = onnx.load(str(folder / "net.int8.onnx"))
    assert "QuantizeLinear" in [n.op_type for n in q.graph.node]
    got, ref = ort_qdq_run(q, {"x": x[0]})[0], ort_run(fp32_onnx, {"x": x[0]})[0]
    assert np.linalg.norm(got - ref) / np.linalg.norm(ref) < 0.1
    assert sorted(p.name for p in folder.iterdir()) == ["cal.npz", "net.int8.onnx"]


def test_quantize_refuses_a_quantised_model(cli, calibrated):
    _, folder, _ = calibrated
    err = one_line_error(cli("quantize", folder / "net.int8.onnx", "-o", "qq.onnx"))
    assert "quantised already" in err and "fp32 model" in err


def test_quantize_default_output_random_samples(cli, fp32_onnx, tmp_path):
    r = cli("quantize", fp32_onnx, "--samples", "3", "--seed", "7", "--activation-type", "s8", cwd=tmp_path)
    assert r.code == 0, r.text
    assert "3 random input(s), seed 7" in r.out and "activations s8" in r.out
    assert (tmp_path / "net.int8.onnx").is_file()


def test_reduce_range_writes_7_bit_weights(cli, fp32_onnx, tmp_path):
    """--reduce-range: every int8 weight within [-64, 63] (sums ONNX Runtime adds exactly without VNNI)."""
    r = cli("quantize", fp32_onnx, "--samples", "2", "--reduce-range", "-o", "q7.onnx", cwd=tmp_path)
    assert r.code == 0, r.text
    assert "7-bit weights" in r.out
    weights = [onnx.numpy_helper.to_array(t) for t in onnx.load(str(tmp_path / "q7.onnx")).graph.initializer
               if t.data_type == onnx.TensorProto.INT8 and t.dims]
    assert weights and all(-64 <= int(w.min()) and int(w.max()) <= 63 for w in weights)
    assert any(int(np.abs(w).max()) >= 60 for w in weights)      # the range is used, not shrunk further


def test_quantize_help_says_random_samples_suit_random_weights(cli):
    r = cli("quantize", "--help")
    assert r.code == 0 and "usage: tilewise quantize" in r.out and "tilewise quantize" in r.out.split("examples:")[1]
    assert "seeded random" in r.out and "not for a trained model" in r.out


def test_quantize_errors_are_one_line(cli, fp32_onnx, tmp_path):
    before = open(fp32_onnx, "rb").read()
    assert "is the same file as MODEL" in one_line_error(cli("quantize", fp32_onnx, "-o", fp32_onnx))
    assert open(fp32_onnx, "rb").read() == before
    assert "does not exist" in one_line_error(cli("quantize", fp32_onnx, "-o", "nope/q.onnx", cwd=tmp_path))
    (tmp_path / "notes.txt").write_text("mine\n")         # an existing output that is not a model stays
    assert "notes.txt: exists and is not an ONNX model" in one_line_error(
        cli("quantize", fp32_onnx, "-o", "notes.txt", cwd=tmp_path))
    assert (tmp_path / "notes.txt").read_text() == "mine\n"
    assert "--max-top1-drop applies to --auto only" in one_line_error(
        cli("quantize", fp32_onnx, "--max-top1-drop", "0.1", cwd=tmp_path))
    assert "--samples 0: give at least 1" in one_line_error(cli("quantize", fp32_onnx, "--samples", "0", cwd=tmp_path))
    assert "no such model file" in one_line_error(cli("quantize", "missing.onnx", cwd=tmp_path))
    np.savez(tmp_path / "bad.npz", data=np.zeros((1, 3, 12, 12), np.float32))
    err = one_line_error(cli("quantize", fp32_onnx, "--calibration", "bad.npz", cwd=tmp_path))
    assert "--calibration bad.npz: holds arrays ['data'], the model's inputs are ['x']" in err
    dyn = onnx.load(fp32_onnx)
    dyn.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "N"
    onnx.save(dyn, str(tmp_path / "dyn.onnx"))
    assert "input x has dimensions ['N', 3, 12, 12], not all static" in one_line_error(
        cli("quantize", "dyn.onnx", "--samples", "1", cwd=tmp_path))
    both = cli("quantize", fp32_onnx, "--calibration", "bad.npz", "--samples", "2", cwd=tmp_path)
    assert both.code == 2 and "not allowed with argument" in both.err
    assert not (tmp_path / "net.int8.onnx").exists()


def test_quantize_auto(cli, fp32_onnx, tmp_path):
    from frontends.quant_auto import int8_import_missing
    r = cli("quantize", fp32_onnx, "--auto", "--samples", "2", cwd=tmp_path)
    missing = int8_import_missing()
    if missing:
        assert "--auto times each layer with tilewise's int8 kernels, which this build lacks" in one_line_error(r)
        assert not (tmp_path / "net.int8.onnx").exists()
    else:
        assert r.code == 0, r.text
        assert "speedup" in r.out and "--auto:" in r.out and "budget 1.0%" in r.out


def test_bench_of_a_quantised_model_uses_int8_ceilings(cli, calibrated, tmp_path):
    from te.peak_int8 import available
    r, folder, _ = calibrated
    model = folder / "net.int8.onnx"
    if not ort_int8_exact():            # ONNX Runtime's int8 sums saturate on 8-bit weights here
        model = tmp_path / "net.int8.onnx"
        onnx.save(seven_bit_weights(onnx.load(folder / "net.int8.onnx")), model)
    b = cli("bench", model, "--repeat", "2", cwd=model.parent)
    assert b.code == 0, b.err
    assert "outputs agree with ONNX Runtime as int8 engines do" in b.out
    if available("vnni"):
        assert "int8 VNNI" in b.out and "int8 kernels: GFLOP/s are GOP/s" in b.out


def test_output_agreement_counts_quantisation_steps():
    from tilewise.commands.bench import output_agreement
    u8 = np.array([[3, 200, 17]], np.uint8)
    one_step = u8 + np.array([[1, 0, 0]], np.uint8)
    assert "within 1 quantisation step" in output_agreement([u8], [one_step], quantized=True)
    assert "warning" in output_agreement([u8], [u8 + 2], quantized=True)
    assert "no VNNI" in output_agreement([u8], [u8 + 2], quantized=True, vnni=False)
    assert "VNNI" not in output_agreement([u8], [u8 + 2], quantized=True, vnni=True)
    f = np.array([1.0, 2.0], np.float32)
    assert "warning" in output_agreement([f], [f * 1.01], quantized=False)
    assert "agree" in output_agreement([f], [f * 1.01], quantized=True)
