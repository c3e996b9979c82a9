"""Recorded facts about each TensorRT generation's Python module, for tests without TensorRT.

Each fake module carries exactly the names (and enum integers) the real one has, from:
* enums: NVIDIA's ``include/NvInfer.h`` of 8.6, 10.3, 10.16 and 11.1 (the headers in
  ../shared/third_party/tensorrt-headers; ``tests/trt/test_generation.py`` re-reads them when
  present), 8.5 and 9.0 from NVIDIA/TensorRT release/8.5 and release/9.0 ``include/NvInfer.h``
  (9.0: ``kSTRONGLY_TYPED = 2`` beside ``kEXPLICIT_BATCH = 0``, lines 10350-10360);
* Python-only facts: shared/reference/TENSORRT_API.md sections 1, 2 and 6 (``execute_async_v2``
  exists in 8.x/9.x and is gone from 10.0; ``IProgressMonitor`` from 9.0; the calibrators until
  10.x; ``builder_optimization_level`` from 8.6; 11.x has no EXPLICIT_BATCH, FP16/INT8 flags or
  calibrators; ``__version__`` spellings of the PyPI wheels and JetPack's apt packages).
"""
from __future__ import annotations

from types import SimpleNamespace
from typing import Dict, Iterable

NETWORK_FLAGS: Dict[str, Dict[str, int]] = {
    "8.5": {"EXPLICIT_BATCH": 0, "EXPLICIT_PRECISION": 1},
    "8.6": {"EXPLICIT_BATCH": 0, "EXPLICIT_PRECISION": 1},
    "9.0": {"EXPLICIT_BATCH": 0, "EXPLICIT_PRECISION": 1, "STRONGLY_TYPED": 2},
    "10.3": {"EXPLICIT_BATCH": 0, "STRONGLY_TYPED": 1},
    "10.16": {"EXPLICIT_BATCH": 0, "STRONGLY_TYPED": 1, "PREFER_JIT_PYTHON_PLUGINS": 2, "PREFER_AOT_PYTHON_PLUGINS": 3},
    "11.1": {"STRONGLY_TYPED": 0, "PREFER_JIT_PYTHON_PLUGINS": 1, "PREFER_AOT_PYTHON_PLUGINS": 2},
}
_FLAGS_86 = {
    "FP16": 0, "INT8": 1, "DEBUG": 2, "GPU_FALLBACK": 3, "STRICT_TYPES": 4, "REFIT": 5, "DISABLE_TIMING_CACHE": 6,
    "TF32": 7, "SPARSE_WEIGHTS": 8, "SAFETY_SCOPE": 9, "OBEY_PRECISION_CONSTRAINTS": 10,
    "PREFER_PRECISION_CONSTRAINTS": 11, "DIRECT_IO": 12, "REJECT_EMPTY_ALGORITHMS": 13, "ENABLE_TACTIC_HEURISTIC": 14,
    "VERSION_COMPATIBLE": 15, "EXCLUDE_LEAN_RUNTIME": 16, "FP8": 17,
}
_FLAGS_103 = {
    "FP16": 0, "INT8": 1, "DEBUG": 2, "GPU_FALLBACK": 3, "REFIT": 4, "DISABLE_TIMING_CACHE": 5, "TF32": 6,
    "SPARSE_WEIGHTS": 7, "SAFETY_SCOPE": 8, "OBEY_PRECISION_CONSTRAINTS": 9, "PREFER_PRECISION_CONSTRAINTS": 10,
    "DIRECT_IO": 11, "REJECT_EMPTY_ALGORITHMS": 12, "VERSION_COMPATIBLE": 13, "EXCLUDE_LEAN_RUNTIME": 14, "FP8": 15,
    "ERROR_ON_TIMING_CACHE_MISS": 16, "BF16": 17, "DISABLE_COMPILATION_CACHE": 18, "STRIP_PLAN": 19,
    "REFIT_IDENTICAL": 20, "WEIGHT_STREAMING": 21, "INT4": 22, "REFIT_INDIVIDUAL": 23,
}
BUILDER_FLAGS: Dict[str, Dict[str, int]] = {
    "8.5": {
        name: value for name, value in _FLAGS_86.items()
        if name not in ("VERSION_COMPATIBLE", "EXCLUDE_LEAN_RUNTIME", "FP8")
    },
    "8.6": _FLAGS_86,
    "9.0": {**_FLAGS_86, "ERROR_ON_TIMING_CACHE_MISS": 18, "BF16": 19, "DISABLE_COMPILATION_CACHE": 20},
    "10.3": _FLAGS_103,
    "10.16": {**_FLAGS_103, "STRICT_NANS": 24, "MONITOR_MEMORY": 25, "FP4": 26, "EDITABLE_TIMING_CACHE": 27,
              "DISTRIBUTIVE_INDEPENDENCE": 28},
    "11.1": {
        "DEBUG": 2, "GPU_FALLBACK": 3, "REFIT": 4, "DISABLE_TIMING_CACHE": 5, "TF32": 6, "SPARSE_WEIGHTS": 7,
        "SAFETY_SCOPE": 8, "DIRECT_IO": 11, "VERSION_COMPATIBLE": 12, "EXCLUDE_LEAN_RUNTIME": 13,
        "ERROR_ON_TIMING_CACHE_MISS": 15, "DISABLE_COMPILATION_CACHE": 17, "STRIP_PLAN": 18, "REFIT_IDENTICAL": 19,
        "WEIGHT_STREAMING": 20, "REFIT_INDIVIDUAL": 22, "STRICT_NANS": 23, "MONITOR_MEMORY": 24,
        "EDITABLE_TIMING_CACHE": 26, "DISTRIBUTIVE_INDEPENDENCE": 27,
    },
}
HARDWARE_LEVELS: Dict[str, Dict[str, int]] = {
    "8.5": {},
    "8.6": {"NONE": 0, "AMPERE_PLUS": 1},
    "9.0": {"NONE": 0, "AMPERE_PLUS": 1},
    "10.3": {"NONE": 0, "AMPERE_PLUS": 1},
    "10.16": {"NONE": 0, "AMPERE_PLUS": 1, "SAME_COMPUTE_CAPABILITY": 2},
    "11.1": {"NONE": 0, "AMPERE_PLUS": 1, "SAME_COMPUTE_CAPABILITY": 2},
}
#: ``__version__`` as each packaging prints it (JetPack apt packages: four fields).
VERSIONS = {
    "8.5": "8.5.2.2", "8.6": "8.6.2", "9.0": "9.0.1", "10.3": "10.3.0.30", "10.16": "10.16.1", "11.1": "11.4.0.106"
}
GENERATIONS = {"8.5": "8", "8.6": "8", "9.0": "10", "10.3": "10", "10.16": "10", "11.1": "11"}


