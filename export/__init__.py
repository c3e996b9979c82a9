"""Export stage: checkpoint -> ONNX (FP32, mixed FP16) -> TensorRT engine.

Every artifact is self-describing (the ModelSpec rides in the ONNX metadata and the engine's
``.json`` sidecar) and self-checked right after it is written. Modules:

* :mod:`.onnx_export` ``export_onnx`` - checkpoint -> verified FP32 ONNX (static or dynamic);
* :mod:`.fp16` ``convert_to_fp16`` - FP32 ONNX -> mixed FP16 ONNX (head and overflow-prone nodes FP32);
* :mod:`.onnx_info` ``onnx_precision``, ``find_output_head``, ``read_spec`` - graph facts other stages reuse;
* :mod:`.trt_build` ``build_engine`` - ONNX -> TensorRT engine, one helper per TensorRT generation;
* :mod:`.trt_compat`, :mod:`.profiles`, :mod:`.engine_meta` - the TensorRT-free logic behind it;
* :mod:`.conformance` ``check_graph`` - an ONNX against a TensorRT generation's parser rules;
* :mod:`.cli` - the ``depth-export`` command.

Nothing heavy is imported here: torch, onnx and TensorRT load only when a function needs them.
"""
from __future__ import annotations

from edgedepth.lazy import lazy_getattr

_LAZY = {
    "export_onnx": "edgedepth.export.onnx_export",
    "convert_to_fp16": "edgedepth.export.fp16",
    "onnx_precision": "edgedepth.export.onnx_info",
    "find_output_head": "edgedepth.export.onnx_info",
    "build_engine": "edgedepth.export.trt_build",
    "check_graph": "edgedepth.export.conformance",
}

__all__ = sorted(_LAZY)

__getattr__ = lazy_getattr(__name__, _LAZY)
