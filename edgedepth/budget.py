"""The error budget: how far an artifact's depth may drift from its reference, per precision.

One file holds the numbers, ``configs/budgets/default.yaml`` (installed as ``edgedepth.configs``): one
mapping per precision (``fp32``, ``fp16``, ``int8``) from a budget key to its limit. Every stage
that judges an artifact reads it: ``depth-export`` its fp32 and fp16 rows, ``depth-calib`` the
int8 row, ``depth-parity`` all of them. A user's ``--budget FILE`` overrides keys of the defaults;
``null`` removes a check. NaN/Inf in a candidate's output always fails, on every input, and is
not a budget.

``judged_inputs`` says which inputs the limits apply to: ``all``, or ``scenes`` to leave out
depth-parity's built-in stress patterns (checkerboards, hard edges, saturated frames, noise).
INT8 ranges are calibrated on camera-like frames and clip on such patterns by design; FP32 and
FP16 have no such excuse.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple, Union

import yaml

from edgedepth.errors import ConfigError

PRECISIONS = ("fp32", "fp16", "int8")
#: Values of ``judged_inputs``; the input groups each one judges.
JUDGED_INPUTS = {"all": ("scene", "stress"), "scenes": ("scene",)}
JUDGED_INPUTS_KEY = "judged_inputs"
#: The shipped defaults, inside the ``edgedepth.configs`` package (a folder of their own: every
#: YAML directly in ``configs/`` is a training config).
DEFAULT_BUDGET_FILE = ("budgets", "default.yaml")
SHIPPED_NAME = "configs/" + "/".join(DEFAULT_BUDGET_FILE)


@dataclass(frozen=True)
class BudgetKey:
    """What one budget key limits: a figure of the comparison, its bound, and its unit."""

    figure: str
    bound: str  # "max": figure <= limit; "min": figure >= limit
    #: "max_depth": the limit is a fraction of the reference spec's max_depth (converted to metres).
    scale: str = ""
    #: True when the figure exists only with ground truth (depth-parity --gt-data).
    needs_gt: bool = False
    description: str = ""


BUDGET_KEYS: Dict[str, BudgetKey] = {
    "max_abs_error": BudgetKey("max_abs_error", "max", description="largest |candidate - reference| (m)"),
    "max_abs_error_fraction": BudgetKey(
        "max_abs_error", "max", scale="max_depth",
        description="largest |candidate - reference| as a fraction of max_depth",
    ),
    "mean_abs_error": BudgetKey("mean_abs_error", "max", description="mean |candidate - reference| (m)"),
    "p99_abs_error": BudgetKey("p99_abs_error", "max", description="99th percentile |candidate - reference| (m)"),
    "max_rel_error": BudgetKey("max_rel_error", "max", description="largest |candidate - reference| / reference"),
    "mean_rel_error": BudgetKey("mean_rel_error", "max", description="mean |candidate - reference| / reference"),
    "p99_rel_error": BudgetKey(
        "p99_rel_error", "max", description="99th percentile |candidate - reference| / reference"
    ),
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
#: Names that an older edgedepth or a habit may suggest, mapped to the one name of the figure.
_RENAMED = {"max_abs": "max_abs_error", "p99_abs": "p99_abs_error", "mean_abs": "mean_abs_error"}


@dataclass(frozen=True)
class Budget:
    """The limits of one precision (budget key -> limit) and the input groups they judge."""

    limits: Mapping[str, float] = field(default_factory=dict)
    judged_inputs: str = "all"

    @property
    def judged_groups(self) -> Tuple[str, ...]:
        return JUDGED_INPUTS[self.judged_inputs]

    def limit(self, key: str, max_depth: float) -> float:
        """The limit of ``key`` in its figure's own unit (fractions of max_depth become metres)."""
        value = float(self.limits[key])
        return value * max_depth if BUDGET_KEYS[key].scale == "max_depth" else value

    def skipped_keys(self, has_ground_truth: bool) -> Tuple[str, ...]:
        """Keys not checked because they need ground truth that is not there."""
        return tuple(key for key in self.limits if BUDGET_KEYS[key].needs_gt and not has_ground_truth)

    def describe(self, max_depth: Optional[float] = None) -> str:
        """``"abs_rel <= 0.001, d1_agreement >= 0.995, no NaN/Inf"``-style text for reports."""
        parts = []
        for key, value in self.limits.items():
            rule = BUDGET_KEYS[key]
            sign = "<=" if rule.bound == "max" else ">="
            text = f"{rule.figure} {sign} {value:g}"
            if rule.scale == "max_depth":
                text += " x max_depth" + (f" = {value * max_depth:g} m" if max_depth else "")
            parts.append(text)
        judged = "" if self.judged_inputs == "all" else f" (limits judged on {self.judged_inputs})"
        return ", ".join(parts + ["no NaN/Inf"]) + judged

    def to_dict(self) -> Dict[str, Any]:
        return {**self.limits, JUDGED_INPUTS_KEY: self.judged_inputs}


Budgets = Dict[str, Budget]  # precision -> budget


