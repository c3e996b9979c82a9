"""The FP16 converters behind :func:`edgedepth.export.fp16.convert_to_fp16`.

Both take an FP32 graph and the names of the nodes that must stay FP32, and return a graph with
FP32 inputs and outputs:

* ModelOpt AutoCast (``modelopt.onnx.autocast``), NVIDIA's own tool for TensorRT 11's strongly
  typed networks, used when installed;
* onnxconverter-common's ``convert_float_to_float16``, with three repairs: its
  ``keep_io_types=True`` fails when an FP32 node feeds the graph output (the head always does),
  so graph I/O is restored here; its default block list keeps Resize in FP32 (two Casts per
  upsampling for nothing); and it converts Resize's float-only ``scales`` input to FP16.
"""
from __future__ import annotations

import contextlib
import copy
import importlib.util
import logging
import re
import tempfile
import warnings
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Set

import numpy as np

from edgedepth.errors import ExportError
from edgedepth.export import onnx_info

FP16_MAX = 65504.0
FP16_MIN_SUBNORMAL = 2.0 ** -24


CONVERTERS = ("modelopt.onnx.autocast", "onnxconverter_common.float16")


def converter_available(name: str) -> bool:
    """True when the converter ``name`` (one of :data:`CONVERTERS`) can be imported."""
    package = {"modelopt.onnx.autocast": "modelopt", "onnxconverter_common.float16": "onnxconverter_common"}[name]
    return importlib.util.find_spec(package) is not None and importlib.util.find_spec(name) is not None


def converter_name(requested: Optional[str] = None) -> str:
    """The converter to use: ``requested`` if given (and installed), else ModelOpt AutoCast when
    installed, else onnxconverter-common."""
    if requested is not None:
        if requested not in CONVERTERS:
            raise ExportError(f"FP16 converter {requested!r} is unknown: use one of {', '.join(CONVERTERS)}")
        if not converter_available(requested):
            raise ExportError(f"FP16 converter {requested} is not installed")
        return requested
    for name in CONVERTERS:
        if converter_available(name):
            return name
    raise ExportError(
        "no FP16 converter is installed: `pip install onnxconverter-common` (or NVIDIA ModelOpt: "
        "`pip install nvidia-modelopt[onnx]`)"
    )


def _convert_with_autocast(model, fp32_nodes: Sequence[str], data_max: float, probes: Sequence[np.ndarray]):
    """ModelOpt AutoCast with our block list; its own range rules run too, on the same probes
    (one .npz per batch) and the same ``data_max``, and the opset is kept (TensorRT 8.x/10.x
    parsers have limits)."""
    from modelopt.onnx.autocast import convert_to_mixed_precision

    onnx = onnx_info.import_onnx()
    input_name = onnx_info.graph_inputs(model)[0].name
    with tempfile.TemporaryDirectory(prefix="edgedepth-autocast-") as folder, _quiet_loggers("modelopt"):
        path = Path(folder) / "fp32.onnx"
        onnx.save(model, str(path))
        calibration = Path(folder) / "calibration"
        calibration.mkdir()
        for index, batch in enumerate(probes):
            # Keyed by the input name; typed Any because numpy's stub lets a key be savez's allow_pickle.
            arrays: Dict[str, Any] = {input_name: batch}
            np.savez(calibration / f"{index:03d}.npz", **arrays)
        return convert_to_mixed_precision(
            onnx_path=str(path),
            low_precision_type="fp16",
            nodes_to_exclude=[f"^{re.escape(name)}$" for name in fp32_nodes],
            data_max=data_max,
            keep_io_types=True,
            calibration_data=str(calibration),
            opset=_opset(model),
        )


@contextlib.contextmanager
def _quiet_loggers(prefix: str) -> Iterator[None]:
    """Silence a library's loggers below ERROR for the block: ModelOpt logs every node it skips
    to stdout, which would bury our summary and corrupt JSON printed by callers."""
    loggers = [logging.getLogger(name) for name in list(logging.root.manager.loggerDict) if name.startswith(prefix)]
    previous = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, previous):
            logger.setLevel(level)


def _opset(model) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 17)


def _cast_to(node) -> Optional[int]:
    if node.op_type != "Cast":
        return None
    return next((a.i for a in node.attribute if a.name == "to"), None)


def _bypass(model, node) -> None:
    """Remove a one-in one-out node, wiring its input straight to its consumers (keeping a graph
    output's name by renaming the upstream tensor instead)."""
    source, target = node.input[0], node.output[0]
    if target in {value.name for value in model.graph.output}:
        old, new = source, target
    else:
        old, new = target, source
    model.graph.node.remove(node)
    for other in model.graph.node:
        other.input[:] = [new if name == old else name for name in other.input]
        other.output[:] = [new if name == old else name for name in other.output]


def _restore_fp32_inputs(model) -> None:
    """FP16 graph inputs -> FP32 inputs followed by one Cast to FP16. The converter's Casts back
    to FP32 in front of FP32 nodes are dropped, so those nodes see the exact input."""
    onnx = onnx_info.import_onnx()
    for value in model.graph.input:
        if value.type.tensor_type.elem_type != onnx.TensorProto.FLOAT16:
            continue
        value.type.tensor_type.elem_type = onnx.TensorProto.FLOAT
        half = f"{value.name}_fp16"
        back_to_fp32, needs_cast = [], False
        for node in model.graph.node:
            if list(node.input) == [value.name] and _cast_to(node) == onnx.TensorProto.FLOAT:
                back_to_fp32.append(node)
            elif value.name in node.input:
                node.input[:] = [half if name == value.name else name for name in node.input]
                needs_cast = True
        for node in back_to_fp32:
            _bypass(model, node)
        if needs_cast:
            cast = onnx.helper.make_node("Cast", [value.name], [half], name=f"{half}_cast", to=onnx.TensorProto.FLOAT16)
            model.graph.node.insert(0, cast)


