"""Einsum through the importer: the equations models use, against numpy; what is refused."""
import numpy as np
import pytest
from onnx import helper

import frontends
from frontends import ModelError

from .onnx_helpers import tiny, vi

CASES = [
    ("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]),
    ("bhqd,bhkd->bhqk", [(2, 3, 4, 8), (2, 3, 5, 8)]),     # attention scores: B read as (N, K)
    ("bhqk,bhkd->bqhd", [(2, 3, 4, 5), (2, 3, 5, 6)]),     # attention output, heads moved
    ("ij,jk->ik", [(3, 4), (4, 5)]),
    ("ij,jk,kl->il", [(2, 3), (3, 4), (4, 5)]),
    ("...ij,...jk", [(2, 3, 4), (2, 4, 5)]),                # ellipsis and the implicit output
    ("ij->ji", [(3, 4)]),
    ("ijk->i", [(2, 3, 4)]),
    ("i,j->ij", [(3,), (4,)]),
    ("bii->bi", [(2, 3, 3)]),
]


def _model(eq, shapes):
    names = [f"x{k}" for k in range(len(shapes))]
    node = helper.make_node("Einsum", names, ["y"], equation=eq, name="es")
    return tiny([node], [vi(n, list(s)) for n, s in zip(names, shapes)], [vi("y", None)], opset=12)


@pytest.mark.parametrize("eq,shapes", CASES)
def test_einsum_matches_numpy(rand, eq, shapes):
    xs = [rand(s) for s in shapes]
    g = frontends.from_onnx(_model(eq, shapes))
    (y,) = frontends.build(g).run(**{f"x{k}": x for k, x in enumerate(xs)})
    np.testing.assert_allclose(y, np.einsum(eq, *xs), rtol=1e-5, atol=1e-5)


def test_einsum_refuses_broadcasting_a_unit_extent():
    with pytest.raises(ModelError, match="letter 'b' has extents 2 and 1; broadcasting"):
        frontends.from_onnx(_model("bij,bjk->bik", [(2, 3, 4), (1, 4, 5)]))
