"""What ``depth-calib`` is asked to do, checked once before any work (the CLI maps a
:class:`~edgedepth.calib.errors.CalibrationRequestError` to exit 2)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

from edgedepth.budget import Budget
from edgedepth.calib.budget import int8_budget
from edgedepth.calib.calibration_set import DEFAULT_NUM_EVAL, DEFAULT_NUM_IMAGES, set_sidecar_path
from edgedepth.calib.errors import CalibrationError, CalibrationRequestError
from edgedepth.calib.quantizers import METHODS
from edgedepth.calib.report import report_paths
from edgedepth.calib.sensitivity import DEFAULT_MAX_FALLBACK, DEFAULT_TOP_K
from edgedepth.io import check_outputs
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
    check_outputs(output_paths(request), input_paths(request))
    if request.cache:
        _check_tensorrt_request(request.method)


def report_targets(request: CalibrationRequest) -> Tuple[Path, Path]:
    """``--report r.json`` (or ``r``) -> (r.json, r.md); by default beside the output (:func:`report_paths`)."""
    if request.report:
        return Path(request.report).with_suffix(".json"), Path(request.report).with_suffix(".md")
    written = request.output or request.cache
    assert written is not None, "check_request refuses a request with neither --output nor --cache"
    return report_paths(written)


def output_paths(request: CalibrationRequest) -> Dict[str, Optional[Path]]:
    """Every file a run may write, by the option that names it (the report always; the others when asked)."""
    from edgedepth.calib.legacy import cache_sidecar_path

    output, cache, save_set = request.output, request.cache, request.save_set
    json_path, md_path = report_targets(request)
    return {
        "--output": output,
        "--keep-failed's over-budget graph": over_budget_path(Path(output)) if output and request.keep_failed else None,
        "--cache": cache,
        "--cache's key file": cache_sidecar_path(cache) if cache else None,
        "--save-set": save_set,
        "--save-set's key file": set_sidecar_path(save_set) if save_set else None,
        "--report": json_path,
        "--report (Markdown)": md_path,
    }


def input_paths(request: CalibrationRequest) -> Dict[str, Optional[Path]]:
    """Every file a run reads that the command line names (none may be written)."""
    load_set = request.load_set
    inputs: Dict[str, Optional[Path]] = {
        "--onnx": Path(request.onnx),
        "--load-set": load_set,
        "--load-set's key file": set_sidecar_path(load_set) if load_set else None,
    }
    for option, sources in (("--data", request.data), ("--eval-data", request.eval_data)):
        inputs.update({f"{option} {source}": Path(source) for source in sources if Path(source).is_file()})
    return inputs


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
