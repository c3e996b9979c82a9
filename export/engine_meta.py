"""The engine cache: keys and storage of built engines with their sidecars. Pure logic, no TensorRT.

The sidecar itself (what an engine was built for, and the compatibility rules) is
:class:`edgedepth.trt.sidecar.EngineSidecar`, shared with the runtime and parity.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any, Mapping, Optional, Tuple, Union

from edgedepth.errors import ExportError
from edgedepth.io import atomic_path
from edgedepth.trt.platform import GpuInfo
from edgedepth.trt.sidecar import EngineSidecar, read_sidecar, sidecar_path, write_sidecar

#: Bumped whenever a change to how engines are built should invalidate cached engines.
CACHE_FORMAT = 2
PathLike = Union[str, "os.PathLike[str]"]


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


def lookup_cache(cache_dir: Optional[PathLike], key: str) -> Optional[Tuple[Path, EngineSidecar]]:
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
    return (engine, sidecar) if sidecar.cache_key == key else None


def store_in_cache(cache_dir: PathLike, key: str, engine_path: Path, sidecar: EngineSidecar) -> None:
    """Copy a freshly built engine and its sidecar into the cache (engine first, so a sidecar
    never points at a missing plan)."""
    engine, _ = cached_engine_paths(cache_dir, key)
    place_file(engine_path, engine)
    write_sidecar(engine, sidecar)
