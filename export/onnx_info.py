"""What an ONNX file holds, read from its graph: precision kind, I/O tensors, the output head.

Export, calibration, the runtime and parity all ask these questions of an ONNX; they are
answered here once, from graph content (never from a file name).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Set, Tuple, Union

from edgedepth.errors import ExportError, SpecError
from edgedepth.spec import ModelSpec

if TYPE_CHECKING:  # onnx is imported lazily (import_onnx); its types only annotate
    from onnx import NodeProto

#: ``onnx_precision`` results.
PRECISION_KINDS = ("fp32", "fp16", "int8")
QDQ_OPS = frozenset({"QuantizeLinear", "DequantizeLinear"})
#: Ops that consume only the shape of their input: the head search does not walk through them.
SHAPE_ONLY_OPS = frozenset({"Shape", "Size"})
#: Ops the head search stops at (inclusive): the last layer with weights before the output.
HEAD_ANCHOR_OPS = frozenset({"Conv", "ConvTranspose"})

#: A path to an ONNX file or an ``onnx.ModelProto`` (onnx is imported lazily, so not named here).
ModelOrPath = Union[str, Path, Any]


def import_onnx():
    """Import onnx or raise ExportError saying how to install it."""
    try:
        import onnx
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ExportError("the onnx package is not installed: `pip install edgedepth[export]`") from exc
    return onnx


def load_model(model_or_path: ModelOrPath, load_weights: bool = True):
    """An ``onnx.ModelProto`` from a path or a model (returned as is)."""
    onnx = import_onnx()
    if isinstance(model_or_path, onnx.ModelProto):
        return model_or_path
    path = Path(model_or_path)
    if not path.is_file():
        raise ExportError(f"ONNX file {str(path)!r} does not exist: export one with `depth-export onnx`")
    try:
        return onnx.load(str(path), load_external_data=load_weights)
    except Exception as exc:  # protobuf raises several unrelated types for a damaged file
        raise ExportError(f"{path} is not a readable ONNX model ({type(exc).__name__}: {exc}); re-export it") from exc


def has_qdq(model_or_path: ModelOrPath) -> bool:
    """True when the graph holds QuantizeLinear/DequantizeLinear nodes (explicit INT8)."""
    model = load_model(model_or_path, load_weights=False)
    return any(node.op_type in QDQ_OPS for node in model.graph.node)


def is_fp16_graph(model_or_path: ModelOrPath) -> bool:
    """True when the graph computes in FP16: FP16 weights or Casts to FP16."""
    onnx = import_onnx()
    model = load_model(model_or_path, load_weights=False)
    fp16 = onnx.TensorProto.FLOAT16
    if any(init.data_type == fp16 for init in model.graph.initializer):
        return True
    for node in model.graph.node:
        if node.op_type == "Cast" and any(a.name == "to" and a.i == fp16 for a in node.attribute):
            return True
    return False


def onnx_precision(model_or_path: ModelOrPath) -> str:
    """The precision kind of an ONNX graph: ``"int8"`` (Q/DQ), ``"fp16"`` or ``"fp32"``.

    Q/DQ wins: an INT8 graph may also carry FP16 parts.
    """
    model = load_model(model_or_path, load_weights=False)
    if has_qdq(model):
        return "int8"
    return "fp16" if is_fp16_graph(model) else "fp32"


@dataclass(frozen=True)
class TensorInfo:
    """One graph input or output: name, element type name and shape (str = symbolic dim)."""

    name: str
    dtype: str
    shape: Tuple[Union[int, str], ...]

    @property
    def is_dynamic(self) -> bool:
        return any(not isinstance(dim, int) for dim in self.shape)


def _tensor_info(value_info) -> TensorInfo:
    onnx = import_onnx()
    tensor_type = value_info.type.tensor_type
    dims: List[Union[int, str]] = []
    for dim in tensor_type.shape.dim:
        dims.append(dim.dim_value if dim.HasField("dim_value") else (dim.dim_param or "?"))
    dtype = onnx.TensorProto.DataType.Name(tensor_type.elem_type).lower()
    return TensorInfo(value_info.name, dtype, tuple(dims))


def graph_inputs(model_or_path: ModelOrPath) -> List[TensorInfo]:
    """Graph inputs that are real inputs (initializers listed as inputs by old exporters excluded)."""
    model = load_model(model_or_path, load_weights=False)
    weights = {init.name for init in model.graph.initializer}
    return [_tensor_info(vi) for vi in model.graph.input if vi.name not in weights]


def graph_outputs(model_or_path: ModelOrPath) -> List[TensorInfo]:
    model = load_model(model_or_path, load_weights=False)
    return [_tensor_info(vi) for vi in model.graph.output]


def metadata(model_or_path: ModelOrPath) -> Dict[str, str]:
    """The ``metadata_props`` as a dict."""
    model = load_model(model_or_path, load_weights=False)
    return {prop.key: prop.value for prop in model.metadata_props}


def read_spec(model_or_path: ModelOrPath, source: Optional[str] = None, against_graph: bool = False) -> ModelSpec:
    """The ModelSpec stored in an ONNX's metadata (SpecError when absent). With ``against_graph``,
    also SpecError when it disagrees with the graph's input (:func:`check_spec_matches_graph`):
    what every stage that feeds or converts the graph asks. ``source`` names the file in messages
    (default: the path, or "ONNX model" for a model object)."""
    source = source or (str(model_or_path) if not hasattr(model_or_path, "graph") else "ONNX model")
    model = load_model(model_or_path, load_weights=False)
    spec = ModelSpec.from_metadata_props(metadata(model), source=source)
    if against_graph:
        check_spec_matches_graph(spec, graph_inputs(model), source)
    return spec


def check_spec_matches_graph(spec: ModelSpec, inputs: Sequence[TensorInfo], source: str) -> None:
    """SpecError unless the graph has the spec's input with the spec's channels, height and width
    (:meth:`ModelSpec.check_graph_input`; symbolic dimensions agree with any size)."""
    named = [item for item in inputs if item.name == spec.input_name]
    if not named:
        raise SpecError(
            f"{source}: its model spec names the input {spec.input_name!r} but the graph's inputs are "
            f"{[item.name for item in inputs]}; the spec was edited or belongs to another model: re-export it"
        )
    spec.check_graph_input(named[0].shape, source)


def set_spec(model, spec: ModelSpec) -> None:
    """Write ``spec`` into ``model.metadata_props`` in place, replacing an older spec."""
    props = spec.to_metadata_props()
    kept = [(p.key, p.value) for p in model.metadata_props if p.key not in props]
    del model.metadata_props[:]
    for key, value in kept + sorted(props.items()):
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value


def producers(model) -> Dict[str, NodeProto]:
    """Tensor name -> the node that writes it."""
    return {out: node for node in model.graph.node for out in node.output if out}


def find_output_head(model_or_path: ModelOrPath, output_name: Optional[str] = None) -> List[str]:
    """Names of the nodes that form the output head: the last Conv before the output and
    everything between it and the output (sigmoid, x max_depth, any resize).

    These must stay in FP32 (FP16 ONNX) or FP16/FP32 (INT8 plans): at reduced precision a
    sigmoid x max_depth output loses its depth resolution. Shape-only branches (Shape -> ...)
    are followed no further than the Shape node. Raises ExportError when no Conv feeds the output.
    """
    model = load_model(model_or_path, load_weights=False)
    outputs = [output_name] if output_name else [o.name for o in model.graph.output]
    writers = producers(model)
    head: List[str] = []
    seen: Set[int] = set()
    anchors = 0
    stack = [writers[name] for name in outputs if name in writers]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        head.append(node.name)
        if node.op_type in HEAD_ANCHOR_OPS:
            anchors += 1
            continue
        if node.op_type in SHAPE_ONLY_OPS:
            continue
        stack.extend(writers[name] for name in node.input if name in writers)
    if not anchors:
        raise ExportError(
            f"no Conv feeds the graph output(s) {outputs}: cannot locate the output head to keep it "
            "in FP32; is this an edgedepth model exported with `depth-export onnx`?"
        )
    return head


def ensure_node_names(model) -> None:
    """Give every unnamed or duplicate-named node a unique name (precision block lists and
    TensorRT layer names address nodes by name)."""
    taken = {node.name for node in model.graph.node if node.name}
    kept: Set[str] = set()
    for index, node in enumerate(model.graph.node):
        if node.name and node.name not in kept:
            kept.add(node.name)
            continue
        name = f"{node.name or node.op_type}_{index}"
        while name in taken:
            name += "_"
        node.name = name
        taken.add(name)
        kept.add(name)


def node_op_types(model_or_path: ModelOrPath, names: Sequence[str]) -> Dict[str, str]:
    """``{node name: op type}`` for the given node names (for reports and tests)."""
    model = load_model(model_or_path, load_weights=False)
    wanted = set(names)
    return {node.name: node.op_type for node in model.graph.node if node.name in wanted}
