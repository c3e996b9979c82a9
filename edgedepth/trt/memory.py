"""CUDA memory for TensorRT from Python: pinned host buffers, device buffers, one stream.

One interface, two libraries:

* :class:`CudaPythonMemory` (cuda-python, preferred: NVIDIA's samples from 8.6 on, and the only
  library in 10.14+ samples). The runtime API binds the device's primary context to any thread
  on first use; :meth:`activate` calls ``cudaSetDevice`` once per thread (a ``threading.local``,
  so a new thread that reuses an old thread's ident is bound too).
* :class:`PyCudaMemory` (pycuda: JetPack 5 boxes where only pycuda builds against CUDA 11.4).
  pycuda keeps a context stack per thread and *aborts the process* when a thread exits with a
  non-empty stack (inducer/pycuda ``src/cpp/cuda.hpp`` ``context_stack::~context_stack``;
  NVIDIA/TensorRT#1107, #2357). So the device's primary context is pushed and popped around
  every call, from whatever thread makes it, and never left current.

TensorRT calls that need a current context (deserialize, create the execution context, enqueue)
go inside ``with memory.activate():`` for the same reason.
"""
from __future__ import annotations

import abc
import ctypes
import os
import threading
from contextlib import contextmanager
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from edgedepth.errors import DeviceError
from edgedepth.trt import imports

LIBRARIES = ("cuda-python", "pycuda")
#: Forces one library (``cuda-python`` or ``pycuda``) for every CUDA memory edgedepth opens.
LIBRARY_ENV = "EDGEDEPTH_CUDA_LIBRARY"


class CudaMemory(abc.ABC):
    """Pinned host buffers, device buffers and one stream on one GPU; usable from any thread."""

    library = "cuda"

    @abc.abstractmethod
    def activate(self) -> Any:
        """Context manager: the GPU is current in the calling thread inside it."""

    @property
    @abc.abstractmethod
    def stream_handle(self) -> int:
        """The stream as the integer TensorRT's ``execute_async_v3`` takes."""

    @abc.abstractmethod
    def pinned(self, shape: Sequence[int], dtype: Any) -> np.ndarray:
        """A page-locked host array (any dtype, float16 included)."""

    @abc.abstractmethod
    def device(self, nbytes: int) -> int:
        """A device buffer of ``nbytes``; its address."""

    @abc.abstractmethod
    def copy_to_device_async(self, device_ptr: int, host: np.ndarray) -> None:
        """Enqueue host -> device on the stream."""

    @abc.abstractmethod
    def copy_to_host_async(self, host: np.ndarray, device_ptr: int) -> None:
        """Enqueue device -> host on the stream."""

    @abc.abstractmethod
    def synchronize(self) -> None:
        """Wait for everything enqueued on the stream."""

    @abc.abstractmethod
    def free_pinned(self, host: np.ndarray) -> None:
        """Free an array from :meth:`pinned`."""

    @abc.abstractmethod
    def free_device(self, device_ptr: int) -> None:
        """Free a buffer from :meth:`device`."""

    @abc.abstractmethod
    def close(self) -> None:
        """Free every buffer still held and the stream. Safe to call twice."""

    def __enter__(self) -> "CudaMemory":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _pinned_view(pointer: int, shape: Sequence[int], dtype: Any) -> np.ndarray:
    """A numpy array over ``pointer``: bytes first, then ``.view(dtype)``.

    ``np.ctypeslib.as_ctypes_type`` raises NotImplementedError for float16, so NVIDIA's samples
    moved to a ``c_ubyte`` view (NVIDIA/TensorRT@release/11.0 ``samples/python/common_runtime.py``).
    """
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    raw = np.ctypeslib.as_array(ctypes.cast(pointer, ctypes.POINTER(ctypes.c_ubyte)), (max(nbytes, 1),))
    return raw[:nbytes].view(dtype).reshape(tuple(shape))


