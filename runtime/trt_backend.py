"""TensorRT backend: a serialised engine plus its sidecar JSON, run on one CUDA stream.

Written against the documented Python API of each generation (shared/reference/TENSORRT_API.md):
8.5/8.6 (JetPack 5 / 6.0), 10.x (JetPack 6.1/6.2, desktop) and 11.x. What differs lives in named
helpers chosen by feature probes: tensor enumeration (name API vs binding API), input shapes,
and execution (``execute_async_v3`` + tensor addresses vs ``execute_async_v2`` + bindings).
Device memory comes from pycuda when installed (NVIDIA's 8.5 samples), else cuda-python
(``cuda.bindings.runtime`` or the older ``cuda.cudart``, as in the 8.6-11.x samples).
tensorrt, pycuda and cuda-python are imported only when this backend is opened.
"""
from __future__ import annotations

import ctypes
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from edgedepth.errors import BackendError
from edgedepth.runtime.backend import Backend
from edgedepth.runtime.trt_support import (
    EXECUTE_V3,
    EngineSidecar,
    RunningPlatform,
    check_sidecar,
    deserialize_failure_message,
    probe_execution_api,
    read_sidecar,
)

LOG = logging.getLogger(__name__)


def import_tensorrt() -> Any:
    """``import tensorrt`` with a message that says where TensorRT comes from."""
    try:
        import tensorrt
    except ImportError as exc:
        raise BackendError(
            "TensorRT's Python bindings are not importable: on a Jetson they come with JetPack "
            "(`sudo apt install python3-libnvinfer`; in a venv use --system-site-packages); on a desktop "
            "`pip install tensorrt`. Or run the ONNX file with --backend onnxruntime"
        ) from exc
    return tensorrt


# ---------------------------------------------------------------------------------------------
# CUDA memory: one small interface, two implementations (pycuda, cuda-python)
# ---------------------------------------------------------------------------------------------


class PyCudaMemory:
    """Pinned host buffers, device buffers and a stream through pycuda (TensorRT 8.5 samples)."""

    library = "pycuda"

    def __init__(self) -> None:
        import pycuda.driver as cuda

        try:  # the primary context is shared with TensorRT and other libraries in the process
            import pycuda.autoprimaryctx  # noqa: F401
        except ImportError:  # pycuda < 2021.1
            import pycuda.autoinit  # noqa: F401
        self._cuda = cuda
        self._context = cuda.Context.get_current()
        self._threads = {threading.get_ident()}
        self._stream = cuda.Stream()
        self._device_allocations: Dict[int, Any] = {}

    def ensure_current(self) -> None:
        """Make the context current in the calling thread: pycuda pushed it only in the opening thread,
        and depth-run infers from a worker thread."""
        if threading.get_ident() not in self._threads:
            self._context.push()
            self._threads.add(threading.get_ident())

    @property
    def stream_handle(self) -> int:
        return int(self._stream.handle)

    def device_info(self) -> Tuple[str, str]:
        device = self._cuda.Context.get_device()
        major, minor = device.compute_capability()
        return str(device.name()), f"{major}.{minor}"

    def pinned(self, shape: Sequence[int], dtype: np.dtype) -> np.ndarray:
        return self._cuda.pagelocked_empty(tuple(shape), dtype)

    def device(self, nbytes: int) -> int:
        allocation = self._cuda.mem_alloc(max(int(nbytes), 1))
        self._device_allocations[int(allocation)] = allocation
        return int(allocation)

    def copy_to_device_async(self, device_ptr: int, host: np.ndarray) -> None:
        self._cuda.memcpy_htod_async(device_ptr, host, self._stream)

    def copy_to_host_async(self, host: np.ndarray, device_ptr: int) -> None:
        self._cuda.memcpy_dtoh_async(host, device_ptr, self._stream)

    def synchronize(self) -> None:
        self._stream.synchronize()

    def free_pinned(self, host: np.ndarray) -> None:
        base = host.base
        if hasattr(base, "free"):
            base.free()

    def free_device(self, device_ptr: int) -> None:
        allocation = self._device_allocations.pop(int(device_ptr), None)
        if allocation is not None:
            allocation.free()

    def close(self) -> None:
        for pointer in list(self._device_allocations):
            self.free_device(pointer)


