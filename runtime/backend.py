"""The backend contract every inference engine behind ``depth-run`` honours, and the factory.

``infer(batch: float32 N x 3 x H x W) -> float32 N x 1 x H x W`` depth in metres, plus ``spec``
(the artifact's :class:`ModelSpec`), ``name`` and context-manager lifetime. Backend modules are
imported lazily so that choosing ONNX Runtime never imports torch or TensorRT.
"""
from __future__ import annotations

import abc
import importlib
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from edgedepth.errors import BackendError, UsageError
from edgedepth.spec import ModelSpec

#: Backend name -> file suffixes it runs.
BACKEND_SUFFIXES: Dict[str, Tuple[str, ...]] = {
    "tensorrt": (".engine", ".plan"),
    "onnxruntime": (".onnx",),
    "pytorch": (".pt", ".pth", ".ckpt"),
}
BACKEND_CHOICES = ("auto",) + tuple(BACKEND_SUFFIXES)
#: Backend name -> the options its constructor takes (besides the model path).
BACKEND_OPTIONS: Dict[str, Tuple[str, ...]] = {
    "tensorrt": ("cuda_library",),
    "onnxruntime": ("providers", "threads", "trt_cache_dir"),
    "pytorch": ("device", "threads"),
}

#: Backend name -> "module:class", imported only when that backend is chosen.
_BACKEND_CLASSES = {
    "tensorrt": "edgedepth.runtime.trt_backend:TensorRTBackend",
    "onnxruntime": "edgedepth.runtime.ort_backend:OnnxRuntimeBackend",
    "pytorch": "edgedepth.runtime.torch_backend:PyTorchBackend",
}


class Backend(abc.ABC):
    """One loaded model. Subclasses implement ``_run`` and ``_release``; ``infer`` checks I/O."""

    #: Short backend name ("onnxruntime", "tensorrt", "pytorch").
    name: str = "backend"
    #: Whether ``infer`` may run on several threads at once (depth-run's streams): an ONNX Runtime
    #: session may; one TensorRT execution context with its bound buffers may not.
    concurrent_calls: bool = False
    #: CPU threads the backend was asked for (None: its default); reported in depth-run's stats.
    threads: Optional[int] = None

    def __init__(self, spec: ModelSpec, model_path: str) -> None:
        self.spec = spec
        self.model_path = str(model_path)
        self._closed = False

    @property
    def detail(self) -> str:
        """Human-readable description of where it runs (device, provider, precision)."""
        return self.name

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Depth in metres (float32 N x 1 x H x W) for a preprocessed float32 N x 3 x H x W batch."""
        if self._closed:
            raise BackendError(f"{self.name} backend for {self.model_path} was closed; open a new one")
        check_batch(batch, self.spec)
        depth = self._run(batch)
        return check_output(depth, batch.shape, self.name)

    @abc.abstractmethod
    def _run(self, batch: np.ndarray) -> np.ndarray:
        """Run the network on a checked batch; return its raw output array."""

    def _release(self) -> None:  # noqa: B027 - an optional hook: a backend with nothing to free keeps it
        """Free the backend's resources (sessions, device memory)."""

    def close(self) -> None:
        """Release resources; later ``infer`` calls raise. Safe to call twice."""
        if not self._closed:
            self._closed = True
            self._release()

    def __enter__(self) -> "Backend":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


def in_model_batches(batch: np.ndarray, model_batch: Optional[int], run_one: Callable[[np.ndarray], np.ndarray],
                     model: str, fix: str) -> np.ndarray:
    """``run_one`` over ``batch`` one model batch at a time: a model with a fixed batch of
    ``model_batch`` (None: dynamic, the whole batch at once) still serves any multiple of it.
    BackendError naming ``model`` and how to ``fix`` it for a batch that is no multiple."""
    step = model_batch or batch.shape[0]
    if batch.shape[0] % step:
        raise BackendError(f"{model} has a fixed batch of {step}; got {batch.shape[0]} images. {fix}")
    parts = [run_one(batch[start : start + step]) for start in range(0, batch.shape[0], step)]
    return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)


def check_batch(batch: np.ndarray, spec: ModelSpec) -> None:
    """Raise BackendError unless ``batch`` is float32 N x 3 x H x W of a size the model takes."""
    if not isinstance(batch, np.ndarray) or batch.dtype != np.float32 or batch.ndim != 4 or batch.shape[1] != 3:
        raise BackendError(
            f"backend input must be a float32 Nx3xHxW array, got {getattr(batch, 'dtype', type(batch).__name__)} "
            f"shape {getattr(batch, 'shape', None)}; build it with edgedepth.preprocess.preprocess"
        )
    height, width = batch.shape[2:]
    if spec.dynamic:
        if height % 32 or width % 32 or batch.shape[0] < 1:
            raise BackendError(f"input size {height}x{width} is not a multiple of 32; resize to the spec's size")
    elif (height, width) != (spec.height, spec.width):
        raise BackendError(
            f"input size {height}x{width} does not match the model's {spec.height}x{spec.width}; "
            "preprocess frames with the model's ModelSpec"
        )


