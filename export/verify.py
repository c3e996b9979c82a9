"""Self-checks run right after every export: ONNX Runtime (CPU) against the reference, judged by
the one budget (``configs/budgets/default.yaml``) with :func:`edgedepth.agreement.compare_depth`.

FP32 ONNX vs PyTorch: the ``fp32`` row (max abs error <= 1e-4 x max_depth).
FP16 ONNX vs FP32 ONNX: the ``fp16`` row (AbsRel <= 0.1 %). No NaN/Inf anywhere, ever.
"""
from __future__ import annotations

from typing import Callable, Dict, Iterable, List, Tuple

import numpy as np

from edgedepth.agreement import Agreement, compare_depth
from edgedepth.budget import Budget, load_budget
from edgedepth.errors import ExportError
from edgedepth.spec import ModelSpec

Runner = Callable[[np.ndarray], np.ndarray]
Agreements = Dict[str, Agreement]  # probe name -> agreement


def export_budget(precision: str) -> Budget:
    """The shipped budget row an export of ``precision`` (``fp32`` or ``fp16``) is held to."""
    return load_budget(precision)


def check_finite(name: str, output: np.ndarray, what: str) -> None:
    """Raise ExportError when ``output`` holds NaN or Inf."""
    bad = int(np.count_nonzero(~np.isfinite(output)))
    if bad:
        raise ExportError(
            f"{what} produced {bad} NaN/Inf values on the {name!r} probe input: a layer overflows; "
            "see docs/EXPORT.md 'NaN or black depth maps'"
        )


def compare_probes(
    probes: Iterable[Tuple[str, np.ndarray]], run: Runner, reference: Runner, spec: ModelSpec, budget: Budget, what: str
) -> Agreements:
    """Run both sides on every probe, check shapes and finiteness, and judge each probe's depth."""
    agreements: Agreements = {}
    for name, batch in probes:
        result, expected = run(batch), reference(batch)
        if result.shape != expected.shape:
            raise ExportError(
                f"{what} returned shape {list(result.shape)} for input {list(batch.shape)}; "
                f"the reference returned {list(expected.shape)}"
            )
        check_finite(name, result, what)
        agreements[name] = compare_depth(expected, result, min_depth=spec.min_depth, budget=budget,
                                         max_depth=spec.max_depth)
    return agreements


def worst_probe(agreements: Agreements) -> Tuple[str, Agreement]:
    """The probe whose deciding check used the most of its budget."""
    name = max(agreements, key=lambda key: agreements[key].deciding.usage)
    return name, agreements[name]


def require(agreements: Agreements, what: str, hint: str) -> None:
    """Raise ExportError, loudly, when any probe is over budget."""
    failing = {name: agreement for name, agreement in agreements.items() if not agreement}
    if failing:
        name, agreement = worst_probe(failing)
        raise ExportError(f"{what} self-check failed: {'; '.join(agreement.failures)} (worst probe: {name}); {hint}")


def summary(checks: Dict[str, Agreements]) -> str:
    """``"self-check passed on 3 size(s), worst max_abs_error 2e-06 m <= 0.001 m (<0.1% of budget) ..."``."""
    worst = [(key, *worst_probe(agreements)) for key, agreements in checks.items()]
    key, probe, agreement = max(worst, key=lambda item: item[2].deciding.usage)
    return f"self-check passed on {len(checks)} size(s), worst {agreement.summary()} ({key}, probe {probe})"


def probe_sizes(height: int, width: int) -> List[Tuple[int, int]]:
    """Sizes at which a dynamic-shape export is checked: nominal, smaller and larger, non-square."""
    sizes = [(height, width), (max(32, height - 32), width + 64), (height + 32, max(32, width - 32))]
    return list(dict.fromkeys(sizes))