def import_cudart() -> Any:
    """cuda-python's runtime module: ``cuda.bindings.runtime`` (12.6+) or ``cuda.cudart`` (older)."""
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        from cuda import cudart  # type: ignore[no-redef]
    return cudart


class CudaPythonMemory:
    """The same interface through cuda-python's runtime API (TensorRT 8.6-11.x samples)."""

    library = "cuda-python"

    def __init__(self) -> None:
        self._cudart = import_cudart()
        self._device = self._call(self._cudart.cudaGetDevice())
        self._threads = {threading.get_ident()}
        self._stream = self._call(self._cudart.cudaStreamCreate())

    def ensure_current(self) -> None:
        """Bind this process's device in the calling thread (the runtime API's contexts are per thread)."""
        if threading.get_ident() not in self._threads:
            self._call(self._cudart.cudaSetDevice(self._device))
            self._threads.add(threading.get_ident())

    def _call(self, result: Any) -> Any:
        """cuda-python returns (error, *values): raise on error, return the value(s)."""
        error, values = result[0], result[1:]
        if error != self._cudart.cudaError_t.cudaSuccess:
            _, text = self._cudart.cudaGetErrorString(error)
            raise BackendError(f"CUDA call failed: {error} ({text.decode(errors='replace') if text else ''})")
        return values[0] if len(values) == 1 else (values or None)

    @property
    def stream_handle(self) -> Any:
        # NVIDIA's cuda-python samples hand TensorRT the cudaStream_t object itself.
        return self._stream

    def device_info(self) -> Tuple[str, str]:
        props = self._call(self._cudart.cudaGetDeviceProperties(self._device))
        name = props.name.decode(errors="replace") if isinstance(props.name, bytes) else str(props.name)
        return name.split("\x00", 1)[0], f"{props.major}.{props.minor}"

    def pinned(self, shape: Sequence[int], dtype: np.dtype) -> np.ndarray:
        dtype = np.dtype(dtype)
        count = int(np.prod(shape))
        pointer = self._call(self._cudart.cudaMallocHost(max(count * dtype.itemsize, 1)))
        ctype_pointer = ctypes.cast(pointer, ctypes.POINTER(np.ctypeslib.as_ctypes_type(dtype)))
        return np.ctypeslib.as_array(ctype_pointer, (count,)).reshape(tuple(shape))

    def device(self, nbytes: int) -> int:
        return int(self._call(self._cudart.cudaMalloc(max(int(nbytes), 1))))

    def copy_to_device_async(self, device_ptr: int, host: np.ndarray) -> None:
        kind = self._cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._call(self._cudart.cudaMemcpyAsync(device_ptr, host.ctypes.data, host.nbytes, kind, self._stream))

    def copy_to_host_async(self, host: np.ndarray, device_ptr: int) -> None:
        kind = self._cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._call(self._cudart.cudaMemcpyAsync(host.ctypes.data, device_ptr, host.nbytes, kind, self._stream))

    def synchronize(self) -> None:
        self._call(self._cudart.cudaStreamSynchronize(self._stream))

    def free_pinned(self, host: np.ndarray) -> None:
        self._call(self._cudart.cudaFreeHost(host.ctypes.data))

    def free_device(self, device_ptr: int) -> None:
        self._call(self._cudart.cudaFree(device_ptr))

    def close(self) -> None:
        self._call(self._cudart.cudaStreamDestroy(self._stream))


def open_cuda_memory() -> Any:
    """pycuda when installed, else cuda-python; BackendError naming both when neither is."""
    try:
        import pycuda.driver  # noqa: F401
    except ImportError:
        try:
            return CudaPythonMemory()
        except ImportError as exc:
            raise BackendError(
                "the TensorRT backend needs pycuda or cuda-python for device memory: `pip install cuda-python` "
                "(or `pip install pycuda`; on a Jetson build it against JetPack's CUDA)"
            ) from exc
    return PyCudaMemory()


# ---------------------------------------------------------------------------------------------
# Per-generation helpers
# ---------------------------------------------------------------------------------------------


