"""`tilewise run`'s summary of float16 and bfloat16 outputs: statistics and top classes as for float32."""
from __future__ import annotations

import ml_dtypes  # noqa: F401  (numpy's 'bfloat16')
import numpy as np
import pytest

from tilewise.commands.run import summarize


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_summary_of_16_bit_outputs(dtype):
    text = summarize(["prob"], [np.array([[0.125, 0.5, 0.25]], dtype)])
    assert f"prob    1x3    {dtype}" in text
    assert "0.125" in text and "0.5" in text
    assert "prob: argmax 1; top 3: 1 (0.5), 2 (0.25), 0 (0.125)" in text