def _restore_fp32_outputs(model) -> None:
    """FP16 graph outputs -> FP32 outputs: a Cast to FP16 that follows an FP32 node (the head) is
    dropped, so the output keeps full precision; other outputs get a Cast to FP32."""
    onnx = onnx_info.import_onnx()
    producers = {out: node for node in model.graph.node for out in node.output}
    for value in model.graph.output:
        if value.type.tensor_type.elem_type != onnx.TensorProto.FLOAT16:
            continue
        value.type.tensor_type.elem_type = onnx.TensorProto.FLOAT
        producer = producers[value.name]
        if _cast_to(producer) == onnx.TensorProto.FLOAT16:
            _bypass(model, producer)  # its input is the FP32 head output
            continue
        half = f"{value.name}_fp16"
        producer.output[:] = [half if name == value.name else name for name in producer.output]
        model.graph.node.append(
            onnx.helper.make_node("Cast", [half], [value.name], name=f"{half}_cast", to=onnx.TensorProto.FLOAT)
        )


def _float_only_inputs(model) -> Set[str]:
    """Tensors feeding an input the op schema types as plain ``tensor(float)`` (Resize scales)."""
    onnx = onnx_info.import_onnx()
    opset = _opset(model)
    names: Set[str] = set()
    for node in model.graph.node:
        try:
            schema = onnx.defs.get_schema(node.op_type, opset, node.domain)
        except Exception:  # custom domain without a registered schema: nothing to restore
            continue
        for index, name in enumerate(node.input):
            formal = schema.inputs[min(index, len(schema.inputs) - 1)] if schema.inputs else None
            if name and formal is not None and formal.type_str == "tensor(float)":
                names.add(name)
    return names


def _restore_float_only_inputs(model) -> None:
    """Turn FP16 weights/constants that feed float-only inputs back into FP32 (the converter
    converts Resize scales along with everything else)."""
    onnx = onnx_info.import_onnx()
    wanted = _float_only_inputs(model)
    for init in model.graph.initializer:
        if init.name in wanted and init.data_type == onnx.TensorProto.FLOAT16:
            init.CopyFrom(onnx.numpy_helper.from_array(onnx.numpy_helper.to_array(init).astype(np.float32), init.name))
    for node in model.graph.node:
        if node.op_type == "Constant" and node.output[0] in wanted:
            for attribute in node.attribute:
                if attribute.name == "value" and attribute.t.data_type == onnx.TensorProto.FLOAT16:
                    values = onnx.numpy_helper.to_array(attribute.t).astype(np.float32)
                    attribute.t.CopyFrom(onnx.numpy_helper.from_array(values, attribute.t.name))


def _op_block_list(float16) -> List[str]:
    """The library's default op block list minus Resize/Upsample: nearest and linear resizing are
    exact enough in FP16, and TensorRT runs them in FP16; blocking them costs two Casts each."""
    return [op for op in float16.DEFAULT_OP_BLOCK_LIST if op not in ("Resize", "Upsample")]


def _convert_with_onnxconverter(model, fp32_nodes: Sequence[str]):
    """onnxconverter-common with FP32 I/O restored by hand: its ``keep_io_types=True`` fails
    ("downstream node of the second cast node should be graph output") when a node kept in FP32
    feeds the graph output, which the head always does."""
    from onnxconverter_common import float16

    source = copy.deepcopy(model)
    del source.graph.value_info[:]  # stale or duplicate entries mislead it; it re-infers shapes
    with warnings.catch_warnings():
        # It warns when it clamps tiny weights to FP16's subnormal floor: expected, not actionable.
        warnings.simplefilter("ignore")
        converted = float16.convert_float_to_float16(
            source,
            min_positive_val=FP16_MIN_SUBNORMAL,
            max_finite_val=FP16_MAX,
            keep_io_types=False,
            op_block_list=_op_block_list(float16),
            node_block_list=list(fp32_nodes),
        )
    _restore_float_only_inputs(converted)
    _restore_fp32_inputs(converted)
    _restore_fp32_outputs(converted)
    del converted.graph.value_info[:]  # entries for renamed tensors would be stale
    onnx = onnx_info.import_onnx()
    onnx.checker.check_model(converted)
    return converted


def convert_graph(
    model, fp32_nodes: Sequence[str], converter: str, data_max: float, probes: Sequence[np.ndarray] = ()
):
    """Convert ``model`` to mixed FP16, keeping ``fp32_nodes`` (and graph I/O) in FP32.
    ``data_max`` and ``probes`` feed AutoCast's own range analysis."""
    try:
        if converter == "modelopt.onnx.autocast":
            return _convert_with_autocast(model, fp32_nodes, data_max, probes)
        return _convert_with_onnxconverter(model, fp32_nodes)
    except ExportError:
        raise
    except Exception as exc:  # a converter bug must name itself, not look like ours
        raise ExportError(f"FP16 conversion with {converter} failed: {type(exc).__name__}: {exc}") from exc
