"""TensorRT conformance of an ONNX graph, per TensorRT generation, without TensorRT.

A graph TensorRT cannot parse fails on the device, minutes into a build, with a parser message;
this check says the same before anything leaves the workstation. The rules come from NVIDIA's
sources, each named in its violation:

* the ONNX parser's operator tables (``docs/operators.md`` of onnx/onnx-tensorrt per GA branch,
  shipped in ``export/data/tensorrt_onnx_operators.json``, provenance inside): opset range, every
  operator supported, its data types (DOUBLE counts as FLOAT everywhere and INT64 as INT32 on
  8.x: the tables say the parser casts them down), Resize's modes;
* explicit quantization (the same tables, onnx-tensorrt's Q/DQ importers and NVIDIA's Q/DQ
  docs): DequantizeLinear reads only the quantized types the generation accepts (INT8 only on
  8.x; never INT32, which is what ONNX Runtime writes for quantized biases), zero points present
  (8.x needs all three inputs) and 0, signed INT8 (no UINT8), per-channel scales only on weights
  and along the consuming layer's output-channel axis.

A version is checked against the newest table at or below it (10.3 -> the 10.1 table, whose
entries for every operator edgedepth uses equal 10.6's); a bare major against its oldest table.
"""
from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from edgedepth.errors import ExportError
from edgedepth.export import onnx_info
from edgedepth.trt.generation import TrtTarget

TABLES_PATH = Path(__file__).with_name("data") / "tensorrt_onnx_operators.json"
QDQ_OPS = onnx_info.QDQ_OPS
DEFAULT_DOMAINS = ("", "ai.onnx")
#: ONNX element type names -> the type names of onnx-tensorrt's tables.
_TABLE_TYPES = {
    "FLOAT": "FP32", "FLOAT16": "FP16", "BFLOAT16": "BF16", "DOUBLE": "DOUBLE", "INT8": "INT8", "UINT8": "UINT8",
    "INT32": "INT32", "INT64": "INT64", "BOOL": "BOOL", "FLOAT8E4M3FN": "FP8", "INT4": "INT4", "FLOAT4E2M1": "FP4",
}
RESIZE_MODES = ("nearest", "linear")
RESIZE_COORDINATES = ("half_pixel", "pytorch_half_pixel", "tf_half_pixel_for_nn", "asymmetric", "align_corners")
#: The input that carries weights, and the axis of their output channels, per weighted op.
_WEIGHT_AXES = {"Conv": (1, 0), "ConvTranspose": (1, 1)}


@dataclass(frozen=True)
class Violation:
    """One reason a TensorRT generation would refuse the graph."""

    node: str
    rule: str
    limit: str
    fix: str

    def line(self) -> str:
        return f"{self.node}: {self.rule}: {self.limit}; fix: {self.fix}"


@dataclass(frozen=True)
class Table:
    """One generation's parser facts."""

    key: str
    source: str
    min_opset: Optional[int]
    max_opset: Optional[int]
    operators: Dict[str, Dict[str, Any]]


@functools.lru_cache(maxsize=1)
def _tables() -> Dict[str, Dict[str, Any]]:
    return json.loads(TABLES_PATH.read_text(encoding="utf-8"))


def _key(text: str) -> Tuple[int, int]:
    major, minor = text.split(".")
    return int(major), int(minor)


def table_for(target: TrtTarget) -> Table:
    """The operator table that holds for ``target`` (see the module docstring)."""
    keys = sorted(_tables(), key=_key)
    same_major = [key for key in keys if _key(key)[0] == target.major]
    if target.minor is None:
        chosen = same_major[0] if same_major else None
    else:
        below = [key for key in keys if _key(key) <= (target.major, target.minor)]
        chosen = below[-1] if below and _key(below[-1])[0] >= min(target.major, 10) else None
    if chosen is None:
        known = ", ".join(keys)
        raise ExportError(
            f"no ONNX parser table for {target.label} (tables: {known}); check against one of those versions"
        )
    data = _tables()[chosen]
    return Table(chosen, data["source"], data.get("min_opset"), data.get("max_opset"), data["operators"])


