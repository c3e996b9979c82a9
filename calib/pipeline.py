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
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from edgedepth import __version__
from edgedepth.agreement import Agreement
from edgedepth.budget import Budget
from edgedepth.calib import qdq
from edgedepth.calib.budget import Evaluator, int8_budget
from edgedepth.calib.calibration_set import (
    DEFAULT_NUM_EVAL,
    DEFAULT_NUM_IMAGES,
    CalibrationSet,
    attach_held_out,
    build_calibration_set,
    calibration_batches,
    check_counts,
    load_calibration_set,
    save_calibration_set,
)
from edgedepth.calib.errors import BudgetFailed, CalibrationError, CalibrationRequestError
from edgedepth.calib.quantizers import METHODS, choose_quantizer, create_quantizer, graph_batch_size
from edgedepth.calib.report import CalibrationReport, report_paths, write_report
from edgedepth.calib.sensitivity import (
    DEFAULT_MAX_FALLBACK,
    DEFAULT_TOP_K,
    RANKING_IMAGES,
    FallbackResult,
    KeptNodes,
    activation_noise,
    greedy_fallback,
    group_scores,
    rank_nodes,
)
from edgedepth.export import conformance, onnx_info
from edgedepth.io import atomic_path, sha256_file
from edgedepth.media import evenly_spaced
from edgedepth.spec import ModelSpec
from edgedepth.trt.generation import TrtTarget, default_target, parse_target

Log = Callable[[str], None]
DEFAULT_METHOD = "minmax"
#: The versions every report states compatibility with (JetPack 5, 6.0, 6.1+, desktop 10.x, 11).
REPORTED_TARGETS = tuple(parse_target(text) for text in ("8.5", "8.6", "10.3", "10.16", "11"))
#: Calibration images AutoCast sees when it converts a TensorRT 11 graph's float parts to FP16.
AUTOCAST_IMAGES = 8


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


def source_spec(onnx_path: Path) -> ModelSpec:
    """The spec of the FP32 ONNX (refusing an FP16 or already-INT8 graph)."""
    precision = onnx_info.onnx_precision(onnx_path)
    if precision != "fp32":
        raise CalibrationError(
            f"{onnx_path} is already {precision.upper()}: calibrate the FP32 ONNX that `depth-export onnx` writes"
        )
    return onnx_info.read_spec(onnx_path)


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


class QuantizationRun:
    """One fully quantized graph and the variants that keep chosen nodes in higher precision.

    The back end quantizes once (only the always-kept nodes excluded); every variant is graph
    surgery on that graph (:func:`qdq.keep_float_inputs`, float weights restored from the FP32
    graph), checked in ONNX Runtime against FP32 on the held-out images.
    """

    def __init__(self, request: CalibrationRequest, spec: ModelSpec, cset: CalibrationSet, backend: str,
                 workdir: Path) -> None:
        self.fp32, self.spec, self.cset, self.workdir = Path(request.onnx), spec, cset, workdir
        self.reference = onnx_info.load_model(self.fp32)
        self.batch = graph_batch_size(self.reference)
        self.quantizer = create_quantizer(backend, self.fp32, cset.calibration, request.method, workdir,
                                          spec.input_name, self.batch, request.target)
        self.evaluator = Evaluator(self.fp32, cset.held_out, spec, request.budget, self.batch)
        self.base = None
        self.trials = 0

    def quantize(self, kept: KeptNodes) -> None:
        """Quantize once with the back end, ``kept`` excluded."""
        path = self.workdir / "quantized.onnx"
        self.quantizer.quantize(path, list(kept))
        self.base = onnx_info.load_model(path)

    def variant(self, kept: Sequence[str]) -> bytes:
        """The quantized graph with ``kept`` in higher precision, serialized for ONNX Runtime."""
        import onnx

        model = onnx.ModelProto()
        model.CopyFrom(self.base)
        qdq.keep_float_inputs(model, kept, reference=self.reference)
        self.trials += 1
        return model.SerializeToString()

    def trial(self, kept: Sequence[str], images: Optional[int] = None) -> Tuple[bytes, Agreement]:
        graph = self.variant(kept)
        return graph, self.evaluator.evaluate(graph, images)


