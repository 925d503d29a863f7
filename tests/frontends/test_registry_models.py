"""A model's tuning tasks are the kernels its build runs: both come from te.ops.registry."""
from __future__ import annotations

import pytest

from autotune.task import workload_key
import frontends
import te
from frontends import zoo
from frontends.compile import plan_model
from frontends.tasks import extract_tasks
from te.ops import winograd

MODELS = [m for m in ("resnet50", "squeezenet", "bvlc_alexnet") if m in zoo.light_models()]


@pytest.mark.parametrize("name", MODELS)
def test_extracted_tasks_are_the_tasks_of_the_kernels_built(name):
    """For every anchor of the model, the task extracted for it is the task (template + args) of
    the implementation its kernel is built with, and a Winograd task's kernel (F(4x4) or F(2x2)) is a
    Winograd conv."""
    graph = frontends.from_onnx(zoo.light_model(name))
    host = te.target.host()
    extracted = {mt.task.workload_key: set(mt.nodes) for mt in extract_tasks(graph, host, "preferred")}
    mp, _, _ = plan_model(graph, host, graph.opset)
    funcs = {f.name: f for f in mp.funcs}
    built: dict[str, set] = {}
    for st in mp.steps:
        if st.task is not None:
            built.setdefault(workload_key(*st.task), set()).add(st.nodes[0])
            assert winograd.in_kernel(funcs[st.kernel]) == st.task[0].startswith("conv2d_nchw_winograd")
    assert built == extracted and built
    # all the algorithms: the same kernels, each with every implementation that applies
    every = extract_tasks(graph, host)
    assert {k for mt in every for k in [mt.task.workload_key]} >= set(extracted)
    assert {mt.workload for mt in every} == {mt.workload for mt in extract_tasks(graph, host, "preferred")}


def test_the_winograd_environment_variable_no_longer_decides_the_tasks(monkeypatch):
    """The algorithm is the registry's decision: TILEWISE_WINOGRAD=0 used to switch a model's
    3x3 convs (and the tasks extracted for them) to the direct conv."""
    if "resnet50" not in zoo.light_models():
        pytest.skip("the onnx package ships no resnet50 light model")
    graph = frontends.from_onnx(zoo.light_model("resnet50"))
    keys = [mt.task.workload_key for mt in extract_tasks(graph)]
    monkeypatch.setenv("TILEWISE_WINOGRAD", "0")
    assert [mt.task.workload_key for mt in extract_tasks(graph)] == keys
    assert any("conv2d_nchw_winograd" in k for k in keys)
