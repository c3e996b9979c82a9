"""TensorRT backend: a serialised engine plus its sidecar JSON, run on one CUDA stream.

Written against the name-based API every supported generation has (8.5 to 11.x:
``num_io_tensors``, ``set_input_shape``, ``set_tensor_address``, ``execute_async_v3``;
shared/reference/TENSORRT_API.md section 6). Device memory, the stream and the GPU query come
from :mod:`edgedepth.trt` (cuda-python first, pycuda with push/pop around every call), so the
backend may be opened in one thread, run from another (depth-run's infer thread) and closed
from a third, any number of times in one process.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from edgedepth.errors import BackendError, DeviceError
from edgedepth.runtime.backend import Backend, in_model_batches
from edgedepth.trt.imports import import_tensorrt
from edgedepth.trt.logger import make_logger
from edgedepth.trt.memory import CudaMemory, open_cuda_memory
from edgedepth.trt.platform import query_gpu
from edgedepth.trt.sidecar import EngineSidecar, check_compatible, deserialize_failure_message, read_sidecar

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class IOTensor:
    """One engine input or output as TensorRT describes it."""

    name: str
    is_input: bool
    shape: Tuple[int, ...]
    dtype: np.dtype


def list_io_tensors(engine: Any, trt: Any) -> List[IOTensor]:
    """The engine's I/O tensors through the name-based API (8.5+; the only one in 10/11)."""
    if not hasattr(engine, "num_io_tensors"):
        version = getattr(trt, "__version__", "?")
        raise DeviceError(f"TensorRT {version} has no name-based tensor API: edgedepth needs 8.5 or newer")
    tensors = []
    for index in range(engine.num_io_tensors):
        name = engine.get_tensor_name(index)
        tensors.append(IOTensor(
            name=name,
            is_input=engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT,
            shape=tuple(int(dim) for dim in engine.get_tensor_shape(name)),
            dtype=np.dtype(trt.nptype(engine.get_tensor_dtype(name))),
        ))
    return tensors


@dataclass
class _Buffers:
    shape: Tuple[int, ...]
    host_in: np.ndarray
    host_out: np.ndarray
    addresses: Dict[str, int]