# ----------------------------------------------------------------------------------------- graph facts


class Graph:
    """The facts the rules read: producers, consumers, constants and every tensor's element type."""

    def __init__(self, model: Any) -> None:
        onnx = onnx_info.import_onnx()
        self.model = model
        self.onnx = onnx
        try:
            inferred = onnx.shape_inference.infer_shapes(model)
        except Exception:  # noqa: BLE001 - a graph shape inference cannot type still gets the other checks
            inferred = model
        values = list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output)
        self.types: Dict[str, str] = {
            v.name: onnx.TensorProto.DataType.Name(v.type.tensor_type.elem_type) for v in values
        }
        self.constants: Dict[str, Any] = {init.name: init for init in model.graph.initializer}
        for node in model.graph.node:
            if node.op_type == "Constant" and node.output:
                self.constants[node.output[0]] = node
        for name, init in self.constants.items():
            if not hasattr(init, "op_type"):
                self.types.setdefault(name, onnx.TensorProto.DataType.Name(init.data_type))
        self.producers = {out: node for node in model.graph.node for out in node.output if out}
        self.consumers: Dict[str, List[Tuple[Any, int]]] = {}
        for node in model.graph.node:
            for index, name in enumerate(node.input):
                self.consumers.setdefault(name, []).append((node, index))

    def value(self, name: str) -> Optional[np.ndarray]:
        """The value of a constant tensor (initializer or Constant node), else None."""
        found = self.constants.get(name)
        if found is None:
            return None
        if hasattr(found, "op_type"):
            attribute = next((a for a in found.attribute if a.name == "value"), None)
            return None if attribute is None else self.onnx.numpy_helper.to_array(attribute.t)
        return self.onnx.numpy_helper.to_array(found)

    def is_weight(self, name: str) -> bool:
        """True for a constant, or a QuantizeLinear of a constant (weights quantized at build time)."""
        if name in self.constants:
            return True
        writer = self.producers.get(name)
        return writer is not None and writer.op_type == "QuantizeLinear" and writer.input[0] in self.constants


def _name(node: Any) -> str:
    return node.name or f"<unnamed {node.op_type}>"


def _attribute(node: Any, name: str, default: Any) -> Any:
    found = next((a for a in node.attribute if a.name == name), None)
    if found is None:
        return default
    return found.s.decode() if found.type == found.STRING else found.i


# ----------------------------------------------------------------------------------------- the rules


def _opset_rule(model: Any, table: Table, target: TrtTarget) -> Iterator[Violation]:
    opset = next((o.version for o in model.opset_import if o.domain in DEFAULT_DOMAINS), 0)
    low, high = table.min_opset, table.max_opset
    if (low is None or opset >= low) and (high is None or opset <= high):
        return
    limit = f"{target.label} parses opsets {low} to {high}" if low else f"{target.label} parses up to opset {high}"
    if any(node.op_type in QDQ_OPS for node in model.graph.node):
        fix = f"re-run `depth-calib --trt-version {target}` on the FP32 ONNX (it keeps a parsable opset)"
    else:
        fix = f"re-export with `depth-export onnx --opset {high if high is not None and opset > high else low}`"
    yield Violation("(model)", f"opset {opset}", limit, fix)


def _normalised(type_name: Optional[str], generation: str) -> Optional[str]:
    if type_name is None:
        return None
    table_type = _TABLE_TYPES.get(type_name, type_name)
    if table_type == "DOUBLE":
        return "FP32"  # every table: the parser casts DOUBLE down to FLOAT
    if table_type == "INT64" and generation == "8":
        return "INT32"  # 8.x tables: INT64 is cast down to INT32
    return table_type


