"""PyTorch backend: runs a training checkpoint directly (the reference the other backends match).

This is the only runtime module that imports torch, and only when the PyTorch backend is chosen.
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np

from edgedepth.errors import BackendError, UsageError
from edgedepth.runtime.backend import Backend


def _import_torch() -> Any:
    try:
        import torch
    except ImportError as exc:
        raise BackendError(
            "the PyTorch backend needs torch: install the `train` extra, or run an ONNX file/engine instead"
        ) from exc
    return torch


def torch_device(torch: Any, device: Optional[str]) -> Any:
    """The ``torch.device`` for ``device`` (default: cuda when torch sees a GPU, else cpu): only cpu,
    cuda and cuda:N, and only a GPU torch sees here."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        chosen = torch.device(device)
    except (RuntimeError, TypeError, ValueError):  # torch's words ("Expected one of cpu, cuda, ...") list 20 types
        chosen = None
    if chosen is None or chosen.type not in ("cpu", "cuda"):
        raise UsageError(f"device {device!r} is not one the PyTorch backend runs on: use cpu, cuda or cuda:N "
                         "(N = GPU index)")
    if chosen.type == "cuda":
        _check_gpu_visible(torch, device, chosen.index)
    return chosen


def _check_gpu_visible(torch: Any, device: str, index: Optional[int]) -> None:
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        raise BackendError(f"device {device!r} was asked for but torch sees no CUDA device; use --device cpu")
    if index is not None and index >= count:
        raise BackendError(f"device {device!r} was asked for but torch sees {count} CUDA device(s), "
                           f"cuda:0 to cuda:{count - 1}; pick one of those")


class PyTorchBackend(Backend):
    """Runs a checkpoint written by ``depth-train`` (spec stored inside it)."""

    name = "pytorch"

    def __init__(self, model_path: str, device: Optional[str] = None, threads: Optional[int] = None) -> None:
        torch = _import_torch()
        from edgedepth.training.checkpoint import load_checkpoint

        self._torch = torch
        self._device = torch_device(torch, device)
        if threads:
            torch.set_num_threads(int(threads))
        model, spec = load_checkpoint(model_path, map_location="cpu")
        super().__init__(spec, model_path)
        self.threads = int(threads) if threads else None
        self._model: Any = model.to(self._device).eval()  # None once released

    @property
    def detail(self) -> str:
        return f"pytorch ({self._device})"

    def _run(self, batch: np.ndarray) -> np.ndarray:
        torch = self._torch
        with torch.inference_mode():
            output = self._model(torch.from_numpy(batch).to(self._device))
        return output.float().cpu().numpy()

    def _release(self) -> None:
        self._model = None
        if self._device.type == "cuda":
            self._torch.cuda.empty_cache()
