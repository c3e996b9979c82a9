"""Candidate depth against reference depth, within a budget: the one comparison of edgedepth.

``depth-export`` (ONNX vs PyTorch, FP16 vs FP32), ``depth-calib`` (INT8 vs FP32) and
``depth-parity`` (every artifact vs the checkpoint) all call :func:`compare_depth` or feed a
:class:`ComparisonAccumulator`, and get an :class:`Agreement`: the figures, one :class:`Check`
per budget key, and truthiness = within budget (like Polygraphy's comparator results).

Figures (per input, and over a whole input set), one name each:

* ``max/mean/p99_abs_error``: |candidate - reference| in metres over every pixel;
* ``max/mean/p99_rel_error``: the same divided by the reference depth;
* ``nonfinite``: NaN/Inf pixels in the candidate (their error counts as infinite; any fails);
* ``abs_rel``, ``rmse``, ``d1_agreement``: :func:`edgedepth.metrics.compute_depth_metrics` of
  the candidate with the reference as ground truth. Pixels where the reference lies below the
  spec's ``min_depth`` (outside the trained range) take no part in these three, and the
  set-level value pools the pixels of every input.

Set-level p99 comes from a histogram with 100 bins per decade (within about 2 % of the exact
percentile), so a set of any size is compared without keeping its pixels.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from edgedepth.budget import BUDGET_KEYS, Budget
from edgedepth.metrics import DepthMetricAccumulator, compute_depth_metrics

#: Figure names in report order.
FIGURES = (
    "max_abs_error", "mean_abs_error", "p99_abs_error",
    "max_rel_error", "mean_rel_error", "p99_rel_error",
    "nonfinite", "abs_rel", "rmse", "d1_agreement",
)
#: Figures where a larger value is better (everything else: smaller is better).
HIGHER_IS_BETTER = frozenset({"d1_agreement", "task_d1"})
#: Figures in metres (printed with a unit); the others are ratios or counts.
METRE_FIGURES = frozenset({"max_abs_error", "mean_abs_error", "p99_abs_error", "rmse"})
NONFINITE_CHECK = "nonfinite"
#: Histogram range: errors below 1e-9 count as exact, above 1e3 (m or ratio) as overflow.
HIST_DECADES = (-9, 3)
HIST_BINS_PER_DECADE = 100
HIST_EDGES = np.logspace(
    HIST_DECADES[0], HIST_DECADES[1], (HIST_DECADES[1] - HIST_DECADES[0]) * HIST_BINS_PER_DECADE + 1
)
Figures = Dict[str, float]


def format_figure(figure: str, value: Optional[float]) -> str:
    """A figure as people read it: metres with a unit, shares with the digits that matter."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "NaN"
    if figure in (NONFINITE_CHECK, "spec_errors"):
        return str(int(value))
    if figure in ("d1_agreement", "task_d1"):  # a share near 1: the digits that matter are the last
        return f"{value:.5f}"
    return f"{value:.3g} m" if figure in METRE_FIGURES else f"{value:.4g}"


def badness(figure: str, value: float) -> float:
    """Larger is worse, for every figure (NaN worst of all)."""
    if math.isnan(value):
        return math.inf
    return -value if figure in HIGHER_IS_BETTER else value


# --------------------------------------------------------------------------- verdicts


