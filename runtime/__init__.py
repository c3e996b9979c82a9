"""edgedepth.runtime: run a depth model on live or recorded frames (``depth-run``, ``depth-bench``).

- :func:`open_backend` loads a TensorRT engine, an ONNX file or a PyTorch checkpoint behind one
  contract (``infer(N x 3 x H x W float32) -> N x 1 x H x W metres``, ``spec``, context manager).
- :func:`open_source` opens a camera (``0``, ``/dev/video0``, ``csi://0``), a stream
  (``rtsp://...``), a video file or images.
- :class:`DepthPipeline` overlaps capture, preprocessing, inference and rendering.

torch and TensorRT are imported only when their backend is opened.
"""
from edgedepth.runtime.backend import Backend, open_backend
from edgedepth.runtime.pipeline import DepthPipeline, Outputs, PipelineOptions, RunResult
from edgedepth.runtime.sources import Frame, Source, SourceOptions, open_source

__all__ = [
    "Backend",
    "DepthPipeline",
    "Frame",
    "Outputs",
    "PipelineOptions",
    "RunResult",
    "Source",
    "SourceOptions",
    "open_backend",
    "open_source",
]