def _enum(members: Dict[str, int]) -> SimpleNamespace:
    return SimpleNamespace(**members)


def _names(names: Iterable[str]) -> SimpleNamespace:
    return SimpleNamespace(**{name: None for name in names})


def fake_tensorrt(key: str) -> SimpleNamespace:
    """A stand-in for ``import tensorrt`` of generation ``key`` (one of :data:`VERSIONS`):
    names and enum integers only; nothing here builds or runs anything."""
    major = int(key.split(".")[0])
    context = ["execute_async_v3"] + (["execute_async_v2"] if major < 10 else [])
    config = ["set_memory_pool_limit"] + (["builder_optimization_level"] if key != "8.5" else [])
    module = SimpleNamespace(
        __version__=VERSIONS[key],
        IExecutionContext=_names(context),
        IBuilderConfig=_names(config),
        NetworkDefinitionCreationFlag=_enum(NETWORK_FLAGS[key]),
        BuilderFlag=_enum(BUILDER_FLAGS[key]),
        float32="float32",
    )
    if HARDWARE_LEVELS[key]:
        module.HardwareCompatibilityLevel = _enum(HARDWARE_LEVELS[key])
    if major < 11:
        module.IInt8EntropyCalibrator2 = object
        module.IInt8MinMaxCalibrator = object
    if major >= 9:
        module.IProgressMonitor = object
    return module


def fake_tensorrt_84() -> SimpleNamespace:
    """TensorRT 8.4: no name-based execution API (release/8.4 pyCore.cpp)."""
    module = fake_tensorrt("8.5")
    module.__version__ = "8.4.3.1"
    module.IExecutionContext = _names(["execute_async_v2"])
    return module
