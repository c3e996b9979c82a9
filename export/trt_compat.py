"""TensorRT generations: feature probes, and what each generation can build from which ONNX.

Pure logic: every function takes a ``tensorrt``-module-like object (or the probed
:class:`TrtApi`) and never imports TensorRT itself, so it is tested without TensorRT.
Generations (see shared/reference/TENSORRT_API.md):

* ``"8"``  8.5 / 8.6 (JetPack 5.1 / 6.0): EXPLICIT_BATCH network flag, FP16/INT8 builder flags,
  INT8 calibrators, no progress monitor, no strongly typed networks.
* ``"10"`` 9.x / 10.x (JetPack 6.1/6.2 = 10.3, desktop): STRONGLY_TYPED opt-in, builder flags
  still there (deprecated from 10.12), calibrator deprecated from 10.1, IProgressMonitor.
* ``"11"`` 11.x: always strongly typed; no FP16/INT8 flags and no calibrator: FP16 comes from an
  FP16 ONNX, INT8 from Q/DQ nodes.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any, Optional, Tuple

from edgedepth.errors import ExportError

PRECISIONS = ("fp32", "fp16", "int8")
HARDWARE_COMPATIBILITY = {"none": "NONE", "ampere+": "AMPERE_PLUS", "same-compute-capability": "SAME_COMPUTE_CAPABILITY"}
#: Highest ONNX opset the TensorRT 8.5/8.6 parser accepts.
TRT8_MAX_OPSET = 17

INSTALL_HINT = (
    "TensorRT's Python package is not installed: on a Jetson it ships with JetPack "
    "(`sudo apt install python3-libnvinfer`, then use the system Python or a venv with "
    "--system-site-packages); on a desktop `pip install tensorrt-cu12` (or NVIDIA's packages), "
    "plus `pip install cuda-python` for GPU memory"
)


def parse_version(text: str) -> Tuple[int, int]:
    """``(major, minor)`` from ``tensorrt.__version__`` (3 or 4 fields; only the first two read)."""
    match = re.match(r"\s*(\d+)\.(\d+)", str(text))
    if not match:
        raise ExportError(f"cannot read a TensorRT version from {text!r}; expected e.g. '10.3.0'")
    return int(match.group(1)), int(match.group(2))


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
    fp16_flag: bool
    int8_flag: bool
    tf32_flag: bool
    strongly_typed_flag: bool
    calibrator: bool
    progress_monitor: bool
    precision_constraints: bool
    version_compatible: bool
    hardware_levels: Tuple[str, ...] = field(default_factory=tuple)

    @property
    def label(self) -> str:
        return f"TensorRT {self.version}"


def detect_generation(trt: Any) -> str:
    """``"8"``, ``"10"`` or ``"11"`` from probes; ExportError for TensorRT older than 8.5."""
    if not _has(trt, "IExecutionContext", "execute_async_v3"):
        raise ExportError(
            f"TensorRT {getattr(trt, '__version__', '?')} is older than 8.5 (no name-based execution API); "
            "edgedepth supports 8.5 (JetPack 5.1) and newer: upgrade JetPack or TensorRT"
        )
    if not _has(trt, "NetworkDefinitionCreationFlag", "EXPLICIT_BATCH"):
        return "11"
    if _has(trt, "NetworkDefinitionCreationFlag", "STRONGLY_TYPED"):
        return "10"
    return "8"


def probe_api(trt: Any) -> TrtApi:
    """Probe a ``tensorrt`` module (or an object mirroring its attributes)."""
    flags = getattr(trt, "BuilderFlag", None)
    levels = getattr(trt, "HardwareCompatibilityLevel", None)
    return TrtApi(
        version=str(getattr(trt, "__version__", "unknown")),
        generation=detect_generation(trt),
        fp16_flag=_has(flags, "FP16"),
        int8_flag=_has(flags, "INT8"),
        tf32_flag=_has(flags, "TF32"),
        strongly_typed_flag=_has(trt, "NetworkDefinitionCreationFlag", "STRONGLY_TYPED"),
        calibrator=_has(trt, "IInt8EntropyCalibrator2"),
        progress_monitor=_has(trt, "IProgressMonitor"),
        precision_constraints=_has(flags, "PREFER_PRECISION_CONSTRAINTS"),
        version_compatible=_has(flags, "VERSION_COMPATIBLE"),
        hardware_levels=tuple(name for name in HARDWARE_COMPATIBILITY.values() if _has(levels, name)),
    )


@dataclass(frozen=True)
class BuildRequest:
    """What the user asked ``depth-export engine`` for (TensorRT-independent)."""

    precision: str
    onnx_kind: str  # onnx_precision() of the input: fp32 | fp16 | int8
    calib_cache: bool = False
    calibrator: bool = False
    dla_core: Optional[int] = None
    version_compatible: bool = False
    hardware_compatibility: str = "none"
    workspace_gib: Optional[float] = None
    onnx_opset: int = 17
    qdq_zero_points_explicit: bool = True


@dataclass(frozen=True)
class BuildPlan:
    """How one generation builds a request: flag names, never integers (they moved between majors)."""

    generation: str
    network_flags: Tuple[str, ...] = ()
    builder_flags: Tuple[str, ...] = ()
    clear_flags: Tuple[str, ...] = ()
    strongly_typed: bool = False
    use_calibrator: bool = False
    keep_head_fp32: bool = False
    hardware_level: Optional[str] = None
    notes: Tuple[str, ...] = ()


def check_request(request: BuildRequest) -> None:
    """Refuse requests no TensorRT can honour, before TensorRT is even imported."""
    if request.precision not in PRECISIONS:
        raise ExportError(f"--precision {request.precision!r} is not supported: use one of {', '.join(PRECISIONS)}")
    if request.hardware_compatibility not in HARDWARE_COMPATIBILITY:
        raise ExportError(
            f"--hardware-compatibility {request.hardware_compatibility!r} is unknown: use one of "
            f"{', '.join(HARDWARE_COMPATIBILITY)}"
        )
    if request.workspace_gib is not None and request.workspace_gib <= 0:
        raise ExportError(f"--workspace {request.workspace_gib} GiB is invalid: give a positive size such as 2")
    if (request.calib_cache or request.calibrator) and request.precision != "int8":
        raise ExportError(f"a calibration cache only applies to --precision int8, not {request.precision}; drop --calib-cache")
    if request.onnx_kind == "fp16" and request.precision != "fp16":
        raise ExportError(
            f"the ONNX is an FP16 graph; building it as {request.precision.upper()} cannot restore or add precision: "
            "use --precision fp16, or pass the FP32 ONNX (depth-export onnx without --fp16)"
        )
    if request.onnx_kind == "int8" and request.precision != "int8":
        raise ExportError(
            f"the ONNX holds Q/DQ (INT8) nodes; it builds only as --precision int8. For {request.precision} pass the "
            "FP32 ONNX from `depth-export onnx`"
        )
    _check_int8_sources(request)
    if request.dla_core is not None and request.precision == "fp32":
        raise ExportError("DLA runs only FP16 or INT8 networks: use --precision fp16 or int8 with --dla-core")
    if request.dla_core is not None and request.hardware_compatibility != "none":
        raise ExportError("hardware-compatible engines cannot use the DLA: drop --hardware-compatibility or --dla-core")


def _check_int8_sources(request: BuildRequest) -> None:
    if request.precision != "int8":
        return
    if request.onnx_kind == "int8" and (request.calib_cache or request.calibrator):
        raise ExportError(
            "the ONNX already holds Q/DQ scales, so a calibration cache would be ignored or conflict: drop --calib-cache"
        )
    if request.onnx_kind == "fp16":
        raise ExportError("INT8 needs the FP32 ONNX plus a calibration, not the FP16 graph; run `depth-calib` on the FP32 ONNX")
    if request.onnx_kind == "fp32" and not (request.calib_cache or request.calibrator):
        raise ExportError(
            "--precision int8 needs INT8 scales: run `depth-calib` to make a Q/DQ ONNX (all TensorRT versions) or a "
            "calibration cache (--calib-cache, TensorRT 8.x/10.x only)"
        )


def plan_build(api: TrtApi, request: BuildRequest) -> BuildPlan:
    """How ``api``'s generation builds ``request``; ExportError when it cannot, saying what to do."""
    check_request(request)
    _check_generation_limits(api, request)
    hardware_level = HARDWARE_COMPATIBILITY[request.hardware_compatibility]
    plan = {"8": _plan_trt8, "10": _plan_trt10, "11": _plan_trt11}[api.generation](api, request)
    extra = ("GPU_FALLBACK",) if request.dla_core is not None else ()
    if request.version_compatible:
        extra += ("VERSION_COMPATIBLE",)
    return dataclasses.replace(
        plan, builder_flags=plan.builder_flags + extra, hardware_level=None if hardware_level == "NONE" else hardware_level
    )


