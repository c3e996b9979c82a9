"""Errors of the calibration stage (subclasses of the project's EdgeDepthError)."""
from edgedepth.errors import EdgeDepthError


class CalibrationError(EdgeDepthError):
    """Calibration data, quantization or the accuracy budget failed."""


class CalibrationCacheError(CalibrationError):
    """A TensorRT calibration cache is stale, foreign or unreadable."""


class BudgetFailed(CalibrationError):
    """The INT8 graph misses the accuracy budget (after any fallback); carries the report."""

    def __init__(self, message: str, report: object) -> None:
        super().__init__(message)
        self.report = report