def _operator_rule(graph: Graph, node: Any, table: Table, target: TrtTarget) -> Iterator[Violation]:
    if node.domain not in DEFAULT_DOMAINS:
        yield Violation(_name(node), f"operator {node.domain}::{node.op_type}",
                        f"{target.label} parses the default ONNX domain only",
                        "export without vendor-specific operators (plain ONNX opset)")
        return
    entry = table.operators.get(node.op_type)
    if entry is None or not entry.get("supported"):
        yield Violation(_name(node), f"operator {node.op_type}",
                        f"not supported by the {target.label} ONNX parser (table {table.key})",
                        "replace it in the model or export it differently")
        return
    if node.op_type in QDQ_OPS or not entry.get("types"):
        return
    names = (node.input[:1] or []) + node.output[:1]
    kinds = [_normalised(graph.types.get(name), target.generation) for name in names if name]
    seen = [kind for kind in kinds if kind and kind != "UNDEFINED"]
    if seen and not any(kind in entry["types"] for kind in seen):
        yield Violation(_name(node), f"{node.op_type} on {'/'.join(sorted(set(seen)))}",
                        f"{target.label} runs {node.op_type} on {', '.join(entry['types'])}",
                        "cast to a supported type before it")


def _resize_rule(node: Any, target: TrtTarget) -> Iterator[Violation]:
    if node.op_type != "Resize":
        return
    mode = _attribute(node, "mode", "nearest")
    coordinates = _attribute(node, "coordinate_transformation_mode", "half_pixel")
    if mode not in RESIZE_MODES:
        yield Violation(_name(node), f"Resize mode {mode!r}", f"{target.label} supports {', '.join(RESIZE_MODES)}",
                        "use bilinear or nearest upsampling")
    if coordinates not in RESIZE_COORDINATES:
        yield Violation(_name(node), f"Resize coordinate_transformation_mode {coordinates!r}",
                        f"{target.label} supports {', '.join(RESIZE_COORDINATES)}",
                        "export with align_corners=False (half_pixel)")
    if _attribute(node, "antialias", 0):
        yield Violation(_name(node), "Resize antialias=1", f"{target.label} does not support antialiasing",
                        "export without antialias")


def _dq_input_rule(graph: Graph, node: Any, table: Table, target: TrtTarget) -> Iterator[Violation]:
    if node.op_type != "DequantizeLinear":
        return
    allowed = table.operators.get("DequantizeLinear", {}).get("types", [])
    kind = _normalised(graph.types.get(node.input[0]), "")
    if kind == "INT32":
        yield Violation(_name(node), "DequantizeLinear of an INT32 tensor (a quantized bias)",
                        f"{target.label} dequantizes only {', '.join(allowed)}",
                        "keep biases in float: ONNX Runtime's quantizer with extra_options QuantizeBias=False "
                        f"(`depth-calib --trt-version {target}` does)")
    elif kind not in (None, "UINT8") and kind not in allowed:
        yield Violation(_name(node), f"DequantizeLinear of {kind}",
                        f"{target.label} dequantizes only {', '.join(allowed)}",
                        f"re-run `depth-calib --trt-version {target}`")


def _zero_point_rule(graph: Graph, node: Any, target: TrtTarget) -> Iterator[Violation]:
    if node.op_type not in QDQ_OPS:
        return
    explicit = len(node.input) >= 3 and bool(node.input[2])
    if not explicit and target.generation == "8":
        yield Violation(_name(node), f"{node.op_type} without a zero point",
                        f"{target.label} needs all three inputs, the zero point given explicitly (= 0)",
                        f"re-run `depth-calib --trt-version {target}` (writes explicit zero points)")
    if explicit:
        yield from _zero_point_values(graph, node, target)
    scale = graph.value(node.input[1])
    if scale is not None and np.any(scale <= 0):
        yield Violation(_name(node), f"{node.op_type} scale {float(scale.min()):.3g}",
                        f"{target.label} needs positive scales",
                        "recalibrate: a zero or negative scale means an empty calibration range")


