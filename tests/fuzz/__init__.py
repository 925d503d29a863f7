"""Fuzz tests of the untrusted inputs (ONNX files, tuning logs, libraries); see docs/reliability.md."""
