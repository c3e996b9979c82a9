"""What ``depth-calib`` is asked to do, checked once before any work (the CLI maps a
:class:`~edgedepth.calib.errors.CalibrationRequestError` to exit 2)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, List, Optional

from edgedepth.budget import Budget
from edgedepth.calib.budget import int8_budget
from edgedepth.calib.calibration_set import DEFAULT_NUM_EVAL, DEFAULT_NUM_IMAGES
from edgedepth.calib.errors import CalibrationError, CalibrationRequestError
from edgedepth.calib.quantizers import METHODS
from edgedepth.calib.sensitivity import DEFAULT_MAX_FALLBACK, DEFAULT_TOP_K
from edgedepth.trt.generation import TrtTarget, default_target

Log = Callable[[str], None]
DEFAULT_METHOD = "minmax"


@dataclass
class CalibrationRequest:
    """What ``depth-calib`` was asked to do (see ``depth-calib --help``)."""

    onnx: Path
    output: Optional[Path] = None
    data: List[str] = field(default_factory=list)
    eval_data: List[str] = field(default_factory=list)
    split: str = "val"
    num_images: int = DEFAULT_NUM_IMAGES
    num_eval: int = DEFAULT_NUM_EVAL
    method: str = DEFAULT_METHOD
    quantizer: str = "auto"
    target: str = "tensorrt"
    #: The TensorRT the Q/DQ graph is for (None: the installed one, else 10); decides the quantizer,
    #: the opset and, for 11.x, FP16 unquantized layers.
    trt_version: Optional[TrtTarget] = None
    exclude: List[str] = field(default_factory=list)
    budget: Budget = field(default_factory=int8_budget)
    max_fallback: int = DEFAULT_MAX_FALLBACK
    top_k: int = DEFAULT_TOP_K
    keep_failed: bool = False
    cache: Optional[Path] = None
    save_set: Optional[Path] = None
    load_set: Optional[Path] = None
    report: Optional[Path] = None


def over_budget_path(output: Path) -> Path:
    """``model.int8.onnx`` -> ``model.int8.over-budget.onnx`` (where --keep-failed writes)."""
    return output.with_name(f"{output.stem}.over-budget{output.suffix or '.onnx'}")


def check_request(request: CalibrationRequest) -> None:
    """Refuse contradictory or impossible requests before any work (the one place they are checked;
    the CLI maps :class:`CalibrationRequestError` to exit 2)."""
    if not request.output and not request.cache:
        raise CalibrationRequestError(
            "nothing to write: pass --output model.int8.onnx (Q/DQ ONNX) and/or --cache model.calib (TensorRT cache)"
        )
    if request.output and Path(request.output).resolve() == Path(request.onnx).resolve():
        raise CalibrationRequestError(f"--output {request.output} would overwrite the FP32 --onnx; choose another name")
    if bool(request.data) == bool(request.load_set):
        raise CalibrationRequestError(
            "pass calibration images with --data SOURCE or a saved set with --load-set FILE.npy (one of them)"
        )
    if request.trt_version is not None and request.target != "tensorrt":
        raise CalibrationRequestError(
            "--trt-version applies to --target tensorrt only (a --target cpu graph is for ONNX Runtime)"
        )
    if request.method not in METHODS:
        raise CalibrationRequestError(f"--method {request.method!r} is unknown: choose one of {', '.join(METHODS)}")
    if request.max_fallback < 0 or request.top_k < 0:
        raise CalibrationRequestError(
            f"--max-fallback {request.max_fallback} / --sensitivity-top-k {request.top_k} must be >= 0"
        )
    if request.cache:
        _check_tensorrt_request(request.method)


def _check_tensorrt_request(method: str) -> None:
    from edgedepth.calib.legacy import check_algorithm
    from edgedepth.trt.imports import tensorrt_installed

    check_algorithm(method)
    if not tensorrt_installed():
        raise CalibrationError(
            "--cache needs TensorRT 8.5-10.x and a GPU (JetPack 5/6 or a desktop): TensorRT is not importable here; "
            "drop --cache and build the engine from the Q/DQ ONNX, or run this on the Jetson"
        )


def resolved_target(request: CalibrationRequest) -> Optional[TrtTarget]:
    """The TensorRT a ``--target tensorrt`` graph is for: ``--trt-version``, else the installed one, else 10."""
    if request.target != "tensorrt":
        return None
    return request.trt_version or default_target()
