"""Shared pytest fixtures and the rules for hardware that may be missing.

``gpu`` tests need a CUDA device reachable through a CUDA Python binding (cuda-python, else
pycuda: :func:`edgedepth.trt.platform.query_gpu`) or through torch; ``tensorrt`` tests also need
TensorRT. Where that is missing they skip with the reason, unless ``EDGEDEPTH_REQUIRE_GPU=1``
(``make test-gpu``) or ``EDGEDEPTH_REQUIRE_TENSORRT=1`` says it must be there: then the test
fails, so a GPU box never goes green by skipping everything.
"""
from __future__ import annotations

import functools
import os
from typing import Optional

import pytest

# On a shared 2-core machine OpenMP's busy-waiting threads slow torch down several times when
# another process runs; passive waiting costs nothing measurable when the machine is idle.
# Set before any test module imports torch.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

REQUIRE_GPU = "EDGEDEPTH_REQUIRE_GPU"
REQUIRE_TENSORRT = "EDGEDEPTH_REQUIRE_TENSORRT"


def _required(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0")


@functools.lru_cache(maxsize=None)
def missing_gpu() -> Optional[str]:
    """Why no CUDA device is usable here through a CUDA Python binding (None when one is)."""
    from edgedepth.errors import EdgeDepthError
    from edgedepth.trt.platform import query_gpu

    try:
        query_gpu(0)
        return None
    except EdgeDepthError as exc:
        return f"needs a CUDA device and a CUDA Python binding: {exc}"


@functools.lru_cache(maxsize=None)
def missing_torch_cuda() -> Optional[str]:
    try:
        import torch
    except ImportError:
        return "needs torch with CUDA: torch is not installed"
    return None if torch.cuda.is_available() else "needs torch with CUDA: torch.cuda.is_available() is False"


@functools.lru_cache(maxsize=None)
def missing_tensorrt() -> Optional[str]:
    """Why TensorRT is not importable here (None when it is)."""
    from edgedepth.trt.imports import tensorrt_installed

    return None if tensorrt_installed() else "needs TensorRT: `import tensorrt` finds nothing on this machine"


def _hardware_problem(item: pytest.Item) -> "tuple[Optional[str], bool]":
    """``(why the test cannot run here or None, whether that must fail instead of skip)``."""
    if item.get_closest_marker("tensorrt") is not None:
        if missing_tensorrt():
            return missing_tensorrt(), _required(REQUIRE_TENSORRT)
        return missing_gpu(), _required(REQUIRE_TENSORRT) or _required(REQUIRE_GPU)
    if item.get_closest_marker("torch_cuda") is not None:
        return missing_torch_cuda(), _required(REQUIRE_GPU)
    if item.get_closest_marker("gpu") is not None:
        return missing_gpu(), _required(REQUIRE_GPU)
    return None, False


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Skip (or, where required, fail) tests whose hardware is missing."""
    reason, required = _hardware_problem(item)
    if reason and required:
        pytest.fail(f"{reason} (required by {REQUIRE_GPU}/{REQUIRE_TENSORRT})", pytrace=False)
    if reason:
        pytest.skip(reason)
