"""Q/DQ graph surgery and inspection, independent of the quantizer that inserted the nodes.

* :func:`keep_float_inputs` makes "kept in higher precision" true in the graph: the named nodes read
  float tensors (``DequantizeLinear(QuantizeLinear(x))`` is bypassed for them, quantized weights
  are restored from the FP32 graph), so neither ONNX Runtime nor TensorRT runs them, or rounds
  their inputs, in INT8. Quantizers only promise not to quantize a node's *own* inputs; a
  quantized producer (e.g. a residual ``Add``) still hands it a Q/DQ pair. Applied to a fully
  quantized graph it gives what re-quantizing with those nodes excluded gives, without
  recalibrating, which makes the fallback search cheap.
* :func:`quantized_nodes` lists the nodes that do run in INT8 (fallback candidates).

Whether a TensorRT generation parses the result is :mod:`edgedepth.export.conformance`'s question.
"""
from __future__ import annotations

import re
from typing import TYPE_CHECKING, Dict, Iterable, List, Optional, Sequence, Set

import numpy as np

from edgedepth.calib.errors import CalibrationError
from edgedepth.export import onnx_info

if TYPE_CHECKING:  # onnx is imported lazily; its types only annotate
    from onnx import NodeProto

QDQ_OPS = onnx_info.QDQ_OPS
HEAD_REASON = "output head (last conv, sigmoid, x max_depth): INT8 would leave 127 depth levels"
USER_REASON = "--exclude {pattern}"


def resolve_exclusions(model, patterns: Sequence[str]) -> Dict[str, str]:
    """Node names matching each ``--exclude`` regex (``re.search``), with the pattern as reason.

    A pattern that matches nothing is an error: a typo would otherwise silently quantize the node.
    """
    names = [node.name for node in model.graph.node if node.op_type not in QDQ_OPS]
    kept: Dict[str, str] = {}
    for pattern in patterns:
        try:
            regex = re.compile(pattern)
        except re.error as exc:
            raise CalibrationError(f"--exclude {pattern!r} is not a valid regular expression ({exc})") from exc
        matched = [name for name in names if regex.search(name)]
        if not matched:
            raise CalibrationError(
                f"--exclude {pattern!r} matches no node; node names look like {names[len(names) // 2]!r} "
                f"(list them with: python -c \"import onnx; print([n.name for n in onnx.load('MODEL').graph.node])\")"
            )
        for name in matched:
            kept.setdefault(name, USER_REASON.format(pattern=pattern))
    return kept


def head_exclusions(model, output_name: str) -> Dict[str, str]:
    """The output head's nodes (found from the graph: last Conv before the output and all after it)."""
    return {name: HEAD_REASON for name in onnx_info.find_output_head(model, output_name)}


def _initializer_array(model, name: str):
    from onnx import numpy_helper

    for init in model.graph.initializer:
        if init.name == name:
            return numpy_helper.to_array(init)
    return None


def _dequantized_constant(model, dq) -> np.ndarray:
    """The float value of ``DequantizeLinear(constant)`` (a quantized weight)."""
    values = _initializer_array(model, dq.input[0]).astype(np.float32)
    scale = _initializer_array(model, dq.input[1]).astype(np.float32)
    zero = _initializer_array(model, dq.input[2]) if len(dq.input) > 2 and dq.input[2] else np.zeros_like(scale)
    if scale.ndim == 1 and scale.size > 1:  # per channel along "axis" (default 1)
        axis = next((a.i for a in dq.attribute if a.name == "axis"), 1) % values.ndim
        shape = [1] * values.ndim
        shape[axis] = scale.size
        scale, zero = scale.reshape(shape), zero.reshape(shape)
    return (values - zero.astype(np.float32)) * scale


