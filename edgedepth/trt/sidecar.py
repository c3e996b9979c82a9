"""The engine sidecar (``model.engine.json``): written by ``depth-export engine``, read by the
runtime, parity and ``depth-export info``, all through :class:`EngineSidecar`.

A TensorRT plan runs only on the TensorRT release, GPU compute capability and platform it was
built for, and TensorRT answers a mismatch with ``None`` from ``deserialize_cuda_engine`` and a
log line (TensorRT 11.4.1 support matrix: no compatibility pre-check API). The sidecar says what
the plan was built for, so a mismatch is refused before deserializing, naming both sides and
the command that rebuilds the engine. Pure logic: no TensorRT.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple, Union

from edgedepth import __version__
from edgedepth.camera import is_number
from edgedepth.errors import DeviceError, ExportError, SpecError
from edgedepth.io import write_json_atomic
from edgedepth.spec import ModelSpec
from edgedepth.trt.platform import GpuInfo

SIDECAR_FORMAT = "edgedepth-engine"
#: 2 added the platform (machine, OS, integrated GPU) and the FP32-pinned nodes.
SIDECAR_FORMAT_VERSION = 2
PathLike = Union[str, Path]

#: Major-version steps a version-compatible plan survives: 8 -> 9 and 8 -> 10, 9 -> 10, 10 -> 11
#: ("Engines built with TensorRT 8 work with TensorRT 9 and TensorRT 10 runtimes", 10.16.1
#: version-compatibility page); 8 -> 11 is not supported (11.4.1 support matrix).
_VERSION_COMPATIBLE_STEPS = {(8, 8), (9, 9), (10, 10), (11, 11), (8, 9), (8, 10), (9, 10), (10, 11)}


@dataclass(frozen=True)
class BuildOptions:
    """How an engine was built: recorded in the sidecar and in the engine cache key."""

    precision: str
    workspace_gib: Optional[float] = None
    dla_core: Optional[int] = None
    version_compatible: bool = False
    hardware_compatibility: str = "none"
    calibration_cache_sha256: Optional[str] = None
    strongly_typed: bool = False
    builder_flags: Tuple[str, ...] = ()
    cleared_flags: Tuple[str, ...] = ()
    #: ONNX nodes whose layers were asked to run in FP32 (head, depth-calib's kept nodes).
    fp32_nodes: Tuple[str, ...] = ()
    #: INT8 engines: what the layers without Q/DQ run in ("fp16" or "fp32").
    unquantized_precision: Optional[str] = None

    def to_dict(self) -> Dict[str, Any]:
        data = dataclasses.asdict(self)
        return {key: list(value) if isinstance(value, tuple) else value for key, value in data.items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "the sidecar") -> "BuildOptions":
        """Parse ``build_options``; ExportError naming a field of the wrong type. Unknown keys
        (written by a newer edgedepth) are ignored."""
        values: Dict[str, Any] = {}
        for name, kind in _OPTION_KINDS.items():
            if name in data:
                value = _checked(data, name, kind, where, "build_options.")
                values[name] = tuple(value) if isinstance(value, list) else value
        if "precision" not in values:
            raise ExportError(f"{where} lacks the field build_options.precision; {_REBUILD}")
        return cls(**values)


@dataclass(frozen=True)
class EngineSidecar:
    """Everything an engine file does not say about itself."""

    model_spec: ModelSpec
    tensorrt_version: str
    tensorrt_generation: str
    gpu: GpuInfo
    precision: str
    shapes: Dict[str, Any]
    source_onnx: Dict[str, str]
    build_options: BuildOptions
    build_seconds: float
    engine_sha256: str
    cache_key: str
    built_at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    edgedepth_version: str = __version__

    def to_dict(self) -> Dict[str, Any]:
        return {
            "format": SIDECAR_FORMAT,
            "format_version": SIDECAR_FORMAT_VERSION,
            "model_spec": self.model_spec.to_dict(),
            "tensorrt_version": self.tensorrt_version,
            "tensorrt_generation": self.tensorrt_generation,
            "gpu": self.gpu.to_dict(),
            "precision": self.precision,
            "shapes": dict(self.shapes),
            "source_onnx": dict(self.source_onnx),
            "build_options": self.build_options.to_dict(),
            "build_seconds": round(float(self.build_seconds), 2),
            "built_at": self.built_at,
            "edgedepth_version": self.edgedepth_version,
            "engine_sha256": self.engine_sha256,
            "cache_key": self.cache_key,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "the sidecar") -> "EngineSidecar":
        """Parse a sidecar dict; ExportError naming the first missing or mistyped field."""
        _check_format(data, where)
        try:
            model_spec = ModelSpec.from_dict(_checked(data, "model_spec", _ANY, where))
        except SpecError as exc:
            raise ExportError(f"{where} holds an invalid model spec ({exc}); rebuild the engine") from exc
        precision = _checked(data, "precision", _PRECISION, where)
        options = _checked(data, "build_options", _OPTIONAL_OBJECT, where, default=None) or {"precision": precision}
        return cls(
            model_spec=model_spec,
            tensorrt_version=_checked(data, "tensorrt_version", _TEXT, where),
            tensorrt_generation=_checked(data, "tensorrt_generation", _TEXT, where, default=""),
            gpu=_gpu(_checked(data, "gpu", _OBJECT, where), where),
            precision=precision,
            shapes=dict(_checked(data, "shapes", _OPTIONAL_OBJECT, where, default=None) or {}),
            source_onnx=dict(_checked(data, "source_onnx", _OPTIONAL_OBJECT, where, default=None) or {}),
            build_options=BuildOptions.from_dict(options, where),
            build_seconds=float(_checked(data, "build_seconds", _NUMBER, where, default=0.0)),
            engine_sha256=_checked(data, "engine_sha256", _TEXT, where, default=""),
            cache_key=_checked(data, "cache_key", _TEXT, where, default=""),
            built_at=_checked(data, "built_at", _TEXT, where, default=""),
            edgedepth_version=_checked(data, "edgedepth_version", _TEXT, where, default=""),
        )

    def replace(self, **changes: Any) -> "EngineSidecar":
        return dataclasses.replace(self, **changes)


def _check_format(data: Any, where: str) -> None:
    if not isinstance(data, Mapping) or data.get("format") != SIDECAR_FORMAT:
        found = data.get("format") if isinstance(data, Mapping) else type(data).__name__
        raise ExportError(
            f"{where} is not an edgedepth engine sidecar (format {found!r}); "
            "rebuild the engine with `depth-export engine`"
        )
    version = data.get("format_version", 0)
    if not isinstance(version, int) or isinstance(version, bool) or version < 0:
        raise ExportError(
            f"{where} has format_version {version!r}, not a number (a whole number like {SIDECAR_FORMAT_VERSION}); "
            "rebuild the engine"
        )
    if version > SIDECAR_FORMAT_VERSION:
        raise ExportError(
            f"{where} has sidecar format {version}; "
            f"this edgedepth reads up to {SIDECAR_FORMAT_VERSION}: upgrade edgedepth"
        )


# ------------------------------------------------------------------------------- field checking

#: A field's check and how to name what it should be.
Kind = Tuple[Callable[[Any], bool], str]
_REQUIRED: Any = object()
_REBUILD = "rebuild the engine with `depth-export engine`"


def _is_finite_number(value: Any) -> bool:
    return is_number(value) and math.isfinite(value)


_ANY: Kind = (lambda value: True, "anything")
_TEXT: Kind = (lambda value: isinstance(value, str), "a string")
_OPTIONAL_TEXT: Kind = (lambda value: value is None or isinstance(value, str), "a string or null")
_NUMBER: Kind = (_is_finite_number, "a number")
_OPTIONAL_NUMBER: Kind = (lambda value: value is None or _is_finite_number(value), "a number or null")
_OPTIONAL_INDEX: Kind = (lambda value: value is None or (isinstance(value, int) and not isinstance(value, bool)),
                         "a whole number or null")
_FLAG: Kind = (lambda value: isinstance(value, bool), "true or false")
_OPTIONAL_FLAG: Kind = (lambda value: value is None or isinstance(value, bool), "true, false or null")
_OBJECT: Kind = (lambda value: isinstance(value, Mapping), "a JSON object")
_OPTIONAL_OBJECT: Kind = (lambda value: value is None or isinstance(value, Mapping), "a JSON object")
_NAMES: Kind = (lambda value: isinstance(value, list) and all(isinstance(item, str) for item in value),
                "a list of strings")
_PRECISION: Kind = (lambda value: value in ("fp32", "fp16", "int8"), "one of fp32, fp16, int8")

_OPTION_KINDS: Dict[str, Kind] = {
    "precision": _PRECISION, "workspace_gib": _OPTIONAL_NUMBER, "dla_core": _OPTIONAL_INDEX,
    "version_compatible": _FLAG, "hardware_compatibility": _TEXT, "calibration_cache_sha256": _OPTIONAL_TEXT,
    "strongly_typed": _FLAG, "builder_flags": _NAMES, "cleared_flags": _NAMES, "fp32_nodes": _NAMES,
    "unquantized_precision": _OPTIONAL_TEXT,
}
_GPU_KINDS: Dict[str, Kind] = {
    "name": _TEXT, "compute_capability": _TEXT, "integrated": _OPTIONAL_FLAG, "machine": _OPTIONAL_TEXT,
    "system": _OPTIONAL_TEXT,
}


def _checked(data: Mapping[str, Any], name: str, kind: Kind, where: str, prefix: str = "",
             default: Any = _REQUIRED) -> Any:
    """``data[name]`` when it passes ``kind``; ``default`` when absent (if given); else ExportError
    naming the field, what it holds and what it should hold."""
    if name not in data:
        if default is _REQUIRED:
            raise ExportError(f"{where} lacks the field {prefix}{name}; {_REBUILD}")
        return default
    value = data[name]
    check, expected = kind
    if not check(value):
        raise ExportError(
            f"{where}: field {prefix}{name} is {value!r:.60} ({type(value).__name__}), expected {expected}; {_REBUILD}"
        )
    return value


def _gpu(data: Mapping[str, Any], where: str) -> GpuInfo:
    for name, kind in _GPU_KINDS.items():
        required = name in ("name", "compute_capability")
        _checked(data, name, kind, where, "gpu.", default=_REQUIRED if required else None)
    return GpuInfo.from_dict(data)


def sidecar_path(engine_path: PathLike) -> Path:
    """``model.engine`` -> ``model.engine.json``."""
    path = Path(engine_path)
    return path.with_name(path.name + ".json")


def write_sidecar(engine_path: PathLike, sidecar: EngineSidecar) -> Path:
    """Write the sidecar of ``engine_path`` atomically; returns its path."""
    path = sidecar_path(engine_path)
    write_json_atomic(path, sidecar.to_dict())
    return path


def read_sidecar(engine_path: PathLike) -> EngineSidecar:
    """The sidecar of ``engine_path``; ExportError when missing, unreadable or of another format."""
    path = sidecar_path(engine_path)
    if not path.is_file():
        raise ExportError(
            f"{path} not found: the engine's provenance (spec, TensorRT version, GPU) lives there; rebuild the "
            "engine with `depth-export engine`, which writes both"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ExportError(
            f"{path} is not readable JSON ({exc}); rebuild the engine with `depth-export engine`"
        ) from exc
    return EngineSidecar.from_dict(data, str(path))


# ----------------------------------------------------------------------------------- compatibility


def _release(version: str) -> Tuple[int, ...]:
    """``"10.3.0.30"`` -> ``(10, 3, 0)``: pip wheels print three fields, JetPack packages four."""
    fields: List[int] = []
    for part in str(version).split(".")[:3]:
        if not part.isdigit():
            break
        fields.append(int(part))
    return tuple(fields)


def _version_problem(built: str, running: str, version_compatible: bool) -> Optional[str]:
    built_release, running_release = _release(built), _release(running)
    if built_release == running_release:
        return None
    if version_compatible:
        later = running_release >= built_release
        if later and (built_release[:1] + running_release[:1]) in _VERSION_COMPATIBLE_STEPS:
            return None
        return (
            f"the version-compatible engine was built with TensorRT {built}, which {running} cannot run "
            "(such engines run on the same or a later TensorRT, one major step at most: 8->9, 8->10, 9->10, 10->11)"
        )
    return f"the engine was built with TensorRT {built} but this machine has {running}"


def _platform_problem(built: GpuInfo, running: GpuInfo) -> Optional[str]:
    """Plans never move across CPU architectures, operating systems, or between Jetson and desktop."""
    for label, was, now in (("CPU architecture", built.machine, running.machine), ("OS", built.system, running.system)):
        if was and now and was != now:
            return (
                f"the engine was built on {was} and this machine is {now} ({label}); "
                "TensorRT plans are not portable across platforms"
            )
    if built.integrated is not None and running.integrated is not None and built.integrated != running.integrated:
        return (
            f"the engine was built for a {built.platform_label} and this is a {running.platform_label}; "
            "TensorRT plans are not portable between Jetson and desktop GPUs"
        )
    return None


def _compute(capability: str) -> Tuple[int, ...]:
    try:
        return tuple(int(part) for part in str(capability).split("."))
    except ValueError:
        return ()


def _gpu_problem(built: GpuInfo, hardware: str, running: GpuInfo) -> Optional[str]:
    """``none`` and ``same-compute-capability`` plans need the builder's compute capability;
    ``ampere+`` plans need a discrete GPU of compute 8.0 or newer (not supported on JetPack)."""
    if hardware == "ampere+":
        if _compute(running.compute_capability) >= (8, 0) and running.integrated is not True:
            return None
        return (
            "the engine was built hardware-compatible for discrete Ampere and newer GPUs (compute 8.0+, not Jetson) "
            f"but this GPU is {running.name} (compute {running.compute_capability})"
        )
    if built.compute_capability != running.compute_capability:
        return (
            f"the engine was built for {built.name} (compute {built.compute_capability}) but this GPU is "
            f"{running.name} (compute {running.compute_capability})"
        )
    return None


def compatibility_problem(sidecar: EngineSidecar, trt_version: str, gpu: GpuInfo) -> Optional[str]:
    """Why an engine with ``sidecar`` will not load on ``gpu`` with ``trt_version`` (None when it should)."""
    options = sidecar.build_options
    return (
        _version_problem(sidecar.tensorrt_version, trt_version, options.version_compatible)
        or _platform_problem(sidecar.gpu, gpu)
        or _gpu_problem(sidecar.gpu, options.hardware_compatibility, gpu)
    )


def rebuild_command(sidecar: EngineSidecar, engine_path: PathLike) -> str:
    """The depth-export command that rebuilds this engine, with the options it was built with."""
    onnx = sidecar.source_onnx.get("name") or "MODEL.onnx"
    command = f"depth-export engine --onnx {onnx} --output {engine_path} --precision {sidecar.precision}"
    options = sidecar.build_options
    if options.version_compatible:
        command += " --version-compatible"
    if options.hardware_compatibility not in ("", "none"):
        command += f" --hardware-compatibility {options.hardware_compatibility}"
    if options.dla_core is not None:
        command += f" --dla-core {options.dla_core}"
    return command


def check_compatible(sidecar: EngineSidecar, trt_version: str, gpu: GpuInfo, engine_path: PathLike) -> List[str]:
    """Raise DeviceError when the engine cannot run here; return warnings for soft mismatches."""
    problem = compatibility_problem(sidecar, trt_version, gpu)
    rebuild = rebuild_command(sidecar, engine_path)
    if problem:
        raise DeviceError(f"engine {engine_path}: {problem}: rebuild it here from the same ONNX: `{rebuild}`")
    if sidecar.gpu.name.strip().lower() != gpu.name.strip().lower():
        return [
            f"engine {engine_path} was built on {sidecar.gpu.name} and runs on {gpu.name} (same compute "
            f"{gpu.compute_capability}): it loads, but its kernels were tuned for the other GPU; "
            f"for best speed `{rebuild}`"
        ]
    return []


def deserialize_failure_message(engine_path: PathLike, log_lines: List[str], sidecar: Optional[EngineSidecar]) -> str:
    """One line for a ``deserialize_cuda_engine`` that returned None, quoting TensorRT's own reason."""
    errors = [line for line in log_lines if line.strip()]
    reason = errors[-1] if errors else "TensorRT logged no reason"
    fix = f"rebuild it: `{rebuild_command(sidecar, engine_path)}`" if sidecar else "rebuild it with depth-export engine"
    return (
        f"TensorRT could not deserialise {engine_path} ({reason}); "
        f"the file is damaged or its sidecar does not match it: {fix}"
    )
