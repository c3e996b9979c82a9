"""ONNX Runtime backend: TensorRT EP > CUDA EP > CPU EP, whichever this onnxruntime build has."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, List, Optional, Sequence, Tuple

import numpy as np

from edgedepth.errors import BackendError
from edgedepth.onnxrt import ProviderEntry, import_onnxruntime, open_session
from edgedepth.runtime.backend import Backend, in_model_batches
from edgedepth.spec import ModelSpec

#: Preference order; the first available one runs each node it supports.
PROVIDER_PREFERENCE = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")


def select_providers(available: Sequence[str], requested: Optional[Sequence[str]] = None) -> List[str]:
    """Providers to ask for, best first: ``requested`` (all must exist) or the preference order."""
    if requested:
        missing = [name for name in requested if name not in available]
        if missing:
            raise BackendError(
                f"ONNX Runtime providers {missing} are not in this onnxruntime build (it has {list(available)}); "
                "install onnxruntime-gpu (desktop) or the JetPack onnxruntime wheel (Jetson) for GPU providers"
            )
        return list(requested)
    chosen = [name for name in PROVIDER_PREFERENCE if name in available]
    return chosen or ["CPUExecutionProvider"]


def default_trt_cache_dir() -> Path:
    """Where the TensorRT EP keeps its built engines, so only the first run pays the build."""
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "edgedepth" / "ort-tensorrt"


def provider_entries(providers: Sequence[str], trt_cache_dir: Optional[Path] = None) -> List[ProviderEntry]:
    """Attach options: the TensorRT EP caches engines (a first build takes minutes on a Jetson)."""
    entries: List[ProviderEntry] = []
    for name in providers:
        if name == "TensorrtExecutionProvider":
            cache = Path(trt_cache_dir or default_trt_cache_dir())
            cache.mkdir(parents=True, exist_ok=True)
            entries.append((name, {"trt_engine_cache_enable": True, "trt_engine_cache_path": str(cache)}))
        else:
            entries.append(name)
    return entries


class OnnxRuntimeBackend(Backend):
    """Runs an edgedepth ONNX file (spec from its metadata) with ONNX Runtime."""

    name = "onnxruntime"
    concurrent_calls = True  # InferenceSession.run is thread-safe

    def __init__(
        self,
        model_path: str,
        providers: Optional[Sequence[str]] = None,
        threads: Optional[int] = None,
        trt_cache_dir: Optional[str] = None,
    ) -> None:
        ort = import_onnxruntime("the onnxruntime backend")
        chosen = select_providers(ort.get_available_providers(), providers)
        entries = provider_entries(chosen, Path(trt_cache_dir) if trt_cache_dir else None)
        # The same session as the export and calibration checks (Q/DQ-changing rewrites off), so
        # depth-run and depth-parity run the Q/DQ graph as written (and as TensorRT will).
        self._session = open_session(model_path, providers=entries, threads=int(threads or 0))
        self.threads = int(threads) if threads else None
        super().__init__(self._read_spec(model_path), model_path)
        self._input_name, self._batch_dim, self._input_dtype = self._check_io()

    def _read_spec(self, model_path: str) -> ModelSpec:
        # Read through onnxruntime so a Jetson runtime install needs no `onnx` package.
        props = dict(self._session.get_modelmeta().custom_metadata_map)
        return ModelSpec.from_metadata_props(props, source=model_path)

    @property
    def providers(self) -> List[str]:
        """Providers the session actually uses, best first."""
        return list(self._session.get_providers())

    @property
    def detail(self) -> str:
        return f"onnxruntime ({self.providers[0]})"

    def _check_io(self) -> Tuple[str, Optional[int], Any]:
        inputs, outputs = self._session.get_inputs(), self._session.get_outputs()
        input_names = [item.name for item in inputs]
        if self.spec.input_name not in input_names:
            raise BackendError(
                f"{self.model_path} has inputs {input_names} but its spec names {self.spec.input_name!r}; re-export it"
            )
        if self.spec.output_name not in [item.name for item in outputs]:
            raise BackendError(
                f"{self.model_path} has outputs {[o.name for o in outputs]} but its spec names "
                f"{self.spec.output_name!r}; re-export it"
            )
        graph_input = inputs[input_names.index(self.spec.input_name)]
        self.spec.check_graph_input(list(graph_input.shape), self.model_path)  # SpecError, one line
        batch_dim = graph_input.shape[0]
        # A graph with FP16 inputs (AutoCast keep_io_types=False) is fed FP16, as the TensorRT backend does.
        dtype = np.float16 if graph_input.type == "tensor(float16)" else np.float32
        return self.spec.input_name, batch_dim if isinstance(batch_dim, int) else None, dtype

    def _run(self, batch: np.ndarray) -> np.ndarray:
        return in_model_batches(batch, self._batch_dim, self._run_one, self.model_path, "Export with a dynamic batch")

    def _run_one(self, batch: np.ndarray) -> np.ndarray:
        feed = batch.astype(self._input_dtype, copy=False)
        return self._session.run([self.spec.output_name], {self._input_name: feed})[0]

    def _release(self) -> None:
        self._session = None

