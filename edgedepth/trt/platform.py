"""The one GPU/platform query: name, compute capability, integrated (Jetson) or not, CPU and OS.

A TensorRT plan is tied to the GPU's compute capability and never portable across platforms
(x86_64 <-> aarch64, Linux <-> Windows, desktop <-> Jetson: TensorRT 11.4.1 support matrix,
"Engine Portability"), so the engine sidecar records all of it. cuda-python is asked first;
pycuda answers when cuda-python is missing *or fails* (a cuda-python newer than the driver
fails at its first call, which is the usual state of a JetPack 5/6 box after a plain
``pip install cuda-python``).
"""
from __future__ import annotations

import platform as host
from dataclasses import asdict, dataclass
from typing import Any, Dict, List, Mapping, Optional

from edgedepth.errors import DeviceError
from edgedepth.trt import imports


@dataclass(frozen=True)
class GpuInfo:
    """The GPU and host an engine is built for or runs on.

    ``integrated`` is True on Jetson (the GPU shares the SoC's memory), None when unknown
    (sidecars written before edgedepth recorded it).
    """

    name: str
    compute_capability: str
    integrated: Optional[bool] = None
    machine: str = ""
    system: str = ""

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "GpuInfo":
        integrated = data.get("integrated")
        return cls(
            name=str(data["name"]),
            compute_capability=str(data["compute_capability"]),
            integrated=None if integrated is None else bool(integrated),
            machine=str(data.get("machine") or ""),
            system=str(data.get("system") or ""),
        )

    @property
    def platform_label(self) -> str:
        kind = {True: "Jetson/integrated GPU", False: "discrete GPU", None: "GPU"}[self.integrated]
        return f"{self.system or '?'} {self.machine or '?'} {kind}"


def _decode(name: Any) -> str:
    text = name.decode(errors="replace") if isinstance(name, bytes) else str(name)
    return text.split("\x00", 1)[0].strip()


def _host_fields() -> Dict[str, str]:
    return {"machine": host.machine(), "system": host.system()}


def _query_cuda_python(device: int) -> GpuInfo:
    cudart = imports.import_cudart()
    if cudart is None:
        raise ImportError("cuda-python is not installed")
    err, props = cudart.cudaGetDeviceProperties(device)
    if err != cudart.cudaError_t.cudaSuccess:
        _, text = cudart.cudaGetErrorString(err)
        raise RuntimeError(f"cudaGetDeviceProperties: {_decode(text) or err}")
    return GpuInfo(_decode(props.name), f"{props.major}.{props.minor}", bool(props.integrated), **_host_fields())


def _query_pycuda(device: int) -> GpuInfo:
    driver = imports.import_pycuda()
    if driver is None:
        raise ImportError("pycuda is not installed")
    # Device queries need no context, so none is created or left current here.
    gpu = driver.Device(device)
    major, minor = gpu.compute_capability()
    integrated = bool(gpu.get_attribute(driver.device_attribute.INTEGRATED))
    return GpuInfo(str(gpu.name()), f"{major}.{minor}", integrated, **_host_fields())


def query_gpu(device: int = 0) -> GpuInfo:
    """The GPU ``device`` of this machine; DeviceError saying what each CUDA library answered."""
    failures: List[str] = []
    for library, query in (("cuda-python", _query_cuda_python), ("pycuda", _query_pycuda)):
        try:
            return query(device)
        except Exception as exc:  # noqa: BLE001 - any failure of one library hands over to the next
            failures.append(f"{library}: {exc}")
    raise DeviceError(
        f"cannot query CUDA device {device} ({'; '.join(failures)}): is the NVIDIA driver loaded? "
        f"If it is, {imports.CUDA_HINT}"
    )
