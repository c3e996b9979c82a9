"""INT8 is earned: the INT8 graph against the FP32 graph on held-out images, with depth metrics.

The FP32 output is the ground truth. Figures: AbsRel of INT8 vs FP32, δ1 agreement (share of
pixels with ``max(int8/fp32, fp32/int8) < 1.25``), RMSE (metres), and tensor error stats over all
pixels (max / mean / 99th percentile absolute error, non-finite count). Pixels where FP32 predicts
below the spec's ``min_depth`` (outside the trained range) take no part in the depth metrics; the
tensor stats see every pixel. Both graphs run in ONNX Runtime on the CPU.

The default budget is AbsRel <= 1 % and δ1 agreement >= 0.995; a YAML file (``--budget``) may
set ``abs_rel``, ``d1_agreement``, ``rmse``, ``max_abs`` and ``p99_abs`` (null = unchecked).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Union

import numpy as np
import yaml

from edgedepth.calib.dataset import calibration_batches, evenly_spaced
from edgedepth.calib.errors import CalibrationError
from edgedepth.metrics import compute_depth_metrics
from edgedepth.spec import ModelSpec

DEFAULT_ABS_REL = 0.01
DEFAULT_D1_AGREEMENT = 0.995


@dataclass(frozen=True)
class Budget:
    """Limits on INT8-vs-FP32 disagreement; ``None`` leaves a figure unchecked."""

    abs_rel: Optional[float] = DEFAULT_ABS_REL  # max
    d1_agreement: Optional[float] = DEFAULT_D1_AGREEMENT  # min
    rmse: Optional[float] = None  # max, metres
    max_abs: Optional[float] = None  # max, metres
    p99_abs: Optional[float] = None  # max, metres

    def failures(self, figures: "Agreement") -> List[str]:
        """One line per figure over budget (empty list: within budget)."""
        problems = [] if figures.nonfinite == 0 else [f"{figures.nonfinite} NaN/Inf output values"]
        for name in ("abs_rel", "rmse", "max_abs", "p99_abs"):
            limit, value = getattr(self, name), getattr(figures, name)
            if limit is not None and not value <= limit:
                problems.append(f"{name} {value:.4g} > {limit:.4g}")
        if self.d1_agreement is not None and not figures.d1_agreement >= self.d1_agreement:
            problems.append(f"d1_agreement {figures.d1_agreement:.4f} < {self.d1_agreement:.4f}")
        return problems

    def to_dict(self) -> Dict[str, Optional[float]]:
        return dataclasses.asdict(self)


def load_budget(path: Union[str, Path, None]) -> Budget:
    """The default budget, or the one in a YAML file (unknown keys refused)."""
    if path is None:
        return Budget()
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise CalibrationError(f"--budget {path} cannot be read as YAML ({exc})") from exc
    known = {f.name for f in dataclasses.fields(Budget)}
    if not isinstance(data, dict) or set(data) - known:
        unknown = sorted(set(data) - known) if isinstance(data, dict) else data
        raise CalibrationError(f"--budget {path}: unknown keys {unknown}; expected a mapping with keys {sorted(known)}")
    for key, value in data.items():
        if value is not None and (not isinstance(value, (int, float)) or value < 0):
            raise CalibrationError(f"--budget {path}: {key}={value!r} must be a number >= 0 or null")
    return Budget(**data)


@dataclass
class Agreement:
    """How far the INT8 output is from the FP32 output on the held-out images."""

    abs_rel: float
    d1_agreement: float
    rmse: float
    max_abs: float
    mean_abs: float
    p99_abs: float
    nonfinite: int
    images: int

    def to_dict(self) -> Dict[str, float]:
        return {key: (value if isinstance(value, int) or math.isfinite(value) else None)
                for key, value in dataclasses.asdict(self).items()}

    def summary(self) -> str:
        return (f"AbsRel {self.abs_rel:.4%}, d1 agreement {self.d1_agreement:.4f}, RMSE {self.rmse:.4g} m, "
                f"max |err| {self.max_abs:.4g} m, p99 {self.p99_abs:.4g} m")


def compare_outputs(int8: np.ndarray, fp32: np.ndarray, spec: ModelSpec) -> Agreement:
    """Depth metrics of ``int8`` against ``fp32`` (as ground truth) plus tensor error stats."""
    finite = np.isfinite(int8)
    nonfinite = int(finite.size - np.count_nonzero(finite))
    error = np.abs(int8.astype(np.float64) - fp32.astype(np.float64))
    error[~finite] = np.inf
    metrics = compute_depth_metrics(int8, fp32, min_depth=spec.min_depth, reduction="pixels")
    return Agreement(
        abs_rel=float(metrics["abs_rel"]), d1_agreement=float(metrics["d1"]), rmse=float(metrics["rmse"]),
        max_abs=float(error.max()), mean_abs=float(error.mean()), p99_abs=float(np.percentile(error, 99)),
        nonfinite=nonfinite, images=int(len(fp32)),
    )


def run_graph(session, data: np.ndarray, batch_size: int) -> np.ndarray:
    """Run a single-input ORT session over ``data`` in batches of ``batch_size``."""
    from edgedepth.export.verify import run_session

    usable = (len(data) // batch_size) * batch_size
    return np.concatenate([run_session(session, batch) for batch in calibration_batches(data[:usable], batch_size)])


class Evaluator:
    """Runs candidate INT8 graphs on the held-out images against the FP32 output (computed once)."""

    def __init__(self, fp32_path: Path, held_out: np.ndarray, spec: ModelSpec, batch_size: int = 1) -> None:
        from edgedepth.export.verify import cpu_session

        if len(held_out) < batch_size:
            raise CalibrationError(f"{len(held_out)} held-out images cannot fill one batch of {batch_size}")
        self.held_out, self.spec, self.batch_size = held_out, spec, batch_size
        self.reference = run_graph(cpu_session(fp32_path), held_out, batch_size)

    def evaluate(self, model: Union[Path, bytes], images: Optional[int] = None) -> Agreement:
        """Agreement of a graph (path or serialized) with FP32 on all held-out images, or on ``images``
        of them spread evenly (the sensitivity search ranks nodes on a subset)."""
        from edgedepth.export.verify import cpu_session

        usable = len(self.reference)
        count = usable if images is None else max(self.batch_size, min(images, usable))
        chosen = np.sort(np.asarray(evenly_spaced(usable // self.batch_size, count // self.batch_size)))
        rows = (chosen[:, None] * self.batch_size + np.arange(self.batch_size)[None]).ravel()
        output = run_graph(cpu_session(model), self.held_out[rows], self.batch_size)
        return compare_outputs(output, self.reference[rows], self.spec)
