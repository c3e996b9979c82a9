"""The legacy implicit-INT8 calibrator (TensorRT 8.5 to 10.x): a thin adapter over plain batches.

TensorRT calls ``get_batch`` / ``read_calibration_cache`` / ``write_calibration_cache`` from its
builder, and the pybind11 trampolines *swallow* exceptions raised in them (printed as "Exception
caught in get_batch()", then treated as "no more data": NVIDIA/TensorRT@release/8.5
``python/src/infer/pyInt8.cpp:52-76``). So every callback stores its error, and :meth:`check`
raises it after the build. What the cache means (which model, preprocessing, shape) is the
calibration stage's business: it passes ``read_cache`` / ``write_cache`` callables.

TensorRT 10.1 deprecated the calibrator API and 11.0 removed it.
"""
from __future__ import annotations

from typing import Any, Callable, List, Optional, Protocol, cast

import numpy as np

from edgedepth.errors import DeviceError
from edgedepth.trt.memory import CudaMemory, open_cuda_memory

#: Our method names -> TensorRT calibrator classes (TensorRT has no percentile calibrator).
CALIBRATOR_CLASSES = {"entropy": "IInt8EntropyCalibrator2", "minmax": "IInt8MinMaxCalibrator"}


def calibrator_base(trt: Any, algorithm: str) -> Any:
    """The TensorRT calibrator class for ``algorithm``; DeviceError on TensorRT 11+."""
    name = CALIBRATOR_CLASSES[algorithm]
    base = getattr(trt, name, None)
    if base is None:
        raise DeviceError(
            f"TensorRT {getattr(trt, '__version__', '?')} has no {name}: TensorRT 11 removed implicit INT8 "
            "calibration; build the engine from the Q/DQ ONNX that `depth-calib --output` writes"
        )
    return base


class BatchSource(Protocol):
    """What the adapter needs from the calibration stage: batches of one shape, served once."""

    served: int

    def __len__(self) -> int: ...

    def next(self) -> Optional[np.ndarray]:
        """The next batch, or None when all were served (TensorRT then stops calibrating)."""


def create_calibrator(
    trt: Any,
    algorithm: str,
    source: BatchSource,
    batch_size: int,
    read_cache: Callable[[], Optional[bytes]],
    write_cache: Callable[[bytes], None],
    memory_factory: Callable[[], CudaMemory] = open_cuda_memory,
) -> Any:
    """A ``trt.IInt8*Calibrator`` serving ``source`` (device memory opened on first use), reading
    and writing the cache through the given callables. After the build call ``check()``, then
    ``close()``."""
    base = calibrator_base(trt, algorithm)
    version = str(getattr(trt, "__version__", "?"))

    # The base is chosen at run time (the algorithm's TensorRT class), which mypy cannot follow.
    class EdgeDepthCalibrator(base):  # type: ignore[misc, valid-type]
        """TensorRT calibrator over edgedepth calibration batches."""

        def __init__(self) -> None:
            base.__init__(self)  # pybind11 trampolines need the base constructor called explicitly
            self.source, self.algorithm = source, algorithm
            self.memory: Optional[CudaMemory] = None
            self.device_pointer: Optional[int] = None
            self.errors: List[BaseException] = []
            self.cache_served = False
            self.cache_written = False

        def get_batch_size(self) -> int:
            return int(batch_size)

        def get_batch(self, names: List[str]) -> Optional[List[int]]:
            try:
                batch = self.source.next()
                if batch is None:
                    if self.cache_served and self.source.served == 0:
                        raise DeviceError(
                            f"TensorRT {version} did not accept the calibration cache and asked for images, "
                            "but there are none: the cache was written by another TensorRT; "
                            "recalibrate on this one with `depth-calib --cache`"
                        )
                    return None
                return [self._upload(batch)] * len(names)
            except Exception as exc:  # noqa: BLE001 - TensorRT would swallow it and stop calibrating silently
                self.errors.append(exc)
                return None

        def _upload(self, batch: np.ndarray) -> int:
            if self.memory is None:
                self.memory = memory_factory()
                self.device_pointer = self.memory.device(batch.nbytes)
            pointer = cast(int, self.device_pointer)  # allocated together with self.memory
            self.memory.copy_to_device_async(pointer, np.ascontiguousarray(batch))
            self.memory.synchronize()
            return int(pointer)

        def read_calibration_cache(self) -> Optional[bytes]:
            try:
                data = read_cache()
                self.cache_served = data is not None
                return data
            except Exception as exc:  # noqa: BLE001
                self.errors.append(exc)
                return None

        def write_calibration_cache(self, cache: Any) -> None:
            try:
                write_cache(bytes(cache))
                self.cache_written = True
            except Exception as exc:  # noqa: BLE001
                self.errors.append(exc)

        def check(self) -> None:
            """Raise the first error a TensorRT callback hit (DeviceError, its cause chained)."""
            if self.errors:
                first = self.errors[0]
                raise DeviceError(f"TensorRT INT8 calibration failed inside a callback: {first}") from first

        def close(self) -> None:
            if self.memory is not None:
                self.memory.close()
            self.memory, self.device_pointer = None, None

    return EdgeDepthCalibrator()