def _original_constant(reference, node_name: str, position: int) -> Optional[object]:
    """The float initializer input ``position`` of ``node_name`` had in the FP32 ``reference`` graph."""
    if reference is None:
        return None
    node = next((n for n in reference.graph.node if n.name == node_name), None)
    if node is None or position >= len(node.input):
        return None
    return next((init for init in reference.graph.initializer if init.name == node.input[position]), None)


def _float_source(model, dq, writers: Dict[str, NodeProto], constants: Set[str], original) -> str:
    """The float tensor a DequantizeLinear stands for: the tensor its QuantizeLinear reads, or, for a
    quantized constant, the FP32 graph's original constant (else the dequantized one)."""
    quantize = writers.get(dq.input[0])
    if quantize is not None and quantize.op_type == "QuantizeLinear":
        return quantize.input[0]
    if dq.input[0] not in constants:
        raise CalibrationError(
            f"cannot find the float tensor behind DequantizeLinear {dq.name!r}: unexpected Q/DQ pattern"
        )
    if original is not None:
        name = f"{original.name}_fp32"
        if name not in constants:
            restored = model.graph.initializer.add()
            restored.CopyFrom(original)
            restored.name = name
            constants.add(name)
        return name
    from onnx import numpy_helper

    name = f"{dq.output[0]}_float"
    if name not in constants:
        model.graph.initializer.append(numpy_helper.from_array(_dequantized_constant(model, dq), name))
        constants.add(name)
    return name


def keep_float_inputs(model, nodes: Iterable[str], reference=None) -> int:
    """Rewire the inputs of ``nodes`` that come from a DequantizeLinear to the float tensor behind it.

    This is what keeping a node in higher precision means in a Q/DQ graph: no Q/DQ feeds it, so
    neither ONNX Runtime nor TensorRT runs it, or rounds its inputs, in INT8. Quantized weights
    and biases are restored from the FP32 ``reference`` graph (same node names) when given.
    Returns how many inputs were rewired; Q/DQ nodes left without a consumer are removed.
    """
    wanted = set(nodes)
    writers = onnx_info.producers(model)
    constants = {init.name for init in model.graph.initializer}
    rewired = 0
    for node in model.graph.node:
        if node.name not in wanted:
            continue
        for position, name in enumerate(node.input):
            writer = writers.get(name)
            if writer is not None and writer.op_type == "DequantizeLinear":
                original = _original_constant(reference, node.name, position)
                node.input[position] = _float_source(model, writer, writers, constants, original)
                rewired += 1
    remove_dead_nodes(model)
    return rewired


def remove_dead_nodes(model) -> None:
    """Drop nodes whose outputs nobody reads (repeatedly), then initializers nobody reads."""
    outputs = {o.name for o in model.graph.output}
    while True:
        used = outputs | {name for node in model.graph.node for name in node.input}
        dead = [node for node in model.graph.node if not any(out in used for out in node.output)]
        if not dead:
            break
        for node in dead:
            model.graph.node.remove(node)
    used = outputs | {name for node in model.graph.node for name in node.input}
    unused = [init for init in model.graph.initializer if init.name not in used]
    for init in unused:
        model.graph.initializer.remove(init)


def dq_fed_inputs(model, node_name: str) -> List[str]:
    """Inputs of ``node_name`` written by a QuantizeLinear/DequantizeLinear node (empty = float inputs)."""
    writers = onnx_info.producers(model)
    node = next((n for n in model.graph.node if n.name == node_name), None)
    if node is None:
        raise CalibrationError(f"node {node_name!r} is not in the graph")
    return [name for name in node.input if name in writers and writers[name].op_type in QDQ_OPS]


def quantized_nodes(model) -> List[str]:
    """Names of the compute nodes with at least one DequantizeLinear input, in graph order."""
    writers = onnx_info.producers(model)
    found = []
    for node in model.graph.node:
        if node.op_type in QDQ_OPS:
            continue
        if any(name in writers and writers[name].op_type == "DequantizeLinear" for name in node.input):
            found.append(node.name)
    return found
