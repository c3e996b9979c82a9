"""ONNX Runtime sessions, built one way for every stage (export's self-check, depth-calib's
budget, depth-run's backend, depth-parity).

onnxruntime is imported lazily: the core imports without it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple, Type, Union

import numpy as np

from edgedepth.errors import BackendError, EdgeDepthError

ModelSource = Union[str, Path, bytes]
ProviderEntry = Union[str, Tuple[str, Dict[str, Any]]]

#: ONNX Runtime graph rewrites that change what a Q/DQ graph computes, switched off so ORT judges
#: the graph TensorRT will run. ``WeightBiasQuantization`` (basic level) turns a float Conv bias
#: into INT32 at input scale x weight scale; in an FP16 Q/DQ graph (TensorRT 11) that product
#: underflows and the depth moves by ~9 % (measured here: 0.4 % -> 8.2 % AbsRel vs FP32).
DISABLED_ORT_OPTIMIZERS = ("WeightBiasQuantization",)
CPU_PROVIDERS: Tuple[ProviderEntry, ...] = ("CPUExecutionProvider",)


def import_onnxruntime(needed_by: str = "this step", error: Type[EdgeDepthError] = BackendError) -> Any:
    """Import onnxruntime or raise ``error`` saying how to install it."""
    try:
        import onnxruntime
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise error(
            f"onnxruntime is not installed; {needed_by} needs it: `pip install onnxruntime` "
            "(or the JetPack onnxruntime-gpu wheel on a Jetson)"
        ) from exc
    return onnxruntime


def open_session(
    model: ModelSource,
    *,
    providers: Sequence[ProviderEntry] = CPU_PROVIDERS,
    threads: int = 0,
    optimization: str = "all",
    error: Type[EdgeDepthError] = BackendError,
) -> Any:
    """An ``InferenceSession`` for a path or serialized model, with the Q/DQ-changing rewrites off.

    ``threads`` 0 keeps ORT's default; ``optimization`` is ``all`` or ``basic``. A model ORT
    cannot load raises ``error`` with ORT's reason.
    """
    ort = import_onnxruntime("running an ONNX model", error)
    options = ort.SessionOptions()
    levels = {"all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL, "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC}
    options.graph_optimization_level = levels[optimization]
    options.log_severity_level = 3  # ORT's own warnings (e.g. unused initializers) are not the user's concern
    if threads:
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
    source = model if isinstance(model, bytes) else str(model)
    try:
        return ort.InferenceSession(source, sess_options=options, providers=list(providers),
                                    disabled_optimizers=list(DISABLED_ORT_OPTIMIZERS))
    except Exception as exc:  # ORT raises its own Fail/InvalidGraph types
        what = "the serialized model" if isinstance(model, bytes) else str(model)
        raise error(f"ONNX Runtime cannot load {what}: {exc}") from exc


def cpu_session(model: ModelSource, threads: int = 0, optimization: str = "all",
                error: Type[EdgeDepthError] = BackendError) -> Any:
    """An ONNX Runtime session on the CPU (the reference-quality provider every check uses)."""
    return open_session(model, threads=threads, optimization=optimization, error=error)


def run_session(session: Any, batch: np.ndarray, output: Optional[str] = None) -> np.ndarray:
    """Run a single-input session on ``batch``; the first output, or the one named ``output``."""
    input_name = session.get_inputs()[0].name
    return session.run(None if output is None else [output], {input_name: batch})[0]
