"""Shared pytest fixtures and the skip rules for hardware that may be missing."""
from __future__ import annotations

import importlib.util
import os

import pytest

# On a shared 2-core machine OpenMP's busy-waiting threads slow torch down several times when
# another process runs; passive waiting costs nothing measurable when the machine is idle.
# Set before any test module imports torch.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def _has_tensorrt_gpu() -> bool:
    if importlib.util.find_spec("tensorrt") is None:
        return False
    try:
        from cuda import cudart  # type: ignore

        err, count = cudart.cudaGetDeviceCount()
        return int(err) == 0 and count > 0
    except Exception:
        return False


def _has_cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


def pytest_collection_modifyitems(config, items):
    trt_ok = _has_tensorrt_gpu()
    cuda_ok = _has_cuda()
    skip_trt = pytest.mark.skip(reason="needs TensorRT and an NVIDIA GPU: neither is on this machine")
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device: none is present")
    for item in items:
        if "tensorrt" in item.keywords and not trt_ok:
            item.add_marker(skip_trt)
        if "gpu" in item.keywords and not cuda_ok:
            item.add_marker(skip_gpu)
