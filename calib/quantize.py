"""One quantized graph and its judged variants: quantize once, check against the budget, keep the
most harmful nodes in higher precision when it misses (:mod:`edgedepth.calib.sensitivity`), and
give TensorRT 11 its strongly typed FP16 form. Returns a frozen :class:`Quantized`."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from edgedepth.agreement import Agreement
from edgedepth.calib import qdq
from edgedepth.calib.budget import Evaluator
from edgedepth.calib.calibration_set import CalibrationSet, calibration_batches
from edgedepth.calib.errors import CalibrationError
from edgedepth.calib.quantizers import choose_quantizer, create_quantizer, graph_batch_size
from edgedepth.calib.request import CalibrationRequest
from edgedepth.calib.sensitivity import (
    RANKING_IMAGES,
    FallbackResult,
    KeptNodes,
    activation_noise,
    greedy_fallback,
    group_scores,
    rank_nodes,
)
from edgedepth.export import onnx_info
from edgedepth.media import evenly_spaced
from edgedepth.spec import ModelSpec
from edgedepth.trt.generation import TrtTarget

Log = Callable[[str], None]
#: Calibration images AutoCast sees when it converts a TensorRT 11 graph's float parts to FP16.
AUTOCAST_IMAGES = 8


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
