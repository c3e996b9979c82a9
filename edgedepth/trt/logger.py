"""The one TensorRT logger: keeps errors and warnings so a failed build or deserialisation can quote
TensorRT's own reason (TensorRT reports those only through the logger)."""
from __future__ import annotations

from typing import Any, Callable, List

Log = Callable[[str], None]


def make_logger(trt: Any, log: Log, verbose: bool = False) -> Any:
    """A ``trt.ILogger`` that collects errors (``.errors``) and errors + warnings (``.lines``),
    passes warnings to ``log`` (everything with ``verbose``).

    ``severity <= WARNING`` is valid: ``Severity`` is a ``py::arithmetic()`` enum where lower means
    more severe (pyCore.cpp in 8.5, 10.3 and 11.0).
    """
    severity = trt.ILogger.Severity
    errors = (severity.INTERNAL_ERROR, severity.ERROR)

    class CollectingLogger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)  # pybind11 trampolines need the base constructor called explicitly
            self.errors: List[str] = []
            self.lines: List[str] = []

        def log(self, level: Any, message: str) -> None:  # noqa: A003 - TensorRT's callback name
            if level in errors:
                self.errors.append(str(message))
            if level <= severity.WARNING:
                self.lines.append(str(message))
                log(f"TensorRT: {message}")
            elif verbose:
                log(f"TensorRT: {message}")

    return CollectingLogger()
