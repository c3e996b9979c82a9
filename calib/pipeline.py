"""``depth-calib`` as a library call: calibration set -> Q/DQ ONNX -> budget check -> fallback -> outputs.

Nothing is written to ``--output`` unless the INT8 graph meets the budget against FP32 on held-out
images (``--keep-failed`` writes an over-budget graph to a clearly named file instead). The
report is always written. The output ONNX carries the model spec with its INT8 provenance.
"""
from __future__ import annotations

import dataclasses
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

from edgedepth import __version__
from edgedepth.calib.calibration_set import (
    DEFAULT_NUM_EVAL,
    CalibrationSet,
    attach_held_out,
    build_calibration_set,
    check_counts,
    load_calibration_set,
    save_calibration_set,
)
from edgedepth.calib.errors import BudgetFailed, CalibrationError
from edgedepth.calib.quantize import Quantized, always_kept, quantize_and_check
from edgedepth.calib.quantizers import graph_batch_size
from edgedepth.calib.report import CalibrationReport, write_report
from edgedepth.calib.request import CalibrationRequest, check_request, over_budget_path, report_targets, resolved_target
from edgedepth.calib.sensitivity import KeptNodes
from edgedepth.export import conformance, onnx_info
from edgedepth.io import atomic_path, sha256_file
from edgedepth.spec import ModelSpec
from edgedepth.trt.generation import TrtTarget, parse_target

Log = Callable[[str], None]
#: The versions every report states compatibility with (JetPack 5, 6.0, 6.1+, desktop 10.x, 11).
REPORTED_TARGETS = tuple(parse_target(text) for text in ("8.5", "8.6", "10.3", "10.16", "11"))


def source_spec(onnx_path: Path) -> ModelSpec:
    """The spec of the FP32 ONNX (refusing an FP16 or already-INT8 graph)."""
    precision = onnx_info.onnx_precision(onnx_path)
    if precision != "fp32":
        raise CalibrationError(
            f"{onnx_path} is already {precision.upper()}: calibrate the FP32 ONNX that `depth-export onnx` writes"
        )
    return onnx_info.read_spec(onnx_path, against_graph=True)


def calibration_set(request: CalibrationRequest, spec: ModelSpec, need_held_out: bool, log: Log) -> CalibrationSet:
    """Build or load the preprocessed images (and save them when asked)."""
    num_eval = request.num_eval if need_held_out else 0
    if request.load_set:
        cset = load_calibration_set(request.load_set, spec)
        if request.eval_data:
            attach_held_out(cset, spec, request.eval_data, num_eval or DEFAULT_NUM_EVAL, request.split)
        check_counts(cset, need_held_out)
    else:
        cset = build_calibration_set(spec, request.data, request.num_images, num_eval, request.eval_data, request.split)
    if request.save_set:
        save_calibration_set(request.save_set, cset, spec)
        log(f"saved the preprocessed set to {request.save_set}")
    for warning in cset.warnings:
        log(f"warning: {warning}")
    return cset


def tensorrt_compatibility(graph: bytes, target: Optional[TrtTarget]) -> Dict[str, List[str]]:
    """``depth-export check`` of the graph per TensorRT version: a graph its target TensorRT would
    not parse is never written (raises). The common versions are stated too (also for --target
    cpu, whose UINT8 graph TensorRT refuses)."""
    model = onnx_info.import_onnx().load_from_string(graph)
    targets = ([target] if target else []) + [other for other in REPORTED_TARGETS if str(other) != str(target)]
    found = conformance.summary(model, targets)
    violations = found.get(str(target), []) if target else []
    if target and violations:
        raise CalibrationError(
            f"the INT8 graph would not parse on {target.label} ({len(violations)} violation(s), "
            f"first: {violations[0]}); nothing written: report this with the command line, or pick --quantizer ort"
        )
    return found


