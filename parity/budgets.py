"""Parity budgets: how far each precision may drift from the FP32 PyTorch reference.

A budget file is YAML with one mapping per precision (``fp32``, ``fp16``, ``int8``); each key
names a figure and its limit. Keys a file does not mention keep their default; ``null`` removes
a check. NaN/Inf in a candidate's output always fails, on every input, and is not a budget. The
defaults (also in ``configs/parity/budget.yaml``) are the product promise:

* fp32: max |candidate - reference| <= 1e-4 x max_depth (1 mm for a 10 m model);
* fp16: AbsRel <= 0.1 %;
* int8: AbsRel <= 1 % and delta1 agreement >= 0.995, judged on scene images only.

``judged_inputs`` says which inputs the limits apply to: ``all``, or ``scenes`` to leave out the
built-in set's stress patterns (checkerboards, hard edges, saturated frames, noise). INT8 ranges
are calibrated on camera-like frames and clip on such patterns by design; FP32 and FP16 have no
such excuse. Frames from ``--images`` or ``--gt-data`` are all scenes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple, Union

from edgedepth.errors import ConfigError

PRECISIONS = ("fp32", "fp16", "int8")
#: Values of ``judged_inputs``; the input groups each one judges.
JUDGED_INPUTS = {"all": ("scene", "stress"), "scenes": ("scene",)}
JUDGED_INPUTS_KEY = "judged_inputs"


@dataclass(frozen=True)
class BudgetKey:
    """What one budget key limits: a figure of the comparison, its bound, and its unit."""

    figure: str
    bound: str  # "max": figure <= limit; "min": figure >= limit
    #: "max_depth": the limit is a fraction of the reference spec's max_depth (converted to metres).
    scale: str = ""
    #: True when the figure exists only with ground truth (--gt-data).
    needs_gt: bool = False
    description: str = ""


BUDGET_KEYS: Dict[str, BudgetKey] = {
    "max_abs_error": BudgetKey("max_abs_error", "max", description="largest |candidate - reference| (m)"),
    "max_abs_error_fraction": BudgetKey(
        "max_abs_error", "max", scale="max_depth", description="largest |candidate - reference| as a fraction of max_depth"
    ),
    "mean_abs_error": BudgetKey("mean_abs_error", "max", description="mean |candidate - reference| (m)"),
    "p99_abs_error": BudgetKey("p99_abs_error", "max", description="99th percentile |candidate - reference| (m)"),
    "max_rel_error": BudgetKey("max_rel_error", "max", description="largest |candidate - reference| / reference"),
    "mean_rel_error": BudgetKey("mean_rel_error", "max", description="mean |candidate - reference| / reference"),
    "p99_rel_error": BudgetKey("p99_rel_error", "max", description="99th percentile |candidate - reference| / reference"),
    "abs_rel": BudgetKey("abs_rel", "max", description="AbsRel of the candidate with the reference as ground truth"),
    "rmse": BudgetKey("rmse", "max", description="RMSE (m) of the candidate with the reference as ground truth"),
    "d1_agreement": BudgetKey("d1_agreement", "min", description="share of pixels with max(c/r, r/c) < 1.25"),
    "task_abs_rel_increase": BudgetKey(
        "task_abs_rel_increase", "max", needs_gt=True, description="AbsRel vs ground truth: candidate minus reference"
    ),
    "task_d1_decrease": BudgetKey(
        "task_d1_decrease", "max", needs_gt=True, description="delta1 vs ground truth: reference minus candidate"
    ),
}

@dataclass
class Budget:
    """The limits of one precision (budget key -> limit) and the input groups they judge."""

    limits: Dict[str, float]
    judged_inputs: str = "all"

    @property
    def judged_groups(self) -> Tuple[str, ...]:
        return JUDGED_INPUTS[self.judged_inputs]

    def copy(self) -> "Budget":
        return Budget(dict(self.limits), self.judged_inputs)

    def to_dict(self) -> Dict[str, Any]:
        return {**self.limits, JUDGED_INPUTS_KEY: self.judged_inputs}


Budgets = Dict[str, Budget]  # precision -> budget

DEFAULT_BUDGETS: Budgets = {
    "fp32": Budget({"max_abs_error_fraction": 1e-4}),
    "fp16": Budget({"abs_rel": 1e-3}),
    "int8": Budget({"abs_rel": 1e-2, "d1_agreement": 0.995}, judged_inputs="scenes"),
}


def default_budgets() -> Budgets:
    """A fresh copy of :data:`DEFAULT_BUDGETS`."""
    return {precision: budget.copy() for precision, budget in DEFAULT_BUDGETS.items()}


def merge_budgets(base: Budgets, overrides: Mapping[str, Any], source: str = "budget file") -> Budgets:
    """``base`` with ``overrides`` (``{precision: {key: limit or None}}``) applied and validated."""
    if not isinstance(overrides, Mapping):
        raise ConfigError(f"{source} must be a mapping of precision -> budget, got {type(overrides).__name__}")
    merged = {precision: budget.copy() for precision, budget in base.items()}
    for precision, entries in overrides.items():
        _check_precision(precision, source)
        if entries is None:
            entries = {}
        if not isinstance(entries, Mapping):
            raise ConfigError(f"{source}: {precision} must map budget keys to limits, got {entries!r}")
        for key, limit in entries.items():
            _apply(merged[precision], precision, key, limit, source)
    return merged


def _apply(budget: Budget, precision: str, key: Any, limit: Any, source: str) -> None:
    if key == JUDGED_INPUTS_KEY:
        if limit not in JUDGED_INPUTS:
            raise ConfigError(f"{source}: {precision}.{key} = {limit!r}; expected one of {', '.join(JUDGED_INPUTS)}")
        budget.judged_inputs = limit
        return
    _check_key(precision, key, source)
    if limit is None:
        budget.limits.pop(key, None)
    else:
        budget.limits[key] = _check_limit(precision, key, limit, source)


def load_budgets(path: Union[str, Path, None] = None) -> Budgets:
    """The default budgets, overridden by the YAML file at ``path`` when given.

    Raises ConfigError (a usage error) for a missing file, bad YAML, an unknown precision or key,
    or a limit that is not a number in range.
    """
    budgets = default_budgets()
    if path is None:
        return budgets
    return merge_budgets(budgets, _read_yaml(Path(path)), source=str(path))


def _read_yaml(path: Path) -> Mapping[str, Any]:
    import yaml

    if not path.is_file():
        raise ConfigError(f"budget file {str(path)!r} does not exist; pass a YAML file like configs/parity/budget.yaml")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"budget file {path} is not valid YAML ({exc}); see configs/parity/budget.yaml") from exc
    return data or {}


def _check_precision(precision: Any, source: str) -> None:
    if precision not in PRECISIONS:
        raise ConfigError(f"{source}: unknown precision {precision!r}; expected one of {', '.join(PRECISIONS)}")


def _check_key(precision: str, key: Any, source: str) -> None:
    if key not in BUDGET_KEYS:
        hint = " (NaN/Inf always fails; it is not a budget)" if key in ("nonfinite", "nan", "max_nonfinite") else ""
        raise ConfigError(
            f"{source}: unknown budget key {key!r} under {precision}{hint}; expected one of "
            f"{', '.join(BUDGET_KEYS)} or {JUDGED_INPUTS_KEY}"
        )


def _check_limit(precision: str, key: str, limit: Any, source: str) -> float:
    if isinstance(limit, bool) or not isinstance(limit, (int, float)) or not math.isfinite(limit) or limit < 0:
        raise ConfigError(f"{source}: {precision}.{key} = {limit!r} is not a finite number >= 0 (or null to drop the check)")
    if BUDGET_KEYS[key].figure == "d1_agreement" and limit > 1:
        raise ConfigError(f"{source}: {precision}.{key} = {limit} is a share of pixels: use a value in [0, 1]")
    return float(limit)


def budget_limit(key: str, value: float, max_depth: float) -> float:
    """The limit of ``key`` in the figure's own unit (fractions of max_depth become metres)."""
    return value * max_depth if BUDGET_KEYS[key].scale == "max_depth" else value


def describe_budget(budget: Budget, max_depth: Optional[float] = None) -> str:
    """``"abs_rel <= 0.001, d1_agreement >= 0.995, no NaN/Inf"``-style text for reports."""
    parts = []
    for key, value in budget.limits.items():
        rule = BUDGET_KEYS[key]
        sign = "<=" if rule.bound == "max" else ">="
        text = f"{rule.figure} {sign} {value:g}"
        if rule.scale == "max_depth":
            text = f"{rule.figure} {sign} {value:g} x max_depth" + (f" = {value * max_depth:g} m" if max_depth else "")
        parts.append(text)
    judged = "" if budget.judged_inputs == "all" else f" (limits judged on {budget.judged_inputs})"
    return ", ".join(parts + ["no NaN/Inf"]) + judged
