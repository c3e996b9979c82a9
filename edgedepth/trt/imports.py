"""The one place edgedepth imports ``tensorrt``, ``pycuda`` and ``cuda`` (cuda-python).

Every other module asks for them through these functions, so an install problem gets one message
everywhere, and nothing TensorRT- or CUDA-related is imported until it is needed (a Jetson
runtime install that only runs ONNX Runtime never loads them).

Which cuda-python to install depends on the machine's CUDA driver, not on the GPU: cuda-bindings
13.x links the CUDA 13 runtime statically and needs an R580+ driver, which JetPack 5 (CUDA 11.4)
and JetPack 6 (CUDA 12.2/12.6) do not have (cuda-bindings 13.0 release notes). Hence the pins in
:data:`CUDA_HINT` and the ``tensorrt-*`` extras of ``pyproject.toml``.
"""
from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType
from typing import Any, Optional

from edgedepth.errors import DeviceError

TENSORRT_HINT = (
    "TensorRT's Python bindings are not importable: on a Jetson they come with JetPack "
    "(`sudo apt install python3-libnvinfer`; in a venv use --system-site-packages); on a desktop "
    "`pip install tensorrt-cu12` (CUDA 12 driver) or `pip install tensorrt-cu13` (CUDA 13 driver)"
)
CUDA_HINT = (
    "install the CUDA Python bindings that match this machine's CUDA driver: JetPack 5 (CUDA 11.4): "
    "`pip install 'edgedepth[tensorrt-jp5]'` (cuda-python 11.8) or pycuda; JetPack 6 / CUDA 12: "
    "`pip install 'edgedepth[tensorrt-cu12]'` (cuda-python 12.x); JetPack 7 / CUDA 13: "
    "`pip install 'edgedepth[tensorrt-cu13]'` (cuda-python 13.x). A cuda-python newer than the driver "
    "fails with 'CUDA driver version is insufficient'"
)
#: cuda-python's runtime module: ``cuda.bindings.runtime`` from 12.6, ``cuda.cudart`` before
#: (cuda-bindings 13.0 removed ``cuda.cudart``).
CUDART_MODULES = ("cuda.bindings.runtime", "cuda.cudart")


def tensorrt_installed() -> bool:
    """True when ``import tensorrt`` would find a module (without importing it)."""
    return importlib.util.find_spec("tensorrt") is not None


def import_tensorrt(needed_by: str = "", fix: str = "") -> ModuleType:
    """``import tensorrt``; DeviceError saying who needs it, where TensorRT comes from and ``fix``."""
    try:
        return importlib.import_module("tensorrt")
    except ImportError as exc:
        prefix = f"{needed_by} needs TensorRT, but " if needed_by else ""
        suffix = f". {fix}" if fix else ""
        raise DeviceError(f"{prefix}{TENSORRT_HINT}{suffix} ({exc})") from exc


def import_cudart() -> Optional[ModuleType]:
    """cuda-python's runtime API module, or None when cuda-python is not installed."""
    for name in CUDART_MODULES:
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    return None


def import_pycuda() -> Optional[ModuleType]:
    """``pycuda.driver`` (initialised), or None when pycuda is not installed.

    ``pycuda.autoinit`` / ``autoprimaryctx`` are deliberately not imported: they push a context in
    the importing thread that stays there, and pycuda aborts a thread that exits with a non-empty
    context stack (``context_stack::~context_stack`` in inducer/pycuda ``src/cpp/cuda.hpp``).
    """
    try:
        driver = importlib.import_module("pycuda.driver")
    except ImportError:
        return None
    driver.init()
    return driver


def native_handle(cuda_object: Any) -> int:
    """The integer handle of a cuda-python object (a ``cudaStream_t``), as TensorRT takes it.

    cuda-bindings 13 deprecates ``int(obj)`` in favour of ``cuda.bindings.utils.get_cuda_native_handle``.
    """
    try:
        utils = importlib.import_module("cuda.bindings.utils")
        return int(utils.get_cuda_native_handle(cuda_object))
    except (ImportError, AttributeError):
        return int(cuda_object)