def _provenance(request: CalibrationRequest, quantized: Quantized, cset: CalibrationSet,
                trt_target: Optional[TrtTarget], source_sha256: str, created_at: str) -> Dict[str, object]:
    images = cset.summary()
    return {
        "precision": "int8",
        "source": "calibration",
        "source_onnx": Path(request.onnx).name,
        "source_onnx_sha256": source_sha256,
        "quantizer": f"{quantized.quantizer} ({quantized.quantizer_version})",
        "calibration_method": request.method,
        "int8_target": request.target,
        "trt_version": str(trt_target) if trt_target else None,
        "unquantized_precision": quantized.unquantized_precision,
        "calibration_images": images["calibration_images"],
        "held_out_images": images["held_out_images"],
        "calibration_preprocess_hash": images["preprocess_hash"],
        "int8_budget": request.budget.to_dict(),
        "int8_figures": quantized.agreement.to_dict(),
        "int8_budget_passed": quantized.passed,
        "kept_in_higher_precision": [item["node"] for item in quantized.kept_list],
        "calibrated_at": created_at,
        "edgedepth_version": __version__,
    }


def stamp_spec(graph: bytes, spec: ModelSpec, provenance: Dict[str, object]) -> bytes:
    """The graph with the spec, its provenance updated, in its metadata."""
    import onnx

    model = onnx.load_from_string(graph)
    merged = dict(spec.provenance)
    merged.update(provenance)
    onnx_info.set_spec(model, spec.replace(provenance=merged))
    return model.SerializeToString()


def publish(graph: bytes, request: CalibrationRequest, passed: bool, provenance: Dict[str, object], spec: ModelSpec,
            log: Log) -> Optional[Path]:
    """Write the checked graph to --output (or, with --keep-failed, the over-budget name), atomically;
    the path written, or None."""
    if request.output is None or (not passed and not request.keep_failed):
        return None
    target = Path(request.output) if passed else over_budget_path(Path(request.output))
    with atomic_path(target) as tmp:
        tmp.write_bytes(stamp_spec(graph, spec, provenance))
    log(f"wrote {target}")
    return target


def write_tensorrt_cache_for(request: CalibrationRequest, spec: ModelSpec, cset: CalibrationSet, kept: KeptNodes,
                             log: Log) -> Dict[str, object]:
    """The TensorRT 8.5-10.x implicit-INT8 calibration cache (``--cache``); what it wrote or reused."""
    from edgedepth.calib.legacy import write_tensorrt_cache

    assert request.cache is not None, "called only for --cache"
    batch = graph_batch_size(onnx_info.load_model(request.onnx, load_weights=False))
    details = {"higher_precision_nodes": list(kept), "source_onnx": Path(request.onnx).name,
               "calibration_images": int(len(cset.calibration))}
    cache = write_tensorrt_cache(request.onnx, cset.calibration, request.cache, request.method, batch, details)
    log(f"TensorRT calibration cache: {request.cache} ({'reused' if cache['reused'] else 'written'})")
    return cache


@dataclass(frozen=True)
class Outputs:
    """What :func:`calibrate` wrote besides the report."""

    int8: Optional[Path] = None
    over_budget: Optional[Path] = None
    cache: Optional[Dict[str, object]] = None
    compatibility: Dict[str, List[str]] = field(default_factory=dict)


def assemble_report(request: CalibrationRequest, cset: CalibrationSet, quantized: Optional[Quantized], outputs: Outputs,
                    trt_target: Optional[TrtTarget], source_sha256: str, created_at: str,
                    timings: Dict[str, float]) -> CalibrationReport:
    """The report, built once from what each step returned."""
    q = quantized
    status = "cache-only" if q is None else "passed" if q.passed else "failed"
    return CalibrationReport(
        status=status, source_onnx=str(request.onnx), source_sha256=source_sha256, method=request.method,
        target=request.target, trt_version=str(trt_target) if trt_target and q else None,
        unquantized_precision=q.unquantized_precision if q else "fp32",
        output=str(outputs.int8) if outputs.int8 else None,
        over_budget_output=str(outputs.over_budget) if outputs.over_budget else None,
        quantizer=q.quantizer if q else None, quantizer_version=q.quantizer_version if q else None,
        quantizer_note=q.quantizer_note if q else None, images=cset.summary(), warnings=list(cset.warnings),
        kept_in_higher_precision=q.kept_list if q else [], budget=request.budget.to_dict(),
        failures=q.agreement.failures if q else [], figures=q.agreement.to_dict() if q else {},
        checks=[check.to_dict() for check in q.agreement.checks] if q else [],
        initial_figures=q.initial.to_dict() if q else {},
        fallback=q.fallback.result.to_dict() if q and q.fallback else None,
        tensorrt_compatibility=outputs.compatibility, tensorrt_cache=outputs.cache, timings_s=timings,
        edgedepth_version=__version__, created_at=created_at,
    )