class CudaPythonMemory(CudaMemory):
    """:class:`CudaMemory` through cuda-python's runtime API."""

    library = "cuda-python"

    def __init__(self, device: int = 0) -> None:
        cudart = imports.import_cudart()
        if cudart is None:
            raise DeviceError("cuda-python is not installed")
        self._rt, self._device = cudart, int(device)
        self._bound = threading.local()
        self._pinned: Dict[int, int] = {}  # host address -> allocation (for close)
        self._allocations: List[int] = []
        self._stream: Any = None
        with self.activate():
            self._stream = self._call(cudart.cudaStreamCreate(), "cudaStreamCreate")
        self._handle = imports.native_handle(self._stream)

    def _call(self, result: Any, what: str) -> Any:
        """cuda-python returns ``(error, *values)``: raise DeviceError on error, return the value(s)."""
        error, values = result[0], result[1:]
        if error != self._rt.cudaError_t.cudaSuccess:
            _, text = self._rt.cudaGetErrorString(error)
            message = text.decode(errors="replace") if isinstance(text, bytes) else str(text)
            raise DeviceError(f"CUDA {what} failed: {message} ({error})")
        return values[0] if len(values) == 1 else (values or None)

    @contextmanager
    def activate(self) -> Iterator[None]:
        if getattr(self._bound, "device", None) != self._device:
            self._call(self._rt.cudaSetDevice(self._device), "cudaSetDevice")
            self._bound.device = self._device
        yield

    @property
    def stream_handle(self) -> int:
        return self._handle

    def pinned(self, shape: Sequence[int], dtype: Any) -> np.ndarray:
        nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        with self.activate():
            pointer = int(self._call(self._rt.cudaMallocHost(max(nbytes, 1)), "cudaMallocHost"))
        array = _pinned_view(pointer, shape, dtype)
        self._pinned[array.ctypes.data] = pointer
        return array

    def device(self, nbytes: int) -> int:
        with self.activate():
            pointer = int(self._call(self._rt.cudaMalloc(max(int(nbytes), 1)), "cudaMalloc"))
        self._allocations.append(pointer)
        return pointer

    def _copy(self, dst: int, src: int, nbytes: int, kind: Any) -> None:
        with self.activate():
            self._call(self._rt.cudaMemcpyAsync(dst, src, nbytes, kind, self._stream), "cudaMemcpyAsync")

    def copy_to_device_async(self, device_ptr: int, host: np.ndarray) -> None:
        self._copy(device_ptr, host.ctypes.data, host.nbytes, self._rt.cudaMemcpyKind.cudaMemcpyHostToDevice)

    def copy_to_host_async(self, host: np.ndarray, device_ptr: int) -> None:
        self._copy(host.ctypes.data, device_ptr, host.nbytes, self._rt.cudaMemcpyKind.cudaMemcpyDeviceToHost)

    def synchronize(self) -> None:
        with self.activate():
            self._call(self._rt.cudaStreamSynchronize(self._stream), "cudaStreamSynchronize")

    def free_pinned(self, host: np.ndarray) -> None:
        pointer = self._pinned.pop(host.ctypes.data, None)
        if pointer is not None:
            with self.activate():
                self._call(self._rt.cudaFreeHost(pointer), "cudaFreeHost")

    def free_device(self, device_ptr: int) -> None:
        if int(device_ptr) in self._allocations:
            self._allocations.remove(int(device_ptr))
            with self.activate():
                self._call(self._rt.cudaFree(int(device_ptr)), "cudaFree")

    def close(self) -> None:
        if self._stream is None:
            return
        with self.activate():
            for pointer in list(self._allocations):
                self.free_device(pointer)
            for pointer in list(self._pinned.values()):
                self._call(self._rt.cudaFreeHost(pointer), "cudaFreeHost")
            self._pinned.clear()
            self._call(self._rt.cudaStreamDestroy(self._stream), "cudaStreamDestroy")
        self._stream = None


#: One retained primary context per device for the process: pycuda releases a primary context
#: only from the thread that retained it, so it is retained once and kept (TensorRT holds it too).
_PRIMARY_CONTEXTS: Dict[int, Any] = {}
_PRIMARY_LOCK = threading.Lock()


def _primary_context(driver: Any, device: int) -> Any:
    with _PRIMARY_LOCK:
        if device not in _PRIMARY_CONTEXTS:
            _PRIMARY_CONTEXTS[device] = driver.Device(device).retain_primary_context()
        return _PRIMARY_CONTEXTS[device]


