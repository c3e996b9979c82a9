"""TensorRT generations: the one probe of what the installed TensorRT offers, and target versions.

Pure logic: functions take a ``tensorrt``-module-like object and never import TensorRT, so they are
tested against recorded facts without it. Generations (shared/reference/TENSORRT_API.md):

* ``"8"``  8.5 / 8.6 (JetPack 5.1 / 6.0): EXPLICIT_BATCH network flag, FP16/INT8 builder flags,
  INT8 calibrators, no progress monitor, no strongly typed networks.
* ``"10"`` 9.x / 10.x (JetPack 6.1/6.2 = 10.3, JetPack 7 = 10.13+, desktop): STRONGLY_TYPED opt-in,
  builder flags (deprecated from 10.12), calibrator deprecated from 10.1, IProgressMonitor. 9.x
  still needs EXPLICIT_BATCH (its parser asserts an explicit-batch network: onnx-tensorrt@9.0-GA
  ``ModelImporter.cpp:574``); 10.x ignores the flag.
* ``"11"`` 11.x: always strongly typed; no FP16/INT8 flags and no calibrator.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Optional, Tuple

from edgedepth.errors import DeviceError

GENERATIONS = ("8", "10", "11")
#: Builder hardware-compatibility levels: our option name -> TensorRT enum member.
HARDWARE_COMPATIBILITY = {
    "none": "NONE", "ampere+": "AMPERE_PLUS", "same-compute-capability": "SAME_COMPUTE_CAPABILITY"
}


def parse_version(text: str) -> Tuple[int, int]:
    """``(major, minor)`` from ``tensorrt.__version__`` (3 or 4 fields; only the first two read)."""
    match = re.match(r"\s*(\d+)\.(\d+)", str(text))
    if not match:
        raise DeviceError(f"cannot read a TensorRT version from {text!r}; expected e.g. '10.3.0'")
    return int(match.group(1)), int(match.group(2))


def generation_of(major: int) -> str:
    """The helper generation a TensorRT major version builds with (9 builds like 10)."""
    if major < 8:
        raise DeviceError(f"TensorRT {major}.x is not supported: edgedepth supports 8.5 (JetPack 5.1) and newer")
    return "8" if major == 8 else "10" if major in (9, 10) else "11"


def _has(obj: Any, *names: str) -> bool:
    for name in names:
        if obj is None or not hasattr(obj, name):
            return False
        obj = getattr(obj, name)
    return True


@dataclass(frozen=True)
class TrtApi:
    """What the installed TensorRT offers, found by feature probes (never enum arithmetic)."""

    version: str
    generation: str
    explicit_batch_flag: bool
    fp16_flag: bool
    int8_flag: bool
    tf32_flag: bool
    strongly_typed_flag: bool
    calibrator: bool
    progress_monitor: bool
    precision_constraints: bool
    version_compatible: bool
    optimization_level: bool = False
    hardware_levels: Tuple[str, ...] = field(default_factory=tuple)

    @property
    def label(self) -> str:
        return f"TensorRT {self.version}"


def detect_generation(trt: Any) -> str:
    """``"8"``, ``"10"`` or ``"11"`` from probes; DeviceError for TensorRT older than 8.5."""
    if not _has(trt, "IExecutionContext", "execute_async_v3"):
        raise DeviceError(
            f"TensorRT {getattr(trt, '__version__', '?')} is older than 8.5 (no name-based execution API); "
            "edgedepth supports 8.5 (JetPack 5.1) and newer: upgrade JetPack or TensorRT"
        )
    if not _has(trt, "NetworkDefinitionCreationFlag", "EXPLICIT_BATCH"):
        return "11"
    if _has(trt, "NetworkDefinitionCreationFlag", "STRONGLY_TYPED"):
        return "10"
    return "8"


def needs_explicit_batch(trt: Any) -> bool:
    """True when networks must be created with EXPLICIT_BATCH (8.x and 9.x).

    Two signals, either suffices: the implicit-batch execution API ``execute_async_v2`` still
    exists (8.x/9.x; removed in 10.0), or the major version is below 10 (JetPack's apt bindings
    print four version fields, so only the major is read).
    """
    if not _has(trt, "NetworkDefinitionCreationFlag", "EXPLICIT_BATCH"):
        return False
    if _has(trt, "IExecutionContext", "execute_async_v2"):
        return True
    try:
        return parse_version(getattr(trt, "__version__", ""))[0] < 10
    except DeviceError:
        return False


def probe_api(trt: Any) -> TrtApi:
    """Probe a ``tensorrt`` module (or an object mirroring its attributes)."""
    flags = getattr(trt, "BuilderFlag", None)
    levels = getattr(trt, "HardwareCompatibilityLevel", None)
    return TrtApi(
        version=str(getattr(trt, "__version__", "unknown")),
        generation=detect_generation(trt),
        explicit_batch_flag=needs_explicit_batch(trt),
        fp16_flag=_has(flags, "FP16"),
        int8_flag=_has(flags, "INT8"),
        tf32_flag=_has(flags, "TF32"),
        strongly_typed_flag=_has(trt, "NetworkDefinitionCreationFlag", "STRONGLY_TYPED"),
        calibrator=_has(trt, "IInt8EntropyCalibrator2"),
        progress_monitor=_has(trt, "IProgressMonitor"),
        precision_constraints=_has(flags, "PREFER_PRECISION_CONSTRAINTS"),
        version_compatible=_has(flags, "VERSION_COMPATIBLE"),
        optimization_level=_has(trt, "IBuilderConfig", "builder_optimization_level"),
        hardware_levels=tuple(name for name in HARDWARE_COMPATIBILITY.values() if _has(levels, name)),
    )


def network_flags(trt: Any, names: Iterable[str]) -> int:
    """``create_network`` flags from member names, as NVIDIA's samples build them
    (``1 << int(flag)``; the integers moved between majors, so never hard-coded)."""
    flags = 0
    for name in names:
        flags |= 1 << int(getattr(trt.NetworkDefinitionCreationFlag, name))
    return flags


@dataclass(frozen=True)
class TrtTarget:
    """A TensorRT version an artifact is made for (``depth-calib --trt-version``, ``depth-export check``)."""

    major: int
    minor: Optional[int] = None

    @property
    def generation(self) -> str:
        return generation_of(self.major)

    @property
    def label(self) -> str:
        return f"TensorRT {self.major}" + ("" if self.minor is None else f".{self.minor}")

    def __str__(self) -> str:
        return f"{self.major}" + ("" if self.minor is None else f".{self.minor}")


def parse_target(text: str) -> TrtTarget:
    """``"8.6"``, ``"10"``, ``"10.16"``, ``"11.4.0.106"`` -> a target (DeviceError when unreadable)."""
    match = re.fullmatch(r"\s*(\d+)(?:\.(\d+))?(?:\.\d+)*\s*", str(text))
    if not match:
        raise DeviceError(f"--trt-version {text!r} is not a TensorRT version: write e.g. 8.6, 10.3, 10.16 or 11")
    target = TrtTarget(int(match.group(1)), None if match.group(2) is None else int(match.group(2)))
    if target.major == 8 and target.minor is not None and target.minor < 5:
        raise DeviceError(f"--trt-version {text}: edgedepth supports TensorRT 8.5 (JetPack 5.1) and newer")
    target.generation  # noqa: B018 - refuses majors below 8
    return target


def target_of_api(api: TrtApi) -> TrtTarget:
    """The target matching an installed TensorRT."""
    major, minor = parse_version(api.version)
    return TrtTarget(major, minor)


#: The target when none is given and TensorRT is not installed here: 10.x (JetPack 6.1+, desktop).
FALLBACK_TARGET = TrtTarget(10)


def default_target() -> TrtTarget:
    """The installed TensorRT's version when it is importable, else :data:`FALLBACK_TARGET`."""
    from edgedepth.trt import imports

    if not imports.tensorrt_installed():
        return FALLBACK_TARGET
    return parse_target(str(getattr(imports.import_tensorrt(), "__version__", FALLBACK_TARGET)))
