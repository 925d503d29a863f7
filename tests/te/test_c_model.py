"""A model library from C: the header's constants and examples/classify.c, compiled with the
system C compiler and run, against Python's answer for the same input."""
from __future__ import annotations

import os
import subprocess

import numpy as np

import frontends
from frontends.profile import onnxruntime_session
from te import export

from ..classifier_models import INPUT_SHAPE, squeezenet_like

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_c_example_prints_the_top_class_python_computes(tmp_path):
    model = squeezenet_like(tmp_path / "sq.onnx")
    lib = frontends.build(frontends.from_onnx(model))
    lib.export_library(tmp_path / "sq.so", header=str(tmp_path / "sq.h"))
    header = (tmp_path / "sq.h").read_text()
    assert "int32_t tilewise_run(void *const *io, const void *params, void *workspace);" in header
    assert f"#define TILEWISE_WORKSPACE_BYTES {lib.plan.workspace_bytes}\n" in header
    assert f"extern const unsigned char tilewise_params[{lib.plan.param_bytes}];" in header
    assert '#define TILEWISE_INPUT0_NAME "x"' in header and "#define TILEWISE_INPUT0_SHAPE {1, 3, 32, 32}" in header
    assert '#define TILEWISE_OUTPUT0_DTYPE "float32"' in header and "#define TILEWISE_OUTPUT0_SIZE 10\n" in header
    exe = str(tmp_path / "classify")
    cc = subprocess.run([*export.find_cc(), "-O1", "-std=c11", "-Wall", "-Werror", "-o", exe,
                         os.path.join(REPO, "examples", "classify.c"), "-I", str(tmp_path),
                         '-DMODEL_HEADER="sq.h"', str(tmp_path / "sq.so"), f"-Wl,-rpath,{tmp_path}"],
                        capture_output=True, text=True, timeout=120)
    assert cc.returncode == 0, cc.stderr
    rng = np.random.default_rng(3)
    for k in range(3):
        x = rng.standard_normal(INPUT_SHAPE).astype(np.float32)
        x.tofile(tmp_path / "x.bin")
        r = subprocess.run([exe, str(tmp_path / "x.bin")], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        (prob,) = lib.run(x=x)
        np.testing.assert_allclose(prob, onnxruntime_session(model).run(None, {"x": x})[0], rtol=1e-4, atol=1e-5)
        assert r.stdout.startswith(f"top class: {int(np.argmax(prob))} (prob = "), (r.stdout, prob)
    (tmp_path / "short.bin").write_bytes(b"\0" * 12)
    r = subprocess.run([exe, str(tmp_path / "short.bin")], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "expected 12288 bytes (x, float32), got fewer" in r.stderr


def test_model_header_compiles_for_awkward_names_and_scalars(tmp_path):
    meta = {"tilewise_version": "0", "target": "llvm -mcpu=x", "isa": "x86_64", "required_features": [],
            "format_version": 3, "kernels": [],
            "model": {"inputs": [{"name": 'in*/"put\\?\x01é', "shape": [], "dtype": "float16"}],
                      "outputs": [{"name": "y", "shape": [2, 3], "dtype": "bool"}],
                      "workspace_bytes": 0, "param_bytes": 0}}
    (tmp_path / "m.h").write_text(export.header_text(meta, "m.so"))
    (tmp_path / "m.c").write_text(
        '#include <string.h>\n#include "m.h"\n'
        "static const long shape[] = TILEWISE_OUTPUT0_SHAPE, scalar[] = TILEWISE_INPUT0_SHAPE;\n"
        "int main(void) {\n"
        '  return !(strcmp(TILEWISE_INPUT0_NAME, "in*/\\"put\\\\?\\001\\303\\251") == 0 && TILEWISE_INPUT0_RANK == 0\n'
        "           && sizeof(TILEWISE_INPUT0_CTYPE) == 2 && TILEWISE_INPUT0_BYTES == 2 && scalar[0] == 1\n"
        "           && shape[1] == 3 && TILEWISE_OUTPUT0_BYTES == 6 && TILEWISE_PARAMS == 0);\n}\n")
    exe = str(tmp_path / "m")
    cc = subprocess.run([*export.find_cc(), "-std=c11", "-Wall", "-Werror", "-o", exe, str(tmp_path / "m.c"),
                         "-I", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert cc.returncode == 0, cc.stderr
    assert subprocess.run([exe], timeout=30).returncode == 0
