"""Backend latency and throughput, measured the same way for every backend (``depth-bench``)."""
from __future__ import annotations

import os
import platform
import sys
import time
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from edgedepth import __version__
from edgedepth.errors import SourceError
from edgedepth.preprocess import import_cv2, preprocess
from edgedepth.runtime.backend import Backend
from edgedepth.runtime.sources import SourceOptions, open_source
from edgedepth.runtime.stats import TimingRecorder
from edgedepth.spec import ModelSpec


def synthetic_frames(count: int, width: int = 1280, height: int = 720, seed: int = 0) -> List[np.ndarray]:
    """Structured BGR frames (gradients, moving shapes, edges), closer to camera content than noise."""
    cv2 = import_cv2()
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([xs / width * 255, ys / height * 255, (xs + ys) / (width + height) * 255], axis=-1)
    frames = []
    for index in range(count):
        frame = base.astype(np.uint8)
        for shape in range(6):
            centre = (int((index * (5 + shape) + shape * width / 6) % width), int(height * (0.2 + 0.12 * shape)))
            colour = tuple(int(c) for c in rng.integers(0, 255, 3))
            cv2.circle(frame, centre, int(height * 0.08) + 4 * shape, colour, -1)
        cv2.rectangle(frame, (width // 3, height // 2), (width // 3 + width // 5, height - 10), (40, 40, 40), -1)
        frames.append(frame)
    return frames


def frames_from_source(uri: str, count: int) -> List[np.ndarray]:
    """Up to ``count`` frames read from ``uri`` (a video, image folder or camera)."""
    frames: List[np.ndarray] = []
    with open_source(uri, SourceOptions()) as source:
        while len(frames) < count:
            frame = source.read()
            if frame is None:
                break
            frames.append(frame.image)
    if not frames:
        raise SourceError(f"{uri} gave no frames to benchmark on")
    return frames


def make_batches(frames: Sequence[np.ndarray], spec: ModelSpec, batch_size: int) -> List[np.ndarray]:
    """Preprocess ``frames`` and group them into batches of ``batch_size`` (cycling when short)."""
    tensors = [preprocess(frame, spec) for frame in frames]
    count = max(1, len(tensors) // batch_size)
    return [
        np.concatenate([tensors[(b * batch_size + i) % len(tensors)] for i in range(batch_size)], axis=0)
        for b in range(count)
    ]


def benchmark_backend(backend: Backend, batches: Sequence[np.ndarray], iterations: int, warmup: int) -> Dict[str, Any]:
    """Latency percentiles (ms per batch) and throughput (images/s) of ``backend.infer`` after warm-up."""
    for step in range(warmup):
        backend.infer(batches[step % len(batches)])
    recorder = TimingRecorder(capacity=max(iterations, 1))
    started = time.perf_counter()
    for step in range(iterations):
        start = time.perf_counter()
        backend.infer(batches[step % len(batches)])
        recorder.add(time.perf_counter() - start)
    elapsed = time.perf_counter() - started
    images = iterations * batches[0].shape[0]
    summary = recorder.summary_ms()
    return {
        "latency_ms": {key: summary[key] for key in ("mean", "p50", "p90", "p99", "max")},
        "throughput_fps": round(images / elapsed, 3) if elapsed > 0 else 0.0,
        "iterations": iterations,
        "warmup": warmup,
        "batch": int(batches[0].shape[0]),
    }


def environment() -> Dict[str, Any]:
    """Where the numbers were taken: host, CPU count, library versions already loaded, Jetson model."""
    info: Dict[str, Any] = {
        "edgedepth": __version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
    }
    for name in ("onnxruntime", "tensorrt", "torch", "cv2"):
        module = sys.modules.get(name)  # only what this run loaded: never import torch for a report
        if module is not None:
            info[name] = str(getattr(module, "__version__", "unknown"))
    model = _jetson_model()
    if model:
        info["jetson_model"] = model
    return info


def _jetson_model() -> Optional[str]:
    try:
        with open("/proc/device-tree/model", "rb") as handle:
            return handle.read().decode(errors="replace").strip("\x00 \n")
    except OSError:
        return None