@dataclass
class IOTensor:
    """One engine input or output as TensorRT describes it."""

    name: str
    is_input: bool
    shape: Tuple[int, ...]
    dtype: np.dtype
    #: Binding index (binding API) or position among the I/O tensors (name API).
    index: int


def list_io_tensors(engine: Any, trt: Any) -> List[IOTensor]:
    """The engine's I/O tensors: name API (8.5+, only one in 10/11), else binding API (8.x)."""
    if hasattr(engine, "num_io_tensors"):
        return _io_tensors_by_name(engine, trt)
    return _io_tensors_by_binding(engine, trt)


def _io_tensors_by_name(engine: Any, trt: Any) -> List[IOTensor]:
    tensors = []
    for index in range(engine.num_io_tensors):
        name = engine.get_tensor_name(index)
        tensors.append(
            IOTensor(
                name=name,
                is_input=engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT,
                shape=tuple(engine.get_tensor_shape(name)),
                dtype=np.dtype(trt.nptype(engine.get_tensor_dtype(name))),
                index=index,
            )
        )
    return tensors


def _io_tensors_by_binding(engine: Any, trt: Any) -> List[IOTensor]:
    return [
        IOTensor(
            name=engine.get_binding_name(index),
            is_input=bool(engine.binding_is_input(index)),
            shape=tuple(engine.get_binding_shape(index)),
            dtype=np.dtype(trt.nptype(engine.get_binding_dtype(index))),
            index=index,
        )
        for index in range(engine.num_bindings)
    ]


def set_input_shape(context: Any, tensor: IOTensor, shape: Tuple[int, ...]) -> None:
    """Give a dynamic input its shape: ``set_input_shape`` (8.5+) or ``set_binding_shape`` (8.x)."""
    accepted = (
        context.set_input_shape(tensor.name, shape)
        if hasattr(context, "set_input_shape")
        else context.set_binding_shape(tensor.index, shape)
    )
    if accepted is False:
        raise BackendError(
            f"the engine does not accept input {tensor.name!r} of shape {shape}: it is outside the engine's "
            "optimisation profile; rebuild with a profile covering it"
        )


def output_shape(context: Any, tensor: IOTensor) -> Tuple[int, ...]:
    """An output's shape once input shapes are set (``get_tensor_shape`` 8.5+, else binding API)."""
    if hasattr(context, "get_tensor_shape"):
        shape = context.get_tensor_shape(tensor.name)
    else:
        shape = context.get_binding_shape(tensor.index)
    return tuple(int(dim) for dim in shape)


def execute_v3(context: Any, addresses: Dict[str, int], stream_handle: Any) -> None:
    """TensorRT 8.5+ (the only async path in 10/11): tensor addresses by name, then enqueue."""
    for name, pointer in addresses.items():
        context.set_tensor_address(name, pointer)
    if not context.execute_async_v3(stream_handle):
        raise BackendError("TensorRT execute_async_v3 failed; see the TensorRT log above")


def execute_v2(context: Any, tensors: List[IOTensor], addresses: Dict[str, int], stream_handle: Any) -> None:
    """TensorRT 8.x binding API: a list of device pointers in binding order."""
    bindings = [0] * (max(t.index for t in tensors) + 1)
    for tensor in tensors:
        bindings[tensor.index] = addresses[tensor.name]
    if not context.execute_async_v2(bindings=bindings, stream_handle=stream_handle):
        raise BackendError("TensorRT execute_async_v2 failed; see the TensorRT log above")


def make_collecting_logger(trt: Any) -> Any:
    """A TensorRT logger that keeps warnings/errors so a failed deserialisation can quote them."""

    class CollectingLogger(trt.ILogger):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.lines: List[str] = []

        def log(self, severity: Any, msg: str) -> None:
            if severity <= trt.ILogger.Severity.WARNING:  # lower value = more severe
                self.lines.append(str(msg))
                LOG.warning("TensorRT: %s", msg)

    return CollectingLogger()


def running_platform(trt: Any, memory: Any) -> RunningPlatform:
    """The TensorRT version and GPU this process runs on."""
    gpu_name, compute = memory.device_info()
    return RunningPlatform(tensorrt_version=str(trt.__version__), gpu_name=gpu_name, compute_capability=compute)


