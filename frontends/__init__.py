"""frontends: model importers (ONNX), graph passes and whole-model compilation."""
