"""frontends: model importers (ONNX), graph passes and whole-model compilation.

    import frontends, te
    graph = frontends.from_onnx("resnet50.onnx")
    lib = frontends.build(graph, logs=["tuning.jsonl"])
    lib.export_library("resnet50.so")
    m = te.runtime.load_module("resnet50.so")
    outputs = m.run(**{m.input_names[0]: x})
"""
from .compile import GraphLibrary, build
from .graph import Graph, Node, TensorInfo
from .onnx import ModelError, from_onnx
from . import passes

__all__ = ["from_onnx", "build", "Graph", "Node", "TensorInfo", "GraphLibrary", "ModelError", "passes"]