@dataclass(frozen=True)
class Check:
    """One limit applied to one figure of a candidate."""

    key: str  # budget key ("abs_rel", "max_abs_error_fraction", ...), or "nonfinite" / a caller's own check
    figure: str
    bound: str  # "max" or "min"
    limit: float
    value: Optional[float]
    worst_input: Optional[str] = None
    worst_value: Optional[float] = None
    note: str = ""

    @property
    def passed(self) -> bool:
        if self.value is None or math.isnan(self.value):
            return False
        return self.value <= self.limit if self.bound == "max" else self.value >= self.limit

    @property
    def always_on(self) -> bool:
        """A must-be-zero check (NaN/Inf, or a caller's, e.g. parity's spec check), not a budget."""
        return self.key not in BUDGET_KEYS

    @property
    def usage(self) -> float:
        """Share of the budget used (1.0 = exactly at the limit; above 1 fails)."""
        if self.value is None or math.isnan(self.value):
            return math.inf
        if self.bound == "max":
            used, allowed = self.value, self.limit
        else:  # shortfall from a perfect score against the allowed shortfall
            used, allowed = 1.0 - self.value, 1.0 - self.limit
        if allowed <= 0:
            return 0.0 if used <= 0 else math.inf
        return max(used, 0.0) / allowed

    def sentence(self) -> str:
        """``"abs_rel 0.0234 > 0.01"``; the NaN check in words."""
        if self.key == NONFINITE_CHECK:
            return f"{format_figure(self.figure, self.value)} NaN/Inf depth values (any fails)"
        if self.note:
            return self.note
        sign = {("max", True): "<=", ("max", False): ">", ("min", True): ">=", ("min", False): "<"}[
            (self.bound, self.passed)
        ]
        return f"{self.figure} {format_figure(self.figure, self.value)} {sign} {format_figure(self.figure, self.limit)}"

    def usage_text(self) -> str:
        """``"0.4% of budget"``, ``"57% of budget"``, ``"2.3x budget"``; empty for the must-be-zero checks."""
        usage = self.usage
        if self.always_on:
            return ""
        if math.isinf(usage):
            return "over budget"
        if usage <= 1:
            if usage < 0.001:
                return "<0.1% of budget"
            return f"{usage:.1%} of budget" if usage < 0.1 else f"{usage:.0%} of budget"
        return f"{usage:.1f}x budget" if usage < 10 else f"{usage:.0f}x budget"

    def to_dict(self) -> Dict[str, Any]:
        return {
            "key": self.key, "figure": self.figure, "bound": self.bound, "limit": self.limit,
            "value": _json_number(self.value), "passed": self.passed, "usage": _json_number(self.usage),
            "worst_input": self.worst_input, "worst_value": _json_number(self.worst_value), "text": self.sentence(),
        }


def judge(
    figures: Mapping[str, float],
    budget: Optional[Budget],
    max_depth: float,
    worst: Optional[Mapping[str, Optional[Mapping[str, Any]]]] = None,
    has_ground_truth: bool = False,
) -> Tuple[Check, ...]:
    """The always-on NaN/Inf check, then one check per budget key (ground-truth keys skipped without it).

    ``worst`` maps a figure to the per-input row (with its ``name``) where it is worst.
    """
    worst = worst or {}
    nonfinite = float(figures[NONFINITE_CHECK])
    checks = [_worst(Check(NONFINITE_CHECK, NONFINITE_CHECK, "max", 0.0, nonfinite),
                     worst.get(NONFINITE_CHECK) if nonfinite else None)]
    if budget is None:
        return tuple(checks)
    for key in budget.limits:
        rule = BUDGET_KEYS[key]
        if rule.needs_gt and not has_ground_truth:
            continue
        value = figures.get(rule.figure)
        limit = budget.limit(key, max_depth)
        check = Check(key, rule.figure, rule.bound, limit, None if value is None else float(value))
        checks.append(_worst(check, worst.get(rule.figure)))
    return tuple(checks)


def _worst(check: Check, row: Optional[Mapping[str, Any]]) -> Check:
    if row is None:
        return check
    value = row.get(check.figure)
    return Check(check.key, check.figure, check.bound, check.limit, check.value, str(row["name"]),
                 None if value is None else float(value), check.note)


def deciding_check(checks: Sequence[Check]) -> Check:
    """The failing check furthest over budget, or (all passing) the one closest to its limit."""
    failing = [check for check in checks if not check.passed]
    if failing:  # ties (all infinite) go to the always-on checks: they explain the rest
        return max(failing, key=lambda check: (check.usage, check.always_on))
    return max(checks, key=lambda check: (check.usage, not check.always_on))


@dataclass(frozen=True)
class Agreement:
    """How far a candidate's depth is from its reference, and whether that is within budget.

    Truthy when every check passes. ``agreement["abs_rel"]`` reads a figure.
    """

    figures: Mapping[str, float]
    checks: Tuple[Check, ...]

    def __bool__(self) -> bool:
        return all(check.passed for check in self.checks)

    def __getitem__(self, figure: str) -> float:
        return self.figures[figure]

    @property
    def failures(self) -> List[str]:
        """One line per failing check (empty: within budget)."""
        return [check.sentence() for check in self.checks if not check.passed]

    @property
    def deciding(self) -> Check:
        return deciding_check(self.checks)

    def summary(self) -> str:
        """The deciding check with its share of the budget: ``"abs_rel 0.00021 <= 0.001 (21% of budget)"``."""
        deciding = self.deciding
        usage = deciding.usage_text()
        return deciding.sentence() + (f" ({usage})" if usage else "")

    def to_dict(self) -> Dict[str, Optional[float]]:
        """The figures, JSON-safe (non-finite -> None)."""
        return {name: _json_number(value) for name, value in self.figures.items()}