# ---------------------------------------------------------------------------------------------
# The backend
# ---------------------------------------------------------------------------------------------


@dataclass
class _Buffers:
    shape: Tuple[int, ...]
    host_in: np.ndarray
    host_out: np.ndarray
    addresses: Dict[str, int]


class TensorRTBackend(Backend):
    """Runs an engine built by ``depth-export engine``; checks its sidecar against this machine first."""

    name = "tensorrt"

    def __init__(self, model_path: str) -> None:
        sidecar = read_sidecar(model_path)
        super().__init__(sidecar.spec, model_path)
        self.sidecar = sidecar
        self._trt = import_tensorrt()
        self._memory = open_cuda_memory()
        self._buffers: Optional[_Buffers] = None
        try:
            self._load(Path(model_path).read_bytes())
        except BaseException:
            self._memory.close()
            raise

    def _load(self, plan: bytes) -> None:
        for warning in check_sidecar(self.sidecar, running_platform(self._trt, self._memory), self.model_path):
            LOG.warning("%s", warning)
        self._logger = make_collecting_logger(self._trt)
        self._runtime = self._trt.Runtime(self._logger)
        self._engine = self._deserialize(plan, self.sidecar)
        self._context = self._engine.create_execution_context()
        if self._context is None:
            raise BackendError(f"TensorRT could not create an execution context for {self.model_path} (out of GPU memory?)")
        self._api = probe_execution_api(self._engine, self._context)
        self._input, self._output = self._find_io(list_io_tensors(self._engine, self._trt))

    @property
    def detail(self) -> str:
        return f"tensorrt {self._trt.__version__} ({self.sidecar.precision}, {self._api}, {self._memory.library})"

    def _deserialize(self, plan: bytes, sidecar: EngineSidecar) -> Any:
        if sidecar.build_options.get("version_compatible") and hasattr(self._runtime, "engine_host_code_allowed"):
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
        """Pinned host + device buffers for this input shape (kept while the shape repeats)."""
        if self._buffers is not None and self._buffers.shape == shape:
            return self._buffers
        self._free_buffers()
        if -1 in self._input.shape:
            set_input_shape(self._context, self._input, shape)
        out_shape = output_shape(self._context, self._output)
        if -1 in out_shape:
            raise BackendError(f"TensorRT left output {self._output.name!r} shape {out_shape} unresolved for input {shape}")
        host_in = self._memory.pinned(shape, self._input.dtype)
        host_out = self._memory.pinned(out_shape, self._output.dtype)
        addresses = {
            self._input.name: self._memory.device(host_in.nbytes),
            self._output.name: self._memory.device(host_out.nbytes),
        }
        self._buffers = _Buffers(shape, host_in, host_out, addresses)
        return self._buffers

    def _run(self, batch: np.ndarray) -> np.ndarray:
        step = self._input.shape[0] if self._input.shape[0] > 0 else batch.shape[0]
        if batch.shape[0] % step:
            raise BackendError(
                f"engine {self.model_path} has a fixed batch of {step}; got {batch.shape[0]} images. "
                "Build it from an ONNX file with a dynamic batch"
            )
        # A fixed-batch engine still serves bigger batches, one engine batch at a time.
        parts = [self._run_one(batch[start : start + step]) for start in range(0, batch.shape[0], step)]
        return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)

    def _run_one(self, batch: np.ndarray) -> np.ndarray:
        self._memory.ensure_current()
        buffers = self._prepare(tuple(batch.shape))
        np.copyto(buffers.host_in, batch, casting="same_kind")
        self._memory.copy_to_device_async(buffers.addresses[self._input.name], buffers.host_in)
        if self._api == EXECUTE_V3:
            execute_v3(self._context, buffers.addresses, self._memory.stream_handle)
        else:
            execute_v2(self._context, [self._input, self._output], buffers.addresses, self._memory.stream_handle)
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
        self._memory.ensure_current()
        self._free_buffers()
        # Context before engine before runtime: the reverse of creation.
        self._context = None
        self._engine = None
        self._runtime = None
        self._memory.close()
