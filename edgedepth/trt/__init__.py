"""Everything that touches TensorRT or CUDA, in one lazily imported package.

export/, runtime/ and calib/ call it; nothing else imports ``tensorrt``, ``pycuda`` or ``cuda``
(:mod:`.imports` is the only module that does, and only when asked):

* :mod:`.imports` ``import_tensorrt``, ``import_cudart``, ``import_pycuda`` and the install hints;
* :mod:`.generation` the generation probe (``probe_api``), target versions (``parse_target``);
* :mod:`.platform` the GPU/platform query (``query_gpu`` -> :class:`GpuInfo`);
* :mod:`.sidecar` the engine sidecar (:class:`EngineSidecar`) and its compatibility rules;
* :mod:`.memory` pinned/device buffers and a stream (cuda-python first, pycuda with push/pop);
* :mod:`.network`, :mod:`.logger` network creation, ONNX parsing, the collecting logger;
* :mod:`.calibrator` the legacy implicit-INT8 calibrator adapter (8.5 to 10.x).

Importing this package imports no TensorRT or CUDA module.
"""
from __future__ import annotations

from edgedepth.lazy import lazy_getattr

_LAZY = {
    "import_tensorrt": "edgedepth.trt.imports",
    "tensorrt_installed": "edgedepth.trt.imports",
    "probe_api": "edgedepth.trt.generation",
    "parse_target": "edgedepth.trt.generation",
    "default_target": "edgedepth.trt.generation",
    "query_gpu": "edgedepth.trt.platform",
    "GpuInfo": "edgedepth.trt.platform",
    "EngineSidecar": "edgedepth.trt.sidecar",
    "read_sidecar": "edgedepth.trt.sidecar",
    "open_cuda_memory": "edgedepth.trt.memory",
}

__all__ = sorted(_LAZY)

__getattr__ = lazy_getattr(__name__, _LAZY)