def _quantize_and_publish(request: CalibrationRequest, spec: ModelSpec, cset: CalibrationSet,
                          trt_target: Optional[TrtTarget], source_sha256: str, created_at: str,
                          log: Log) -> Tuple[Quantized, Outputs]:
    with tempfile.TemporaryDirectory(prefix="edgedepth-calib-") as workdir:
        quantized = quantize_and_check(request, spec, cset, trt_target, Path(workdir), log)
    compatibility = tensorrt_compatibility(quantized.graph, trt_target)
    provenance = _provenance(request, quantized, cset, trt_target, source_sha256, created_at)
    written = publish(quantized.graph, request, quantized.passed, provenance, spec, log)
    outputs = Outputs(int8=written if quantized.passed else None,
                      over_budget=None if quantized.passed else written, compatibility=compatibility)
    return quantized, outputs


def calibrate(request: CalibrationRequest, log: Log = print) -> CalibrationReport:
    """Run the calibration stage; returns the report (also written as JSON + Markdown).

    Raises :class:`BudgetFailed` (carrying the report) when the INT8 graph misses the budget, and
    CalibrationError (or ExportError from the TensorRT conformance check) for bad input.
    """
    started = time.perf_counter()
    check_request(request)
    spec = source_spec(Path(request.onnx))
    trt_target = resolved_target(request) if request.output else None
    if trt_target is not None:  # a source the target cannot parse would fail after all the work
        conformance.require_conformance(request.onnx, trt_target, f"the FP32 ONNX {request.onnx}")
        request = dataclasses.replace(request, trt_version=trt_target)  # resolved once
    source_sha256 = sha256_file(request.onnx)
    created_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    cset = calibration_set(request, spec, need_held_out=bool(request.output), log=log)
    timings = {"data": time.perf_counter() - started}
    quantized, outputs = None, Outputs()
    if request.output:
        quantized, outputs = _quantize_and_publish(request, spec, cset, trt_target, source_sha256, created_at, log)
        timings["quantize_and_check"] = quantized.seconds
        if quantized.fallback:
            timings["fallback"] = quantized.fallback.seconds
    if request.cache:
        cache_started = time.perf_counter()
        kept = quantized.kept if quantized else always_kept(onnx_info.load_model(request.onnx), spec, request.exclude)
        outputs = dataclasses.replace(outputs, cache=write_tensorrt_cache_for(request, spec, cset, kept, log))
        timings["tensorrt_cache"] = time.perf_counter() - cache_started
    timings["total"] = time.perf_counter() - started
    report = assemble_report(request, cset, quantized, outputs, trt_target, source_sha256, created_at, timings)
    json_path, md_path = report_targets(request)
    write_report(report, json_path, md_path)
    log(f"report: {json_path} and {md_path}")
    if not report.passed:
        raise BudgetFailed(_failure_message(report, md_path), report)
    return report


def _failure_message(report: CalibrationReport, md_path: Path) -> str:
    tried = len(report.fallback["steps"]) if report.fallback else 0
    if report.fallback:
        how = f"after keeping {tried} more node(s) in higher precision ({report.fallback['stopped']})"
    elif report.unquantized_precision == "fp16":
        how = "once its unquantized layers were made FP16 for TensorRT 11 (try --exclude for the nodes FP16 hurts)"
    else:
        how = "(fallback disabled: --max-fallback 0)"
    kept = f"; over-budget graph kept at {report.over_budget_output}" if report.over_budget_output else ""
    return (f"the INT8 graph misses the budget {how}: {'; '.join(report.failures)}; nothing written to --output{kept}; "
            f"see {md_path} (raise --max-fallback, add --exclude, use more calibration images, or relax --budget)")