def _check_generation_limits(api: TrtApi, request: BuildRequest) -> None:
    if request.version_compatible and not api.version_compatible:
        raise ExportError(f"{api.label} cannot build version-compatible engines (that needs 8.6 or newer): drop --version-compatible")
    level = HARDWARE_COMPATIBILITY[request.hardware_compatibility]
    if level != "NONE" and level not in api.hardware_levels:
        raise ExportError(
            f"{api.label} has no hardware compatibility level {request.hardware_compatibility} (ampere+ needs 8.6+, "
            "same-compute-capability 10.9+): drop --hardware-compatibility or upgrade TensorRT"
        )
    if api.generation == "8" and request.onnx_opset > TRT8_MAX_OPSET:
        raise ExportError(
            f"the ONNX uses opset {request.onnx_opset}; {api.label} parses up to opset {TRT8_MAX_OPSET}: re-export with "
            f"`depth-export onnx --opset {TRT8_MAX_OPSET}`"
        )
    if api.generation == "8" and request.onnx_kind == "int8" and not request.qdq_zero_points_explicit:
        raise ExportError(
            f"{api.label} needs every QuantizeLinear/DequantizeLinear to carry an explicit zero point (= 0); "
            "re-run `depth-calib` with TensorRT 8 compatibility"
        )


