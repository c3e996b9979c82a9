"""Errors of the calibration stage (subclasses of the project's EdgeDepthError)."""
from edgedepth.errors import EdgeDepthError, UsageError


class CalibrationError(EdgeDepthError):
    """Calibration data, quantization or the accuracy budget failed."""


class CalibrationRequestError(UsageError, CalibrationError):
    """The request contradicts itself or cannot be met (a usage error: exit 2)."""


class CalibrationCacheError(CalibrationError):
    """A TensorRT calibration cache is stale, foreign or unreadable."""


class BudgetFailed(CalibrationError):
    """The INT8 graph misses the accuracy budget (after any fallback); carries the report."""

    def __init__(self, message: str, report: object) -> None:
        super().__init__(message)
        self.report = report
