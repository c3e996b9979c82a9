"""FP32 ONNX -> mixed FP16 ONNX for strongly typed TensorRT (11.x, 10.x STRONGLY_TYPED) and ORT-GPU.

What stays in FP32, as ModelOpt's AutoCast decides it:

* the output head (last Conv, sigmoid, x max_depth), always: its precision is the depth resolution;
* nodes whose inputs or outputs exceed ``data_max`` in magnitude on calibration-like probes
  (FP16 overflows at 65504; the margin covers frames brighter or busier than the probes);
* nodes whose whole output lies below FP16's normal range (it would flush to subnormals or zero);
* nodes fed by weights beyond FP16's range.

Graph inputs and outputs stay FP32 (Casts at the boundaries), so the input contract is unchanged.
ModelOpt AutoCast converts when installed; otherwise onnxconverter-common's
``convert_float_to_float16`` with the same block list. The result is verified at once in ONNX
Runtime against the FP32 graph (AbsRel <= 0.1 %, no NaN/Inf, extreme inputs included).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Set, Tuple, Union

import numpy as np

from edgedepth.errors import ExportError
from edgedepth.export import onnx_info
from edgedepth.export.fp16_converters import FP16_MAX, convert_graph, converter_name
from edgedepth.export.verify import Agreements, compare_probes, export_budget, probe_sizes, require
from edgedepth.io import atomic_path, check_outputs, sha256_file
from edgedepth.onnxrt import cpu_session, run_session
from edgedepth.probes import probe_batches
from edgedepth.spec import ModelSpec

FP16_MIN_NORMAL = 2.0 ** -14
#: Activation magnitude above which a node stays FP32: 1/16 of FP16's range, a margin for frames
#: brighter or busier than the probes (AutoCast's ``data_max`` plays the same role).
DEFAULT_DATA_MAX = FP16_MAX / 16
PathLike = Union[str, Path]


@dataclass
class Fp16Result:
    """What :func:`convert_to_fp16` wrote and why."""

    path: Path
    spec: ModelSpec
    converter: str
    fp32_nodes: Dict[str, str]  # node name -> reason it stays FP32
    checks: Dict[str, Agreements] = field(default_factory=dict)  # size -> probe -> agreement


def _float_tensor_names(model) -> Set[str]:
    """Names of every FLOAT tensor in the graph (after shape inference)."""
    onnx = onnx_info.import_onnx()
    inferred = onnx.shape_inference.infer_shapes(model)
    values = list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output)
    return {vi.name for vi in values if vi.type.tensor_type.elem_type == onnx.TensorProto.FLOAT}


def _with_intermediate_outputs(model, names: Iterable[str]):
    """A copy of ``model`` that also outputs the given (FLOAT) tensors."""
    onnx = onnx_info.import_onnx()
    exposed = copy.deepcopy(model)
    present = {output.name for output in exposed.graph.output}
    for name in sorted(set(names) - present):
        exposed.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    return exposed


def activation_ranges(model, batches: Iterable[np.ndarray]) -> Dict[str, float]:
    """Run ``model`` (FP32) on ``batches`` in ORT: ``{tensor: max |x|}`` for every float tensor."""
    exposed = _with_intermediate_outputs(model, _float_tensor_names(model))
    session = cpu_session(exposed.SerializeToString(), optimization="basic", error=ExportError)
    input_name = session.get_inputs()[0].name
    output_names = [output.name for output in session.get_outputs()]
    ranges: Dict[str, float] = {}
    for batch in batches:
        for name, value in zip(output_names, session.run(output_names, {input_name: batch})):
            if np.issubdtype(value.dtype, np.floating) and value.size:
                ranges[name] = max(ranges.get(name, 0.0), float(np.max(np.abs(value))))
    return ranges


def _initializer_limits(model) -> Dict[str, float]:
    onnx = onnx_info.import_onnx()
    limits = {}
    for init in model.graph.initializer:
        if init.data_type == onnx.TensorProto.FLOAT:
            values = onnx.numpy_helper.to_array(init)
            limits[init.name] = float(np.max(np.abs(values))) if values.size else 0.0
    return limits


def _range_reason(node, ranges: Dict[str, float], data_max: float) -> Optional[str]:
    for name in list(node.input) + list(node.output):
        if ranges.get(name, 0.0) > data_max:
            return f"|x| reaches {ranges[name]:.4g} on {name!r} (> {data_max:.4g})"
    for name in node.output:
        if 0.0 < ranges.get(name, 0.0) < FP16_MIN_NORMAL:  # all zeros is fine: FP16 has an exact zero
            return f"{name!r} stays below FP16's normal range (max |x| {ranges[name]:.3g})"
    return None


def select_fp32_nodes(
    model,
    ranges: Dict[str, float],
    head: Sequence[str],
    data_max: float = DEFAULT_DATA_MAX,
    keep_fp32: Sequence[str] = (),
) -> Dict[str, str]:
    """``{node name: reason}`` of the nodes that must stay FP32 (head, range, weights, user)."""
    reasons: Dict[str, str] = {name: "output head" for name in head}
    reasons.update({name: "requested (--keep-fp32)" for name in keep_fp32})
    weights = _initializer_limits(model)
    for node in model.graph.node:
        if node.name in reasons:
            continue
        reason = _range_reason(node, ranges, data_max)
        big = [name for name in node.input if weights.get(name, 0.0) > FP16_MAX]
        if big:
            reason = f"weights {big} exceed FP16's range"
        if reason:
            reasons[node.name] = reason
    return reasons


def _check_keep_fp32_names(model, keep_fp32: Sequence[str]) -> None:
    names = {node.name for node in model.graph.node}
    unknown = [name for name in keep_fp32 if name not in names]
    if unknown:
        raise ExportError(
            f"--keep-fp32 names {unknown} that are not nodes of this graph; node names look like "
            f"{sorted(names)[:3]} (see them with Netron or onnx.load(...).graph.node)"
        )


def _check_fp32_source(model, source: PathLike) -> None:
    kind = onnx_info.onnx_precision(model)
    if kind != "fp32":
        raise ExportError(
            f"{source} is already an {kind.upper()} graph; FP16 conversion needs the FP32 ONNX from "
            "`depth-export onnx` (without --fp16)"
        )


def _check_sizes(spec: ModelSpec) -> List[Tuple[int, int]]:
    return probe_sizes(spec.height, spec.width) if spec.dynamic else [(spec.height, spec.width)]


def verify_fp16(fp16_bytes: bytes, fp32_source: PathLike, spec: ModelSpec, seed: int = 1000) -> Dict[str, Agreements]:
    """FP16 vs FP32 in ORT on random, structured and extreme probes (other seeds than the range
    analysis): within the ``fp16`` budget row (AbsRel <= 0.1 % by default) and no NaN/Inf, at
    every checked size."""
    fp16_session = cpu_session(fp16_bytes, error=ExportError)
    fp32_session = cpu_session(fp32_source, error=ExportError)
    budget = export_budget("fp16")
    checks = {}
    for height, width in _check_sizes(spec):
        probes = probe_batches(spec, batch=2 if spec.dynamic else 1, size=(height, width), seed=seed)
        agreements = compare_probes(probes, lambda batch: run_session(fp16_session, batch),
                                    lambda batch: run_session(fp32_session, batch), spec, budget, "the FP16 ONNX")
        require(agreements, f"FP16 ONNX at {height}x{width}",
                "keep more nodes in FP32 (--data-max lower, --keep-fp32 NODE)")
        checks[f"fp16_vs_fp32_{height}x{width}"] = agreements
    return checks


def _fp16_spec(spec: ModelSpec, source: PathLike, converter: str, fp32_nodes: Dict[str, str],
               data_max: float) -> ModelSpec:
    provenance = dict(spec.provenance)
    provenance.update(
        precision="fp16",
        source_onnx=Path(source).name,
        source_onnx_sha256=sha256_file(source),
        fp16_converter=converter,
        fp16_data_max=data_max,
        fp32_nodes=sorted(fp32_nodes),
    )
    return spec.replace(provenance=provenance)


def default_fp16_path(fp32_path: PathLike) -> Path:
    """``model.onnx`` -> ``model.fp16.onnx``."""
    path = Path(fp32_path)
    return path.with_name(f"{path.stem}.fp16{path.suffix or '.onnx'}")


def convert_to_fp16(
    source: PathLike,
    output: Optional[PathLike] = None,
    data_max: float = DEFAULT_DATA_MAX,
    keep_fp32: Sequence[str] = (),
    converter: Optional[str] = None,
    log=print,
) -> Fp16Result:
    """Write the mixed-FP16 version of the FP32 ONNX ``source`` to ``output`` (verified, atomic).

    ``converter`` picks one of :data:`CONVERTERS` (default: AutoCast when installed). Raises
    UsageError before any work when ``output`` is the source (any name or hard link) or cannot be
    written; ExportError when the source is not an FP32 edgedepth ONNX, when no converter is
    installed, or when the FP16 graph misses its error budget or produces NaN/Inf.
    """
    onnx = onnx_info.import_onnx()
    output = Path(output) if output else default_fp16_path(source)
    check_outputs({"--output": output}, {"--onnx": source})
    model = onnx_info.load_model(source)
    _check_fp32_source(model, source)
    spec = onnx_info.read_spec(model, str(source), against_graph=True)
    onnx_info.ensure_node_names(model)
    _check_keep_fp32_names(model, keep_fp32)
    head = onnx_info.find_output_head(model, spec.output_name)
    probes = [batch for _, batch in probe_batches(spec, seed=0)]
    ranges = activation_ranges(model, probes)
    fp32_nodes = select_fp32_nodes(model, ranges, head, data_max, keep_fp32)
    converter = converter_name(converter)
    log(f"FP16: {len(fp32_nodes)} of {len(model.graph.node)} nodes stay FP32 (head: {len(head)}); "
        f"converting with {converter}")
    converted = convert_graph(model, sorted(fp32_nodes), converter, data_max, probes)
    fp16_spec = _fp16_spec(spec, source, converter, fp32_nodes, data_max)
    onnx_info.set_spec(converted, fp16_spec)
    onnx.checker.check_model(converted)
    data = converted.SerializeToString()
    checks = verify_fp16(data, source, fp16_spec)
    with atomic_path(output) as tmp:
        tmp.write_bytes(data)
    return Fp16Result(output, fp16_spec, converter, fp32_nodes, checks)
