"""`tilewise.InferenceSession`: ONNX Runtime's session API over a tilewise model, for drop-in use.

    import tilewise
    sess = tilewise.InferenceSession("model.onnx")      # builds it, with the shipped tuning logs
    sess = tilewise.InferenceSession("model.so")        # or loads a library `tilewise build` made
    print(sess.get_inputs()[0].name, sess.get_inputs()[0].shape, sess.get_inputs()[0].type)
    y, = sess.run(None, {"x": x})

An ONNX model is built as `tilewise build` builds it: the best records of the logs given with
`logs=` and of the shared logs (tuning_logs/ and $TILEWISE_LOGS) for this CPU, default schedules
for the rest; it then runs in this process.  A library runs through te.runtime.load_module.
"""
from __future__ import annotations

import logging
import os
import warnings

import numpy as np

log = logging.getLogger(__name__)

LIBRARY_SUFFIXES = (".so",)


class InferenceSession:
    """A built or loaded tilewise model behind ONNX Runtime's InferenceSession calls."""

    def __init__(self, path_or_bytes, sess_options=None, providers=None, provider_options=None, *,
                 logs: list[str] | None = None, shared_logs: bool = True, shapes: dict | None = None,
                 target=None, max_batch: int | None = None, **kwargs):
        """path_or_bytes: an .onnx file, its bytes or a ModelProto (built here), or a .so library
        (loaded). sess_options: ONNX Runtime SessionOptions; intra_op_num_threads > 0 sets the
        threads. providers: accepted for drop-in use; tilewise runs on the CPU (another provider
        named is warned about and the CPU used, as ONNX Runtime falls back). logs: tuning logs
        to use beside the shared ones (shared_logs=False: only these); shapes: fixed input shapes
        of a model with symbolic dimensions; max_batch: a model whose inputs lead with a symbolic
        batch runs any batch up to it (frontends/batch.py; 8 when neither it nor shapes is given,
        as `tilewise build` does)."""
        if kwargs:
            raise TypeError(f"InferenceSession: unknown argument(s) {', '.join(kwargs)}")
        _check_providers(providers)
        self.library = _open(path_or_bytes, logs, shared_logs, shapes, target, max_batch)
        threads = getattr(sess_options, "intra_op_num_threads", 0) or 0
        if threads > 0:
            self.library.set_num_threads(threads)

    def get_inputs(self) -> list:
        """The model's inputs: NodeArgs with .name, .shape and .type ('tensor(float)')."""
        return self.library.get_inputs()

    def get_outputs(self) -> list:
        """The model's outputs: NodeArgs with .name, .shape and .type."""
        return self.library.get_outputs()

    def get_providers(self) -> list[str]:
        """Where the model runs: the CPU, as ONNX Runtime names it."""
        return [CPU_PROVIDER]

    def run(self, output_names, input_feed: dict, run_options=None) -> list[np.ndarray]:
        """The outputs named in output_names (None: all, in the model's order) for input_feed."""
        return self.library.run(output_names, input_feed)

    def __repr__(self) -> str:
        return f"tilewise.InferenceSession({self.library!r})"


CPU_PROVIDER = "CPUExecutionProvider"


def _check_providers(providers) -> None:
    """ONNX Runtime's providers argument: names or (name, options) pairs.  tilewise runs on the CPU:
    another provider is warned about and the CPU used, as ONNX Runtime does with a provider its
    build lacks; a value of another form is a TypeError."""
    if providers is None:
        return
    if isinstance(providers, str) or not isinstance(providers, (list, tuple)):
        raise TypeError(f"InferenceSession: providers must be a list of names, e.g. ['{CPU_PROVIDER}'], "
                        f"not {providers!r}")
    for p in providers:
        name = p[0] if isinstance(p, tuple) and len(p) == 2 and isinstance(p[1], dict) else p
        if not isinstance(name, str):
            raise TypeError(f"InferenceSession: each provider is a name or a (name, options dict) pair, "
                            f"not {p!r}")
        if name != CPU_PROVIDER:
            warnings.warn(f"InferenceSession: provider {name!r} is not available: tilewise runs on "
                          f"{CPU_PROVIDER}", UserWarning, stacklevel=3)


def _open(source, logs, shared_logs: bool, shapes, target, max_batch=None):
    """A loaded model library (te.runtime Module) or a JIT-built GraphLibrary for source."""
    if isinstance(source, (str, os.PathLike)) and os.fspath(source).endswith(LIBRARY_SUFFIXES):
        from te.runtime import LoadError, load_module
        m = load_module(source)
        if not m.is_model:
            raise LoadError(f"{os.fspath(source)} holds kernels ({', '.join(m.names)}), not a model; "
                            "build a model library with 'tilewise build MODEL.onnx'")
        if logs or shapes or target is not None or max_batch is not None:
            log.warning("%s is already built: logs=, shapes=, target= and max_batch= are ignored",
                        os.fspath(source))
        return m
    import frontends
    from autotune.shared_logs import load_shared_logs
    from te.target import parse
    tgt = parse(target)
    if max_batch is None and shapes is None:     # as `tilewise build` does: a symbolic batch runs 1..8
        from frontends.batch import DEFAULT_MAX_BATCH
        max_batch = DEFAULT_MAX_BATCH
    graph = frontends.from_onnx(source, shapes=shapes, advice="session", max_batch=max_batch)
    paths = [os.fspath(p) for p in logs or []]
    if shared_logs:
        paths += [p for p, _ in load_shared_logs(tgt.isa).used]
    return frontends.build(graph, target=tgt, logs=paths or None)
