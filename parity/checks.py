"""Budget checks and the verdict: which figure decides, by how much, on which input."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional

from edgedepth.parity.budgets import BUDGET_KEYS, budget_limit

#: Figures in metres (printed with a unit); the others are ratios or counts.
METRE_FIGURES = frozenset({"max_abs_error", "mean_abs_error", "p99_abs_error", "rmse"})
NONFINITE_CHECK = "nonfinite"
SPEC_CHECK = "spec"
ALWAYS_ON = (NONFINITE_CHECK, SPEC_CHECK)


def format_figure(figure: str, value: Optional[float]) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "NaN"
    if figure in (NONFINITE_CHECK, "spec_errors"):
        return str(int(value))
    if figure in ("d1_agreement", "task_d1"):  # a share near 1: the digits that matter are the last
        return f"{value:.5f}"
    return f"{value:.3g} m" if figure in METRE_FIGURES else f"{value:.4g}"


@dataclass
class Check:
    """One budget applied to one candidate."""

    key: str  # budget key ("abs_rel", "max_abs_error_fraction", ...) or "nonfinite" / "spec"
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
        """``"abs_rel 0.0234 > 0.01"``; the NaN and spec checks in words."""
        if self.key == NONFINITE_CHECK:
            return f"{format_figure(self.figure, self.value)} NaN/Inf depth values (any fails)"
        if self.key == SPEC_CHECK:
            return "spec matches the checkpoint" if self.passed else f"spec differs from the checkpoint ({self.note})"
        sign = {("max", True): "<=", ("max", False): ">", ("min", True): ">=", ("min", False): "<"}[(self.bound, self.passed)]
        return f"{self.figure} {format_figure(self.figure, self.value)} {sign} {format_figure(self.figure, self.limit)}"

    def usage_text(self) -> str:
        """``"0.4% of budget"``, ``"57% of budget"``, ``"2.3x budget"``; empty for the must-be-zero checks."""
        usage = self.usage
        if self.key in ALWAYS_ON:
            return ""
        if math.isinf(usage):
            return "over budget"
        if usage <= 1:
            return "<0.1% of budget" if usage < 0.001 else f"{usage:.1%} of budget" if usage < 0.1 else f"{usage:.0%} of budget"
        return f"{usage:.1f}x budget" if usage < 10 else f"{usage:.0f}x budget"

    def to_dict(self) -> Dict[str, Any]:
        return {
            "key": self.key, "figure": self.figure, "bound": self.bound, "limit": self.limit,
            "value": _json_number(self.value), "passed": self.passed, "usage": _json_number(self.usage),
            "worst_input": self.worst_input, "worst_value": _json_number(self.worst_value), "text": self.sentence(),
        }


def _json_number(value: Optional[float]) -> Optional[float]:
    if value is None:
        return None
    return float(value) if math.isfinite(value) else None


def build_checks(
    budget: Mapping[str, float],
    figures: Mapping[str, float],
    worst: Mapping[str, Optional[Mapping[str, Any]]],
    max_depth: float,
    spec_errors: List[str],
    has_ground_truth: bool,
) -> List[Check]:
    """The always-on NaN/Inf and spec checks, then one check per budget key.

    ``figures`` are the set-level figures, ``worst`` maps a figure to the per-input row where it
    is worst. Keys that need ground truth are skipped without it.
    """
    nonfinite = float(figures["nonfinite"])
    checks = [
        _worst(Check(NONFINITE_CHECK, "nonfinite", "max", 0.0, nonfinite), worst.get("nonfinite") if nonfinite else None),
        Check(SPEC_CHECK, "spec_errors", "max", 0.0, float(len(spec_errors)), note=", ".join(spec_errors)),
    ]
    for key, value in budget.items():
        rule = BUDGET_KEYS[key]
        if rule.needs_gt and not has_ground_truth:
            continue
        check = Check(key, rule.figure, rule.bound, budget_limit(key, value, max_depth), _number(figures.get(rule.figure)))
        checks.append(_worst(check, worst.get(rule.figure)))
    return checks


def _number(value: Any) -> Optional[float]:
    return None if value is None else float(value)


def _worst(check: Check, row: Optional[Mapping[str, Any]]) -> Check:
    if row is not None:
        check.worst_input, check.worst_value = str(row["name"]), _number(row.get(check.figure))
    return check


def deciding_check(checks: List[Check]) -> Check:
    """The failing check furthest over budget, or (all passing) the one closest to its limit."""
    failing = [check for check in checks if not check.passed]
    if failing:  # ties (all infinite) go to NaN/Inf and spec: they explain the rest
        return max(failing, key=lambda check: (check.usage, check.key in ALWAYS_ON))
    return max(checks, key=lambda check: (check.usage, check.key not in ALWAYS_ON))


def skipped_keys(budget: Mapping[str, float], has_ground_truth: bool) -> List[str]:
    """Budget keys not checked because they need ground truth."""
    return [key for key in budget if BUDGET_KEYS[key].needs_gt and not has_ground_truth]
