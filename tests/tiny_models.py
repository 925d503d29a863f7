"""The tiny two-convolution ONNX model and fake tuning records for it, shared by the command-line,
autotune and te tests."""
from __future__ import annotations

import numpy as np

AVX2_ISA = "x86_64+sse4.2+avx+avx2+fma+f16c"
AVX512_ISA = "x86_64+sse4.2+avx+avx2+fma+f16c+avx512f+avx512bw+avx512dq+avx512vl+avx512cd"


def other_isa() -> str:
    """An ISA key that is not this CPU's: AVX-512's on an AVX2 CPU, else AVX2's."""
    from te.target import host
    return AVX512_ISA if host().isa == AVX2_ISA else AVX2_ISA


def tiny_model(path) -> str:
    """A two-convolution ONNX model (Conv+bias -> Relu -> 1x1 Conv) on a 1x8x16x16 input."""
    import onnx
    from onnx import helper, numpy_helper
    rng = np.random.default_rng(0)
    w1 = (rng.standard_normal((16, 8, 3, 3)) * 0.2).astype(np.float32)
    b1 = (rng.standard_normal(16) * 0.1).astype(np.float32)
    w2 = (rng.standard_normal((16, 16, 1, 1)) * 0.2).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["h"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("Conv", ["r", "w2"], ["y"], kernel_shape=[1, 1])]
    inits = [numpy_helper.from_array(v, k) for k, v in dict(w1=w1, b1=b1, w2=w2).items()]
    g = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 8, 16, 16])],
                          [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 16, 16, 16])], inits)
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return str(path)


def fake_records(model_path: str, isa: str | None = None) -> list:
    """Records for the tiny model's tasks without measuring: the default config and one other,
    faster, per task, plus one error record -- enough for logs, build and dispatch."""
    import autotune
    import frontends
    from frontends.tasks import extract_tasks
    from te.target import for_isa, host
    isa = isa or host().isa
    h = for_isa(isa)                        # the configs of that ISA's spaces
    out = []
    for k, mt in enumerate(extract_tasks(frontends.from_onnx(model_path), h, algorithms="preferred")):
        space = mt.task.config_space
        d = space.default_index()
        other = (d + 1) % len(space)
        base = dict(workload=mt.task.workload_key, isa=isa, cpu=h.cpu, target=f"llvm -mcpu={h.cpu}",
                    tilewise_version="0.1.0")
        out.append(autotune.Record(config=space.get(d).to_json(), costs=[2e-5, 2.1e-5], **base))
        out.append(autotune.Record(config=space.get(other).to_json(), costs=[1e-5, 1.1e-5], **base))
        if k == 0:
            out.append(autotune.Record(config=space.get((d + 2) % len(space)).to_json(), costs=[],
                                       error_no=int(autotune.ErrorNo.COMPILE_ERROR), error_msg="boom", **base))
    return out


def write_log(path, records) -> str:
    """Write records as a JSON-lines log."""
    with open(path, "w") as f:
        f.write("".join(r.to_json() + "\n" for r in records))
    return str(path)