def _op_types(model) -> Dict[str, str]:
    return {node.name: node.op_type for node in model.graph.node}


def sensitivity_ranking(run: QuantizationRun, kept: KeptNodes, top_k: int, log: Log) -> list:
    """Fallback candidates, most harmful first (see :mod:`edgedepth.calib.sensitivity`)."""
    candidates = [name for name in qdq.quantized_nodes(run.base) if name not in kept]
    held_out = run.evaluator.held_out
    images = held_out[evenly_spaced(len(held_out), max(RANKING_IMAGES, run.batch))]
    noise = activation_noise(run.fp32, run.base, candidates, images, run.spec.input_name, run.batch)

    def only_in_int8(nodes: Sequence[str]) -> Agreement:
        chosen = set(nodes)
        return run.trial(list(kept) + [name for name in candidates if name not in chosen], RANKING_IMAGES)[1]

    limited = 0 < top_k < len(candidates)
    log(f"sensitivity: measuring {top_k if limited else len(candidates)} of {len(candidates)} INT8 nodes")
    prerank = group_scores(candidates, only_in_int8) if limited else None
    return rank_nodes(candidates, _op_types(run.base), noise, lambda node: only_in_int8([node]), top_k, prerank)


@dataclass(frozen=True)
class Fallback:
    """The greedy fallback's result and the last graph it tried with its agreement."""

    result: FallbackResult
    graph: bytes
    agreement: Agreement
    seconds: float


def run_fallback(run: QuantizationRun, kept: KeptNodes, request: CalibrationRequest, log: Log) -> Fallback:
    """Greedy fallback: keep the most harmful nodes in higher precision until the budget is met."""
    started = time.perf_counter()
    ranking = sensitivity_ranking(run, kept, request.top_k, log)
    tried: List[Tuple[bytes, Agreement]] = []

    def trial(nodes: KeptNodes) -> Agreement:
        graph, agreement = run.trial(list(nodes))
        log(f"fallback: kept {len(nodes) - len(kept)} node(s) in higher precision -> {agreement.summary()}")
        tried.append((graph, agreement))
        return agreement

    result = greedy_fallback(ranking, kept, trial, request.max_fallback)
    graph, agreement = tried[-1] if tried else (b"", Agreement({}, ()))
    return Fallback(result, graph, agreement, time.perf_counter() - started)


def _kept_list(model, kept: KeptNodes) -> List[Dict[str, str]]:
    types = _op_types(model)
    return [{"node": name, "op_type": types.get(name, "?"), "reason": reason} for name, reason in kept.items()]


def stamp_spec(graph: bytes, spec: ModelSpec, provenance: Dict[str, object]) -> bytes:
    """The graph with the spec, its provenance updated, in its metadata."""
    import onnx

    model = onnx.load_from_string(graph)
    merged = dict(spec.provenance)
    merged.update(provenance)
    onnx_info.set_spec(model, spec.replace(provenance=merged))
    return model.SerializeToString()


def always_kept(model, spec: ModelSpec, patterns: Sequence[str]) -> KeptNodes:
    """The output head and the ``--exclude`` matches, with the reason each stays in higher precision."""
    kept = qdq.head_exclusions(model, spec.output_name)
    for name, reason in qdq.resolve_exclusions(model, patterns).items():
        kept.setdefault(name, reason)
    return kept


@dataclass(frozen=True)
class Quantized:
    """What :func:`quantize_and_check` made: the graph that ships (or would), how it was judged,
    and what it took."""

    graph: bytes
    agreement: Agreement
    initial: Agreement
    kept: KeptNodes
    kept_list: List[Dict[str, str]]
    quantizer: str
    quantizer_version: str
    quantizer_note: Optional[str]
    unquantized_precision: str
    fallback: Optional[Fallback]
    seconds: float

    @property
    def passed(self) -> bool:
        return bool(self.agreement)