def check_output(depth: np.ndarray, input_shape: Tuple[int, ...], backend: str) -> np.ndarray:
    """Return ``depth`` as float32 N x 1 x H x W, or raise naming the shape the backend produced."""
    expected = (input_shape[0], 1, input_shape[2], input_shape[3])
    depth = np.asarray(depth)
    if depth.shape != expected:
        raise BackendError(
            f"{backend} returned depth of shape {depth.shape}, expected {expected}: the model is not an "
            "edgedepth depth network (output N x 1 x H x W); re-export it with depth-export"
        )
    return depth.astype(np.float32, copy=False)


def backend_for_path(model_path: str) -> str:
    """The backend that runs a file, chosen by its suffix."""
    suffix = Path(model_path).suffix.lower()
    for backend, suffixes in BACKEND_SUFFIXES.items():
        if suffix in suffixes:
            return backend
    raise BackendError(
        f"model {model_path!r} has an unknown file type {suffix or '(none)'!r}; expected {accepted_types()}"
    )


def accepted_types() -> str:
    """One line listing every accepted model file type and its backend."""
    return "; ".join(f"{'/'.join(suffixes)} ({name})" for name, suffixes in BACKEND_SUFFIXES.items())


def resolve_backend(model_path: str, backend: str = "auto") -> str:
    """The backend to use for ``model_path``: ``auto`` picks by suffix; an explicit one must fit."""
    if backend not in BACKEND_CHOICES:
        raise BackendError(f"backend {backend!r} is unknown; choose one of {', '.join(BACKEND_CHOICES)}")
    by_suffix = backend_for_path(model_path)
    if backend not in ("auto", by_suffix):
        raise BackendError(
            f"backend {backend!r} cannot run {model_path!r} (a {by_suffix} artifact); it runs "
            f"{'/'.join(BACKEND_SUFFIXES[backend])} files: {_conversion_hint(backend)}"
        )
    return by_suffix


def _conversion_hint(backend: str) -> str:
    return {
        "tensorrt": "build an engine with `depth-export engine --onnx MODEL.onnx --output MODEL.engine`",
        "onnxruntime": "export one with `depth-export onnx --checkpoint CKPT.pt --output MODEL.onnx`",
        "pytorch": "pass the training checkpoint (.pt) instead",
    }[backend]


def open_backend(model_path: str, backend: str = "auto", **options: Any) -> Backend:
    """Load ``model_path`` into the backend that runs it.

    ``backend="auto"`` picks TensorRT for ``.engine``/``.plan``, ONNX Runtime for ``.onnx`` and
    PyTorch for ``.pt``/``.pth``/``.ckpt``. ``options`` go to the backend's constructor (e.g.
    ``threads`` for ONNX Runtime and PyTorch, ``providers`` for ONNX Runtime, ``device`` for PyTorch).
    """
    name = resolve_backend(str(model_path), backend)
    if not Path(model_path).is_file():
        raise BackendError(f"model file {str(model_path)!r} does not exist; expected {accepted_types()}")
    options = _drop_none(options)
    check_backend_options(name, options)
    module_name, class_name = _BACKEND_CLASSES[name].split(":")
    backend_class = getattr(importlib.import_module(module_name), class_name)
    return backend_class(str(model_path), **options)


def backends_taking(option: str) -> List[str]:
    """Names of the backends whose constructor takes ``option``."""
    return [name for name, accepted in BACKEND_OPTIONS.items() if option in accepted]


def check_backend_options(backend: str, options: Dict[str, Any]) -> None:
    """Raise UsageError naming an option ``backend`` does not take, and the backends that do."""
    for option in options:
        if option not in BACKEND_OPTIONS[backend]:
            takers = ", ".join(backends_taking(option)) or "no backend"
            raise UsageError(
                f"the {backend} backend takes no {option!r} option (only {', '.join(BACKEND_OPTIONS[backend])}); "
                f"{option!r} is for {takers}"
            )


def _drop_none(options: Dict[str, Any]) -> Dict[str, Any]:
    return {key: value for key, value in options.items() if value is not None}


def warm_up(backend: Backend, iterations: int = 1, batch_size: int = 1) -> None:
    """Run the backend on zeros so lazy initialisation does not land on the first real frame."""
    spec = backend.spec
    zeros = np.zeros((batch_size, 3, spec.height, spec.width), dtype=np.float32)
    for _ in range(iterations):
        backend.infer(zeros)