class PyCudaMemory(CudaMemory):
    """:class:`CudaMemory` through pycuda, the primary context pushed and popped around every call."""

    library = "pycuda"

    def __init__(self, device: int = 0) -> None:
        driver = imports.import_pycuda()
        if driver is None:
            raise DeviceError("pycuda is not installed")
        self._cuda = driver
        self._context = _primary_context(driver, int(device))
        self._pinned: List[np.ndarray] = []
        self._allocations: Dict[int, Any] = {}
        self._stream: Any = None
        with self.activate():
            self._stream = driver.Stream()
        self._handle = int(self._stream.handle)

    @contextmanager
    def activate(self) -> Iterator[None]:
        self._context.push()
        try:
            yield
        finally:
            self._cuda.Context.pop()

    @property
    def stream_handle(self) -> int:
        return self._handle

    def pinned(self, shape: Sequence[int], dtype: Any) -> np.ndarray:
        with self.activate():
            array = self._cuda.pagelocked_empty(tuple(shape), np.dtype(dtype))
        self._pinned.append(array)
        return array

    def device(self, nbytes: int) -> int:
        with self.activate():
            allocation = self._cuda.mem_alloc(max(int(nbytes), 1))
        self._allocations[int(allocation)] = allocation
        return int(allocation)

    def copy_to_device_async(self, device_ptr: int, host: np.ndarray) -> None:
        with self.activate():
            self._cuda.memcpy_htod_async(device_ptr, host, self._stream)

    def copy_to_host_async(self, host: np.ndarray, device_ptr: int) -> None:
        with self.activate():
            self._cuda.memcpy_dtoh_async(host, device_ptr, self._stream)

    def synchronize(self) -> None:
        with self.activate():
            self._stream.synchronize()

    def free_pinned(self, host: np.ndarray) -> None:
        for index, array in enumerate(self._pinned):
            if array is host:
                del self._pinned[index]
                allocation: Any = array.base  # pycuda's page-locked host allocation owns the array
                with self.activate():
                    allocation.free()
                return

    def free_device(self, device_ptr: int) -> None:
        allocation = self._allocations.pop(int(device_ptr), None)
        if allocation is not None:
            with self.activate():
                allocation.free()

    def close(self) -> None:
        if self._stream is None:
            return
        for pointer in list(self._allocations):
            self.free_device(pointer)
        for array in list(self._pinned):
            self.free_pinned(array)
        with self.activate():
            self._stream = None  # the stream is destroyed with its context current


_OPENERS: Dict[str, Callable[[int], CudaMemory]] = {"cuda-python": CudaPythonMemory, "pycuda": PyCudaMemory}


def requested_library(library: Optional[str] = None) -> Optional[str]:
    """``library``, else ``$EDGEDEPTH_CUDA_LIBRARY``, else None (automatic); checked against :data:`LIBRARIES`."""
    chosen = library or os.environ.get(LIBRARY_ENV) or None
    if chosen is not None and chosen not in LIBRARIES:
        origin = "the argument" if library else LIBRARY_ENV
        raise DeviceError(f"CUDA library {chosen!r} (from {origin}) is unknown: use one of {', '.join(LIBRARIES)}")
    return chosen


def open_cuda_memory(library: Optional[str] = None, device: int = 0) -> CudaMemory:
    """CUDA memory on ``device``: cuda-python, else pycuda when cuda-python is missing or fails
    (e.g. a cuda-python newer than the driver). ``library`` (or ``$EDGEDEPTH_CUDA_LIBRARY``)
    forces one. DeviceError listing what each library answered when none works."""
    chosen = requested_library(library)
    failures: List[Tuple[str, str]] = []
    for name in (chosen,) if chosen else LIBRARIES:
        try:
            return _OPENERS[name](device)
        except Exception as exc:  # noqa: BLE001 - the next library may work where this one did not
            failures.append((name, str(exc)))
    detail = "; ".join(f"{name}: {reason}" for name, reason in failures)
    raise DeviceError(f"no CUDA library could open GPU {device} ({detail}); {imports.CUDA_HINT}")


def available_libraries() -> List[str]:
    """The CUDA libraries importable here (not necessarily able to reach a GPU)."""
    found = []
    if imports.import_cudart() is not None:
        found.append("cuda-python")
    try:
        if imports.import_pycuda() is not None:
            found.append("pycuda")
    except Exception:  # noqa: BLE001 - pycuda imports but cuInit fails without a driver
        pass
    return found