def quantize_and_check(request: CalibrationRequest, spec: ModelSpec, cset: CalibrationSet,
                       trt_target: Optional[TrtTarget], workdir: Path, log: Log) -> Quantized:
    """Q/DQ graph, budget check, fallback when it misses, and the form the target TensorRT takes."""
    started = time.perf_counter()
    backend, note = choose_quantizer(request.quantizer, request.method, request.target, trt_target)
    model = onnx_info.load_model(request.onnx)
    kept = always_kept(model, spec, request.exclude)
    run = QuantizationRun(request, spec, cset, backend, workdir)
    log(f"quantizing with {run.quantizer.version} ({request.method}, target {request.target}"
        f"{', ' + trt_target.label if trt_target else ''}) on {len(cset.calibration)} images")
    run.quantize(kept)
    graph, initial = run.trial(list(kept))
    log(f"INT8 vs FP32 on {run.evaluator.images} held-out images: {initial.summary()}")
    agreement, fallback = initial, None
    if not initial and request.max_fallback > 0:
        fallback = run_fallback(run, kept, request, log)
        if fallback.result.steps:
            kept, graph, agreement = fallback.result.kept, fallback.graph, fallback.agreement
    unquantized = "fp32"
    if trt_target is not None and trt_target.generation == "11":
        graph, agreement = strongly_typed_fp16(run, graph, kept, log)
        unquantized = "fp16"
    return Quantized(graph, agreement, initial, kept, _kept_list(model, kept), backend, run.quantizer.version, note,
                     unquantized, fallback, time.perf_counter() - started)


def resolved_target(request: CalibrationRequest) -> Optional[TrtTarget]:
    """The TensorRT a ``--target tensorrt`` graph is for: ``--trt-version``, else the installed one, else 10."""
    if request.target != "tensorrt":
        return None
    return request.trt_version or default_target()


def strongly_typed_fp16(run: QuantizationRun, graph: bytes, kept: KeptNodes, log: Log) -> Tuple[bytes, Agreement]:
    """TensorRT 11 takes precision from tensor types alone, so the layers left unquantized become
    FP16 in the graph itself (ModelOpt AutoCast on the Q/DQ graph: DequantizeLinear then outputs
    FP16), the kept nodes (the head first) stay FP32, graph I/O stays FP32. Re-checked against the
    budget: this is the graph that ships."""
    from edgedepth.export.fp16 import DEFAULT_DATA_MAX
    from edgedepth.export.fp16_converters import convert_graph, converter_available

    converter = "modelopt.onnx.autocast"
    if not converter_available(converter):
        raise CalibrationError(
            "TensorRT 11 INT8 needs the unquantized layers in FP16 in the graph, which ModelOpt AutoCast writes: "
            "`pip install nvidia-modelopt`, or make the graph for 10.x with --trt-version 10 (FP32 parts)"
        )
    model = onnx_info.import_onnx().load_from_string(graph)
    probes = calibration_batches(run.cset.calibration[:max(AUTOCAST_IMAGES, run.batch)], run.batch)
    converted = convert_graph(model, sorted(kept), converter, DEFAULT_DATA_MAX, probes).SerializeToString()
    agreement = run.evaluator.evaluate(converted)
    log(f"TensorRT 11: unquantized layers in FP16, {len(kept)} kept node(s) in FP32: {agreement.summary()}")
    return converted, agreement


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
    json_path, md_path = _report_targets(request)
    write_report(report, json_path, md_path)
    log(f"report: {json_path} and {md_path}")
    if not report.passed:
        raise BudgetFailed(_failure_message(report, md_path), report)
    return report


def _report_targets(request: CalibrationRequest) -> Tuple[Path, Path]:
    """``--report r.json`` (or ``r``) -> (r.json, r.md); by default beside the output (:func:`report_paths`)."""
    if request.report:
        return Path(request.report).with_suffix(".json"), Path(request.report).with_suffix(".md")
    written = request.output or request.cache
    assert written is not None, "check_request refuses a request with neither --output nor --cache"
    return report_paths(written)


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
