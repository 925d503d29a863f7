"""Models the ONNX fuzzer broke (issue 17), rebuilt from its seed model: each is refused with one
ModelError naming the value, node or field, or compiled to ONNX Runtime's answer."""
import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

import frontends
from frontends import ModelError

from ..fuzz import seeds


def seed() -> onnx.ModelProto:
    """The fuzzer's seed: Conv+bias -> Relu -> Reshape -> MatMul ('fc') -> Softmax, x (1,3,8,8) -> y (1,10)."""
    return onnx.load_from_string(seeds.model_bytes())


def refused(m, *parts) -> str:
    """The import's ModelError message, checked to contain every part."""
    with pytest.raises(ModelError) as e:
        frontends.from_onnx(m.SerializeToString())
    msg = str(e.value)
    for p in parts:
        assert p in msg, msg
    return msg


def test_an_ir_version_too_large_for_onnx_is_refused():
    m = seed()
    m.ir_version = 2 ** 40
    refused(m, "IR version 1099511627776")