class TensorRTBackend(Backend):
    """Runs an engine built by ``depth-export engine``; checks its sidecar against this machine first.

    ``cuda_library`` forces ``"cuda-python"`` or ``"pycuda"`` (default: ``$EDGEDEPTH_CUDA_LIBRARY``,
    else cuda-python, else pycuda).
    """

    name = "tensorrt"

    def __init__(self, model_path: str, cuda_library: Optional[str] = None) -> None:
        sidecar = read_sidecar(model_path)
        super().__init__(sidecar.model_spec, model_path)
        self.sidecar = sidecar
        self._trt = import_tensorrt("the TensorRT backend", "Or run the ONNX file with --backend onnxruntime")
        self._memory: CudaMemory = open_cuda_memory(cuda_library)
        self._buffers: Optional[_Buffers] = None
        self._context: Any = None
        self._engine: Any = None
        self._runtime: Any = None
        try:
            self._load(Path(model_path).read_bytes())
        except BaseException:
            self._release()
            raise

    def _load(self, plan: bytes) -> None:
        for warning in check_compatible(self.sidecar, str(self._trt.__version__), query_gpu(), self.model_path):
            LOG.warning("%s", warning)
        self._logger = make_logger(self._trt, lambda message: LOG.warning("%s", message))
        with self._memory.activate():
            self._runtime = self._trt.Runtime(self._logger)
            self._engine = self._deserialize(plan, self.sidecar)
            self._context = self._engine.create_execution_context()
        if self._context is None:
            raise BackendError(
                f"TensorRT could not create an execution context for {self.model_path} (out of GPU memory?)"
            )
        self._input, self._output = self._find_io(list_io_tensors(self._engine, self._trt))

    @property
    def detail(self) -> str:
        return f"tensorrt {self._trt.__version__} ({self.sidecar.precision}, {self._memory.library})"

    def _deserialize(self, plan: bytes, sidecar: EngineSidecar) -> Any:
        options = sidecar.build_options
        if options.dla_core is not None:
            # IRuntime::setDLACore defaults to -1; trtexec sets it before deserializing
            # (release/10.3 samples/common/sampleEngines.cpp:117-120).
            self._runtime.DLA_core = int(options.dla_core)
        if options.version_compatible:
            # A version-compatible plan embeds the lean runtime, which is host code (8.6+).
            self._runtime.engine_host_code_allowed = True
        engine = self._runtime.deserialize_cuda_engine(plan)
        if engine is None:  # TensorRT reports why only through the logger
            raise BackendError(deserialize_failure_message(self.model_path, self._logger.lines, sidecar))
        return engine

    def _find_io(self, tensors: List[IOTensor]) -> Tuple[IOTensor, IOTensor]:
        by_name = {tensor.name: tensor for tensor in tensors}
        for name in (self.spec.input_name, self.spec.output_name):
            if name not in by_name:
                raise BackendError(
                    f"engine {self.model_path} has tensors {sorted(by_name)} but its spec names {name!r}; rebuild it"
                )
        return by_name[self.spec.input_name], by_name[self.spec.output_name]

    def _prepare(self, shape: Tuple[int, ...]) -> _Buffers:
        """Pinned host + device buffers for this input shape, their addresses set on the context
        once (they stay set until the shape changes)."""
        if self._buffers is not None and self._buffers.shape == shape:
            return self._buffers
        self._free_buffers()
        if -1 in self._input.shape and not self._context.set_input_shape(self._input.name, shape):
            raise BackendError(
                f"the engine does not accept input {self._input.name!r} of shape {shape}: it is outside the engine's "
                "optimisation profile; rebuild with a profile covering it"
            )
        out_shape = tuple(int(dim) for dim in self._context.get_tensor_shape(self._output.name))
        if -1 in out_shape:
            raise BackendError(
                f"TensorRT left output {self._output.name!r} shape {out_shape} unresolved for input {shape}"
            )
        host_in = self._memory.pinned(shape, self._input.dtype)
        host_out = self._memory.pinned(out_shape, self._output.dtype)
        addresses = {
            self._input.name: self._memory.device(host_in.nbytes),
            self._output.name: self._memory.device(host_out.nbytes),
        }
        for name, pointer in addresses.items():
            self._context.set_tensor_address(name, pointer)
        self._buffers = _Buffers(shape, host_in, host_out, addresses)
        return self._buffers

    def _run(self, batch: np.ndarray) -> np.ndarray:
        engine_batch = self._input.shape[0] if self._input.shape[0] > 0 else None  # -1: a dynamic batch
        return in_model_batches(batch, engine_batch, self._run_one, f"engine {self.model_path}",
                                "Build it from an ONNX file with a dynamic batch")

    def _run_one(self, batch: np.ndarray) -> np.ndarray:
        with self._memory.activate():  # current in this thread for TensorRT's enqueue too
            buffers = self._prepare(tuple(batch.shape))
            np.copyto(buffers.host_in, batch, casting="same_kind")  # FP16-input engines: float32 -> float16
            self._memory.copy_to_device_async(buffers.addresses[self._input.name], buffers.host_in)
            if not self._context.execute_async_v3(self._memory.stream_handle):
                raise BackendError("TensorRT execute_async_v3 failed; see the TensorRT log above")
            self._memory.copy_to_host_async(buffers.host_out, buffers.addresses[self._output.name])
            self._memory.synchronize()
        # Copy out: the pinned buffer is overwritten by the next call.
        return buffers.host_out.astype(np.float32, copy=True)

    def _free_buffers(self) -> None:
        if self._buffers is None:
            return
        for pointer in self._buffers.addresses.values():
            self._memory.free_device(pointer)
        self._memory.free_pinned(self._buffers.host_in)
        self._memory.free_pinned(self._buffers.host_out)
        self._buffers = None

    def _release(self) -> None:
        with self._memory.activate():
            self._free_buffers()
            # Context before engine before runtime: the reverse of creation, with the GPU current.
            self._context = None
            self._engine = None
            self._runtime = None
        self._memory.close()