def _json_number(value: Optional[float]) -> Optional[float]:
    if value is None:
        return None
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value)
    return float(value) if math.isfinite(value) else None


# --------------------------------------------------------------------------- one pair


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


def _tensor_stats(errors: Dict[str, np.ndarray]) -> Figures:
    stats: Figures = {}
    for kind, values in errors.items():
        stats[f"max_{kind}_error"] = float(values.max()) if values.size else 0.0
        stats[f"mean_{kind}_error"] = float(values.mean()) if values.size else 0.0
        with np.errstate(invalid="ignore"):  # inf - inf between two non-finite neighbours
            stats[f"p99_{kind}_error"] = float(np.percentile(values, 99)) if values.size else 0.0
    return stats


def _depth_agreement(metrics: Mapping[str, float]) -> Figures:
    return {"abs_rel": metrics["abs_rel"], "rmse": metrics["rmse"], "d1_agreement": metrics["d1"]}


def _as_pair(reference: np.ndarray, candidate: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    reference, candidate = np.asarray(reference, np.float32), np.asarray(candidate, np.float32)
    if candidate.shape != reference.shape:
        raise ValueError(f"candidate depth {candidate.shape} and reference depth {reference.shape} differ in shape")
    return reference, candidate


def _figures(reference: np.ndarray, candidate: np.ndarray, errors: Dict[str, np.ndarray], min_depth: float) -> Figures:
    stats = _tensor_stats(errors)
    stats["nonfinite"] = int(candidate.size - np.count_nonzero(np.isfinite(candidate)))
    metrics = compute_depth_metrics(candidate, reference, min_depth=min_depth, reduction="pixels")
    stats.update(_depth_agreement(metrics))
    return {name: stats[name] for name in FIGURES}


def compare_depth(
    reference: np.ndarray,
    candidate: np.ndarray,
    *,
    min_depth: float,
    budget: Optional[Budget] = None,
    max_depth: float = 0.0,
) -> Agreement:
    """Every figure of :data:`FIGURES` for one candidate vs its reference (HxW or Nx1xHxW, metres),
    judged against ``budget`` (``max_depth`` converts limits given as fractions of it).

    Without a budget only the NaN/Inf check applies. Raises ValueError when the shapes differ.
    """
    reference, candidate = _as_pair(reference, candidate)
    figures = _figures(reference, candidate, _errors(candidate, reference), min_depth)
    return Agreement(figures, judge(figures, budget, max_depth))


# --------------------------------------------------------------------------- a set of inputs


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
        self.per_input: List[Dict[str, Any]] = []

    def add(self, name: str, reference: np.ndarray, candidate: np.ndarray,
            extra: Optional[Mapping[str, Any]] = None) -> Figures:
        """Compare one input's depth maps; returns (and keeps, with ``extra`` figures) its figures."""
        reference, candidate = _as_pair(reference, candidate)
        errors = _errors(candidate, reference)
        figures = _figures(reference, candidate, errors, self.min_depth)
        for kind, values in errors.items():
            self.histograms[kind].add(values)
            self._max[kind] = max(self._max[kind], float(values.max()))
            self._sum[kind] += float(values.sum())
        self._pixels += candidate.size
        self._nonfinite += int(figures["nonfinite"])
        self._agreement.add(candidate, reference)
        self.per_input.append(dict(figures, **(extra or {}), name=name))
        return figures

    def compute(self) -> Figures:
        """The figures over every input so far (pixels pooled)."""
        figures: Figures = {}
        for kind in ("abs", "rel"):
            figures[f"max_{kind}_error"] = self._max[kind]
            figures[f"mean_{kind}_error"] = self._sum[kind] / self._pixels if self._pixels else 0.0
            figures[f"p99_{kind}_error"] = self.histograms[kind].quantile(0.99)
        figures["nonfinite"] = self._nonfinite
        figures.update(_depth_agreement(self._agreement.compute()))
        return {name: figures[name] for name in FIGURES}

    def worst_input(self, figure: str) -> Optional[Dict[str, Any]]:
        """The per-input row where ``figure`` is worst (NaN counts as worst); None without rows."""
        rows = [row for row in self.per_input if row.get(figure) is not None]
        return max(rows, key=lambda row: badness(figure, float(row[figure]))) if rows else None

    def agreement(self, budget: Optional[Budget], max_depth: float) -> Agreement:
        """The set-level figures judged against ``budget``, each check naming its worst input."""
        figures = self.compute()
        worst = {figure: self.worst_input(figure) for figure in FIGURES}
        return Agreement(figures, judge(figures, budget, max_depth, worst))
