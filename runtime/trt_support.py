"""TensorRT engine bookkeeping that needs neither TensorRT nor a GPU, so it is tested everywhere.

An engine plan runs only on the TensorRT version and GPU it was built for, and TensorRT itself
answers a mismatch with ``None`` and a log line. ``depth-export engine`` therefore writes a
sidecar (``model.engine.json``, format and compatibility rules in
:mod:`edgedepth.export.engine_meta`) holding the ModelSpec and the build platform; the runtime
checks it against the running platform first and, on a mismatch, names both and the exact
rebuild command.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional

from edgedepth.errors import BackendError, EdgeDepthError
from edgedepth.export import engine_meta
from edgedepth.spec import ModelSpec

#: Execution-API helpers (see ``choose_execution_api``).
EXECUTE_V3 = "execute_async_v3"
EXECUTE_V2 = "execute_async_v2"


@dataclass
class EngineSidecar:
    """The parts of an engine's sidecar the runtime uses, plus the raw dict."""

    spec: ModelSpec
    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    precision: str
    source_onnx: str
    build_options: Dict[str, Any]
    raw: Dict[str, Any]


@dataclass
class RunningPlatform:
    """The TensorRT version and GPU this process would run the engine on."""

    tensorrt_version: str
    gpu_name: str
    compute_capability: str


def read_sidecar(engine_path: str) -> EngineSidecar:
    """Load ``<engine>.json`` written by depth-export; BackendError saying how to get a good one."""
    try:
        raw = engine_meta.read_sidecar(engine_path)
        return parse_sidecar(raw)
    except BackendError:
        raise
    except EdgeDepthError as exc:
        raise BackendError(f"cannot run engine {engine_path}: {exc}") from exc


def parse_sidecar(raw: Mapping[str, Any]) -> EngineSidecar:
    """Typed view of a sidecar dict; BackendError naming the first missing or invalid part."""
    try:
        spec = engine_meta.sidecar_spec(raw)
        gpu = raw["gpu"]
        return EngineSidecar(
            spec=spec,
            tensorrt_version=str(raw["tensorrt_version"]),
            gpu_name=str(gpu["name"]),
            compute_capability=str(gpu["compute_capability"]),
            precision=str(raw.get("precision", "fp16")),
            source_onnx=str((raw.get("source_onnx") or {}).get("name", "")),
            build_options=dict(raw.get("build_options") or {}),
            raw=dict(raw),
        )
    except (KeyError, TypeError, AttributeError) as exc:
        raise BackendError(f"engine sidecar lacks or mangles {exc}; rebuild the engine with `depth-export engine`") from exc
    except EdgeDepthError as exc:
        raise BackendError(f"engine sidecar holds an invalid model spec ({exc}); rebuild the engine") from exc


def rebuild_command(sidecar: EngineSidecar, engine_path: str) -> str:
    """The depth-export command that rebuilds this engine, with the options it was built with."""
    onnx = sidecar.source_onnx or "MODEL.onnx"
    command = f"depth-export engine --onnx {onnx} --output {engine_path} --precision {sidecar.precision}"
    if sidecar.build_options.get("version_compatible"):
        command += " --version-compatible"
    hardware = sidecar.build_options.get("hardware_compatibility", "none")
    if hardware and hardware != "none":
        command += f" --hardware-compatibility {hardware}"
    return command


def check_sidecar(sidecar: EngineSidecar, running: RunningPlatform, engine_path: str) -> List[str]:
    """Raise BackendError when the engine cannot run here; return warnings for soft mismatches."""
    gpu = engine_meta.GpuInfo(running.gpu_name, running.compute_capability)
    problem = engine_meta.compatibility_problem(sidecar.raw, running.tensorrt_version, gpu)
    if problem:
        raise BackendError(f"engine {engine_path}: {problem}: `{rebuild_command(sidecar, engine_path)}`")
    if sidecar.gpu_name.strip().lower() != running.gpu_name.strip().lower():
        return [
            f"engine {engine_path} was built on {sidecar.gpu_name} and runs on {running.gpu_name} (same compute "
            f"{running.compute_capability}): it loads, but its kernels were tuned for the other GPU; for best speed "
            f"`{rebuild_command(sidecar, engine_path)}`"
        ]
    return []


def choose_execution_api(has_name_api: bool, has_execute_v3: bool, has_execute_v2: bool) -> str:
    """Which execution helper fits the installed TensorRT.

    ``execute_async_v3`` with tensor addresses exists from 8.5 on and is the only async path in
    10/11; ``execute_async_v2`` with a bindings list exists in 8.x only (removed in 10.0).
    """
    if has_name_api and has_execute_v3:
        return EXECUTE_V3
    if has_execute_v2:
        return EXECUTE_V2
    raise BackendError(
        "this TensorRT has neither execute_async_v3 nor execute_async_v2; edgedepth supports TensorRT 8.5 and later"
    )


def probe_execution_api(engine: Any, context: Any) -> str:
    """``choose_execution_api`` from feature probes on live TensorRT objects (never version arithmetic)."""
    return choose_execution_api(
        has_name_api=hasattr(engine, "num_io_tensors") and hasattr(context, "set_tensor_address"),
        has_execute_v3=hasattr(context, "execute_async_v3"),
        has_execute_v2=hasattr(context, "execute_async_v2"),
    )


def deserialize_failure_message(engine_path: str, log_lines: List[str], sidecar: Optional[EngineSidecar]) -> str:
    """One line for a ``deserialize_cuda_engine`` that returned None, quoting TensorRT's own reason."""
    errors = [line for line in log_lines if line.strip()]
    reason = errors[-1] if errors else "TensorRT logged no reason"
    fix = f"rebuild it: `{rebuild_command(sidecar, engine_path)}`" if sidecar else "rebuild it with depth-export engine"
    return f"TensorRT could not deserialise {engine_path} ({reason}); the file is damaged or from another platform: {fix}"
