"""libgomp's spin count: tilewise sets a short one before libgomp loads, unless the user chose."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from te.runtime import SPIN_COUNT

SCRIPT = """
import os, te
A = te.placeholder((64,), name="A")
C = te.compute((64,), lambda i: A[i] + 1, name="C")
s = te.create_schedule(C.op)
s[C].parallel(C.op.axis[0])
te.build(s, [A, C])
print(os.environ.get("GOMP_SPINCOUNT"), os.environ.get("OMP_WAIT_POLICY"))
"""


@pytest.mark.parametrize("user, want", [({}, f"{SPIN_COUNT} None"),
                                        ({"GOMP_SPINCOUNT": "7"}, "7 None"),
                                        ({"OMP_WAIT_POLICY": "active"}, "None active")])
def test_the_spin_count_is_set_before_libgomp_loads_unless_the_user_chose(user, want):
    env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    out = subprocess.run([sys.executable, "-c", SCRIPT], env={**env, **user}, capture_output=True,
                         text=True, timeout=120, check=True)
    assert out.stdout.split("\n")[-2] == want
