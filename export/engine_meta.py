"""Engine provenance (the ``model.engine.json`` sidecar), engine cache keys and compatibility.

A TensorRT plan only runs on the TensorRT version and GPU it was built for, and a plan file says
neither in a readable way. The sidecar does: the ModelSpec, TensorRT version, GPU name and
compute capability, precision, shapes, source ONNX sha256, build options and time. The runtime
reads it to refuse a mismatch with a message that says what to rebuild. Pure logic, no TensorRT.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple, Union

from edgedepth import __version__
from edgedepth.errors import ExportError
from edgedepth.io import atomic_path, write_json_atomic
from edgedepth.spec import ModelSpec

SIDECAR_FORMAT = "edgedepth-engine"
SIDECAR_FORMAT_VERSION = 1
#: Bumped whenever a change to how engines are built should invalidate cached engines.
CACHE_FORMAT = 1
PathLike = Union[str, "os.PathLike[str]"]


@dataclass(frozen=True)
class GpuInfo:
    """The GPU an engine is built for: name and compute capability ("8.7")."""

    name: str
    compute_capability: str

    def to_dict(self) -> Dict[str, str]:
        return asdict(self)


def sidecar_path(engine_path: PathLike) -> Path:
    """``model.engine`` -> ``model.engine.json``."""
    path = Path(engine_path)
    return path.with_name(path.name + ".json")


def cache_key(
    onnx_sha256: str,
    trt_version: str,
    gpu: GpuInfo,
    precision: str,
    shapes: Mapping[str, Any],
    options: Mapping[str, Any],
) -> str:
    """Hex key naming a cached engine: everything that changes the plan goes in."""
    material = {
        "cache_format": CACHE_FORMAT,
        "onnx_sha256": onnx_sha256,
        "tensorrt": trt_version,
        "gpu": gpu.to_dict(),
        "precision": precision,
        "shapes": shapes,
        "options": dict(options),
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode("utf-8")).hexdigest()


def engine_sidecar(
    spec: ModelSpec,
    trt_version: str,
    generation: str,
    gpu: GpuInfo,
    precision: str,
    shapes: Mapping[str, Any],
    source_onnx: PathLike,
    source_sha256: str,
    options: Mapping[str, Any],
    build_seconds: float,
    engine_sha256: str,
    key: str,
) -> Dict[str, Any]:
    """The sidecar dict written next to an engine."""
    return {
        "format": SIDECAR_FORMAT,
        "format_version": SIDECAR_FORMAT_VERSION,
        "model_spec": spec.to_dict(),
        "tensorrt_version": trt_version,
        "tensorrt_generation": generation,
        "gpu": gpu.to_dict(),
        "precision": precision,
        "shapes": dict(shapes),
        "source_onnx": {"name": Path(source_onnx).name, "sha256": source_sha256},
        "build_options": dict(options),
        "build_seconds": round(float(build_seconds), 2),
        "built_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "edgedepth_version": __version__,
        "engine_sha256": engine_sha256,
        "cache_key": key,
    }


def write_sidecar(engine_path: PathLike, sidecar: Mapping[str, Any]) -> Path:
    """Write the sidecar atomically; returns its path."""
    path = sidecar_path(engine_path)
    write_json_atomic(path, dict(sidecar))
    return path


def read_sidecar(engine_path: PathLike) -> Dict[str, Any]:
    """The sidecar of ``engine_path``; ExportError when missing, unreadable or of another format."""
    path = sidecar_path(engine_path)
    if not path.is_file():
        raise ExportError(
            f"{path} not found: the engine's provenance (spec, TensorRT version, GPU) lives there; rebuild the "
            "engine with `depth-export engine`, which writes both"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ExportError(f"{path} is not readable JSON ({exc}); rebuild the engine with `depth-export engine`") from exc
    if not isinstance(data, dict) or data.get("format") != SIDECAR_FORMAT:
        raise ExportError(f"{path} is not an edgedepth engine sidecar (format {data.get('format') if isinstance(data, dict) else None!r})")
    if int(data.get("format_version", 0)) > SIDECAR_FORMAT_VERSION:
        raise ExportError(f"{path} has sidecar format {data.get('format_version')}; this edgedepth reads up to {SIDECAR_FORMAT_VERSION}: upgrade")
    return data


def sidecar_spec(sidecar: Mapping[str, Any]) -> ModelSpec:
    """The ModelSpec stored in a sidecar."""
    return ModelSpec.from_dict(sidecar["model_spec"])


def _release(version: str) -> Tuple[int, ...]:
    """``"10.3.0.30"`` -> ``(10, 3, 0)``: pip wheels print three fields, JetPack packages four."""
    fields = []
    for part in str(version).split(".")[:3]:
        if not part.isdigit():
            break
        fields.append(int(part))
    return tuple(fields)


#: Major-version steps a version-compatible plan survives (8 -> 11 is not supported).
_VERSION_COMPATIBLE_STEPS = {(8, 8), (9, 9), (10, 10), (11, 11), (8, 10), (9, 10), (10, 11)}


def _version_problem(built: str, running: str, version_compatible: bool) -> Optional[str]:
    built_release, running_release = _release(built), _release(running)
    if built_release == running_release:
        return None
    if version_compatible:
        later = running_release >= built_release
        if later and (built_release[:1] + running_release[:1]) in _VERSION_COMPATIBLE_STEPS:
            return None
        return (
            f"the version-compatible engine was built with TensorRT {built}, which {running} cannot run (such engines run "
            "on the same or a later TensorRT, one major step at most: 8->10, 10->11)"
        )
    return f"the engine was built with TensorRT {built} but this machine has {running}"


def compatibility_problem(sidecar: Mapping[str, Any], trt_version: str, gpu: GpuInfo) -> Optional[str]:
    """Why an engine with ``sidecar`` will not load here (None when it should), with the fix.

    Plans are tied to the TensorRT release and the GPU's compute capability; version-compatible
    plans run on the same or a later TensorRT, hardware-compatible ones on other Ampere+ GPUs.
    """
    options = sidecar.get("build_options", {})
    rebuild = "rebuild it here with `depth-export engine` from the same ONNX"
    problem = _version_problem(str(sidecar.get("tensorrt_version", "?")), trt_version, bool(options.get("version_compatible")))
    if problem:
        return f"{problem}: {rebuild}"
    return _gpu_problem(sidecar.get("gpu", {}), options.get("hardware_compatibility", "none"), gpu, rebuild)


def _compute_tuple(capability: Any) -> Tuple[int, ...]:
    try:
        return tuple(int(part) for part in str(capability).split("."))
    except ValueError:
        return ()


def _gpu_problem(built_gpu: Mapping[str, Any], hardware: str, gpu: GpuInfo, rebuild: str) -> Optional[str]:
    """``none`` and ``same-compute-capability`` plans need the builder's compute capability;
    ``ampere+`` plans need compute 8.0 or newer."""
    built_cc = built_gpu.get("compute_capability")
    if hardware == "ampere+":
        if _compute_tuple(gpu.compute_capability) >= (8, 0):
            return None
        return (
            f"the engine was built hardware-compatible for Ampere and newer (compute 8.0+) but this GPU is {gpu.name} "
            f"(compute {gpu.compute_capability}): {rebuild}"
        )
    if built_cc != gpu.compute_capability:
        return (
            f"the engine was built for {built_gpu.get('name')} (compute {built_cc}) but this "
            f"GPU is {gpu.name} (compute {gpu.compute_capability}): {rebuild}"
        )
    return None


def cached_engine_paths(cache_dir: PathLike, key: str) -> Tuple[Path, Path]:
    """``(engine, sidecar)`` paths of ``key`` in the cache folder."""
    engine = Path(cache_dir) / f"{key[:32]}.engine"
    return engine, sidecar_path(engine)


def place_file(source: Path, target: PathLike) -> None:
    """Atomically put a copy of ``source`` at ``target`` (a hard link when the filesystem allows)."""
    with atomic_path(target) as tmp:
        tmp.unlink()
        try:
            os.link(source, tmp)
        except OSError:  # another filesystem, or links not supported: copy instead
            shutil.copyfile(source, tmp)


def lookup_cache(cache_dir: Optional[PathLike], key: str) -> Optional[Tuple[Path, Dict[str, Any]]]:
    """``(engine path, sidecar)`` of a cached engine for ``key``, or None."""
    if not cache_dir:
        return None
    engine, side = cached_engine_paths(cache_dir, key)
    if not (engine.is_file() and side.is_file()):
        return None
    try:
        sidecar = read_sidecar(engine)
    except ExportError:
        return None  # a damaged entry is rebuilt, not trusted
    return (engine, sidecar) if sidecar.get("cache_key") == key else None


def store_in_cache(cache_dir: PathLike, key: str, engine_path: Path, sidecar: Mapping[str, Any]) -> None:
    """Copy a freshly built engine and its sidecar into the cache (engine first, so a sidecar
    never points at a missing plan)."""
    engine, _ = cached_engine_paths(cache_dir, key)
    place_file(engine_path, engine)
    write_sidecar(engine, sidecar)
