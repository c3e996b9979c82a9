"""Self-checks run right after every export: ONNX Runtime (CPU) against the reference.

FP32 ONNX vs PyTorch: max abs error <= ``FP32_TOLERANCE_FRACTION x max_depth``.
FP16 ONNX vs FP32 ONNX: AbsRel <= ``FP16_ABSREL_BUDGET``, no NaN/Inf anywhere.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Tuple, Union

import numpy as np

from edgedepth.errors import ExportError

FP32_TOLERANCE_FRACTION = 1e-4
FP16_ABSREL_BUDGET = 1e-3

ModelSource = Union[str, Path, bytes]


def import_onnxruntime():
    """Import onnxruntime or raise ExportError saying how to install it."""
    try:
        import onnxruntime
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ExportError(
            "onnxruntime is not installed; the export self-check needs it: `pip install onnxruntime`"
        ) from exc
    return onnxruntime


#: ONNX Runtime graph rewrites that change what a Q/DQ graph computes, switched off so ORT judges
#: the graph TensorRT will run. ``WeightBiasQuantization`` (basic level) turns a float Conv bias
#: into INT32 at input scale x weight scale; in an FP16 Q/DQ graph (TensorRT 11) that product
#: underflows and the depth moves by ~9 % (measured here: 0.4 % -> 8.2 % AbsRel vs FP32).
DISABLED_ORT_OPTIMIZERS = ("WeightBiasQuantization",)


def cpu_session(model: ModelSource, threads: int = 0, optimization: str = "all"):
    """An ONNX Runtime CPU session for a path or serialized model (``threads`` 0 = ORT default)."""
    ort = import_onnxruntime()
    options = ort.SessionOptions()
    levels = {"all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL, "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC}
    options.graph_optimization_level = levels[optimization]
    options.log_severity_level = 3  # ORT's own warnings (e.g. unused initializers) are not the user's concern
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    source = model if isinstance(model, bytes) else str(model)
    try:
        return ort.InferenceSession(source, sess_options=options, providers=["CPUExecutionProvider"],
                                    disabled_optimizers=list(DISABLED_ORT_OPTIMIZERS))
    except Exception as exc:  # ORT raises its own Fail/InvalidGraph types
        raise ExportError(f"ONNX Runtime cannot load the exported model: {exc}") from exc


def run_session(session, batch: np.ndarray) -> np.ndarray:
    """Run a single-input single-output session on ``batch``."""
    input_name = session.get_inputs()[0].name
    return session.run(None, {input_name: batch})[0]


@dataclass
class CheckReport:
    """Outcome of one comparison: per-probe figures and the worst one."""

    metric: str
    budget: float
    per_probe: Dict[str, float] = field(default_factory=dict)

    @property
    def worst(self) -> Tuple[str, float]:
        name = max(self.per_probe, key=self.per_probe.get)
        return name, self.per_probe[name]

    @property
    def passed(self) -> bool:
        return all(value <= self.budget for value in self.per_probe.values())

    def summary(self) -> str:
        name, value = self.worst
        return f"{self.metric} {value:.3g} (worst probe: {name}; budget {self.budget:.3g})"


def max_abs_error(result: np.ndarray, reference: np.ndarray) -> float:
    return float(np.max(np.abs(result.astype(np.float64) - reference.astype(np.float64))))


def abs_rel(result: np.ndarray, reference: np.ndarray, floor: float = 1e-12) -> float:
    """Mean of ``|result - reference| / max(reference, floor)``.

    Pass the spec's ``min_depth`` as ``floor``: below it a depth is outside the trained range,
    and dividing by a near-zero depth there would let one pixel dominate the mean.
    """
    reference = reference.astype(np.float64)
    return float(np.mean(np.abs(result.astype(np.float64) - reference) / np.maximum(reference, floor)))


def check_finite(name: str, output: np.ndarray, what: str) -> None:
    """Raise ExportError when ``output`` holds NaN or Inf."""
    bad = int(np.count_nonzero(~np.isfinite(output)))
    if bad:
        raise ExportError(
            f"{what} produced {bad} NaN/Inf values on the {name!r} probe input: a layer overflows; "
            "see docs/EXPORT.md 'NaN or black depth maps'"
        )


def compare(
    probes: Iterable[Tuple[str, np.ndarray]],
    run: Callable[[np.ndarray], np.ndarray],
    reference: Callable[[np.ndarray], np.ndarray],
    metric: str,
    budget: float,
    what: str,
    measure: Optional[Callable[[np.ndarray, np.ndarray], float]] = None,
) -> CheckReport:
    """Run both sides on every probe, check shapes and finiteness, measure ``metric`` (by name,
    or with ``measure`` when given)."""
    measure = measure or {"max_abs_error": max_abs_error, "abs_rel": abs_rel}[metric]
    report = CheckReport(metric, budget)
    for name, batch in probes:
        result, expected = run(batch), reference(batch)
        if result.shape != expected.shape:
            raise ExportError(
                f"{what} returned shape {list(result.shape)} for input {list(batch.shape)}; "
                f"the reference returned {list(expected.shape)}"
            )
        check_finite(name, result, what)
        report.per_probe[name] = measure(result, expected)
    return report


def require(report: CheckReport, what: str, hint: str) -> None:
    """Raise ExportError, loudly, when ``report`` is over budget."""
    if not report.passed:
        raise ExportError(f"{what} self-check failed: {report.summary()}; {hint}")


def probe_sizes(height: int, width: int) -> List[Tuple[int, int]]:
    """Sizes at which a dynamic-shape export is checked: nominal, smaller and larger, non-square."""
    sizes = [(height, width), (max(32, height - 32), width + 64), (height + 32, max(32, width - 32))]
    return list(dict.fromkeys(sizes))


def describe(reports: Dict[str, CheckReport]) -> Optional[str]:
    """One line summarising several reports (their worst figures)."""
    if not reports:
        return None
    return "; ".join(f"{key}: {report.summary()}" for key, report in reports.items())
