"""What each TensorRT generation builds from which ONNX: the engine build's plan, decided before
TensorRT does any work.

Pure logic over the probed :class:`edgedepth.trt.generation.TrtApi` (generations and probes live
there), so it is tested against recorded facts without TensorRT. A request a generation cannot
honour is refused with what to do instead; a requested precision is never lowered.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Optional, Tuple

from edgedepth.errors import ExportError
from edgedepth.trt.generation import HARDWARE_COMPATIBILITY, TrtApi
from edgedepth.trt.network import network_flag_names

PRECISIONS = ("fp32", "fp16", "int8")


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
    #: INT8 ONNX: the type its unquantized layers compute in ("fp16" for depth-calib's 11.x graphs).
    qdq_float_type: str = "fp32"
    #: True when the build GPU is integrated (Jetson); None when unknown.
    integrated_gpu: Optional[bool] = None


@dataclass(frozen=True)
class BuildPlan:
    """How one generation builds a request: flag names, never integers (they moved between majors)."""

    generation: str
    network_flags: Tuple[str, ...] = ()
    builder_flags: Tuple[str, ...] = ()
    clear_flags: Tuple[str, ...] = ()
    strongly_typed: bool = False
    use_calibrator: bool = False
    #: Pin the head (and depth-calib's kept nodes) to FP32 through layer precision (weak typing).
    keep_head_fp32: bool = False
    hardware_level: Optional[str] = None
    #: INT8 plans: what the layers without Q/DQ run in.
    unquantized_precision: Optional[str] = None
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
        raise ExportError(
            f"a calibration cache only applies to --precision int8, not {request.precision}; drop --calib-cache"
        )
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
    _check_dla(request)


def _check_dla(request: BuildRequest) -> None:
    if request.dla_core is None:
        return
    if request.precision == "fp32":
        raise ExportError("DLA runs only FP16 or INT8 networks: use --precision fp16 or int8 with --dla-core")
    if request.hardware_compatibility != "none":
        raise ExportError("hardware-compatible engines cannot use the DLA: drop --hardware-compatibility or --dla-core")
    if request.dla_core < 0:
        raise ExportError(f"--dla-core {request.dla_core} is invalid: DLA cores are numbered from 0")


def _check_int8_sources(request: BuildRequest) -> None:
    if request.precision != "int8":
        return
    if request.onnx_kind == "int8" and (request.calib_cache or request.calibrator):
        raise ExportError(
            "the ONNX already holds Q/DQ scales, so a calibration cache would be ignored or conflict: "
            "drop --calib-cache"
        )
    if request.onnx_kind == "fp16":
        raise ExportError(
            "INT8 needs the FP32 ONNX plus a calibration, not the FP16 graph; run `depth-calib` on the FP32 ONNX"
        )
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
    extra: Tuple[str, ...] = ("GPU_FALLBACK",) if request.dla_core is not None else ()
    if request.version_compatible:
        extra += ("VERSION_COMPATIBLE",)
    return dataclasses.replace(
        plan,
        network_flags=network_flag_names(api, plan.strongly_typed),
        builder_flags=plan.builder_flags + extra,
        # TF32 is on by default ("allow, not require": NvInfer.h 8.5 to 11) and would run every
        # layer promised FP32 (an FP32 engine, the head, kept nodes, strongly typed FP32) in TF32.
        clear_flags=("TF32",) if api.tf32_flag else (),
        hardware_level=None if hardware_level == "NONE" else hardware_level,
    )


def _check_generation_limits(api: TrtApi, request: BuildRequest) -> None:
    if request.version_compatible and not api.version_compatible:
        raise ExportError(
            f"{api.label} cannot build version-compatible engines (that needs 8.6 or newer): drop --version-compatible"
        )
    level = HARDWARE_COMPATIBILITY[request.hardware_compatibility]
    if level != "NONE" and request.integrated_gpu:
        raise ExportError(
            "hardware compatibility is not supported on JetPack (TensorRT Developer Guide, hardware compatibility): "
            "drop --hardware-compatibility and build the engine on each Jetson model that runs it"
        )
    if level != "NONE" and level not in api.hardware_levels:
        raise ExportError(
            f"{api.label} has no hardware compatibility level {request.hardware_compatibility} (ampere+ needs 8.6+, "
            "same-compute-capability 10.9+): drop --hardware-compatibility or upgrade TensorRT"
        )


def _weak_precision(api: TrtApi, request: BuildRequest) -> BuildPlan:
    """8.x/10.x weakly typed builds: builder flags choose FP16/INT8, the head kept FP32."""
    if request.precision == "fp32":
        return BuildPlan(api.generation)
    if request.precision == "fp16" and not api.fp16_flag:
        raise ExportError(f"{api.label} has no FP16 builder flag: pass the FP16 ONNX from `depth-export onnx --fp16`")
    if request.precision == "int8" and not api.int8_flag:
        raise ExportError(f"{api.label} has no INT8 builder flag: pass a Q/DQ ONNX from `depth-calib`")
    # INT8 plans run unquantized layers in FP16 (never lower than asked: INT8 < FP16 < FP32).
    flags = ("FP16",) if request.precision == "fp16" else ("INT8", "FP16")
    constraints = ("PREFER_PRECISION_CONSTRAINTS",) if api.precision_constraints else ()
    use_calibrator = request.precision == "int8" and request.onnx_kind == "fp32"
    notes: Tuple[str, ...] = ()
    if use_calibrator and api.generation == "10":
        notes = (
            f"{api.label} deprecates implicit INT8 calibration (since 10.1); "
            "a Q/DQ ONNX from `depth-calib` is the lasting route",
        )
    return BuildPlan(
        api.generation, builder_flags=flags + constraints, use_calibrator=use_calibrator,
        keep_head_fp32=bool(constraints), unquantized_precision="fp16" if request.precision == "int8" else None,
        notes=notes,
    )


def _plan_trt8(api: TrtApi, request: BuildRequest) -> BuildPlan:
    """8.5/8.6: explicit batch must be requested; no strongly typed networks."""
    plan = _weak_precision(api, request)
    if request.onnx_kind == "fp16":
        note = f"{api.label} has no strongly typed networks: the FP16 graph builds with the FP16 flag, head kept FP32"
        plan = dataclasses.replace(plan, notes=plan.notes + (note,))
    return plan


def _plan_trt10(api: TrtApi, request: BuildRequest) -> BuildPlan:
    """9.x/10.x: an FP16 ONNX builds strongly typed (no precision flags with it); else weak typing."""
    if request.onnx_kind == "fp16":
        return BuildPlan(api.generation, strongly_typed=True)
    return _weak_precision(api, request)


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
            "`depth-calib --trt-version 11` and build that"
        )
    if request.onnx_kind != "int8":
        return BuildPlan(api.generation, strongly_typed=True)
    notes: Tuple[str, ...] = ()
    if request.qdq_float_type == "fp32":
        notes = (f"the Q/DQ graph's unquantized layers are FP32 and {api.label} takes precision from the graph alone: "
                 "they run in FP32 (slower); `depth-calib --trt-version 11` writes them in FP16, head kept FP32",)
    return BuildPlan(api.generation, strongly_typed=True, unquantized_precision=request.qdq_float_type, notes=notes)


def parse_calibration_cache_header(data: bytes) -> Tuple[str, str]:
    """``(trt_version_code, algorithm)`` from a TensorRT calibration cache's first line,
    e.g. ``b"TRT-8601-EntropyCalibration2"`` -> ``("8601", "EntropyCalibration2")``."""
    first = data.split(b"\n", 1)[0].decode("ascii", errors="replace").strip()
    match = re.fullmatch(r"TRT-(\d+)-(\w+)", first)
    if not match:
        raise ExportError(
            f"the calibration cache starts with {first[:40]!r}, "
            "not a TensorRT header like 'TRT-8601-EntropyCalibration2': pass the cache file `depth-calib` wrote"
        )
    return match.group(1), match.group(2)