def _fp32_clear(api: TrtApi) -> Tuple[str, ...]:
    # TF32 is on by default for FP32 layers on Ampere+: a requested FP32 engine must not get it.
    return ("TF32",) if api.tf32_flag else ()


def _weak_precision(api: TrtApi, request: BuildRequest, network_flags: Tuple[str, ...]) -> BuildPlan:
    """8.x/10.x weakly typed builds: builder flags choose FP16/INT8, the head kept FP32."""
    if request.precision == "fp32":
        return BuildPlan(api.generation, network_flags, clear_flags=_fp32_clear(api))
    if request.precision == "fp16" and not api.fp16_flag:
        raise ExportError(f"{api.label} has no FP16 builder flag: pass the FP16 ONNX from `depth-export onnx --fp16`")
    if request.precision == "int8" and not api.int8_flag:
        raise ExportError(f"{api.label} has no INT8 builder flag: pass a Q/DQ ONNX from `depth-calib`")
    # INT8 plans run unquantized layers in FP16 (never lower than asked: INT8 < FP16 < FP32).
    flags = ("FP16",) if request.precision == "fp16" else ("INT8", "FP16")
    constraints = ("PREFER_PRECISION_CONSTRAINTS",) if api.precision_constraints else ()
    use_calibrator = request.precision == "int8" and request.onnx_kind == "fp32"
    notes = ()
    if use_calibrator and api.generation == "10":
        notes = (f"{api.label} deprecates implicit INT8 calibration (since 10.1); a Q/DQ ONNX from `depth-calib` is the lasting route",)
    return BuildPlan(
        api.generation, network_flags, builder_flags=flags + constraints, use_calibrator=use_calibrator,
        keep_head_fp32=bool(constraints), notes=notes,
    )


def _plan_trt8(api: TrtApi, request: BuildRequest) -> BuildPlan:
    """8.5/8.6: explicit batch must be requested; no strongly typed networks."""
    plan = _weak_precision(api, request, ("EXPLICIT_BATCH",))
    if request.onnx_kind == "fp16":
        note = f"{api.label} has no strongly typed networks: the FP16 graph builds with the FP16 flag, head kept FP32"
        plan = dataclasses.replace(plan, notes=plan.notes + (note,))
    return plan


def _plan_trt10(api: TrtApi, request: BuildRequest) -> BuildPlan:
    """9.x/10.x: an FP16 ONNX builds strongly typed (no precision flags with it); else weak typing."""
    if request.onnx_kind == "fp16":
        return BuildPlan(api.generation, ("STRONGLY_TYPED",), strongly_typed=True)
    return _weak_precision(api, request, ())


def _plan_trt11(api: TrtApi, request: BuildRequest) -> BuildPlan:
    """11.x: always strongly typed; precision comes from the ONNX alone."""
    if request.precision == "fp16" and request.onnx_kind == "fp32":
        raise ExportError(
            f"{api.label} has no FP16 flag: pass the FP16 ONNX from `depth-export onnx --fp16` "
            "(or `depth-export fp16 --onnx model.onnx`)"
        )
    if request.calib_cache or request.calibrator:
        raise ExportError(
            f"{api.label} has no INT8 calibrator, so a calibration cache cannot be used: make a Q/DQ ONNX with "
            "`depth-calib` and build that"
        )
    clear = _fp32_clear(api) if request.precision == "fp32" else ()
    return BuildPlan(api.generation, (), clear_flags=clear, strongly_typed=True)


def parse_calibration_cache_header(data: bytes) -> Tuple[str, str]:
    """``(trt_version_code, algorithm)`` from a TensorRT calibration cache's first line,
    e.g. ``b"TRT-8601-EntropyCalibration2"`` -> ``("8601", "EntropyCalibration2")``."""
    first = data.split(b"\n", 1)[0].decode("ascii", errors="replace").strip()
    match = re.fullmatch(r"TRT-(\d+)-(\w+)", first)
    if not match:
        raise ExportError(
            f"the calibration cache starts with {first[:40]!r}, not a TensorRT header like 'TRT-8601-EntropyCalibration2': "
            "pass the cache file `depth-calib` wrote"
        )
    return match.group(1), match.group(2)