def _zero_point_values(graph: Graph, node: Any, target: TrtTarget) -> Iterator[Violation]:
    zero = graph.value(node.input[2])
    if zero is None:
        yield Violation(_name(node), f"{node.op_type} zero point {node.input[2]!r} is computed",
                        f"{target.label} needs a constant zero point", "make the zero point an initializer of 0")
        return
    if zero.dtype == np.uint8:
        yield Violation(_name(node), f"{node.op_type} with UINT8 zero point (UINT8 activations)",
                        f"{target.label} quantizes to signed INT8 only "
                        "(8.x refuses UINT8, 10.x+ converts it with a warning)",
                        f"quantize for TensorRT: `depth-calib --target tensorrt --trt-version {target}`")
    elif np.any(zero != 0):
        yield Violation(_name(node), f"{node.op_type} zero point {int(np.max(np.abs(zero)))}",
                        f"{target.label} supports symmetric quantization only (zero point 0)",
                        f"quantize symmetrically: `depth-calib --target tensorrt --trt-version {target}`")


def _per_channel_rule(graph: Graph, node: Any, target: TrtTarget) -> Iterator[Violation]:
    if node.op_type != "DequantizeLinear":
        return
    scale = graph.value(node.input[1])
    if scale is None or scale.size <= 1:
        return
    if not graph.is_weight(node.input[0]):
        yield Violation(_name(node), "per-channel scale on an activation",
                        f"{target.label} quantizes activations per tensor only",
                        "quantize activations per tensor (ONNX Runtime: per_channel applies to weights only)")
        return
    yield from _weight_axis_rule(graph, node, scale, target)


def _weight_axis_rule(graph: Graph, node: Any, scale: np.ndarray, target: TrtTarget) -> Iterator[Violation]:
    weight = graph.value(node.input[0])
    if weight is None:
        writer = graph.producers.get(node.input[0])
        weight = graph.value(writer.input[0]) if writer is not None else None
    rank = weight.ndim if weight is not None else 4
    axis = int(_attribute(node, "axis", 1)) % rank
    for consumer, index in graph.consumers.get(node.output[0], []):
        weight_input, channel_axis = _WEIGHT_AXES.get(consumer.op_type, (None, None))
        if index == weight_input and axis != channel_axis:
            yield Violation(_name(node), f"per-channel axis {axis} on {consumer.op_type} weights",
                            f"{target.label} quantizes {consumer.op_type} weights "
                            f"along their output channels (axis {channel_axis})",
                            "quantize weights per output channel (ONNX Runtime and ModelOpt do for Conv)")
    if weight is not None and scale.size != weight.shape[axis]:
        yield Violation(_name(node), f"{scale.size} per-channel scales for {weight.shape[axis]} channels",
                        "one scale per channel along the axis", "re-quantize the weights")


def load_graph(model_or_path: Any) -> Graph:
    """The facts of an ONNX (path or model) once, for checking it against several targets."""
    return model_or_path if isinstance(model_or_path, Graph) else Graph(onnx_info.load_model(model_or_path))


def check_graph(model_or_path: Any, target: TrtTarget) -> List[Violation]:
    """Every violation of ``target``'s rules in the graph (a path, a model or a :func:`load_graph`
    result; empty when it should parse)."""
    graph = load_graph(model_or_path)
    model, table = graph.model, table_for(target)
    found = list(_opset_rule(model, table, target))
    for node in model.graph.node:
        found.extend(_operator_rule(graph, node, table, target))
        found.extend(_resize_rule(node, target))
        found.extend(_dq_input_rule(graph, node, table, target))
        found.extend(_zero_point_rule(graph, node, target))
        found.extend(_per_channel_rule(graph, node, target))
    return found


def require_conformance(model_or_path: Any, target: TrtTarget, what: str) -> None:
    """ExportError listing every violation (one per line) when ``target`` would refuse the graph."""
    violations = check_graph(model_or_path, target)
    if violations:
        lines = "\n  ".join(violation.line() for violation in violations[:20])
        more = f"\n  ... and {len(violations) - 20} more" if len(violations) > 20 else ""
        count = len(violations)
        raise ExportError(f"{what} would not parse on {target.label} ({count} violation(s)):\n  {lines}{more}")


def summary(model_or_path: Any, targets: Sequence[TrtTarget]) -> Dict[str, List[str]]:
    """``{"8.6": [violation lines], ...}`` for several targets (report sections)."""
    graph = load_graph(model_or_path)
    return {str(target): [violation.line() for violation in check_graph(graph, target)] for target in targets}
