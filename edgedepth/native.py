"""The C++ half of the preprocessing (``edgedepth._native``, built in place by ``make native``).

Optional: the pure-Python package never needs a compiler. ``python`` is
:func:`edgedepth.preprocess.preprocess`; ``native`` is the same computation in C++ on the CPU;
``cuda`` is the fused CUDA kernel (built where nvcc is found, run where a GPU is), its result
copied back to the host. All three give the same tensor within 1e-5
(tests/native/test_native_binding.py).
"""
from __future__ import annotations

from types import ModuleType
from typing import Any, Callable, List, Tuple

import numpy as np

from edgedepth.errors import UsageError
from edgedepth.preprocess import preprocess
from edgedepth.spec import ModelSpec

#: What ``depth-run --preprocess`` takes.
IMPLEMENTATIONS = ("python", "native", "cuda")
Preprocessor = Callable[[np.ndarray, ModelSpec, str], np.ndarray]


def load_native() -> ModuleType:
    """``edgedepth._native``, or UsageError saying how to build it."""
    try:
        from edgedepth import _native
    except ImportError as exc:
        raise UsageError(
            f"the native preprocessing (edgedepth._native) is not built ({exc}): run `make native` "
            "(needs cmake and a C++ compiler), or use --preprocess python"
        ) from exc
    return _native


def preprocessor(implementation: str) -> Preprocessor:
    """The preprocess function of ``implementation`` (one of :data:`IMPLEMENTATIONS`); UsageError
    when it is not built or not usable here."""
    if implementation == "python":
        return preprocess
    if implementation not in IMPLEMENTATIONS:
        raise UsageError(f"preprocessing {implementation!r} is unknown; use one of {', '.join(IMPLEMENTATIONS)}")
    native = load_native()
    if implementation == "native":
        return _parsed_once(native, native.preprocess)
    problem = native.cuda_problem()
    if problem:
        raise UsageError(f"--preprocess cuda is unavailable: {problem}; use --preprocess native")
    return _parsed_once(native, native.cuda_preprocess)


def _parsed_once(native: ModuleType, function: Callable[..., np.ndarray]) -> Preprocessor:
    """``function`` taking a Python ModelSpec, its C++ copy parsed once per spec (not per frame)."""
    last: List[Tuple[ModelSpec, Any]] = []

    def run(image: np.ndarray, spec: ModelSpec, input_order: str = "BGR") -> np.ndarray:
        if not last or last[0][0] is not spec:
            last[:] = [(spec, native.ModelSpec.from_json(spec.to_json()))]
        return function(image, last[0][1], input_order)

    return run