def load_budgets(path: Union[str, Path, None] = None) -> Budgets:
    """The shipped budgets (``configs/budgets/default.yaml``), overridden by the YAML file at ``path``.

    Raises ConfigError (a usage error) for a missing file, bad YAML, an unknown precision or key,
    or a limit that is not a number in range.
    """
    shipped = resources.files("edgedepth.configs").joinpath(*DEFAULT_BUDGET_FILE)
    shipped_budgets = _parse(shipped.read_text(encoding="utf-8"), SHIPPED_NAME)
    budgets = merge_budgets({p: Budget() for p in PRECISIONS}, shipped_budgets, source=SHIPPED_NAME)
    if path is None:
        return budgets
    return merge_budgets(budgets, _read_yaml(Path(path)), source=str(path))


def load_budget(precision: str, path: Union[str, Path, None] = None) -> Budget:
    """The budget of one precision (``fp32``, ``fp16`` or ``int8``), overrides from ``path`` applied."""
    _check_precision(precision, "load_budget")
    return load_budgets(path)[precision]


def merge_budgets(base: Budgets, overrides: Mapping[str, Any], source: str = "budget file") -> Budgets:
    """``base`` with ``overrides`` (``{precision: {key: limit or None}}``) applied and validated."""
    if not isinstance(overrides, Mapping):
        raise ConfigError(
            f"{source} must be a mapping of precision -> budget (fp32/fp16/int8), got {type(overrides).__name__}; "
            f"see {SHIPPED_NAME}"
        )
    merged = dict(base)
    for precision, entries in overrides.items():
        _check_precision(precision, source)
        if not isinstance(entries or {}, Mapping):
            raise ConfigError(f"{source}: {precision} must map budget keys to limits, got {entries!r}")
        merged[precision] = _apply_all(merged[precision], precision, entries or {}, source)
    return merged


def _apply_all(budget: Budget, precision: str, entries: Mapping[Any, Any], source: str) -> Budget:
    limits, judged = dict(budget.limits), budget.judged_inputs
    for key, limit in entries.items():
        if key == JUDGED_INPUTS_KEY:
            if limit not in JUDGED_INPUTS:
                raise ConfigError(
                    f"{source}: {precision}.{key} = {limit!r}; expected one of {', '.join(JUDGED_INPUTS)}"
                )
            judged = limit
            continue
        _check_key(precision, key, source)
        if limit is None:
            limits.pop(key, None)
        else:
            limits[key] = _check_limit(precision, key, limit, source)
    return Budget(limits, judged)


def _parse(text: str, source: str) -> Any:
    try:
        return yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        message = yaml_error_text(exc)
        raise ConfigError(f"budget file {source} is not valid YAML ({message}); see {SHIPPED_NAME}") from exc


def yaml_error_text(exc: Exception) -> str:
    """A YAML error on one line: what is wrong and where (``expected ',' or ']', but got '<stream end>'
    at line 3, column 1``), without PyYAML's copy of the offending line and its caret."""
    problem = getattr(exc, "problem", None)
    mark = getattr(exc, "problem_mark", None)
    if not problem:
        return " ".join(str(exc).split()[:40])
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return " ".join(f"{problem}{where}".split())


def _read_yaml(path: Path) -> Any:
    if not path.is_file():
        raise ConfigError(
            f"budget file {str(path)!r} does not exist; pass a YAML file like {SHIPPED_NAME}"
        )
    return _parse(path.read_text(encoding="utf-8"), str(path))


def _check_precision(precision: Any, source: str) -> None:
    if precision in PRECISIONS:
        return
    hint = ""
    if precision in BUDGET_KEYS or precision in _RENAMED:
        hint = f" (limits go under their precision, e.g. `int8: {{{precision}: ...}}`)"
    raise ConfigError(f"{source}: unknown precision {precision!r}; expected one of {', '.join(PRECISIONS)}{hint}")


def _check_key(precision: str, key: Any, source: str) -> None:
    if key in BUDGET_KEYS:
        return
    hint = " (NaN/Inf always fails; it is not a budget)" if key in ("nonfinite", "nan", "max_nonfinite") else ""
    if key in _RENAMED:
        hint = f" (the figure is called {_RENAMED[key]!r})"
    raise ConfigError(
        f"{source}: unknown budget key {key!r} under {precision}{hint}; expected one of "
        f"{', '.join(BUDGET_KEYS)} or {JUDGED_INPUTS_KEY}"
    )


def _check_limit(precision: str, key: str, limit: Any, source: str) -> float:
    if isinstance(limit, bool) or not isinstance(limit, (int, float)) or not math.isfinite(limit) or limit < 0:
        raise ConfigError(
            f"{source}: {precision}.{key} = {limit!r} is not a finite number >= 0 (or null to drop the check)"
        )
    if BUDGET_KEYS[key].figure == "d1_agreement" and limit > 1:
        raise ConfigError(f"{source}: {precision}.{key} = {limit} is a share of pixels: use a value in [0, 1]")
    return float(limit)
