"""Candidate depth against reference depth: tensor error statistics and depth agreement.

Figures (per input, and over the whole input set):

* ``max/mean/p99_abs_error``: |candidate - reference| in metres over every pixel;
* ``max/mean/p99_rel_error``: the same divided by the reference depth;
* ``nonfinite``: NaN/Inf pixels in the candidate (their error counts as infinite);
* ``abs_rel``, ``rmse``, ``d1_agreement``: :func:`edgedepth.metrics.compute_depth_metrics` of
  the candidate with the reference as ground truth. As in ``depth-calib``'s INT8 check, pixels
  where the reference lies below the spec's ``min_depth`` (outside the trained range) take no
  part in these three, and the set-level value pools the pixels of every input.

Set-level p99 comes from a histogram with 100 bins per decade (within about 2 % of the exact
percentile), so a set of any size is compared without keeping its pixels. The same histograms
feed the report's error-histogram pictures.
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional

import numpy as np

from edgedepth.metrics import DepthMetricAccumulator, compute_depth_metrics

#: Figure names in report order.
FIGURES = (
    "max_abs_error", "mean_abs_error", "p99_abs_error",
    "max_rel_error", "mean_rel_error", "p99_rel_error",
    "nonfinite", "abs_rel", "rmse", "d1_agreement",
)
#: Figures where a larger value is better (everything else: smaller is better).
HIGHER_IS_BETTER = frozenset({"d1_agreement", "task_d1"})
#: Histogram range: errors below 1e-9 count as exact, above 1e3 (m or ratio) as overflow.
HIST_DECADES = (-9, 3)
HIST_BINS_PER_DECADE = 100
HIST_EDGES = np.logspace(HIST_DECADES[0], HIST_DECADES[1], (HIST_DECADES[1] - HIST_DECADES[0]) * HIST_BINS_PER_DECADE + 1)


def _errors(candidate: np.ndarray, reference: np.ndarray) -> Dict[str, np.ndarray]:
    """Per-pixel absolute and relative errors (float64, inf where the candidate is not finite)."""
    finite = np.isfinite(candidate)
    ref = reference.astype(np.float64)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        abs_error = np.abs(candidate.astype(np.float64) - ref)
        rel_error = abs_error / np.maximum(np.abs(ref), np.finfo(np.float32).tiny)
    abs_error[~finite] = np.inf
    rel_error[~finite] = np.inf
    return {"abs": abs_error.ravel(), "rel": rel_error.ravel()}


def _tensor_stats(errors: Dict[str, np.ndarray]) -> Dict[str, float]:
    stats: Dict[str, float] = {}
    for kind, values in errors.items():
        stats[f"max_{kind}_error"] = float(values.max()) if values.size else 0.0
        stats[f"mean_{kind}_error"] = float(values.mean()) if values.size else 0.0
        with np.errstate(invalid="ignore"):  # inf - inf between two non-finite neighbours
            stats[f"p99_{kind}_error"] = float(np.percentile(values, 99)) if values.size else 0.0
    return stats


def _agreement(metrics: Dict[str, float]) -> Dict[str, float]:
    return {"abs_rel": metrics["abs_rel"], "rmse": metrics["rmse"], "d1_agreement": metrics["d1"]}


def _as_pair(candidate: np.ndarray, reference: np.ndarray):
    candidate, reference = np.asarray(candidate, np.float32), np.asarray(reference, np.float32)
    if candidate.shape != reference.shape:
        raise ValueError(f"candidate depth {candidate.shape} and reference depth {reference.shape} differ in shape")
    return candidate, reference


def compare_depth(candidate: np.ndarray, reference: np.ndarray, min_depth: float) -> Dict[str, float]:
    """Every figure of :data:`FIGURES` for one HxW (or Nx1xHxW) candidate vs reference, in metres."""
    candidate, reference = _as_pair(candidate, reference)
    return _figures(candidate, reference, _errors(candidate, reference), min_depth)


def _figures(candidate: np.ndarray, reference: np.ndarray, errors: Dict[str, np.ndarray], min_depth: float) -> Dict[str, float]:
    stats = _tensor_stats(errors)
    stats["nonfinite"] = int(candidate.size - np.count_nonzero(np.isfinite(candidate)))
    stats.update(_agreement(compute_depth_metrics(candidate, reference, min_depth=min_depth, reduction="pixels")))
    return {name: stats[name] for name in FIGURES}


class ErrorHistogram:
    """Counts of errors in log-spaced bins (:data:`HIST_EDGES`) plus exact, overflow and non-finite."""

    def __init__(self) -> None:
        self.counts = np.zeros(len(HIST_EDGES) - 1, dtype=np.int64)
        self.exact = 0  # below the first edge (bit-exact or nearly)
        self.overflow = 0  # finite, above the last edge
        self.nonfinite = 0

    @property
    def total(self) -> int:
        return int(self.counts.sum()) + self.exact + self.overflow + self.nonfinite

    def add(self, values: np.ndarray) -> None:
        finite = np.isfinite(values)
        self.nonfinite += int(values.size - np.count_nonzero(finite))
        values = values[finite]
        self.exact += int(np.count_nonzero(values < HIST_EDGES[0]))
        self.overflow += int(np.count_nonzero(values >= HIST_EDGES[-1]))
        self.counts += np.histogram(values, bins=HIST_EDGES)[0]

    def quantile(self, q: float) -> float:
        """The ``q`` quantile (0..1), log-interpolated inside its bin."""
        total = self.total
        if total == 0:
            return 0.0
        rank = q * total
        if rank <= self.exact:
            return 0.0
        cumulative = self.exact + np.cumsum(self.counts)
        index = int(np.searchsorted(cumulative, rank))
        if index >= len(self.counts):
            return math.inf if rank > self.exact + self.counts.sum() + self.overflow else float(HIST_EDGES[-1])
        before = cumulative[index] - self.counts[index]
        fraction = (rank - before) / max(self.counts[index], 1)
        low, high = np.log10(HIST_EDGES[index]), np.log10(HIST_EDGES[index + 1])
        return float(10 ** (low + fraction * (high - low)))

    def to_dict(self) -> Dict[str, object]:
        """Sparse form for the JSON report: non-empty bins as ``[lower edge, count]``."""
        nonzero = np.flatnonzero(self.counts)
        return {
            "bins_per_decade": HIST_BINS_PER_DECADE,
            "bins": [[float(HIST_EDGES[i]), int(self.counts[i])] for i in nonzero],
            "exact": self.exact,
            "overflow": self.overflow,
            "nonfinite": self.nonfinite,
        }


class ComparisonAccumulator:
    """The set-level figures of one candidate, fed one input at a time."""

    def __init__(self, min_depth: float) -> None:
        self.min_depth = float(min_depth)
        self.histograms = {"abs": ErrorHistogram(), "rel": ErrorHistogram()}
        self._max = {"abs": 0.0, "rel": 0.0}
        self._sum = {"abs": 0.0, "rel": 0.0}
        self._pixels = 0
        self._nonfinite = 0
        self._agreement = DepthMetricAccumulator(min_depth=self.min_depth, reduction="pixels")
        self.per_input: List[Dict[str, object]] = []

    def add(self, name: str, candidate: np.ndarray, reference: np.ndarray,
            extra: Optional[Dict[str, float]] = None) -> Dict[str, float]:
        """Compare one input's depth maps; returns (and keeps, with ``extra`` figures) its figures."""
        candidate, reference = _as_pair(candidate, reference)
        errors = _errors(candidate, reference)
        figures = _figures(candidate, reference, errors, self.min_depth)
        for kind, values in errors.items():
            self.histograms[kind].add(values)
            self._max[kind] = max(self._max[kind], float(values.max()))
            self._sum[kind] += float(values.sum())
        self._pixels += candidate.size
        self._nonfinite += int(figures["nonfinite"])
        self._agreement.add(candidate, reference)
        self.per_input.append(dict(figures, **(extra or {}), name=name))
        return figures

    def compute(self) -> Dict[str, float]:
        """The figures over every input so far (pixels pooled)."""
        figures: Dict[str, float] = {}
        for kind in ("abs", "rel"):
            figures[f"max_{kind}_error"] = self._max[kind]
            figures[f"mean_{kind}_error"] = self._sum[kind] / self._pixels if self._pixels else 0.0
            figures[f"p99_{kind}_error"] = self.histograms[kind].quantile(0.99)
        figures["nonfinite"] = self._nonfinite
        figures.update(_agreement(self._agreement.compute()))
        return {name: figures[name] for name in FIGURES}

    def worst_input(self, figure: str) -> Optional[Dict[str, object]]:
        """The per-input row where ``figure`` is worst (NaN counts as worst); None without rows."""
        rows = [row for row in self.per_input if row.get(figure) is not None]
        return max(rows, key=lambda row: badness(figure, float(row[figure]))) if rows else None


def badness(figure: str, value: float) -> float:
    """Larger is worse, for every figure (NaN worst of all)."""
    if math.isnan(value):
        return math.inf
    return -value if figure in HIGHER_IS_BETTER else value
